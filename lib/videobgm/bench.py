"""Benchmarks: every stage against its baseline, measured in the same run on the same machine.

``python -m videobgm.bench`` (``make bench``) runs each section, prints a table with the baseline
beside each figure and their ratio, and writes ``reports/bench/<section>.json`` (rows plus the
machine) and ``.csv``. A section is a function returning rows: dicts with ``section``,
``metric``, ``unit``, ``ours``, ``baseline``, ``ratio`` (> 1 means ours is better), ``bar``
(the target, in words) and ``meets_bar``. Register new sections in :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from videobgm import paths

ROW_KEYS = ("section", "metric", "unit", "ours", "baseline", "ratio", "bar", "meets_bar", "note")


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


def row(metric, unit, ours, baseline, *, higher_is_better=False, bar="", meets_bar=None, note=""):
    """One table row; ``ratio`` is how many times better ours is than the baseline."""
    ratio = None
    if baseline is not None and ours:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {
        "metric": metric,
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "bar": bar,
        "meets_bar": meets_bar,
        "note": note,
    }


# --------------------------------------------------------------------------- codec


def _codec_images(width: int, count: int):
    """The reference image, ``count`` crops of it ``width`` px wide (EXIF kept) and where it
    came from: riffusion's conformance image when the shared folder has it, else procedural
    audio's image."""
    from videobgm import spectrogram as sp

    folder = paths.shared() / "conformance" / "riffusion"
    found = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if found:
        reference, source = sp.open_image(found[0]), f"riffusion conformance image {found[0].name}"
    else:
        reference, source = sp.image_from_audio(_procedural_clip(6.0)), "procedural clip (6 s)"
    exif = reference.getexif()
    crops = []
    for i in range(count):
        left = (i * 7) % max(1, reference.width - width + 1)
        crop = reference.crop((left, 0, left + min(width, reference.width), reference.height))
        crop.getexif().update(exif)
        crops.append(crop)
    return reference, crops, source


