"""Benchmarks: every stage against its baseline, measured in the same run on the same machine.

``python -m videobgm.bench`` (``make bench``) runs each section, prints a table with the baseline
beside each figure and their ratio, and writes ``reports/bench/<section>.json`` (rows plus the
machine) and ``.csv``, then ``summary.json``/``.csv`` (the latest rows of every section there)
and the figures (``speed.png``, ``quality.png``, ``growth.png``, ``engine.png``). A section is
a function returning rows: dicts with ``section``, ``kind`` (speed | quality | cost),
``metric``, ``unit``, ``ours``, ``baseline``, ``ratio`` (how many times better ours is; speed
rows), ``bar`` (the target, in words), ``meets_bar`` and ``note``.
Register new sections in :data:`SECTIONS`.

The default run stays within about a quarter of an hour on two CPU cores; ``--full`` adds the
heavy cases (a 30-minute video, two minutes of speech, more repeats of full-size steps). The
``engine`` section (local sequential against Ray, :mod:`videobgm.bench.engine`) adds a few
minutes and needs the ``[ray]`` extra (without it, one row says so). GPU
measurements run when a CUDA device is present and otherwise say why they did not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from videobgm import paths
from videobgm.bench.codec import bench_codec
from videobgm.bench.core import (
    KINDS,
    NO_CUDA,
    ROW_KEYS,
    in_section,
    machine_info,
    median_time,
    print_table,
    read_rows,
    row,
    skipped,
    write_report,
)
from videobgm.bench.dataset import bench_dataset
from videobgm.bench.ducking import bench_ducking
from videobgm.bench.engine import bench_engine
from videobgm.bench.generation import bench_generation
from videobgm.bench.gpu import bench_gpu
from videobgm.bench.music import bench_compose
from videobgm.bench.speech import bench_transcription
from videobgm.bench.video import bench_endtoend, bench_growth, bench_mux
from videobgm.bench.voice import bench_mix, bench_separation
from videobgm.plots import bench as plots

__all__ = [
    "KINDS", "NO_CUDA", "ROW_KEYS", "SECTIONS", "bench_codec", "bench_compose", "bench_dataset",
    "bench_ducking", "bench_endtoend", "bench_engine",
    "bench_generation", "bench_gpu", "bench_growth", "bench_mix", "bench_mux",
    "bench_separation", "bench_transcription", "in_section", "latest_rows", "machine_info", "main",
    "median_time", "print_table", "read_rows", "row", "run_sections", "skipped", "write_report",
    "write_summary",
]  # fmt: skip

SECTIONS: dict[str, Callable[..., list[dict]]] = {
    "codec": bench_codec,
    "generation": bench_generation,
    "compose": bench_compose,
    "dataset": bench_dataset,
    "transcription": bench_transcription,
    "separation": bench_separation,
    "mix": bench_mix,
    "ducking": bench_ducking,
    "mux": bench_mux,
    "endtoend": bench_endtoend,
    "growth": bench_growth,
    "engine": bench_engine,
    "gpu": bench_gpu,
}


def run_sections(
    names: list[str] | None = None, repeats: int = 5, device: str | None = None,
    full: bool = False, out_dir: Path | None = None, echo: bool = True,
) -> list[dict]:  # fmt: skip
    """Run the named sections (default all) in order, write each one's report, then the
    summary and figures of every section report in ``out_dir`` (so ``--only`` refreshes one
    section of a full run), and return this run's rows. A section that fails gives one row
    naming the error; the others still run."""
    rows: list[dict] = []
    for name in names or list(SECTIONS):
        started = time.perf_counter()
        gpu_device = device if device and device.startswith("cuda") else None
        try:
            found = SECTIONS[name](repeats=repeats, device=gpu_device if name == "gpu" else device,
                                   full=full)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one broken section must not stop the rest
            traceback.print_exc()
            found = [skipped(name, f"{name} section", f"failed: {type(exc).__name__}: {exc}")]
        path = write_report(name, found, out_dir)
        if echo:
            print(f"\n== {name} ({time.perf_counter() - started:.0f} s)")
            print_table(found)
            print(f"written: {path}")
        rows += found
        gc.collect()  # full-size models of one section must not stay resident for the next
    write_summary(latest_rows(out_dir), out_dir)
    return rows


def latest_rows(out_dir: Path | None = None) -> list[dict]:
    """The rows of every section report in ``out_dir`` (the latest run of each section; each
    section's JSON records its own machine and time), in :data:`SECTIONS` order."""
    folder = Path(out_dir) if out_dir else paths.bench_reports()
    names = [p.stem for p in folder.glob("*.json") if p.stem != "summary"]
    order = list(SECTIONS)
    names.sort(key=lambda n: (order.index(n) if n in order else len(order), n))
    return read_rows(folder, names)


def write_summary(rows: list[dict], out_dir: Path | None = None) -> dict[str, Path]:
    """``summary.json`` / ``summary.csv`` (all ``rows``) and the figures beside them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = paths.ensure_dir(Path(out_dir) if out_dir else paths.bench_reports())
    written = {"summary": write_report("summary", rows, out_dir)}
    figures = {
        "speed": plots.plot_speed(rows),
        "quality": plots.plot_quality(rows),
        "growth": plots.plot_growth(rows),
        "engine": plots.plot_engine(rows),
    }
    for name, fig in figures.items():
        if fig is not None:
            written[name] = plots.save(fig, out_dir / f"{name}.png")
            plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m videobgm.bench",
        description="Benchmark each stage against its baseline; results in reports/bench/.",
    )
    add = parser.add_argument
    add("--only", choices=list(SECTIONS), action="append", help="run only this section "
        "(repeatable; default: all)")  # fmt: skip
    add("--skip", choices=list(SECTIONS), action="append", default=[], help="leave it out")
    add("--device", default=None, help="torch device for the GPU-capable parts")
    add("--repeats", type=int, default=5, help="timed runs per cheap figure (median)")
    add("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    add("--full", action="store_true", help="heavy cases too: a 30-minute video, 2 minutes "
        "of speech, repeated full-size steps")  # fmt: skip
    add("--out", type=Path, default=None, help="output folder (default reports/bench)")
    args = parser.parse_args(argv)
    # Before torch loads: libgomp's default busy-waiting makes every small op cost a scheduler
    # slice when other processes share the cores (Griffin-Lim runs ~30 ops per iteration).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print("machine:", json.dumps(machine_info()))
    names = [n for n in (args.only or list(SECTIONS)) if n not in args.skip]
    rows = run_sections(names, args.repeats, args.device, args.full, args.out)
    failed = [r for r in rows if str(r.get("note", "")).startswith("skipped: failed")]
    print(f"\nsummary and figures in {args.out or paths.bench_reports()}")
    return 1 if failed else 0
