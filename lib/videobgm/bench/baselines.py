"""What riffusion (and a straightforward implementation) did, reimplemented for benchmarks.

Nothing in the pipeline calls these; :mod:`videobgm.bench` measures our codec against them in
the same run. torchaudio is not a dependency, so its algorithms as riffusion configured them are
rewritten here in torch, step for step:

- image -> audio: riffusion's ``SpectrogramImageConverter.audio_from_spectrogram_image``: pixels
  to amplitudes with a fixed peak of 30e6 (EXIF ignored), torchaudio's ``InverseMelScale``
  (the SGD version of torchaudio < 2.1: random start, SGD lr 0.1 momentum 0.9, 200 steps,
  clamped at 0), torchaudio's ``griffinlim`` (32 iterations, momentum 0.99, random complex start,
  its own momentum formula) on the 400 ms FFT, then peak normalisation to int16.
- audio -> image: the same recipe as :func:`videobgm.spectrogram.image_from_audio`, computed
  frame by frame in numpy (one FFT and one filterbank product per column).

And what the original project's code did (``../shared/ORIGINAL.md``), stage by stage:

- generation: one clip per call of diffusers' img2img pipeline with the PNDM scheduler at 50
  steps (riffusion's pipeline is that, with interpolated prompt embeddings);
- transcription: ``model.transcribe(audio, language="en")`` with Whisper's defaults (temperature
  fallback, conditioning on the previous text) on Whisper ``large``;
- composition: per emotion stretch ``length // 10 + 1`` clips of 5.12 s butted together, no
  crossfade (so the music is not the stretch's length), neutral stretches silent;
- mix: the music 3 dB down under the voice, no ducking, no loudness normalisation, at 8 kHz,
  upsampled to 22.05 kHz;
- delivery: the whole video re-encoded (moviepy's ``write_videofile`` defaults: libx264
  ``medium``, MP3 audio).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from videobgm import media, separate
from videobgm.spectrogram import codec as spec
from videobgm.spectrogram import dsp
from videobgm.spectrogram.codec import SpectrogramParams
from videobgm.synth import arrange as synth

RIFFUSION_MEL_ITERATIONS = 200  # SpectrogramParams.max_mel_iters
RIFFUSION_GL_ITERATIONS = 32  # SpectrogramParams.num_griffin_lim_iters
RIFFUSION_GL_MOMENTUM = 0.99
RIFFUSION_SGD = {"lr": 0.1, "momentum": 0.9}  # torchaudio InverseMelScale's default sgdargs
DEFAULTS = SpectrogramParams()  # riffusion's defaults


def riffusion_inverse_mel(
    mel: torch.Tensor,
    params: SpectrogramParams = DEFAULTS,
    max_iter: int = RIFFUSION_MEL_ITERATIONS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchaudio's SGD ``InverseMelScale``: mel ``(batch, mels, frames)`` -> linear magnitudes
    ``(batch, n_fft // 2 + 1, frames)``. Minimises the squared error summed over bands and
    averaged over frames, from a uniform random start, stopping early only at a loss below 1e-5
    or a change below 1e-8 (never, at riffusion's amplitudes)."""
    fb = torch.from_numpy(spec.mel_filterbank(params)).to(mel.device)  # (freqs, mels)
    target = mel.transpose(-1, -2)  # (batch, frames, mels)
    start = torch.rand(
        target.shape[0], target.shape[1], fb.shape[0], generator=generator, dtype=mel.dtype
    )
    estimate = start.to(mel.device).requires_grad_(True)
    optimiser = torch.optim.SGD([estimate], **RIFFUSION_SGD)
    loss = float("inf")
    with torch.enable_grad():
        for _ in range(max_iter):
            optimiser.zero_grad()
            new_loss = (target - estimate.matmul(fb)).pow(2).sum(dim=-1).mean()
            new_loss.backward()
            optimiser.step()
            estimate.data = estimate.data.clamp(min=0)
            new_loss = new_loss.item()
            if new_loss < 1e-5 or abs(loss - new_loss) < 1e-8:
                break
            loss = new_loss
    return estimate.detach().clamp(min=0).transpose(-1, -2)


