"""Spectrogram codec: audio <-> riffusion's spectrogram images.

The image format is fixed by the pretrained riffusion model. A column is 10 ms; a row is one of
512 HTK mel bands from 0 to 10 kHz (lowest at the bottom). The amplitudes are those of a 400 ms
FFT of a 100 ms Hann window, summed by triangular mel filters (no normalisation), computed on the
int16 sample scale, divided by their maximum, raised to the power 0.25 and inverted (loud is
dark). Mono is grey in R, G and B; stereo keeps the channels in G and B with R zero. The
parameters and the maximum travel in EXIF tags 11000-11080.

Encoding reproduces riffusion's images (within one grey level). Decoding is ours: the minimum-norm
inverse of the mel filterbank (closed form), then fast Griffin-Lim with momentum, batched in
torch. Griffin-Lim needs no 400 ms FFT: an FFT as long as the 100 ms window holds it exactly, and
as the image holds nothing above ``max_frequency`` the iterations run at a reduced sample rate
(25.2 kHz for the defaults: a 2520-point FFT) and the result is resampled. The phase is
warm-started from the magnitudes (instantaneous frequency from the log-magnitude slope), so
decoding is deterministic.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse
from PIL import Image

from videobgm.errors import InputError
from videobgm.media import decode_audio, write_audio
from videobgm.models.profiles import default_device
from videobgm.paths import atomic_output
from videobgm.spectrogram import dsp
from videobgm.vocab import CLIP_SECONDS as CLIP_SECONDS  # re-exported: one image's length

if TYPE_CHECKING:  # annotations only; imported where used (torch is slow to import)
    import torch

INT16_SCALE = 32768.0  # riffusion computes amplitudes on int16 sample values
DEFAULT_MAX_VALUE = 30e6  # riffusion's peak mel amplitude (int16 scale) for images without EXIF
DEFAULT_ITERATIONS = 64  # Griffin-Lim iterations: SC 0.054 on the conformance image (48: 0.065)
NYQUIST_GUARD = 1.25  # reduced Nyquist >= this x max_frequency (room for the resampling filter)

# EXIF tags riffusion writes (MAX_VALUE_TAG holds the peak amplitude, int16 scale).
EXIF_TAGS = {
    "sample_rate": 11000,
    "stereo": 11005,
    "step_size_ms": 11010,
    "window_duration_ms": 11020,
    "padded_duration_ms": 11030,
    "num_frequencies": 11040,
    "min_frequency": 11050,
    "max_frequency": 11060,
    "power_for_image": 11070,
}
MAX_VALUE_TAG = 11080


@dataclass(frozen=True)
class SpectrogramParams:
    """Riffusion's spectrogram parameters (its defaults); mel scale HTK, no normalisation."""

    sample_rate: int = 44100  # Hz
    stereo: bool = False  # two channels in G and B
    step_size_ms: int = 10  # hop: one image column
    window_duration_ms: int = 100  # Hann window
    padded_duration_ms: int = 400  # FFT length
    num_frequencies: int = 512  # mel bands = image height in px
    min_frequency: int = 0  # Hz
    max_frequency: int = 10000  # Hz
    power_for_image: float = 0.25  # pixel = 255 - 255 * (amplitude / max) ** power

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.step_size_ms, self.num_frequencies) <= 0:
            raise InputError(f"spectrogram parameters must be positive: {self}")
        if not self.step_size_ms <= self.window_duration_ms <= self.padded_duration_ms:
            raise InputError(f"need step <= window <= padded duration: {self}")
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise InputError(f"need 0 <= min_frequency < max_frequency <= Nyquist: {self}")
        if self.power_for_image <= 0:
            raise InputError(f"power_for_image must be positive: {self}")

    @property
    def n_fft(self) -> int:
        """FFT length in samples (the padded duration)."""
        return self.sample_rate * self.padded_duration_ms // 1000

    @property
    def win_length(self) -> int:
        """Hann window length in samples."""
        return self.sample_rate * self.window_duration_ms // 1000

    @property
    def hop_length(self) -> int:
        """Samples per image column."""
        return self.sample_rate * self.step_size_ms // 1000

    def to_exif(self, max_value: float | None = None) -> dict[int, int | float]:
        """EXIF tags as riffusion writes them (the peak amplitude under 11080 when given)."""
        exif: dict[int, int | float] = {
            tag: getattr(self, name) for name, tag in EXIF_TAGS.items() if name != "stereo"
        }
        exif[EXIF_TAGS["stereo"]] = int(self.stereo)
        exif[EXIF_TAGS["power_for_image"]] = float(self.power_for_image)
        if max_value is not None:
            exif[MAX_VALUE_TAG] = float(max_value)
        return exif

    @classmethod
    def from_exif(cls, exif: Mapping[int, object]) -> SpectrogramParams:
        """Parameters from EXIF tags; a missing tag takes riffusion's default."""
        values = {}
        for field in dataclasses.fields(cls):
            if EXIF_TAGS[field.name] in exif:
                kind = {"bool": bool, "float": float}.get(str(field.type), int)
                values[field.name] = kind(exif[EXIF_TAGS[field.name]])  # type: ignore[operator]
        return cls(**values)


