"""Composition (issue 5): the procedural backend against its bar, clicks at the joins against
the original project's butted clips, and the riffusion backend per clip (tiny model)."""

from __future__ import annotations

import statistics

import numpy as np

from videobgm import metrics
from videobgm.bench import baselines
from videobgm.bench.core import in_section, median_time, row
from videobgm.compose import plan as compose_plan
from videobgm.compose import renderer as compose
from videobgm.spectrogram import codec as spectrogram
from videobgm.synth import arrange as synth
from videobgm.vocab import EMOTION_LABELS


def _timeline(seconds: float, seed: int = 0) -> list[dict]:
    """Spans of 3-40 s with random emotions (all 7 labels) covering ``seconds``."""

    rng = np.random.default_rng(seed)
    spans, start = [], 0.0
    while start < seconds:
        end = min(start + float(rng.uniform(3, 40)), seconds)
        spans.append({"start": start, "end": end, "emotion": str(rng.choice(EMOTION_LABELS))})
        start = end
    return spans


def bench_compose(
    repeats: int = 5, device: str | None = None, minutes: float = 10.0, steps: int = 20,
    full: bool = False, codec_minutes: float | None = 1.0,
) -> list[dict]:  # fmt: skip
    """Composition (issue 5): a ``minutes`` long timeline with the procedural backend against
    the bar, beside ``synth.render`` of as much music of one style (no plan, no stitching);
    clicks at the joins of that track against the original project's butted clips, and
    (``codec_minutes``) the same with riffusion-like clips; and the riffusion backend's time
    per clip with the tiny model (for the record: a random tiny UNet says nothing of the
    full-size model's speed)."""

    seconds = 60.0 * minutes
    timeline = _timeline(seconds)
    tracks = []

    def procedural():
        tracks[:] = compose.compose(timeline, seconds, progress=False)

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
    rows.append(_clicks(tracks[0], timeline, minutes))
    if codec_minutes:
        rows.append(_codec_clicks(codec_minutes))
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
    return in_section("compose", rows)


def _codec_clicks(minutes: float) -> dict:
    """Clicks when every clip has been through the codec (image and back, so with
    Griffin-Lim's phase, as riffusion's clips have: their waveforms do not continue one
    another): our plan's stitching against the original's butting, on the same kind of clips."""

    seconds = 60.0 * minutes
    timeline = _timeline(seconds, seed=2)
    plan = compose_plan.make_plan(timeline, seconds)
    decoded: dict[int, np.ndarray] = {}
    clips = [_round_trip(clip, decoded) for clip in compose.procedural_clips(plan)]
    ours = compose.count_clicks(compose.stitch(plan, clips), plan, clips)
    audio, butted = baselines.original_compose(timeline, render=lambda c: _round_trip(c, decoded))
    theirs = sum(metrics.is_click(audio, at) for at in butted)
    return _click_row(
        f"riffusion-like clips, {minutes:g}-minute timeline", ours, theirs,
        f"every clip through the codec (audio -> image -> audio); ours: "
        f"{len(compose.join_points(plan))} joins, baseline: {len(butted)} butted joins",
    )  # fmt: skip


def _click_row(what: str, ours: int, theirs: int, note: str) -> dict:
    return row(f"clicks at joins, {what}", "clicks", ours, theirs, kind="quality", bar="0",
               meets_bar=ours == 0, note=note)  # fmt: skip


def _round_trip(clip: np.ndarray, cache: dict[int, np.ndarray]) -> np.ndarray:
    """``clip`` through the spectrogram codec, as long as it was (cached by identity: the
    synthesiser returns the same array for the same clip)."""

    key = id(clip)
    if key not in cache:
        if not np.any(clip):
            cache[key] = np.zeros_like(clip)
        else:
            audio = spectrogram.audio_from_image(spectrogram.image_from_audio(clip))
            audio = np.asarray(audio, np.float32)[: len(clip)]
            cache[key] = np.pad(audio, (0, len(clip) - len(audio)))
    return cache[key]


def _clicks(track, timeline: list[dict], minutes: float) -> dict:
    """Clicks at the joins of our track and of the original project's butted clips."""

    ours = compose.count_clicks(track.audio, track.plan)
    joins = compose.join_points(track.plan)
    audio, butted = baselines.original_compose(timeline)
    theirs = sum(metrics.is_click(audio, at) for at in butted)
    return _click_row(
        f"{minutes:g}-minute timeline", ours, theirs,
        f"ours: {len(joins)} joins (clip edges, transition fades), equal-power crossfades "
        f"on the beat; baseline: {len(butted)} butted joins of independently made clips. A "
        f"click: a step that exceeds the largest step within {metrics.CLICK_WIDTH} samples by "
        f"more than the clips' own step there plus {metrics.CLICK_FRACTION:g} x the 50 ms RMS",
    )  # fmt: skip