def riffusion_griffin_lim(
    magnitude: torch.Tensor,
    params: SpectrogramParams = DEFAULTS,
    n_iter: int = RIFFUSION_GL_ITERATIONS,
    momentum: float = RIFFUSION_GL_MOMENTUM,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchaudio's ``griffinlim`` as riffusion configures it: magnitudes ``(batch, freqs,
    frames)`` on the 400 ms FFT -> audio ``(batch, (frames - 1) * hop)``. Its momentum step
    subtracts ``momentum / (1 + momentum)`` times the previous rebuilt spectrogram."""
    window = torch.hann_window(params.win_length, device=magnitude.device)
    stft = {"n_fft": params.n_fft, "hop_length": params.hop_length, "win_length": params.win_length}
    angles = torch.rand(magnitude.shape, dtype=torch.complex64, generator=generator)
    angles = angles.to(magnitude.device)  # complex uniform: real and imaginary parts in [0, 1)
    previous = torch.tensor(0.0, device=magnitude.device)
    for _ in range(n_iter):
        inverse = torch.istft(magnitude * angles, window=window, **stft)
        rebuilt = torch.stft(
            inverse, window=window, center=True, pad_mode="reflect", return_complex=True, **stft
        )
        angles = rebuilt - previous * (momentum / (1 + momentum)) if momentum else rebuilt
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    return torch.istft(magnitude * angles, window=window, **stft)


def riffusion_audio_from_image(
    image: Image.Image,
    params: SpectrogramParams = DEFAULTS,
    apply_filters: bool = False,
    seed: int = 0,
    device: str = "cpu",
    mel_iterations: int = RIFFUSION_MEL_ITERATIONS,
    gl_iterations: int = RIFFUSION_GL_ITERATIONS,
) -> np.ndarray:
    """riffusion's image -> audio: float audio ``(samples,)`` (mono) or ``(2, samples)``, peak
    normalised as riffusion's ``audio_from_waveform`` does (int16, then back to float).
    ``apply_filters`` adds riffusion's compression chain (its default; off here so that the
    benchmark compares the reconstructions themselves). Fewer iterations only for smoke tests."""
    mel = spec.mel_from_image(image, params, max_value=spec.DEFAULT_MAX_VALUE)
    generator = torch.Generator().manual_seed(seed)
    mel_tensor = torch.from_numpy(mel).to(device)
    magnitude = riffusion_inverse_mel(mel_tensor, params, mel_iterations, generator)
    with torch.no_grad():
        waveform = riffusion_griffin_lim(magnitude, params, gl_iterations, generator=generator)
    waveform = waveform.cpu().numpy()
    peak = np.max(np.abs(waveform))
    if peak > 0:
        waveform = waveform * (np.iinfo(np.int16).max / peak)
    audio = waveform.astype(np.int16).astype(np.float32) / spec.INT16_SCALE
    audio = audio[0] if audio.shape[0] == 1 else audio
    return dsp.riffusion_postfilter(audio, params.sample_rate) if apply_filters else audio


def naive_mel_from_audio(audio: np.ndarray, params: SpectrogramParams = DEFAULTS) -> np.ndarray:
    """riffusion's mel amplitudes (int16 scale), one column at a time: reflect-pad half an FFT,
    window each 400 ms frame (Hann of 100 ms in its middle), FFT, magnitude, filterbank."""
    channels = spec.as_channels(audio, params) * spec.INT16_SCALE
    half, hop = params.n_fft // 2, params.hop_length
    window = np.zeros(params.n_fft, dtype=np.float32)
    offset = (params.n_fft - params.win_length) // 2
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(params.win_length) / params.win_length)
    window[offset : offset + params.win_length] = hann
    fb = spec.mel_filterbank(params)
    frames = 1 + channels.shape[1] // hop
    out = np.zeros((channels.shape[0], params.num_frequencies, frames), dtype=np.float32)
    for c, samples in enumerate(channels):
        padded = np.pad(samples, half, mode="reflect")
        for t in range(frames):
            magnitude = np.abs(np.fft.rfft(padded[t * hop : t * hop + params.n_fft] * window))
            out[c, :, t] = magnitude @ fb
    return out


def naive_image_from_audio(audio: np.ndarray, params: SpectrogramParams = DEFAULTS) -> Image.Image:
    """riffusion's spectrogram image computed frame by frame (see :func:`naive_mel_from_audio`)."""
    return spec.image_from_mel(naive_mel_from_audio(audio, params), params)


# --------------------------------------------------------------------------- the original project

ORIGINAL_STEPS = 50  # riffusion's default number of denoising steps (PNDM)
ORIGINAL_MUSIC_DB = -3.0  # the music under the voice
ORIGINAL_MIX_RATE = 8000  # Hz; the rate the original mixed at
ORIGINAL_OUTPUT_RATE = 22050  # Hz; what it upsampled the mix to
ORIGINAL_SPAN_S = 10.0  # s; one clip per started 10 s of a stretch, plus one
MOVIEPY_VIDEO = ["-c:v", "libx264", "-preset", "medium", "-pix_fmt", "yuv420p"]
MOVIEPY_AUDIO = ["-c:a", "libmp3lame", "-ar", "44100"]  # write_videofile's defaults for .mp4


