"""The final mix: new music ducked under the voice, loudness-normalised, true peak limited.

- Ducking: where someone speaks, the music drops by ``duck_db`` (default -12 dB) with an
  ``attack_ms`` / ``release_ms`` envelope that starts two attack times *before* each word
  (look-ahead), so the music is mostly down when the first syllable comes. Speech activity
  comes from the isolated voice's envelope, the transcript's segments, or both.
- Levels: before ducking the music sits ``music_db`` (default -6 LU) below the speech.
- Loudness: the mix is normalised to an integrated loudness target (default -14 LUFS, as video
  platforms normalise; -16 and -23 are the other common ones), measured with ``pyloudnorm``
  (ITU-R BS.1770), and a look-ahead limiter keeps the true peak (4x oversampled, BS.1770
  Annex 2) at or below ``true_peak_db`` (default -1 dBTP).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from videobgm.errors import InputError

FRAME_S = 0.01  # s; resolution of the activity and gain envelopes
OVERSAMPLE = 4  # true-peak measurement oversampling (BS.1770 Annex 2)
COMMON_TARGETS_LUFS = (-14.0, -16.0, -23.0)  # video platforms, podcasts/Apple, EBU R128


@dataclass(frozen=True)
class MixParams:
    """How the voice and the new music are combined."""

    target_lufs: float = -14.0  # integrated loudness of the final mix
    true_peak_db: float = -1.0  # dBTP ceiling
    music_db: float = -6.0  # music loudness relative to the speech, before ducking (LU)
    duck_db: float = -12.0  # extra music attenuation while someone speaks
    attack_ms: float = 50.0  # how fast the music goes down (it starts 2x this early)
    release_ms: float = 400.0  # how fast it comes back after speech
    activity: str = "both"  # speech activity from "voice" envelope, "transcript", or "both"
    voice_threshold_db: float = -35.0  # voice frames this far below the voice's loud frames
    channels: int = 2  # output channels (the mono mix duplicated for stereo)

    def __post_init__(self) -> None:
        if not -40.0 <= self.target_lufs <= -5.0:
            raise InputError(f"target loudness {self.target_lufs} LUFS is outside -40..-5")
        if self.true_peak_db > 0:
            raise InputError(f"true-peak ceiling {self.true_peak_db} dBTP must be at most 0")
        if self.duck_db > 0:
            raise InputError(f"duck_db {self.duck_db} must be negative (an attenuation)")
        if self.activity not in ("voice", "transcript", "both"):
            raise InputError(f"unknown speech activity source {self.activity!r}")
        if self.channels not in (1, 2):
            raise InputError(f"channels must be 1 or 2, not {self.channels}")


@dataclass(frozen=True)
class MixResult:
    """The mix and its parts as they sound in it (same gain), all float32 at one rate."""

    mix: np.ndarray  # (channels, samples)
    voice: np.ndarray  # (samples,) the voice as mixed
    music: np.ndarray  # (samples,) the ducked music as mixed
    speech: np.ndarray  # (frames,) bool, speech activity at FRAME_S resolution
    loudness_lufs: float
    true_peak_db: float


def _frame_rms_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = int(FRAME_S * sample_rate)
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20 * np.log10(rms + 1e-10)


def voice_activity(voice: np.ndarray, sample_rate: int, threshold_db: float = -35.0) -> np.ndarray:
    """Speech frames (FRAME_S each) of an isolated voice: louder than ``threshold_db`` below
    its loud frames, with 150 ms gaps filled so words do not flicker."""
    from scipy.ndimage import binary_closing, binary_opening

    level = _frame_rms_db(voice, sample_rate)
    if not np.any(level > -90):
        return np.zeros(len(level), dtype=bool)
    loud = np.percentile(level[level > -90], 95)
    active = level > max(loud + threshold_db, -60.0)
    active = binary_closing(active, structure=np.ones(15, bool))  # 150 ms
    return binary_opening(active, structure=np.ones(3, bool))  # drop 30 ms blips


def transcript_activity(segments: Sequence[tuple[float, float]], n_frames: int) -> np.ndarray:
    """Speech frames from transcript segments ``(start_s, end_s)``."""
    active = np.zeros(n_frames, dtype=bool)
    for start, end in segments:
        active[max(int(start / FRAME_S), 0) : max(int(np.ceil(end / FRAME_S)), 0)] = True
    return active


def duck_gain(active: np.ndarray, params: MixParams, n_samples: int, sample_rate: int):
    """Per-sample music gain: 1 in pauses, ``duck_db`` under speech, smoothed with attack and
    release, and shifted two attack times earlier (a look-ahead), so it is down as words start."""
    target = np.where(active, 10 ** (params.duck_db / 20), 1.0)
    lead = int(round(2 * params.attack_ms / 1000 / FRAME_S))
    if lead:  # look ahead: the target seen `lead` frames early
        target = np.minimum(target, np.concatenate([target[lead:], np.full(lead, target[-1])]))
    attack = np.exp(-FRAME_S / max(params.attack_ms / 1000, 1e-4))
    release = np.exp(-FRAME_S / max(params.release_ms / 1000, 1e-4))
    gain = np.empty_like(target)
    level = 1.0
    for i, goal in enumerate(target):  # 100 frames a second: cheap even for an hour
        coeff = attack if goal < level else release
        level = goal + coeff * (level - goal)
        gain[i] = level
    times = (np.arange(len(gain)) + 0.5) * FRAME_S * sample_rate
    return np.interp(np.arange(n_samples), times, gain).astype(np.float32)


def loudness(audio: np.ndarray, sample_rate: int, copies: int = 1) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); -inf for silence.

    pyloudnorm's K-weighting filters and gating, applied faster: the two biquads run as one
    float32 ``sosfilt`` and the 400 ms blocks come from a cumulative sum instead of a Python
    loop (about 4x faster on a 10-minute mix; a test checks it against
    ``pyloudnorm.Meter.integrated_loudness`` to 0.01 LU). ``copies``: the number of identical
    channels the mono ``audio`` will be played on (BS.1770 sums channel powers, so dual mono
    measures 10 log10(2) = 3.01 LU louder): measured once instead of twice.
    """
    channels = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    block = int(round(0.4 * sample_rate))  # one gating block
    if channels.shape[1] < block:
        channels = np.pad(channels, ((0, 0), (0, block - channels.shape[1])))
    weighted = _k_weighting(channels, sample_rate)
    total = np.zeros(_n_blocks(weighted.shape[1], sample_rate))
    for channel in weighted:
        total += _block_power(channel, sample_rate)
    total *= copies
    gated = total[-0.691 + 10 * np.log10(total + 1e-30) > -70.0]  # absolute gate
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    kept = gated[-0.691 + 10 * np.log10(gated) > relative]
    return float(-0.691 + 10 * np.log10(kept.mean()))


