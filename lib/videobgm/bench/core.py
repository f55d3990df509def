"""What every benchmark section shares: rows, timing, the machine, reports, child processes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from videobgm import paths

ROW_KEYS = (
    "section", "kind", "metric", "unit", "ours", "baseline", "ratio", "bar", "meets_bar", "note",
)  # fmt: skip
KINDS = ("speed", "quality", "cost")  # what a row measures (figures group rows by it)
NO_CUDA = "no CUDA device in this session"


def machine_info() -> dict[str, object]:
    """CPU model, cores, torch version and threads, GPU (if any): what the figures depend on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(
    metric, unit, ours, baseline, *, higher_is_better=False, bar="", meets_bar=None, note="",
    kind="speed", with_ratio=None,
):  # fmt: skip
    """One table row. ``ratio`` is how many times better ours is than the baseline; it is
    given for speed rows (and others with ``with_ratio``), not for quality figures on a
    logarithmic scale (dB, LU), where the two values side by side say it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    ratio = None
    if (kind == "speed" if with_ratio is None else with_ratio) and baseline is not None and ours:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {
        "kind": kind,
        "metric": metric,
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "bar": bar,
        "meets_bar": meets_bar,
        "note": note,
    }


def in_section(section: str, rows: list[dict]) -> list[dict]:
    """Stamp ``section`` on every row (first column) and return the rows."""
    for r in rows:
        r["section"] = section
    return rows


def skipped(section: str, metric: str, reason: str) -> dict:
    """A row that says why a measurement was not made (no numbers)."""
    return {**row(metric, "", None, None, note=f"skipped: {reason}"), "section": section}


@contextlib.contextmanager
def profile_env(name: str):
    """``$VIDEOBGM_PROFILE`` set to ``name`` inside the block: the variable overrides any
    profile a call names, so a section that measures one profile must set it."""
    saved = os.environ.get("VIDEOBGM_PROFILE")
    os.environ["VIDEOBGM_PROFILE"] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("VIDEOBGM_PROFILE", None)
        else:
            os.environ["VIDEOBGM_PROFILE"] = saved


# --------------------------------------------------------------------------- child processes


def run_child(*args: str, timeout_s: float = 3600) -> dict:
    """Run ``python -m videobgm.bench.child ARGS`` and return the JSON it prints last: what it
    measured, with its own peak memory (``peak_rss_mb``) and that of the largest process it
    started (``children_peak_rss_mb``, e.g. ffmpeg). A fresh process, so the peak is this
    job's alone."""
    cmd = [sys.executable, "-m", "videobgm.bench.child", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"benchmark child {' '.join(args)} failed:\n{tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started  # with interpreter start and imports
    return result


# --------------------------------------------------------------------------- report


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict]) -> None:
    """The rows as an aligned text table, then their notes."""
    header = ("metric", "unit", "ours", "baseline", "ratio", "bar", "meets_bar")
    table = [header]
    for r in rows:
        cells = [_fmt(r.get(k)) for k in header]
        if r.get("ratio") is not None:
            cells[4] = f"{r['ratio']:.3g}x"
        table.append(tuple(cells))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    for r in rows:
        if r.get("note"):
            print(f"  note ({r['metric']}): {r['note']}")


def write_report(section: str, rows: list[dict], out_dir: Path | None = None) -> Path:
    """``<section>.json`` (machine + rows, with any ``data`` they carry) and ``<section>.csv``
    (the :data:`ROW_KEYS` columns); returns the JSON path."""
    out_dir = paths.ensure_dir(Path(out_dir) if out_dir else paths.bench_reports())
    json_path = out_dir / f"{section}.json"
    doc = {"machine": machine_info(), "rows": rows}
    with paths.atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")
    with paths.atomic_output(out_dir / f"{section}.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_KEYS)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in ROW_KEYS} for r in rows)
    return json_path


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_rows(out_dir: Path | None = None, sections: list[str] | None = None) -> list[dict]:
    """The rows of the section reports in ``out_dir`` (default ``reports/bench``), in the
    order of ``sections`` (default: every ``<section>.json`` there but ``summary``)."""
    out_dir = Path(out_dir) if out_dir else paths.bench_reports()
    names = sections or sorted(p.stem for p in out_dir.glob("*.json") if p.stem != "summary")
    rows: list[dict] = []
    for name in names:
        path = out_dir / f"{name}.json"
        if path.exists():
            rows += json.loads(path.read_text())["rows"]
    return rows
