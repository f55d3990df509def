"""One measured job in a fresh process, so that its peak memory is its own.

``python -m videobgm.bench.child pipeline VIDEO OUT RUN_DIR``: :func:`videobgm.pipeline.run` on
the offline path (tiny profile: the captions and timeline beside the video, procedural music,
spectral separation). ``python -m videobgm.bench.child original VIDEO OUT``: the original
project's non-model stages (:func:`videobgm.bench.baselines.original_style_run`) with the timeline
beside the video. Prints one JSON line: ``seconds`` (the job, imports excluded), ``stages``
(seconds per stage), ``stage_peak_mb`` (the process's peak resident memory during each stage,
from Linux's VmHWM, reset before each stage through ``/proc/self/clear_refs``) and
``peak_rss_mb`` (the whole job's peak: the largest of those and of the imports). Not
``getrusage``: a forked process's ``ru_maxrss`` starts at its parent's resident size, so it
would report the benchmark runner's memory. ffmpeg's own (small) memory is not counted.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from videobgm import paths, pipeline
from videobgm.bench import baselines
from videobgm.emotion import io as timeline_io


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM); False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """This process's peak resident memory since start or the last :func:`reset_peak`, MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_STAGE_PEAKS: dict[str, float] = {}


def _pipeline(video: Path, out: Path, run_dir: Path) -> dict[str, float]:
    run_stage = pipeline._Stages.run  # instrumented here only: peak memory per stage

    def measured(stages, name, key, outputs, work):
        reset_peak()
        try:
            return run_stage(stages, name, key, outputs, work)
        finally:
            _STAGE_PEAKS[name] = peak_mb()

    pipeline._Stages.run = measured
    pipeline.run(video, out, run_dir, progress=False, profile="tiny", music="procedural",
                 separator="spectral")  # fmt: skip
    records = json.loads((run_dir / paths.RUN_STAGES).read_text())
    return {name: record["seconds"] for name, record in records.items()}


def _original(video: Path, out: Path) -> dict[str, float]:
    def after(name: str) -> None:
        _STAGE_PEAKS[name] = peak_mb()
        reset_peak()

    spans = timeline_io.load_timeline(video.with_name(f"{video.stem}.timeline.json"))
    reset_peak()
    return baselines.original_style_run(video, out, spans, after)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.environ["VIDEOBGM_PROFILE"] = "tiny"  # the offline path, whatever the caller's setting
    import numpy  # noqa: F401 - imported before the clock starts, like the pipeline's modules

    job, paths = args[0], [Path(a) for a in args[1:]]
    imports_mb = peak_mb()  # since exec: the interpreter and the imports
    started = time.perf_counter()
    stages = _pipeline(*paths) if job == "pipeline" else _original(*paths)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "job": job, "seconds": seconds, "stages": stages, "stage_peak_mb": _STAGE_PEAKS,
        "imports_mb": imports_mb, "peak_rss_mb": max([imports_mb, *_STAGE_PEAKS.values()]),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