@functools.lru_cache(maxsize=4)
def _k_sos(sample_rate: int) -> np.ndarray:
    import pyloudnorm

    stages = pyloudnorm.Meter(sample_rate)._filters.values()  # high shelf, then high pass
    sos = [np.concatenate([f.b * f.passband_gain, f.a]) for f in stages]
    return np.asarray(sos, dtype=np.float32)


def _k_weighting(channels: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy.signal import sosfilt

    return sosfilt(_k_sos(sample_rate), channels, axis=-1)


def _n_blocks(n_samples: int, sample_rate: int) -> int:
    seconds = n_samples / sample_rate
    return int(np.round((seconds - 0.4) / 0.1)) + 1  # 400 ms blocks every 100 ms


def _block_power(weighted: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean square of every 400 ms gating block (pyloudnorm's boundaries), as sums of four
    100 ms sub-blocks."""
    n_blocks = _n_blocks(len(weighted), sample_rate)
    edges = (0.1 * np.arange(n_blocks + 4) * sample_rate).astype(np.int64)
    edges = np.minimum(edges, len(weighted))
    squares = np.square(weighted, dtype=np.float32)
    sub = np.add.reduceat(squares, edges[:-1]).astype(np.float64)
    sub[edges[:-1] == edges[1:]] = 0.0  # reduceat returns the element itself for empty ranges
    blocks = sub[:n_blocks] + sub[1 : n_blocks + 1] + sub[2 : n_blocks + 2] + sub[3 : n_blocks + 3]
    return blocks / (0.4 * sample_rate)


def true_peak(audio: np.ndarray, floor_db: float = -9.0) -> float:
    """True peak in dBTP: the maximum of the 4x oversampled signal (BS.1770 Annex 2).

    Only stretches whose sample peak is above ``floor_db`` are oversampled (inter-sample peaks
    exceed sample peaks by a few dB at most); below that the sample peak is returned.
    """
    peaks = _oversampled_peaks(audio, 10 ** (floor_db / 20))
    return float(20 * np.log10(np.max(peaks) + 1e-12))


_PEAK_BLOCK = 256  # samples oversampled together around loud samples
_PEAK_CONTEXT = 16  # samples of context either side (half the interpolation filter is 10)
_INTERPOLATOR_TAPS = 81  # the 4x interpolation filter (scipy's resample_poly design)


def _oversampled_peaks(audio: np.ndarray, floor: float) -> np.ndarray:
    """Per sample, the largest absolute value of the 4x oversampled signal around it, computed
    where the sample peak exceeds ``floor`` (elsewhere the sample value itself)."""
    channels = audio if audio.ndim == 2 else audio[None]
    peaks = np.max(np.abs(channels), axis=0)
    loud = np.unique(np.flatnonzero(peaks > floor) // _PEAK_BLOCK)
    for group in np.array_split(loud, max(1, -(-len(loud) // 4096))):  # bounded memory
        if len(group):
            _oversample_blocks(channels, peaks, group)
    return peaks


@functools.lru_cache(maxsize=1)
def _interpolator() -> np.ndarray:
    """The 4x interpolation low-pass (Kaiser-windowed sinc, as resample_poly designs it), in
    float32 so that upfirdn runs in float32."""
    from scipy.signal import firwin

    taps = firwin(_INTERPOLATOR_TAPS, 1.0 / OVERSAMPLE, window=("kaiser", 5.0))
    return (taps * OVERSAMPLE).astype(np.float32)


def _oversample_blocks(channels: np.ndarray, peaks: np.ndarray, blocks: np.ndarray) -> None:
    """Raise ``peaks`` to the 4x oversampled peaks inside ``blocks`` (one filtering call)."""
    from scipy.signal import upfirdn

    n, width = len(peaks), _PEAK_BLOCK + 2 * _PEAK_CONTEXT
    padded = np.pad(channels, ((0, 0), (_PEAK_CONTEXT, _PEAK_BLOCK + _PEAK_CONTEXT)))
    starts = blocks * _PEAK_BLOCK  # in the padded signal these are the context starts
    windows = padded[:, starts[:, None] + np.arange(width)].astype(np.float32)
    delay = (_INTERPOLATOR_TAPS - 1) // 2  # the filter's group delay, in oversampled samples
    up = upfirdn(_interpolator(), windows, OVERSAMPLE, axis=-1)[..., delay : delay + width * 4]
    up = np.abs(up).max(axis=0).reshape(len(blocks), width, OVERSAMPLE).max(axis=2)
    inner = up[:, _PEAK_CONTEXT : _PEAK_CONTEXT + _PEAK_BLOCK]  # (blocks, _PEAK_BLOCK)
    index = starts[:, None] + np.arange(_PEAK_BLOCK)
    valid = index < n
    peaks[index[valid]] = np.maximum(peaks[index[valid]], inner[valid])


def limiter_gain(
    audio: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = 1.5
) -> np.ndarray:
    """Per-sample gain of a look-ahead brick-wall limiter on true peaks: the reduction ramps
    in over ``lookahead_ms`` before a peak and out over the same time after it."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    ceiling = 10 ** (ceiling_db / 20)
    peaks = _oversampled_peaks(audio, ceiling * 10 ** (-6 / 20))
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if np.all(needed >= 1.0):
        return np.ones(len(needed), dtype=np.float32)
    half = max(int(lookahead_ms / 1000 * sample_rate), 1)
    # Every sample within `half` of a peak is at most that peak's gain; averaging over a
    # window of `half` then cannot exceed it, and removes the steps.
    gain = minimum_filter1d(needed, size=2 * half + 1)
    return uniform_filter1d(gain, size=half + 1).astype(np.float32)


def normalise(
    audio: np.ndarray, sample_rate: int, target_lufs: float, ceiling_db: float, copies: int = 1
) -> np.ndarray:
    """Per-sample gain that brings ``audio`` to ``target_lufs`` with true peaks at most
    ``ceiling_db``: a loudness gain, then the limiter, corrected (the limiter lowers the
    loudness a little) until within 0.1 LU. All ones for silence. ``copies`` as in
    :func:`loudness`."""
    gain = np.ones(audio.shape[-1], dtype=np.float32)
    current = loudness(audio, sample_rate, copies)
    for _ in range(3):
        if not np.isfinite(current):
            break
        gain *= np.float32(10 ** ((target_lufs - current) / 20))
        gain *= limiter_gain(audio * gain, sample_rate, ceiling_db - 0.05)
        current = loudness(audio * gain, sample_rate, copies)
        if abs(current - target_lufs) < 0.1:
            break
    return gain


def _level_to(audio: np.ndarray, sample_rate: int, lufs: float) -> np.ndarray:
    current = loudness(audio, sample_rate)
    return audio if not np.isfinite(current) else audio * np.float32(10 ** ((lufs - current) / 20))


def mix(
    voice: np.ndarray,
    music: np.ndarray,
    sample_rate: int,
    params: MixParams | None = None,
    segments: Sequence[tuple[float, float]] = (),
) -> MixResult:
    """Mix mono ``voice`` and ``music`` of the same length (see the module docstring).

    ``segments`` are the transcript's ``(start_s, end_s)``, used for speech activity when
    ``params.activity`` is ``"transcript"`` or ``"both"``.
    """
    params = params or MixParams()
    if voice.shape != music.shape or voice.ndim != 1:
        raise InputError(f"voice {voice.shape} and music {music.shape} must be mono, same length")
    n_frames = int(np.ceil(len(voice) / (FRAME_S * sample_rate)))
    active = np.zeros(n_frames, dtype=bool)
    if params.activity in ("voice", "both"):
        found = voice_activity(voice, sample_rate, params.voice_threshold_db)
        active[: len(found)] |= found
    if params.activity in ("transcript", "both"):
        active |= transcript_activity(segments, n_frames)
    speech_lufs = loudness(voice, sample_rate)
    if np.isfinite(speech_lufs):
        music = _level_to(music, sample_rate, speech_lufs + params.music_db)
    ducked = music * duck_gain(active, params, len(music), sample_rate)
    combined = voice + ducked  # mono; duplicated into params.channels identical channels
    gain = normalise(
        combined, sample_rate, params.target_lufs, params.true_peak_db, params.channels
    )
    final = combined * gain
    return MixResult(
        mix=np.tile(final, (params.channels, 1)), voice=voice * gain, music=ducked * gain,
        speech=active, loudness_lufs=loudness(final, sample_rate, params.channels),
        true_peak_db=true_peak(final),
    )  # fmt: skip
