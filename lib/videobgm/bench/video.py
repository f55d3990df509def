"""Video in, video out (issue 6): the mux against a full re-encode, the whole pipeline against
the original project's stages on 1, 5 and 10 minute videos, and how time and peak memory grow
with the video's length.

End to end runs the offline path (captions and intended timeline beside the generated videos,
procedural music, spectral separation): the non-model stages, each run in a fresh process so
that its peak memory is its own. The original-style run does the same work the original way
(:func:`videobgm.bench.baselines.original_style_run`). Model stages are measured in their own
sections (transcription, generation) and on a GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from videobgm import media, paths, sample
from videobgm.bench import baselines
from videobgm.bench.core import in_section, median_time, row, run_child

MUX_SIZE = (1920, 1080)  # px; a creator's video: re-encoding cost grows with the pixels
MUX_FPS = 30
MUX_SECONDS = 20.0  # s of generated video the mux is measured on
E2E_SIZE = (320, 180)  # px; the demo sample's picture
E2E_FPS = 15
AUDIO_MB_PER_MINUTE = 60 * 44100 * 4 / 2**20  # decoded mono float32 at 44.1 kHz (10.1 MiB)


def bench_mux(
    repeats: int = 3, device: str | None = None, full: bool = False,
    seconds: float = MUX_SECONDS, size: tuple[int, int] = MUX_SIZE, fps: int = MUX_FPS,
    demo: bool = True,
) -> list[dict]:  # fmt: skip
    """Stream copy (:func:`videobgm.media.mux`) against a moviepy-style re-encode of the same
    video with the same new audio: a generated ``seconds`` video of ``size`` at ``fps``, and
    (``demo``) the demo sample; plus whether the video packets are the input's, bit for bit."""

    videos = [sample.long_video(seconds, size=size, fps=fps)]
    if demo:
        videos.append(paths.demo_video())
    rows = []
    for video in videos:
        rows += _mux_rows(video, repeats, bar=video == videos[0])
    return in_section("mux", rows)


_MUX: dict[tuple, dict] = {}  # mux and re-encode times per video, once per process


