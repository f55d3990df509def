"""Data curation (issue 7): clips per second with worker processes against one, and peak memory
against the catalogue's size."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from videobgm import paths
from videobgm.bench.core import in_section, row
from videobgm.dataset import curation as dataset
from videobgm.dataset.catalogue import synthetic_catalogue


def _curate_once(catalogue: Path, params, workers: int) -> object:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        return dataset.curate(catalogue, Path(tmp) / "ds", params, workers=workers, progress=False)


# Run in a fresh process: peak memory (VmHWM, which unlike ru_maxrss starts afresh at exec) of
# the process itself and of its worker processes, polled from /proc while they live.
_PEAK_RSS = """
import json, os, sys, threading, time
from pathlib import Path
from videobgm.dataset import curation as dataset

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
    full: bool = False,
) -> list[dict]:
    """Data curation (issue 7): 5.12 s clips per second end to end from local audio (22.05 kHz
    MP3 files, as the original catalogue's: decode, resample to 44.1 kHz, cut, render, write),
    with ``workers`` processes against one, the spawning of the workers included; and peak
    memory for a catalogue 4 x larger. ``device`` is unused (curation runs on the CPU)."""

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
                bar="does not grow with the catalogue", meets_bar=None, kind="cost",
                with_ratio=True,
                note=f"2 clips per track; baseline: {small * moods} tracks; ratio ~1: no growth",
            )
        )  # fmt: skip
    return in_section("dataset", rows)
