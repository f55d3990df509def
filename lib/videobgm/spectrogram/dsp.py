"""The signal processing behind :mod:`videobgm.spectrogram`'s decoder, in torch and numpy.

Phase reconstruction: fast Griffin-Lim with momentum (Perraudin, Balazs and Sondergaard 2013)
on a :class:`PhaseGrid`, an STFT whose FFT is exactly as long as its Hann window, with centred
frames and reflect padding (riffusion's convention, edges included); a warm start of the phase
from the magnitudes; a windowed-sinc polyphase resampler. Then riffusion's optional
post-filters on the decoded audio (pydub's peak normalisation and compressor, in float).
Everything is batched over the first axis and runs on CPU or CUDA.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only; imported where used (torch is slow to import)
    import torch

MOMENTUM = 0.99  # fast Griffin-Lim's momentum (riffusion's too)
HANN_GAUSS = 0.25645  # lambda / L^2 of the Gaussian that best matches an L-sample Hann window


@dataclass(frozen=True)
class PhaseGrid:
    """An STFT for Griffin-Lim: FFT = window length ``n``, ``hop`` samples, ``bins`` kept (the
    rest are zero), periodic Hann ``window`` (a tensor on the working device)."""

    n: int
    hop: int
    bins: int
    window: torch.Tensor


def overlap_add(chunks: torch.Tensor, grid: PhaseGrid) -> torch.Tensor:
    """Frames ``(n, frames, grid.n)`` summed at their hops: the padded signal ``(n, samples)``."""
    import torch  # deferred: seconds to import; --help needs none
    import torch.nn.functional as F

    batch, frames, _ = chunks.shape
    taps = -(-grid.n // grid.hop)
    if taps * grid.hop != grid.n:
        chunks = F.pad(chunks, (0, taps * grid.hop - grid.n))
    chunks = chunks.reshape(batch, frames, taps, grid.hop)
    out = torch.zeros(batch, frames + taps - 1, grid.hop, device=chunks.device)
    for j in range(taps):  # frame t's j-th hop lands in output block t + j
        out[:, j : j + frames] += chunks[:, :, j]
    return out.reshape(batch, -1)


def unpad_reflect(padded: torch.Tensor, half: int, length: int) -> torch.Tensor:
    """Adjoint of reflect padding by ``half``: the pads' samples added back where they came from
    (so that Griffin-Lim's inverse is exact at the edges too, where riffusion reflects)."""
    body = padded[:, half : half + length].clone()
    if length > half:  # stft() reflects only then
        body[:, 1 : half + 1] += padded[:, :half].flip(-1)
        extra = min(padded.shape[1] - half - length, length - 2)
        if extra > 0:
            tail = padded[:, half + length : half + length + extra].flip(-1)
            body[:, length - 1 - extra : length - 1] += tail
    return body


def envelope_inverse(grid: PhaseGrid, frames: int) -> torch.Tensor:
    """1 / the summed squared windows over ``frames * hop`` samples (0 where none reach)."""
    import torch  # deferred: seconds to import; --help needs none

    square = grid.window.square().expand(1, frames, grid.n)
    env = unpad_reflect(overlap_add(square, grid), grid.n // 2, frames * grid.hop)
    return torch.where(env > 1e-6, 1 / env.clamp_min(1e-6), torch.zeros_like(env))


def istft(spec: torch.Tensor, grid: PhaseGrid, envinv: torch.Tensor) -> torch.Tensor:
    """``(n, frames, bins)`` -> ``(n, frames * hop)``: the least-squares signal whose
    :func:`stft` is closest to ``spec`` (window-square weighted overlap-add)."""
    import torch  # deferred: seconds to import; --help needs none

    chunks = torch.fft.irfft(spec, n=grid.n, dim=-1) * grid.window
    return unpad_reflect(overlap_add(chunks, grid), grid.n // 2, spec.shape[1] * grid.hop) * envinv


def stft(y: torch.Tensor, grid: PhaseGrid, frames: int) -> torch.Tensor:
    """``(n, samples)`` -> ``(n, frames, bins)``, centred frames with reflect padding."""
    import torch  # deferred: seconds to import; --help needs none
    import torch.nn.functional as F

    mode = "reflect" if y.shape[-1] > grid.n // 2 else "constant"
    padded = F.pad(y[:, None], (grid.n // 2, grid.n // 2), mode=mode)[:, 0]
    chunks = padded.unfold(-1, grid.n, grid.hop)[:, :frames] * grid.window
    return torch.fft.rfft(chunks, dim=-1)[..., : grid.bins]


def warm_start(mag: torch.Tensor, grid: PhaseGrid) -> torch.Tensor:
    """Unit phasors ``(n, frames, bins)`` integrating each bin's instantaneous frequency, which
    for a Gaussian window follows from the slope of the log-magnitude across frequency."""
    import torch  # deferred: seconds to import; --help needs none

    floor = mag.amax(dim=(1, 2), keepdim=True) * 1e-6 + 1e-30
    logmag = torch.log(mag + floor)
    slope = torch.zeros_like(logmag)
    slope[..., 1:-1] = (logmag[..., 2:] - logmag[..., :-2]) / 2  # per bin
    offset = (slope / (2 * math.pi * HANN_GAUSS)).clamp(-2, 2)  # bins from the bin's centre
    k = torch.arange(mag.shape[-1], device=mag.device, dtype=mag.dtype)
    advance = (2 * math.pi * grid.hop / grid.n) * (k + offset)
    advance[:, 0] = 0
    # Frame starts are half a window before the centre: phase -pi k at the centre.
    phase = torch.cumsum(advance, dim=1) - math.pi * k
    return torch.polar(torch.ones_like(mag), phase)


def griffin_lim(
    mag: torch.Tensor, grid: PhaseGrid, iterations: int, momentum: float = MOMENTUM
) -> torch.Tensor:
    """Fast Griffin-Lim of magnitudes ``(n, frames, bins)`` -> audio ``(n, frames * hop)``:
    alternate projections onto consistent spectrograms and onto the target magnitudes, with
    momentum (each step overshoots by ``momentum`` times the last change)."""
    import torch  # deferred: seconds to import; --help needs none

    envinv = envelope_inverse(grid, mag.shape[1])
    current = mag * warm_start(mag, grid)
    previous = current
    for _ in range(iterations):
        rebuilt = stft(istft(current, grid, envinv), grid, mag.shape[1])
        re, im = torch.view_as_real(rebuilt).unbind(-1)
        projected = rebuilt * torch.rsqrt(torch.addcmul(re * re, im, im).add_(1e-30)).mul_(mag)
        current = torch.lerp(previous, projected, 1 + momentum)
        previous = projected
    return istft(previous, grid, envinv)


@functools.lru_cache(maxsize=8)
def _sinc_kernels(orig: int, new: int, device: torch.device, zeros: int = 16, rolloff=0.96):
    """Windowed-sinc polyphase kernels ``(new, 1, taps)`` to resample by ``new / orig``."""
    import torch  # deferred: seconds to import; --help needs none

    cutoff = min(orig, new) * rolloff  # in units of the input rate / orig
    half = math.ceil(zeros * orig / cutoff)
    taps = torch.arange(-half, half + orig, dtype=torch.float64) / orig
    phases = torch.arange(new, dtype=torch.float64)[:, None] / new
    t = ((taps - phases) * cutoff).clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / (2 * zeros)) ** 2
    kernels = torch.special.sinc(t) * window * cutoff / orig
    return kernels[:, None].float().to(device), half


def resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Resample ``(n, samples)`` by the ratio ``new / orig`` (small coprime integers)."""
    import torch.nn.functional as F  # deferred: seconds to import; --help needs none

    if orig == new:
        return x
    kernels, half = _sinc_kernels(orig, new, x.device)
    out = F.conv1d(F.pad(x[:, None], (half, half + orig)), kernels, stride=orig)
    return out.transpose(1, 2).reshape(x.shape[0], -1)[:, : math.ceil(x.shape[-1] * new / orig)]


def normalize_peak(audio: np.ndarray, headroom_db: float = 0.1) -> np.ndarray:
    """Scale so that the peak sits ``headroom_db`` below full scale (pydub's ``normalize``)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if peak == 0 else (audio * (10 ** (-headroom_db / 20) / peak)).astype(np.float32)


def _gain_to_dbfs(audio: np.ndarray, target_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return audio if rms == 0 else (audio * (10 ** (target_db / 20) / rms)).astype(np.float32)


def compress_dynamic_range(
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float = -20.0,
    ratio: float = 4.0,
    attack_ms: float = 5.0,
    release_ms: float = 50.0,
) -> np.ndarray:
    """pydub's ``compress_dynamic_range`` in float: the level is the RMS (over channels) of the
    previous ``attack_ms``; above ``threshold_db`` the gain falls towards ``1 / ratio`` of the
    excess at a rate set by ``attack_ms``, and recovers at a rate set by ``release_ms``."""
    frames = np.atleast_2d(audio)
    look = int(sample_rate * attack_ms / 1000)
    attack, release = sample_rate * attack_ms / 1000, sample_rate * release_ms / 1000
    power = np.concatenate([[0.0], np.cumsum(np.mean(np.square(frames, dtype=np.float64), 0))])
    idx = np.arange(frames.shape[1])
    start = np.maximum(idx - look, 0)
    rms = np.sqrt(np.maximum(power[idx] - power[start], 0) / np.maximum(idx - start, 1))
    threshold = 10 ** (threshold_db / 20)
    excess = 20 * np.log10(np.maximum(rms, 1e-30) / threshold)
    ceiling = ((1 - 1 / ratio) * np.maximum(excess, 0)).tolist()
    above = (rms > threshold).tolist()
    gain_db, level = [0.0] * len(ceiling), 0.0
    for i, (top, loud) in enumerate(zip(ceiling, above, strict=True)):
        # pydub's state machine, sample by sample (its release only acts while still above).
        level = (
            min(level + top / attack, top)
            if loud and level <= top
            else max(level - top / release, 0.0)
        )
        gain_db[i] = -level
    gain = np.power(10.0, np.asarray(gain_db) / 20).astype(np.float32)
    return (audio * gain).astype(np.float32)


def riffusion_postfilter(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """riffusion's ``apply_filters`` chain: peak-normalise, RMS to -10 dBFS, compress (-20 dB,
    4:1, 5 ms / 50 ms), RMS to -12 dBFS, peak-normalise. Changes the loudness."""
    audio = _gain_to_dbfs(normalize_peak(audio), -10.0)
    audio = compress_dynamic_range(audio, sample_rate)
    return normalize_peak(_gain_to_dbfs(audio, -12.0))


POSTFILTERS = {
    "none": lambda audio, sample_rate: audio,
    "normalize": lambda audio, sample_rate: normalize_peak(audio),
    "riffusion": riffusion_postfilter,
}
