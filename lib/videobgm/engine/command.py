"""The ``--engine ray`` branches of ``videobgm run`` and ``videobgm curate`` (their options
are defined beside the local ones, in :mod:`videobgm.pipeline` and :mod:`videobgm.dataset`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from videobgm import paths, pipeline
from videobgm.engine import batch, cluster
from videobgm.errors import InputError

ENGINES = ("local", "ray")  # local: this process (the default); ray: a Ray cluster


def add_options(add) -> None:
    """``--engine``, ``--address`` and ``--gpus-per-stage`` for a parser's ``add_argument``."""
    add("--engine", choices=ENGINES, default="local",
        help="local (this machine, the default) or ray (tasks on a Ray cluster: `pip install "
        "videobgm[ray]`; the same files as a local run)")  # fmt: skip
    add("--address", default=None,
        help="with --engine ray: auto (the cluster `ray start` made) or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, else a new local Ray on this machine)")  # fmt: skip


def cli_run(args: Any, params: dict[str, Any]) -> int:
    """``videobgm run FOLDER --engine ray``: the batch on the cluster, the local run's summary,
    the batch record (``batch-<folder>.json`` beside the run folders); status 1 on a failure."""
    folder = Path(args.input)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: --engine ray runs a folder of videos; give a folder, or run one video "
            "locally (without --engine)"
        )
    out_dir = Path(args.output) if args.output else folder / pipeline.OUTPUT_FOLDER
    runs_dir = Path(args.run_dir) if args.run_dir else None
    items = batch.run_files(
        batch.media_files(folder), out_dir, runs_dir, args.address,
        cluster.parse_gpus(args.gpus_per_stage), progress=not args.quiet, **params,
    )  # fmt: skip
    record = batch.write_record(
        items, (runs_dir or paths.runs()) / f"batch-{folder.resolve().name}.json"
    )
    failed = [item for item in items if not item.ok]
    print(f"\n{len(items) - len(failed)} done, {len(failed)} failed  (record: {record})")
    for item in items:
        if item.ok:
            print(f"  ok    {item.input.name} -> {item.output}")
    for item in failed:
        print(f"  FAIL  {item.input.name}: {item.error}")
        if item.detail:
            print(item.detail, file=sys.stderr)
    return 1 if failed else 0
