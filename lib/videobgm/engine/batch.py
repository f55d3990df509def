"""Many videos through the pipeline on a Ray cluster (Ray Data), with a local run's outputs.

Each video is a row that flows through the steps of :data:`cluster.STEPS`: the model steps
run in actor pools (an actor keeps its models loaded from one video to the next), ``finish``
runs as CPU tasks. Every step calls :func:`videobgm.pipeline.run_stages` on the video's run
folder, so the stage cache does the bookkeeping: the outputs are the local run's, a
re-submitted batch resumes where the last one stopped, and nothing is half-written (each stage
writes atomically). A video that fails keeps its error sentence and skips its later steps;
the other videos finish.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from videobgm import models, paths, pipeline
from videobgm.engine import cluster
from videobgm.errors import InputError, VideobgmError


@dataclass
class BatchItem:
    """What became of one video: its output (or error sentence) and each step's seconds."""

    input: Path
    output: Path | None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall-clock s
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "reused"
    detail: str | None = None  # the traceback of an unexpected error (a bug)

    @property
    def ok(self) -> bool:
        return self.error is None


def run_files(
    files: list[Path],
    out_dir: Path | None = None,
    runs_dir: Path | None = None,
    address: str | None = None,
    gpus_per_stage: dict[str, float] | None = None,
    progress: bool = True,
    **params: Any,
) -> list[BatchItem]:
    """Run the pipeline on every file of ``files`` on the Ray cluster at ``address`` (see
    :func:`cluster.connect`). Outputs go to ``out_dir`` (None: beside each input), run folders
    to ``runs_dir/<stem>`` (None: the local default, ``runs/<stem>-<hash>``). ``params`` are
    :class:`videobgm.pipeline.RunParams` fields. Returns one :class:`BatchItem` per file, in
    the order of ``files``."""
    import ray.data  # deferred: an optional extra, slow to import

    settings = pipeline.RunParams(**params)  # one sentence for a bad value, before the cluster
    resources = cluster.connect(address)
    # One device for every step: the stage keys name the models a device loads.
    params = params | {"device": params.get("device") or _device(resources)}
    profile = models.resolve_profile(settings.profile, params["device"], settings.model_stages())
    steps = cluster.plan(profile, len(files), resources, gpus_per_stage)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress  # Ray Data draws one bar per step
    context.enable_operator_progress_bars = progress
    # Absolute paths: a worker on another node (or in another folder) reads the same files.
    out_dir, runs_dir = (Path(d).resolve() if d else None for d in (out_dir, runs_dir))
    rows = [_row(Path(f).resolve(), out_dir, runs_dir) for f in files]
    data = ray.data.from_items(rows, override_num_blocks=len(rows))
    for step in steps:
        data = _map_step(data, step, params)
    finished = {row["input"]: _item(row) for row in data.iter_rows()}
    return [finished[str(Path(f).resolve())] for f in files]


def _device(resources: dict[str, float]) -> str:
    return "cuda" if resources.get("GPU", 0) else "cpu"


def _row(path: Path, out_dir: Path | None, runs_dir: Path | None) -> dict[str, str]:
    return {
        "input": str(path),
        "out_dir": str(out_dir) if out_dir else "",
        "output": "",
        "run_dir": str(Path(runs_dir) / path.stem) if runs_dir else "",
        "error": "",
        "detail": "",
        "seconds": "{}",
        "stages": "{}",
    }


def _map_step(data, step: cluster.StepPlan, params: dict[str, Any]):
    import ray.data  # deferred: an optional extra

    if step.actors:
        return data.map(
            StepActor, fn_constructor_args=(step.name, params),
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=step.actors),
            num_cpus=step.cpus, num_gpus=step.gpus or None,
        )  # fmt: skip
    return data.map(run_step, fn_args=(step.name, params, False), num_cpus=step.cpus)


class StepActor:
    """An actor of one model step: its models stay loaded from one video to the next."""

    def __init__(self, step: str, params: dict[str, Any]):
        self.step, self.params = step, params

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return run_step(row, self.step, self.params, True)


def run_step(
    row: dict[str, Any], step: str, params: dict[str, Any], keep_models: bool
) -> dict[str, Any]:
    """One step of one video (a row); a failure is written into the row, never raised."""
    row = dict(row)
    if row["error"]:
        return row  # an earlier step failed: the video is recorded as failed
    started = time.perf_counter()
    try:
        if not row["output"] and row["out_dir"]:
            row["output"] = str(pipeline.output_in(Path(row["out_dir"]), Path(row["input"])))
        status = pipeline.run_stages(
            row["input"], cluster.STEPS[step], row["output"] or None, row["run_dir"] or None,
            progress=False, keep_models=keep_models, **params,
        )  # fmt: skip
        row["stages"] = json.dumps(status | json.loads(row["stages"]))  # earlier steps' "ran"
    except VideobgmError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # a bug: recorded with its traceback, the other videos go on
        row["error"] = f"unexpected {type(exc).__name__} in {step}: {exc}"
        row["detail"] = traceback.format_exc()
    seconds = json.loads(row["seconds"]) | {step: round(time.perf_counter() - started, 3)}
    row["seconds"] = json.dumps(seconds)
    return row


def _item(row: dict[str, Any]) -> BatchItem:
    return BatchItem(
        input=Path(row["input"]),
        output=Path(row["output"]) if row["output"] and not row["error"] else None,
        error=row["error"] or None,
        seconds=json.loads(row["seconds"]),
        stages=json.loads(row["stages"]),
        detail=row["detail"] or None,
    )


def write_record(items: list[BatchItem], target: Path) -> Path:
    """The batch's record (every video's output or error, step times), written atomically."""
    records = [
        {k: str(v) if isinstance(v, Path) else v for k, v in asdict(item).items()} for item in items
    ]
    with paths.atomic_output(target) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return target


def media_files(folder: Path) -> list[Path]:
    """The media files of ``folder`` (not recursive), sorted, as the local folder run takes."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in pipeline.MEDIA_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: has no video or audio files to process")
    return files
