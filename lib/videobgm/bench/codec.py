"""Spectrogram codec (issue 3): image -> audio against riffusion's algorithm, batched against
one at a time, audio -> image against the frame-by-frame recipe."""

from __future__ import annotations

import numpy as np

from videobgm import paths
from videobgm.bench import baselines
from videobgm.bench.core import in_section, median_time, row
from videobgm.models.profiles import default_device
from videobgm.spectrogram import codec as sp


def _codec_images(width: int, count: int):
    """The reference image, ``count`` crops of it ``width`` px wide (EXIF kept) and where it
    came from: riffusion's conformance image when the shared folder has it, else procedural
    audio's image."""

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
    baseline_repeats: int = 1,
    width: int = 512,
    batch: int = 8,
    clips: int = 10,
    iterations: int | None = None,
    device: str | None = None,
    sc_width: int | None = None,
    baseline_mel_iterations: int = 200,
    full: bool = False,
) -> list[dict]:
    """Spectrogram codec (issue 3): image -> audio (time, spectral convergence) against
    riffusion's algorithm, batched against one-at-a-time decoding, and audio -> image clips per
    second against the frame-by-frame recipe. Spectral convergence is measured on the whole
    reference image unless ``sc_width`` crops it. Smaller arguments (and fewer SGD steps for the
    baseline's mel inverse) make a quick smoke run."""

    iterations = sp.DEFAULT_ITERATIONS if iterations is None else iterations
    if device is None:
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
            kind="quality",
            with_ratio=True,
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
    return in_section("codec", rows)


def _bench_encode(clips: int, repeats: int) -> dict:
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
