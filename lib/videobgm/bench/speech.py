"""Transcription: our Whisper settings against openai-whisper's defaults as the original project
called them (``large``, English forced, temperature fallback, conditioning on previous text).

Both run full-size architectures with random weights (the ``bench`` profile), decoding a fixed
transcript per 30 s window (:func:`videobgm.models.full.fixed_tokens`), so that decoding costs
what it costs on real speech. Ours goes through :func:`videobgm.transcribe.transcribe` exactly
as the pipeline calls it (language detection included): Whisper ``small`` on a CPU, ``turbo``
in fp16 on CUDA. The baseline is ``large-v3`` (what ``whisper.load_model("large")`` loads).
Random weights say nothing of accuracy: the real ``small`` makes more errors than ``large``.
"""

from __future__ import annotations

import numpy as np

from videobgm import media, paths, transcribe
from videobgm.bench import baselines
from videobgm.bench.core import in_section, median_time, profile_env, row
from videobgm.models import full as bench_models
from videobgm.models import profiles as models

RATE = 16000  # Hz; Whisper's


def speech_audio(seconds: float) -> np.ndarray:
    """The demo sample's soundtrack (voice over music and noise) at 16 kHz, repeated to
    ``seconds``."""

    audio = media.decode_audio(paths.demo_video(), RATE)
    n = int(seconds * RATE)
    return np.tile(audio, n // len(audio) + 1)[:n]


def bench_transcription(
    repeats: int = 1, device: str | None = None, full: bool = False,
    seconds: float | None = None, profile=None, baseline: str = "large-v3",
    baseline_dims: dict | None = None,
) -> list[dict]:  # fmt: skip
    """Seconds to transcribe ``seconds`` of speech (default 30: one window; 120 with
    ``full``), ours (``profile``, default the bench profile) against the baseline (Whisper
    ``baseline`` dimensions, or ``baseline_dims``, random weights, in memory); a minute or
    more per run on a CPU, so ``repeats // 5`` runs each (at least one)."""

    device = device or models.default_device()
    profile = profile or models.BENCH
    seconds = seconds or (120.0 if full else 30.0)
    audio = speech_audio(seconds)
    models.load_whisper(profile, device)  # built and loaded once, outside the timing
    big = bench_models.whisper_model(baseline, baseline_dims).to(device)
    repeats = max(1, repeats // 5)
    with bench_models.fixed_tokens(), profile_env(profile.name):
        t_ours = median_time(
            lambda: transcribe.transcribe(audio, profile, device, progress=False), repeats, 0
        )
        t_base = median_time(lambda: baselines.original_transcribe(big, audio), repeats, 0)
    ours_name = profile.whisper(device).split(":")[-1]
    windows = int(np.ceil(seconds / 30))
    return in_section("transcription", [
        row(
            f"transcription, {seconds:g} s of speech ({windows} windows)",
            "s",
            t_ours,
            t_base,
            note=f"ours: {ours_name} through transcribe.transcribe (language detection, "
            f"temperature fallback, no conditioning) on {device}; baseline: "
            f"{'custom dims' if baseline_dims else baseline} with transcribe(language='en') "
            "defaults. Random weights, fixed-token decoding: "
            f"{bench_models.TOKENS_PER_WINDOW} text tokens in {bench_models.SEGMENTS_PER_WINDOW} "
            "timestamped segments per window, forced by a logit filter (log prob 0, ordinary "
            "English), so the fallback never fires; accuracy is not measured",
        ),
        row(
            "transcription speed", "x real time", seconds / t_ours, seconds / t_base,
            with_ratio=False, note="audio seconds per second of work",
        ),
    ])  # fmt: skip