def _procedural_clip(seconds: float, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A few decaying harmonic notes over soft noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = 0.02 * rng.standard_normal(t.size)
    onsets = np.arange(0, seconds, 0.5)
    for onset, freq in zip(onsets, rng.choice([220, 277, 330, 440], onsets.size), strict=True):
        env = np.where(t >= onset, np.exp(-(t - onset) * 3), 0)
        audio += sum(0.2 / k * np.sin(2 * np.pi * k * freq * t) for k in (1, 2, 3)) * env
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def bench_codec(
    repeats: int = 5,
    baseline_repeats: int = 3,
    width: int = 512,
    batch: int = 8,
    clips: int = 10,
    iterations: int | None = None,
    device: str | None = None,
    sc_width: int | None = None,
    baseline_mel_iterations: int = 200,
) -> list[dict]:
    """Spectrogram codec (issue 3): image -> audio (time, spectral convergence) against
    riffusion's algorithm, batched against one-at-a-time decoding, and audio -> image clips per
    second against the frame-by-frame recipe. Spectral convergence is measured on the whole
    reference image unless ``sc_width`` crops it. Smaller arguments (and fewer SGD steps for the
    baseline's mel inverse) make a quick smoke run."""
    from videobgm import baselines
    from videobgm import spectrogram as sp

    iterations = sp.DEFAULT_ITERATIONS if iterations is None else iterations
    if device is None:
        from videobgm.models import default_device

        device = default_device()
    reference, crops, source = _codec_images(width, batch)
    if sc_width is not None:
        reference = _codec_images(sc_width, 1)[1][0]
    target = sp.mel_from_image(reference)
    one = crops[0]

    def ours(image):
        return sp.audio_from_image(image, iterations=iterations, device=device)

    def base(image):
        return baselines.riffusion_audio_from_image(
            image, device=device, mel_iterations=baseline_mel_iterations
        )

    t_ours = median_time(lambda: ours(one), repeats)
    t_base = median_time(lambda: base(one), baseline_repeats, 0)
    sc_ours = sp.spectral_convergence(ours(reference), target)
    sc_base = sp.spectral_convergence(base(reference), target)
    note = f"{source}; ours: {iterations} iterations on {device}"
    rows = [
        row(
            f"image->audio, one {one.width} px image",
            "s",
            t_ours,
            t_base,
            bar="<= 1.0 s on 2 CPU cores",
            meets_bar=t_ours <= 1.0,
            note=note,
        ),
        row(
            f"spectral convergence, {reference.width} px image",
            "SC",
            sc_ours,
            sc_base,
            bar="<= 0.08",
            meets_bar=sc_ours <= 0.08,
            note="riffusion: SGD mel inverse + 32 GL",
        ),
    ]
    t_batch = median_time(
        lambda: sp.audio_from_images(crops, iterations=iterations, device=device),
        max(1, repeats // 2),
    ) / len(crops)
    rows.append(
        row(
            f"image->audio per image, batch of {len(crops)} vs one at a time",
            "s/image",
            t_batch,
            t_ours,
            bar=">= 3x on CUDA",
            meets_bar=(t_ours / t_batch >= 3) if "cuda" in device else None,
            note=f"on {device}"
            + (": row by row, as batching is slower on a CPU" if device == "cpu" else ""),
        )
    )
    rows.append(_bench_encode(clips, repeats))
    for r in rows:
        r["section"] = "codec"
    return rows


def _bench_encode(clips: int, repeats: int) -> dict:
    from videobgm import baselines
    from videobgm import spectrogram as sp

    audio = _procedural_clip(sp.CLIP_SECONDS * clips)
    n = int(sp.CLIP_SECONDS * 44100)
    pieces = [audio[i * n : (i + 1) * n] for i in range(clips)]
    t_ours = median_time(lambda: [sp.image_from_audio(p) for p in pieces], max(1, repeats // 2))
    naive = pieces[: max(1, clips // 5)]
    t_naive = median_time(lambda: [baselines.naive_image_from_audio(p) for p in naive], 1, 0)
    return row(
        "audio->image, 5.12 s clips",
        "clips/s",
        clips / t_ours,
        len(naive) / t_naive,
        higher_is_better=True,
        bar=">= 5 clips/s",
        meets_bar=clips / t_ours >= 5,
        note="baseline: numpy frame-by-frame FFT + filterbank",
    )


# --------------------------------------------------------------------------- compose


def _timeline(seconds: float, seed: int = 0) -> list[dict]:
    """Spans of 3-40 s with random emotions (all 7 labels) covering ``seconds``."""
    from videobgm.models import EMOTION_LABELS

    rng = np.random.default_rng(seed)
    spans, start = [], 0.0
    while start < seconds:
        end = min(start + float(rng.uniform(3, 40)), seconds)
        spans.append({"start": start, "end": end, "emotion": str(rng.choice(EMOTION_LABELS))})
        start = end
    return spans


def bench_compose(
    repeats: int = 5, device: str | None = None, minutes: float = 10.0, steps: int = 20
) -> list[dict]:
    """Composition (issue 5): a ``minutes`` long timeline with the procedural backend against
    the bar, beside ``synth.render`` of as much music of one style (no plan, no stitching), and
    the riffusion backend's time per clip with the tiny model (for the record: a random tiny
    UNet says nothing of the full-size model's speed)."""
    from videobgm import compose, synth

    seconds = 60.0 * minutes
    timeline = _timeline(seconds)

    def procedural():
        compose.compose(timeline, seconds, progress=False)

    procedural()  # warm-up: the synthesiser's note and clip caches
    times = [median_time(procedural, 1, 0) for _ in range(max(1, repeats))]
    t_ours = statistics.median(times)
    t_base = median_time(lambda: synth.render("joy", seconds), max(1, repeats // 2))
    rows = [
        row(
            f"procedural compose, {minutes:g}-minute timeline ({len(timeline)} spans)",
            "s",
            t_ours,
            t_base,
            bar="< 30 s on 2 CPU cores",
            meets_bar=t_ours < 30,
            note=f"spread {min(times):.2f}-{max(times):.2f} s; baseline: synth.render of one "
            "style for as long",
        )
    ]
    short = _timeline(14.0, seed=1)  # three clips
    result = []

    def riffusion():
        result[:] = compose.compose(
            short, 14.0, music="riffusion", profile="tiny", steps=steps, device=device,
            progress=False,
        )  # fmt: skip

    t_riff = median_time(riffusion, max(1, repeats // 2))
    clips = len(result[0].plan.clips)
    rows.append(
        row(
            f"riffusion compose (tiny model, {steps} steps), per clip",
            "s/clip",
            t_riff / clips,
            None,
            note=f"{clips} clips incl. decoding, on {device or 'the default device'}; "
            "full-size timing belongs to the GPU benchmark",
        )
    )
    for r in rows:
        r["section"] = "compose"
    return rows


# --------------------------------------------------------------------------- dataset


def _curate_once(catalogue: Path, params, workers: int) -> object:
    import tempfile

    from videobgm import dataset

    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        return dataset.curate(catalogue, Path(tmp) / "ds", params, workers=workers, progress=False)


# Run in a fresh process: peak memory (VmHWM, which unlike ru_maxrss starts afresh at exec) of
# the process itself and of its worker processes, polled from /proc while they live.
_PEAK_RSS = """
import json, os, sys, threading, time
from pathlib import Path
from videobgm import dataset

def hwm(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM")), 0)

def children():
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            yield stat.parent.name

peak, done = {}, threading.Event()
def poll():
    while not done.is_set():
        for pid in children():
            peak[pid] = max(peak.get(pid, 0), hwm(pid))
        time.sleep(0.05)

thread = threading.Thread(target=poll, daemon=True)
thread.start()
params = dataset.CurateParams(clips_per_track=int(sys.argv[3]), limit=int(sys.argv[4]))
dataset.curate(sys.argv[1], sys.argv[2], params, workers=2, progress=False)
done.set()
thread.join()
print(json.dumps({"self": hwm(os.getpid()), "worker": max(peak.values(), default=0)}))
"""


def _peak_rss_mib(catalogue: Path, clips: int, limit: int) -> tuple[float, float]:
    """Peak resident memory (MiB) of the main process and of the largest worker when
    ``limit`` tracks are curated in a fresh process (Linux: read from /proc)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        cmd = [sys.executable, "-c", _PEAK_RSS, str(catalogue), f"{tmp}/ds", str(clips), str(limit)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    usage = json.loads(out.strip().splitlines()[-1])
    return usage["self"] / 1024, usage["worker"] / 1024  # KiB


def bench_dataset(
    repeats: int = 3,
    device: str | None = None,
    tracks_per_mood: int = 3,
    track_s: float = 60.0,
    clips_per_track: int = 10,
    workers: int = 2,
    memory_tracks_per_mood: tuple[int, int] = (2, 8),
) -> list[dict]:
    """Data curation (issue 7): 5.12 s clips per second end to end from local audio (22.05 kHz
    MP3 files, as the original catalogue's: decode, resample to 44.1 kHz, cut, render, write),
    with ``workers`` processes against one, the spawning of the workers included; and peak
    memory for a catalogue 4 x larger. ``device`` is unused (curation runs on the CPU)."""
    from videobgm import dataset
    from videobgm.dataset_catalogue import synthetic_catalogue

    small, large = memory_tracks_per_mood
    catalogue = synthetic_catalogue(
        paths.raw() / "bench-catalogue", max(tracks_per_mood, large), (track_s, track_s),
        sample_rate=22050, audio_format="mp3",
    )  # fmt: skip
    moods = len(dataset.CurateParams().moods)
    params = dataset.CurateParams(clips_per_track=clips_per_track, limit=tracks_per_mood * moods)
    load_before = os.getloadavg()[0]
    rates = {}
    for count in (workers, 1):
        runs = [_curate_once(catalogue, params, count) for _ in range(max(1, repeats))]
        rates[count] = sorted(r.clips_written / r.seconds for r in runs)
    clips = runs[0].clips_written
    ours, base = statistics.median(rates[workers]), statistics.median(rates[1])
    spread = f"{rates[workers][0]:.2f}-{rates[workers][-1]:.2f}"
    note = (
        f"{clips} clips from {runs[0].selected - runs[0].short} tracks of {track_s:.0f} s; "
        f"median of {len(rates[1])} runs, range {spread} clips/s; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; baseline: 1 worker"
    )
    rows = [
        row(
            f"curate, 5.12 s clips end to end, {workers} workers", "clips/s", ours, base,
            higher_is_better=True, bar=">= 4 clips/s with 2 workers on 2 CPU cores",
            meets_bar=ours >= 4 if workers == 2 else None, note=note,
        )
    ]  # fmt: skip
    rss = {n: _peak_rss_mib(catalogue, 2, n * moods) for n in (small, large)}
    for who, index in (("main process", 0), ("largest worker", 1)):
        rows.append(
            row(
                f"peak RSS of the {who}, {large * moods} vs {small * moods} tracks", "MiB",
                rss[large][index], rss[small][index],
                bar="does not grow with the catalogue", meets_bar=None,
                note=f"2 clips per track; baseline: {small * moods} tracks; ratio ~1: no growth",
            )
        )  # fmt: skip
    for r in rows:
        r["section"] = "dataset"
    return rows


SECTIONS: dict[str, Callable[..., list[dict]]] = {
    "codec": bench_codec,
    "compose": bench_compose,
    "dataset": bench_dataset,
}


# --------------------------------------------------------------------------- report


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict]) -> None:
    header = ("metric", "unit", "ours", "baseline", "ratio", "bar", "meets_bar")
    table = [header] + [tuple(_fmt(r[k]) for k in header) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    for r in rows:
        if r.get("note"):
            print(f"  note ({r['metric']}): {r['note']}")


def write_report(section: str, rows: list[dict], out_dir: Path | None = None) -> Path:
    """``<section>.json`` (machine + rows) and ``<section>.csv``; returns the JSON path."""
    out_dir = paths.ensure_dir(out_dir or paths.bench_reports())
    json_path = out_dir / f"{section}.json"
    with paths.atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2) + "\n")
    with paths.atomic_output(out_dir / f"{section}.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_KEYS)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in ROW_KEYS} for r in rows)
    return json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m videobgm.bench",
        description="Benchmark each stage against its baseline; results in reports/bench/.",
    )
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        action="append",
        help="run only this section (repeatable; default: all)",
    )
    parser.add_argument("--device", default=None, help="torch device for the GPU-capable parts")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all)"
    )
    args = parser.parse_args(argv)
    # Before torch loads: libgomp's default busy-waiting makes every small op cost a scheduler
    # slice when other processes share the cores (Griffin-Lim runs ~30 ops per iteration).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print("machine:", json.dumps(machine_info()))
    for name in args.only or list(SECTIONS):
        rows = SECTIONS[name](repeats=args.repeats, device=args.device)
        print(f"\n== {name}")
        print_table(rows)
        print(f"written: {write_report(name, rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