def mux_times(video: Path, repeats: int = 3) -> dict:
    """Seconds to mux a new soundtrack into ``video`` (median of ``repeats``) and to re-encode
    it moviepy's way (median of ``repeats // 3``), and the share of video packets each output
    keeps bit for bit. Memoised per video (the end-to-end projection reuses it)."""

    key = str(video)
    if key in _MUX:
        return _MUX[key]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        audio = media.decode_audio(video, 44100)
        wav = media.write_audio(work / "new.wav", audio, 44100)
        ours, theirs = work / "ours.mp4", work / "theirs.mp4"
        t_ours = median_time(lambda: media.mux(video, wav, ours), repeats)
        t_base = median_time(lambda: baselines.reencode(video, wav, theirs),
                             max(1, repeats // 3), 0)  # fmt: skip
        packets = media.packet_md5s(video)
        same = [_shared(packets, media.packet_md5s(out)) for out in (ours, theirs)]
    info = media.probe(video)
    _MUX[key] = {"ours": t_ours, "baseline": t_base, "same": same, "info": info,
                 "frames": round(info.duration_s * (info.fps or 0))}  # fmt: skip
    return _MUX[key]


def _mux_rows(video: Path, repeats: int, bar: bool) -> list[dict]:
    found = mux_times(video, repeats)
    info, t_ours, t_base, same = found["info"], found["ours"], found["baseline"], found["same"]
    label = f"{info.duration_s:.0f} s {info.width}x{info.height} {info.fps:g} fps video"
    return [
        row(f"mux, {label}", "s", t_ours, t_base, bar=">= 50x faster" if bar else "",
            meets_bar=t_base / t_ours >= 50 if bar else None,
            note="ours: video stream copied, the new audio encoded to AAC (most of our time); "
            "baseline: libx264 medium + MP3, as moviepy's write_videofile (without moviepy's "
            "Python frame loop); the ratio grows with the picture's size"),
        row(f"video packets identical to the input, {label}", "%", 100 * same[0],
            100 * same[1], kind="quality", bar="100 %", meets_bar=same[0] == 1.0,
            note="per-packet MD5 of the video stream (ffmpeg framemd5)"),
    ]  # fmt: skip


def _shared(reference: list, other: list) -> float:
    return sum(a == b for a, b in zip(reference, other, strict=False)) / max(len(reference), 1)


# --------------------------------------------------------------------------- end to end

_MEASURED: dict[tuple, dict] = {}  # one measurement per job and video in a process


def measure(job: str, minutes: float, size=E2E_SIZE, fps: int = E2E_FPS) -> dict:
    """Run ``job`` (``pipeline`` or ``original``) on a generated ``minutes`` video in a fresh
    process: seconds (the job itself), seconds per stage, peak memory. Memoised."""

    key = (job, minutes, tuple(size), fps)
    if key not in _MEASURED:
        video = sample.long_video(60 * minutes, size=size, fps=fps)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"out{video.suffix}"
            args = [job, str(video), str(out)] + ([str(Path(tmp) / "run")] if job == "pipeline"
                                                  else [])  # fmt: skip
            _MEASURED[key] = {**run_child(*args), "minutes": minutes}
    return _MEASURED[key]


def bench_endtoend(
    repeats: int = 1, device: str | None = None, full: bool = False,
    minutes: tuple[float, ...] = (1, 5, 10), size=E2E_SIZE, fps: int = E2E_FPS,
    project_to: tuple[int, int] | None = MUX_SIZE, project_seconds: float = MUX_SECONDS,
) -> list[dict]:  # fmt: skip
    """``pipeline.run`` on generated videos of ``minutes`` against the original-style stages:
    time, real-time factor (bar: 20x for 10 minutes), peak memory (bar: 2 GB); and, with
    ``project_to``, the longest video projected to that picture size from a
    ``project_seconds`` clip of it (see :func:`projected_row`)."""
    rows = []
    for m in minutes:
        ours, theirs = measure("pipeline", m, size, fps), measure("original", m, size, fps)
        ten = m == 10
        rows += [
            row(f"end to end, {m:g}-minute video", "s", ours["seconds"], theirs["seconds"],
                note=f"{size[0]}x{size[1]} {fps} fps; ours by stage: {_stages(ours)}; "
                f"baseline: {_stages(theirs)}"),
            row(f"end to end, {m:g}-minute video", "x real time", 60 * m / ours["seconds"],
                60 * m / theirs["seconds"], with_ratio=False,
                bar=">= 20x (10 min)" if ten else "",
                meets_bar=60 * m / ours["seconds"] >= 20 if ten else None),
            row(f"peak memory, {m:g}-minute video", "MiB", ours["peak_rss_mb"],
                theirs["peak_rss_mb"], kind="cost", bar="< 2048 MiB" if ten else "",
                meets_bar=ours["peak_rss_mb"] < 2048 if ten else None,
                note=f"the Python process, imports included; by stage: ours "
                f"{_peaks(ours)}; baseline {_peaks(theirs)}"),
        ]  # fmt: skip
    if project_to:
        rows.append(projected_row(max(minutes), size, fps, project_to, repeats, project_seconds))
    return in_section("endtoend", rows)


def projected_row(
    minutes: float, size, fps: int, target, repeats: int = 1, seconds: float = MUX_SECONDS
) -> dict:
    """End to end at picture size ``target`` (30 fps), projected from measurements: the
    video's picture only matters to delivery, so both runs keep their measured stages at
    ``size`` except delivery, which is scaled from a ``seconds`` clip at ``target``: the
    baseline's re-encode replaced by the clip's re-encode time x (duration / clip); ours gets
    the clip's mux time x (duration / clip) added on top of its measured delivery (an
    overestimate)."""

    ours, theirs = measure("pipeline", minutes, size, fps), measure("original", minutes, size, fps)
    clip = mux_times(sample.long_video(seconds, size=target, fps=MUX_FPS), max(repeats, 3))
    scale = 60 * minutes / seconds
    t_ours = ours["seconds"] + scale * clip["ours"]
    t_base = theirs["seconds"] - theirs["stages"]["re-encode"] + scale * clip["baseline"]
    return row(
        f"end to end, {minutes:g}-minute {target[0]}x{target[1]} {MUX_FPS} fps video, projected",
        "s", t_ours, t_base,
        note=f"measured {minutes:g}-minute run at {size[0]}x{size[1]}, delivery scaled x"
        f"{scale:g} from the {seconds:g} s {target[0]}x{target[1]} clip (mux "
        f"{clip['ours']:.2f} s, re-encode {clip['baseline']:.1f} s)",
    )  # fmt: skip


def _stages(result: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in result["stages"].items()) + " s"


def _peaks(result: dict) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in result["stage_peak_mb"].items()) + " MiB"


def bench_growth(
    repeats: int = 1, device: str | None = None, full: bool = False,
    minutes: tuple[float, ...] | None = None, size=E2E_SIZE, fps: int = E2E_FPS,
) -> list[dict]:  # fmt: skip
    """Time and peak memory of ``pipeline.run`` against the video's length (1, 5, 10 minutes;
    30 too with ``full``), with straight-line fits: seconds per minute and the fit's R^2,
    MiB per minute against the decoded audio's own 10.1 MiB per minute."""
    minutes = minutes or ((1, 5, 10, 30) if full else (1, 5, 10))
    points = [measure("pipeline", m, size, fps) for m in minutes]
    x = np.asarray(minutes, dtype=float)
    time_fit = linear_fit(x, [p["seconds"] for p in points])
    memory_fit = linear_fit(x, [p["peak_rss_mb"] for p in points])
    data = {
        "points": [{k: p.get(k) for k in ("minutes", "seconds", "peak_rss_mb", "stages",
                                           "stage_peak_mb")} for p in points],
        "time_fit": time_fit, "memory_fit": memory_fit,
        "audio_mb_per_minute": AUDIO_MB_PER_MINUTE,
    }  # fmt: skip
    rows = [
        row("time per minute of video", "s/min", time_fit["slope"], None, kind="cost",
            note=f"linear fit over {', '.join(f'{m:g}' for m in minutes)} min: "
            f"{time_fit['intercept']:.2f} s + {time_fit['slope']:.2f} s/min, "
            f"R^2 {time_fit['r2']:.4f}"),
        row("peak memory per minute of video", "MiB/min", memory_fit["slope"],
            AUDIO_MB_PER_MINUTE, kind="cost",
            note=f"fit {memory_fit['intercept']:.0f} MiB + {memory_fit['slope']:.1f} MiB/min "
            f"(R^2 {memory_fit['r2']:.3f}); baseline column: the decoded mono audio itself, "
            "so the ratio of the two is how many copies of the audio the peak holds"),
    ]  # fmt: skip
    rows[0]["data"] = data
    return in_section("growth", rows)


def linear_fit(x, y) -> dict[str, float]:
    """Least-squares line ``y = intercept + slope x`` and its coefficient of determination."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / total if total > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}