def original_generate(pipe: Any, requests: Sequence[Any], steps: int = ORIGINAL_STEPS) -> list:
    """Riffusion's img2img as the original project ran it: one clip per pipeline call, the
    start and end prompts encoded on every call and interpolated by ``alpha``, the PNDM
    scheduler (riffusion-model-v1's) at ``steps`` steps. ``requests`` are
    :class:`videobgm.generate.ClipRequest`; returns one PIL image per request."""
    from diffusers import PNDMScheduler

    saved = pipe.scheduler
    pipe.scheduler = PNDMScheduler.from_config(saved.config)
    device = pipe.unet.device
    images = []
    try:
        for request in requests:
            ends = [
                pipe.encode_prompt(end.prompt, device, 1, True, end.negative_prompt)
                for end in (request.start, request.end)
            ]
            cond, uncond = (torch.lerp(a, b, request.alpha) for a, b in zip(*ends, strict=True))
            generator = torch.Generator("cpu").manual_seed(request.start.seed)
            out = pipe(
                prompt_embeds=cond, negative_prompt_embeds=uncond, image=request.image,
                strength=request.strength, guidance_scale=request.guidance_scale,
                num_inference_steps=steps, generator=generator,
            )  # fmt: skip
            images.extend(out.images)
    finally:
        pipe.scheduler = saved
    return images


def original_transcribe(model: Any, audio: np.ndarray) -> dict:
    """Whisper as the original project called it: English forced, every other option at its
    default (temperature fallback 0.0-1.0, conditioning on the previous text); fp16 on CUDA."""
    return model.transcribe(audio, language="en", fp16=str(model.device).startswith("cuda"))


def original_compose(
    timeline: Sequence[Any], sample_rate: int = 44100, seed: int = 0, render: Any = None
) -> tuple[np.ndarray, list[int]]:
    """The original project's composition with procedural clips standing in for riffusion's:
    per stretch ``length // 10 + 1`` independently made 5.12 s clips (consecutive clips have
    different seeds, as independent generations have different noise) butted together with no
    crossfade; neutral (and silence) stretches silent for their length. ``render`` maps each
    clip to what is played (default: itself). Returns the audio (not the timeline's length, as
    in the original) and the sample of every join."""

    pieces, joins, position = [], [], 0
    for index, span in enumerate(timeline):
        get = span.get if isinstance(span, dict) else lambda key, s=span: getattr(s, key)
        length = float(get("end")) - float(get("start"))
        emotion = str(get("emotion"))
        if emotion in ("neutral", "silence"):
            clips = [np.zeros(round(length * sample_rate), np.float32)]
        else:
            count = int(length // ORIGINAL_SPAN_S) + 1
            clips = [synth.clip(emotion, seed + (index + k) % 4, 0, sample_rate)
                     for k in range(count)]  # fmt: skip
            clips = [render(clip) for clip in clips] if render else clips
        for clip in clips:
            if position:
                joins.append(position)
            pieces.append(clip)
            position += len(clip)
    return np.concatenate(pieces).astype(np.float32), joins


def original_mix(voice: np.ndarray, music: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """The original project's mix: both at 8 kHz, the music 3 dB down added to the voice (cut
    or padded to the voice's length), no ducking and no loudness normalisation, then
    upsampled to 22.05 kHz. Returns the mono mix and its rate."""
    from math import gcd

    from scipy.signal import resample_poly

    def to(rate_out: int, audio: np.ndarray, rate_in: int) -> np.ndarray:
        g = gcd(rate_in, rate_out)
        return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)

    music = np.pad(music[: len(voice)], (0, max(0, len(voice) - len(music))))
    low = to(ORIGINAL_MIX_RATE, voice, sample_rate)
    low += np.float32(10 ** (ORIGINAL_MUSIC_DB / 20)) * to(ORIGINAL_MIX_RATE, music, sample_rate)
    return to(ORIGINAL_OUTPUT_RATE, low, ORIGINAL_MIX_RATE), ORIGINAL_OUTPUT_RATE


def reencode(video: Path, audio: Path, out: Path) -> Path:
    """Replace a video's audio by re-encoding everything, as moviepy's ``write_videofile``
    does with its defaults (libx264 ``medium``, MP3). moviepy also pipes every decoded frame
    through Python, which this skips: the baseline is if anything faster than the original."""

    args = ["-y", "-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0"]
    media.run_ffmpeg([*args, *MOVIEPY_VIDEO, *MOVIEPY_AUDIO, "-shortest", str(out)], out,
                     "re-encoding")  # fmt: skip
    return out


def original_style_run(
    video: Path, out: Path, timeline: Sequence[Any], after_stage: Any = None
) -> dict[str, float]:
    """The non-model stages of the original project on a video, given its emotion timeline:
    decode, voice isolation (our spectral separator stands in for Spleeter: same cost counted
    for both), composition, mix, re-encode. Writes ``out``; returns seconds per stage.
    ``after_stage(name)`` is called as each stage ends (benchmarks measure memory there)."""

    times: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        times[name], started = now - started, now
        if after_stage is not None:
            after_stage(name)

    audio = media.decode_audio(video, 44100)
    lap("decode")
    voice = separate.separate(audio, 44100, "spectral")
    lap("separate")
    music, _ = original_compose(timeline)
    lap("compose")
    mixed, rate = original_mix(voice, music, 44100)
    wav = out.with_name(f"{out.stem}.mix.wav")
    media.write_audio(wav, mixed, rate)
    lap("mix")
    reencode(video, wav, out)
    lap("re-encode")
    return times