def read_exif(image: Image.Image) -> tuple[SpectrogramParams, float]:
    """An image's parameters and peak amplitude; riffusion's defaults where EXIF has none."""
    exif = image.getexif()
    return SpectrogramParams.from_exif(exif), float(exif.get(MAX_VALUE_TAG, DEFAULT_MAX_VALUE))


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Write a spectrogram image as PNG with its EXIF (Pillow drops EXIF unless told)."""

    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG", exif=image.getexif())
    return Path(path)


# --------------------------------------------------------------------------- mel filterbank


def hz_to_mel(hz):
    """HTK mel of frequencies in Hz (float64 array)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Frequencies in Hz of HTK mel values (float64 array); inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


_hz_to_mel, _mel_to_hz = hz_to_mel, mel_to_hz  # the old private names, still read by tests


def _triangles(freqs_hz: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """HTK mel triangles evaluated at ``freqs_hz``: ``(len(freqs_hz), num_frequencies)``."""
    mels = np.linspace(
        hz_to_mel(params.min_frequency),
        hz_to_mel(params.max_frequency),
        params.num_frequencies + 2,
    )
    edges = mel_to_hz(mels)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    f = np.asarray(freqs_hz, dtype=np.float64)[:, None]
    return np.maximum(
        0.0, np.minimum((f - lower) / (centre - lower), (upper - f) / (upper - centre))
    )


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: SpectrogramParams) -> np.ndarray:
    """Mel filterbank on the FFT bins, ``(n_fft // 2 + 1, num_frequencies)`` float32 (as
    torchaudio's ``melscale_fbanks`` and librosa's ``mel(htk=True, norm=None)`` build it)."""
    freqs = np.arange(params.n_fft // 2 + 1) * params.sample_rate / params.n_fft
    return _triangles(freqs, params).astype(np.float32)


def _device(device) -> torch.device:
    import torch  # deferred: seconds to import; --help needs none

    if device is None:
        device = default_device()
    return torch.device(device)


@dataclass(frozen=True)
class _Encoder:
    window: torch.Tensor  # Hann, win_length
    bins: int  # FFT bins below the top filter's edge
    filters: torch.Tensor  # sparse CSR (num_frequencies, bins)


@functools.lru_cache(maxsize=8)
def _encoder(params: SpectrogramParams, device: torch.device) -> _Encoder:
    import torch  # deferred: seconds to import; --help needs none

    fb = mel_filterbank(params)
    bins = int(np.nonzero(fb.any(axis=1))[0].max()) + 1
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only its matmul
        warnings.simplefilter("ignore", UserWarning)
        filters = torch.from_numpy(np.ascontiguousarray(fb[:bins].T)).to(device).to_sparse_csr()
    return _Encoder(torch.hann_window(params.win_length, device=device), bins, filters)


def _mel_torch(x: torch.Tensor, params: SpectrogramParams, block: int = 1024) -> torch.Tensor:
    """``(n, samples)`` -> mel amplitudes ``(n, num_frequencies, 1 + samples // hop)``, computed
    ``block`` frames at a time so that long audio never holds its whole complex STFT."""
    import torch  # deferred: seconds to import; --help needs none

    enc = _encoder(dataclasses.replace(params, stereo=False), x.device)
    half, hop = params.n_fft // 2, params.hop_length
    # Centred frames with riffusion's reflect padding (zeros for clips shorter than half an FFT).
    mode = "reflect" if x.shape[-1] > half else "constant"
    padded = torch.nn.functional.pad(x[:, None], (half, half), mode=mode)[:, 0]
    frames = 1 + x.shape[-1] // hop
    out = []
    for first in range(0, frames, block):
        count = min(block, frames - first)
        chunk = padded[:, first * hop : (first + count - 1) * hop + params.n_fft]
        spec = torch.stft(
            chunk, params.n_fft, hop, params.win_length, enc.window,
            center=False, return_complex=True,
        )  # fmt: skip
        amp = torch.view_as_real(spec[:, : enc.bins]).square().sum(-1).sqrt()  # (n, bins, count)
        mel = enc.filters @ amp.permute(1, 0, 2).reshape(enc.bins, -1)
        out.append(mel.reshape(-1, x.shape[0], count).permute(1, 0, 2))
    return torch.cat(out, dim=-1)


def as_channels(audio: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """Float32 ``(channels, samples)``: two channels if ``params.stereo``, else the mono mean."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] > audio.shape[1]:
        raise InputError(f"audio must be (samples,) or (channels, samples), got {audio.shape}")
    if params.stereo:
        return audio[:2] if audio.shape[0] > 1 else np.repeat(audio, 2, axis=0)
    # riffusion mixes stereo down to mono (pydub's set_channels(1): the mean).
    return audio.mean(axis=0, keepdims=True) if audio.shape[0] > 1 else audio


def mel_from_audio(audio: np.ndarray, params: SpectrogramParams = SpectrogramParams(), device=None):
    """Mel amplitudes of float audio in [-1, 1] at ``params.sample_rate``, on riffusion's int16
    scale: ``(channels, num_frequencies, 1 + samples // hop_length)`` float32, with one channel
    unless ``params.stereo`` (stereo audio is averaged; mono is doubled for stereo params)."""
    import torch  # deferred: seconds to import; --help needs none

    x = torch.from_numpy(as_channels(audio, params) * INT16_SCALE).to(_device(device or "cpu"))
    with torch.no_grad():
        return _mel_torch(x, params).cpu().numpy()


def image_from_mel(
    mel: np.ndarray, params: SpectrogramParams = SpectrogramParams(), max_value=None
) -> Image.Image:
    """Riffusion's RGB image of mel amplitudes ``(channels, mels, frames)`` or ``(mels, frames)``,
    scaled by ``max_value`` (default: their maximum), which goes into EXIF with ``params``."""
    mel = np.asarray(mel, dtype=np.float32)
    mel = mel[None] if mel.ndim == 2 else mel
    if mel.shape[0] != (2 if params.stereo else 1) or mel.shape[1] != params.num_frequencies:
        raise InputError(f"mel shape {mel.shape} does not match {params}")
    peak = np.float32(mel.max() if max_value is None else max_value)
    scaled = np.clip(mel / peak, 0, 1) if peak > 0 else np.zeros_like(mel)
    # The same float32 steps as riffusion, truncating to uint8, so that pixels match.
    grey = (np.float32(255) - np.power(scaled, np.float32(params.power_for_image)) * 255).astype(
        np.uint8
    )[:, ::-1]
    if params.stereo:
        rgb = np.stack([np.zeros_like(grey[0]), grey[0], grey[1]], axis=-1)
    else:
        rgb = np.repeat(grey[0][..., None], 3, axis=-1)
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    image.getexif().update(params.to_exif(float(peak)))
    return image


def image_from_audio(audio: np.ndarray, params: SpectrogramParams = SpectrogramParams()):
    """Riffusion's spectrogram image of float audio in [-1, 1]: ``1 + samples // hop_length`` px
    wide (512 px for 5.11-5.12 s), parameters and peak amplitude in EXIF.

    Save it with :func:`save_image` (or ``exif=image.getexif()``) to keep the EXIF.
    """
    return image_from_mel(mel_from_audio(audio, params, device="cpu"), params)


def mel_from_image(image: Image.Image, params=None, max_value=None) -> np.ndarray:
    """Mel amplitudes ``(channels, mels, width)`` (int16 scale) of a spectrogram image.

    ``params`` and ``max_value`` default to the image's EXIF, else riffusion's defaults. Mono
    images are read from R, stereo from G and B (as riffusion does).
    """
    exif_params, exif_max = read_exif(image)
    params = params or exif_params
    max_value = exif_max if max_value is None else max_value
    if image.mode not in ("RGB", "L", "P"):  # riffusion converts L and P to RGB
        raise InputError(f"image mode {image.mode!r} is not a spectrogram image (RGB, L or P)")
    if image.height != params.num_frequencies:
        raise InputError(
            f"image height {image.height} px is not a spectrogram of "
            f"{params.num_frequencies} mel bands"
        )
    data = np.asarray(image.convert("RGB"))[::-1].transpose(2, 0, 1)
    data = data[[1, 2]] if params.stereo else data[:1]
    level = (np.float32(255) - data.astype(np.float32)) / np.float32(255)
    return np.power(level, np.float32(1 / params.power_for_image)) * np.float32(max_value)


# --------------------------------------------------------------------------- decoding


def phase_rate(params: SpectrogramParams) -> tuple[int, int]:
    """``(num, den)``: Griffin-Lim runs at ``sample_rate * num / den``, the lowest such rate
    with whole-sample hop and window (``den`` divides both) whose Nyquist frequency is at least
    ``NYQUIST_GUARD * max_frequency``; ``(1, 1)`` if none. (4, 7) for the defaults: 25.2 kHz."""
    common = math.gcd(params.hop_length, params.win_length)
    best = (1, 1)
    for den in range(2, 13):
        for num in range(1, den):
            ratio = num / den
            fast_enough = ratio < best[0] / best[1] and common % den == 0
            covers = params.sample_rate * ratio / 2 >= NYQUIST_GUARD * params.max_frequency
            if fast_enough and covers and math.gcd(num, den) == 1:
                best = (num, den)
    return best


@dataclass(frozen=True)
class _Decoder:
    num: int  # Griffin-Lim runs at sample_rate * num / den
    den: int
    grid: dsp.PhaseGrid  # FFT = window length at that rate, bins below max_frequency
    inverse: torch.Tensor  # (num_frequencies, bins): mel -> magnitude on that grid


@functools.lru_cache(maxsize=8)
def _decoder(params: SpectrogramParams, device: torch.device) -> _Decoder:
    import torch  # deferred: seconds to import; --help needs none

    num, den = phase_rate(params)
    n, hop = params.win_length * num // den, params.hop_length * num // den
    step_hz = params.sample_rate / params.win_length  # bin spacing of an FFT as long as the window
    bins = math.ceil(params.max_frequency / step_hz)
    fine = scipy.sparse.csr_array(mel_filterbank(params).astype(np.float64))  # <= 2 per row
    coarse = _triangles(np.arange(bins) * step_hz, params)
    # Minimum-norm solution of fine.T @ S = M is S = fine @ inv(fine.T @ fine) @ M: a piecewise
    # linear spectrum through the band centres, which we sample on the coarse grid (exact: the
    # 400 ms FFT only interpolates between the bins of a 100 ms one). The window-sum ratio num/den
    # keeps the amplitude at the reduced rate.
    gram = (fine.T @ fine).toarray()  # tridiagonal: neighbouring triangles overlap
    if np.all(np.diag(gram) > 0):  # banded and well conditioned when no band is empty
        inverse = np.linalg.solve(gram, coarse.T).T
    else:
        inverse = coarse @ np.linalg.pinv(gram, hermitian=True)
    inverse *= num / den
    grid = dsp.PhaseGrid(n, hop, bins, torch.hann_window(n, device=device))
    inverse = torch.from_numpy(np.ascontiguousarray(inverse.T, dtype=np.float32)).to(device)
    return _Decoder(num, den, grid, inverse)


def _decode(mel: torch.Tensor, params: SpectrogramParams, iterations: int) -> torch.Tensor:
    """Mel amplitudes ``(n, mels, frames)`` (int16 scale) -> float audio ``(n, frames * hop)``."""
    dec = _decoder(dataclasses.replace(params, stereo=False), mel.device)
    mag = (mel.transpose(1, 2) @ dec.inverse).clamp_min_(0)
    audio = dsp.resample(dsp.griffin_lim(mag, dec.grid, iterations), dec.num, dec.den)
    return audio[:, : mel.shape[-1] * params.hop_length] / INT16_SCALE


def audio_from_mel(
    mel: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
    iterations: int = DEFAULT_ITERATIONS, device=None, rows_per_pass: int | None = None,
) -> np.ndarray:  # fmt: skip
    """Float audio from mel amplitudes (int16 scale), ``frames * hop_length`` samples.

    ``mel`` is ``(mels, frames)``, ``(channels, mels, frames)`` or a batch
    ``(batch, channels, mels, frames)``; the result drops the mel axis. Runs on ``device``
    (default ``$VIDEOBGM_DEVICE``, else CUDA when present, else CPU), ``rows_per_pass`` clip
    channels per batched pass: by default all of them on a GPU, one at a time on a CPU, where a
    batch's working set falls out of the caches (8 clips at once measured 1.7x slower per clip).
    """
    import torch  # deferred: seconds to import; --help needs none

    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim not in (2, 3, 4) or mel.shape[-2] != params.num_frequencies:
        raise InputError(f"mel shape {mel.shape} does not match {params.num_frequencies} bands")
    flat = torch.from_numpy(np.ascontiguousarray(mel.reshape(-1, *mel.shape[-2:])))
    device = _device(device)
    step = rows_per_pass or (1 if device.type == "cpu" else len(flat))
    with torch.no_grad():
        parts = [
            _decode(flat[i : i + step].to(device), params, iterations).cpu()
            for i in range(0, len(flat), step)
        ]
    return torch.cat(parts).numpy().reshape(*mel.shape[:-2], -1)


def _check_iterations(iterations: int) -> int:
    if int(iterations) != iterations or iterations < 0:
        raise InputError(f"iterations must be a whole number >= 0, got {iterations!r}")
    return int(iterations)


def audio_from_image(
    image: Image.Image, params: SpectrogramParams | None = None, *,
    iterations: int = DEFAULT_ITERATIONS, postfilter: str = "none", device=None,
) -> np.ndarray:  # fmt: skip
    """Float audio of a spectrogram image: ``(width * hop_length,)`` for mono parameters,
    ``(2, width * hop_length)`` for stereo. ``params`` and the peak amplitude come from EXIF
    when ``params`` is None (riffusion's defaults for images without EXIF, as the model's raw
    outputs are), so the loudness is the encoded audio's. ``postfilter``: ``"none"``;
    ``"normalize"``: peak at -0.1 dBFS; ``"riffusion"``: riffusion's normalise + compress chain
    (:func:`videobgm.spectrogram.dsp.riffusion_postfilter`). The last two change the loudness."""
    return audio_from_images(
        [image], params, iterations=iterations, postfilter=postfilter, device=device
    )[0]


def audio_from_images(
    images: Sequence[Image.Image], params: SpectrogramParams | None = None, device=None, *,
    iterations: int = DEFAULT_ITERATIONS, postfilter: str = "none",
) -> list[np.ndarray]:  # fmt: skip
    """Decode many images, in order: those sharing parameters and width are stacked and go
    through :func:`audio_from_mel` together (one batched pass over every clip and channel on a
    GPU, row by row on a CPU). Options as :func:`audio_from_image`."""
    iterations = _check_iterations(iterations)
    postfilter_fn = dsp.POSTFILTERS.get(postfilter)
    if postfilter_fn is None:
        raise InputError(f"postfilter must be one of {sorted(dsp.POSTFILTERS)}, got {postfilter!r}")
    groups: dict[tuple[SpectrogramParams, int], list[int]] = {}
    mels, used = [], []
    for i, image in enumerate(images):
        used.append(params or read_exif(image)[0])
        mels.append(mel_from_image(image, used[i]))
        groups.setdefault((used[i], image.width), []).append(i)
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(mels)
    for (group_params, _), members in groups.items():
        batch = audio_from_mel(
            np.stack([mels[i] for i in members]), group_params, iterations, device
        )
        for i, audio in zip(members, batch, strict=True):
            audio = audio[0] if audio.shape[0] == 1 else audio
            out[i] = postfilter_fn(audio, group_params.sample_rate)
    return out


def spectral_convergence(
    audio: np.ndarray, mel_target: np.ndarray, params: SpectrogramParams = SpectrogramParams()
) -> float:
    """Mel spectral convergence of audio against mel amplitudes ``(mels, frames)`` or
    ``(channels, mels, frames)``: ``||m - t||`` with both scaled to unit Frobenius norm, ``m``
    the audio's mel amplitudes (same STFT and filterbank), over the frames both have.
    0 is a perfect match; silence against silence is 0, silence against sound 1."""
    mel = mel_from_audio(audio, params)
    target = np.asarray(mel_target, dtype=np.float32)
    target = target[None] if target.ndim == 2 else target
    frames = min(mel.shape[-1], target.shape[-1])
    mel, target = mel[..., :frames].astype(np.float64), target[..., :frames].astype(np.float64)
    norms = np.linalg.norm(mel), np.linalg.norm(target)
    if min(norms) == 0:
        return float(norms[0] != norms[1])
    return float(np.linalg.norm(mel / norms[0] - target / norms[1]))


# --------------------------------------------------------------------------- CLI


def open_image(path: str | Path) -> Image.Image:
    """Open a spectrogram image file (EXIF kept), or raise InputError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, Image.UnidentifiedImageError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def add_cli(subparsers) -> None:
    """``videobgm spectrogram to-image|to-audio``."""
    parser = subparsers.add_parser(
        "spectrogram",
        help="convert audio <-> riffusion spectrogram images",
        description="Riffusion's spectrogram image format: 512 mel bands x 10 ms columns "
        "(512 px = 5.12 s), parameters in EXIF.",
    )
    sub = parser.add_subparsers(dest="spectrogram_command", metavar="ACTION", required=True)
    to_image = sub.add_parser(
        "to-image",
        help="audio file -> spectrogram PNG",
        description="Encode an audio file (any format ffmpeg reads) as riffusion's spectrogram "
        "image; the width is 1 + duration / 10 ms px. Stereo input is averaged unless --stereo.",
    )
    to_image.add_argument("audio", metavar="AUDIO", help="input audio or video file")
    to_image.add_argument("image", metavar="IMAGE", help="output PNG")
    to_image.add_argument("--stereo", action="store_true", help="keep two channels (G and B)")
    to_image.add_argument("--start", type=float, default=0.0, help="start in seconds (default 0)")
    to_image.add_argument("--duration", type=float, default=None, help="seconds (default: all)")
    to_image.set_defaults(func=_cli_to_image)
    to_audio = sub.add_parser(
        "to-audio",
        help="spectrogram image -> WAV/FLAC",
        description="Decode a spectrogram image (parameters from its EXIF, riffusion's defaults "
        "without) to 16-bit audio; WAV becomes float if the peak exceeds full scale, FLAC clips.",
    )
    to_audio.add_argument("image", metavar="IMAGE", help="input spectrogram image")
    to_audio.add_argument("audio", metavar="AUDIO", help="output .wav or .flac")
    to_audio.add_argument(
        "--iterations", type=int, default=DEFAULT_ITERATIONS,
        help=f"Griffin-Lim iterations (default {DEFAULT_ITERATIONS}); more fit the image better",
    )  # fmt: skip
    to_audio.add_argument(
        "--postfilter", choices=sorted(dsp.POSTFILTERS), default="none",
        help="none (default); normalize: peak at -0.1 dBFS; riffusion: its compression chain",
    )  # fmt: skip
    to_audio.add_argument("--device", default=None, help="torch device (default: auto)")
    to_audio.set_defaults(func=_cli_to_audio)


def _cli_to_image(args) -> int:
    params = SpectrogramParams(stereo=args.stereo)
    audio = decode_audio(args.audio, params.sample_rate, not args.stereo, args.start, args.duration)
    if audio.shape[-1] == 0:
        raise InputError(f"{args.audio}: no audio samples in the requested span")
    image = save_image(image_from_audio(audio, params), args.image)
    seconds = audio.shape[-1] / params.sample_rate
    print(f"{image}: {1 + audio.shape[-1] // params.hop_length} px wide ({seconds:.2f} s)")
    return 0


def _cli_to_audio(args) -> int:
    image = open_image(args.image)
    params = read_exif(image)[0]
    audio = audio_from_image(
        image, iterations=args.iterations, postfilter=args.postfilter, device=args.device
    )
    # Griffin-Lim's phases may raise the peak above full scale: WAV keeps it as float samples.
    over = audio.size > 0 and float(np.abs(audio).max()) > 1
    wav = Path(args.audio).suffix.lower() == ".wav"
    write_audio(args.audio, audio, params.sample_rate, "FLOAT" if over and wav else "PCM_16")
    note = " (peak above full scale: float WAV)" if over and wav else ""
    note = " (peak above full scale: clipped)" if over and not wav else note
    seconds = audio.shape[-1] / params.sample_rate
    print(f"{args.audio}: {seconds:.2f} s at {params.sample_rate} Hz{note}")
    return 0
