"""One measured job in a fresh process, so that its peak memory is its own.

``python -m videobgm.bench.child pipeline VIDEO OUT RUN_DIR``: :func:`videobgm.pipeline.run` on
the offline path (tiny profile: the captions and timeline beside the video, procedural music,
spectral separation). ``python -m videobgm.bench.child original VIDEO OUT``: the original
project's non-model stages (:func:`videobgm.baselines.original_style_run`) with the timeline
beside the video. Prints one JSON line: ``seconds`` (the job, imports excluded), ``stages``,
``peak_rss_mb`` (this process) and ``children_peak_rss_mb`` (its largest child, e.g. ffmpeg).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def _pipeline(video: Path, out: Path, run_dir: Path) -> dict[str, float]:
    from videobgm import pipeline

    pipeline.run(video, out, run_dir, progress=False, profile="tiny", music="procedural",
                 separator="spectral")  # fmt: skip
    records = json.loads((run_dir / "stages.json").read_text())
    return {name: record["seconds"] for name, record in records.items()}


def _original(video: Path, out: Path) -> dict[str, float]:
    from videobgm import baselines, timeline_io

    spans = timeline_io.load_timeline(video.with_name(f"{video.stem}.timeline.json"))
    return baselines.original_style_run(video, out, spans)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.environ["VIDEOBGM_PROFILE"] = "tiny"  # the offline path, whatever the caller's setting
    import numpy  # noqa: F401 - imported before the clock starts, like the pipeline's modules

    from videobgm import baselines, pipeline  # noqa: F401

    job, paths = args[0], [Path(a) for a in args[1:]]
    started = time.perf_counter()
    stages = _pipeline(*paths) if job == "pipeline" else _original(*paths)
    seconds = time.perf_counter() - started
    kib = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "job": job, "seconds": seconds, "stages": stages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
