"""Engines past one process: batch runs and dataset curation on a Ray cluster.

``videobgm run DIR --engine ray`` and ``videobgm curate --engine ray`` land here; the local
engine (the default) is :func:`videobgm.pipeline.run_folder` and :func:`videobgm.dataset.curate`
themselves. Ray is the optional extra ``videobgm[ray]``; it is imported only when used.
"""

from __future__ import annotations

from videobgm.engine.batch import BatchItem, media_files, run_files, write_record
from videobgm.engine.cluster import (
    MODEL_STEPS,
    START_TRIES,
    STEPS,
    StepPlan,
    connect,
    default_gpus,
    map_unordered,
    parse_gpus,
    plan,
    start_local,
)
from videobgm.engine.command import ENGINES, add_options, cli_run

__all__ = [
    "ENGINES",
    "MODEL_STEPS",
    "START_TRIES",
    "STEPS",
    "BatchItem",
    "StepPlan",
    "add_options",
    "cli_run",
    "connect",
    "default_gpus",
    "map_unordered",
    "media_files",
    "parse_gpus",
    "plan",
    "run_files",
    "start_local",
    "write_record",
]
