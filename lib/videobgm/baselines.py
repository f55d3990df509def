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
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from videobgm import spectrogram as spec
from videobgm import spectrogram_dsp as dsp
from videobgm.spectrogram import SpectrogramParams

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
    channels = spec._as_channels(audio, params) * spec.INT16_SCALE
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
