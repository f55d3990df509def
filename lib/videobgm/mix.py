"""The final mix: new music ducked under the voice, loudness-normalised, true peak limited.

- Ducking: where someone speaks, the music drops by ``duck_db`` (default -12 dB) with an
  ``attack_ms`` / ``release_ms`` envelope that starts two attack times *before* each word
  (look-ahead), so the music is mostly down when the first syllable comes. Speech activity
  comes from a voice-activity detector (Silero VAD, :mod:`videobgm.vad`, the default), the
  isolated voice's envelope, or the transcript's segments, or an explicit union of them
  (``"vad+transcript"``). The envelope is fooled by the residual noise a real recording
  leaves in the isolated voice (every frame counts as speech, the duck never releases); the
  detector is not.
- Levels: before ducking the music sits ``music_db`` (default -6 LU) below the speech.
- Loudness: the mix is normalised to an integrated loudness target (default -14 LUFS, as video
  platforms normalise; -16 and -23 are the other common ones), measured with ``pyloudnorm``
  (ITU-R BS.1770), and a look-ahead limiter keeps the true peak (4x oversampled, BS.1770
  Annex 2) at or below ``true_peak_db`` (default -1 dBTP).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobgm import media, vad
from videobgm.errors import InputError
from videobgm.media import AudioReader, write_audio_blocks

FRAME_S = 0.01  # s; resolution of the activity and gain envelopes
OVERSAMPLE = 4  # true-peak measurement oversampling (BS.1770 Annex 2)
COMMON_TARGETS_LUFS = (-14.0, -16.0, -23.0)  # video platforms, podcasts/Apple, EBU R128
ACTIVITY_SOURCES = ("vad", "voice", "transcript")  # joined with "+" for a union


@dataclass(frozen=True)
class MixParams:
    """How the voice and the new music are combined."""

    target_lufs: float = -14.0  # integrated loudness of the final mix
    true_peak_db: float = -1.0  # dBTP ceiling
    music_db: float = -6.0  # music loudness relative to the speech, before ducking (LU)
    duck_db: float = -12.0  # extra music attenuation while someone speaks
    attack_ms: float = 50.0  # how fast the music goes down (it starts 2x this early)
    release_ms: float = 200.0  # how fast it comes back after speech (in pauses of ~1 s)
    activity: str = "vad"  # "vad", "voice" (envelope), "transcript", or a union: "vad+transcript"
    voice_threshold_db: float = -35.0  # voice frames this far below the voice's loud frames
    channels: int = 2  # output channels (the mono mix duplicated for stereo)

    def __post_init__(self) -> None:
        if not -40.0 <= self.target_lufs <= -5.0:
            raise InputError(f"target loudness {self.target_lufs} LUFS is outside -40..-5")
        if self.true_peak_db > 0:
            raise InputError(f"true-peak ceiling {self.true_peak_db} dBTP must be at most 0")
        if self.duck_db > 0:
            raise InputError(f"duck_db {self.duck_db} must be negative (an attenuation)")
        unknown = set(self.activity.split("+")) - set(ACTIVITY_SOURCES)
        if unknown or not self.activity:
            raise InputError(
                f"unknown speech activity source {self.activity!r}; use "
                f"{', '.join(ACTIVITY_SOURCES)} or a union such as 'vad+transcript'"
            )
        if self.channels not in (1, 2):
            raise InputError(f"channels must be 1 or 2, not {self.channels}")

    @property
    def sources(self) -> frozenset[str]:
        """The speech-activity sources whose union is used."""
        return frozenset(self.activity.split("+"))


@dataclass(frozen=True)
class MixResult:
    """The mix, and the gains that made it (so the parts need not be kept twice)."""

    mix: np.ndarray  # (channels, samples) float32; the channels are one read-only mono array
    music_gain: np.ndarray  # (samples,) the music as mixed is ``music * music_gain``
    voice_gain: np.ndarray  # (samples,) the voice as mixed is ``voice * voice_gain``
    speech: np.ndarray  # (frames,) bool, speech activity at FRAME_S resolution
    loudness_lufs: float
    true_peak_db: float


def voice_activity(voice: np.ndarray, sample_rate: int, threshold_db: float = -35.0) -> np.ndarray:
    """Speech frames (FRAME_S each) of an isolated voice: louder than ``threshold_db`` below
    its loud frames, with 150 ms gaps filled so words do not flicker."""
    voice = np.asarray(voice, dtype=np.float32)
    return _activity(_frame_levels(array_reader(voice), len(voice), sample_rate), threshold_db)


@dataclass(frozen=True)
class Activity:
    """What the mix knows about where someone speaks: the transcript's segments and the
    voice-activity detector's spans, both ``(start_s, end_s)``. ``speech=None``: the
    detector has not run; :func:`mix` and :func:`mix_files` run it on the voice when the
    parameters ask for it."""

    segments: Sequence[tuple[float, float]] = ()
    speech: Sequence[tuple[float, float]] | None = None

    def frames(self, voice: Reader, n: int, sample_rate: int, params: MixParams) -> np.ndarray:
        """Speech frames (FRAME_S each): the union of the sources ``params.activity`` names."""
        n_frames = int(np.ceil(n / (FRAME_S * sample_rate)))
        active = np.zeros(n_frames, dtype=bool)
        if "voice" in params.sources:
            found = _activity(_frame_levels(voice, n, sample_rate), params.voice_threshold_db)
            active[: len(found)] |= found
        if "transcript" in params.sources:
            active |= transcript_activity(self.segments, n_frames)
        if "vad" in params.sources:
            if self.speech is None:
                raise InputError("speech activity 'vad' needs the detector's spans")
            active |= transcript_activity(self.speech, n_frames)
        return active


def transcript_activity(segments: Sequence[tuple[float, float]], n_frames: int) -> np.ndarray:
    """Speech frames from transcript segments ``(start_s, end_s)``."""
    active = np.zeros(n_frames, dtype=bool)
    for start, end in segments:
        active[max(int(start / FRAME_S), 0) : max(int(np.ceil(end / FRAME_S)), 0)] = True
    return active


def _duck_envelope(active: np.ndarray, params: MixParams) -> np.ndarray:
    """The music's ducking gain at FRAME_S resolution: 1 in pauses, ``duck_db`` under speech,
    smoothed with attack and release, and shifted two attack times earlier (a look-ahead)."""
    target = np.where(active, 10 ** (params.duck_db / 20), 1.0)
    if not len(target):
        return np.ones(1)
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
    return gain


def _envelope_reader(envelope: np.ndarray, sample_rate: int, scale: float = 1.0) -> Reader:
    """Samples ``lo .. hi`` of a FRAME_S-resolution envelope (values at the frames' centres),
    linearly interpolated and held flat beyond the first and last centres, as ``np.interp``
    would, but without its search: the frames are evenly spaced."""
    hop = FRAME_S * sample_rate
    values = (np.asarray(envelope, dtype=np.float64) * scale).astype(np.float32)
    values = np.concatenate([values, values[-1:]])  # so that the last frame has a successor

    def read(lo: int, hi: int) -> np.ndarray:
        # Positions in frames relative to a frame near lo, so that float32 stays exact enough.
        base = int(lo // hop)
        position = np.arange(hi - lo, dtype=np.float32)
        position += np.float32(lo - base * hop + 0.5)
        position /= np.float32(hop)
        position -= np.float32(0.5)  # 0 at frame base's centre
        np.clip(position, -base, len(values) - 2 - base, out=position)
        index = np.floor(position).astype(np.int64)
        position -= index  # the fraction of the way to the next frame
        index += base
        start = values[index]
        return start + position * (values[index + 1] - start)

    return read


def duck_curve(
    speech: Sequence[tuple[float, float]], duration_s: float, params: MixParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(times_s, gain_db)`` at FRAME_S resolution: the ducking gain the mix applies to the
    music for speech spans ``speech`` (before loudness normalisation), for figures."""
    params = params or MixParams()
    active = transcript_activity(speech, int(np.ceil(duration_s / FRAME_S)))
    gain = _duck_envelope(active, params)
    return (np.arange(len(gain)) + 0.5) * FRAME_S, 20 * np.log10(np.maximum(gain, 1e-6))


def duck_gain(active: np.ndarray, params: MixParams, n_samples: int, sample_rate: int):
    """Per-sample music gain: 1 in pauses, ``duck_db`` under speech, smoothed with attack and
    release, and shifted two attack times earlier (a look-ahead), so it is down as words start."""
    return _collect(_envelope_reader(_duck_envelope(active, params), sample_rate), n_samples)


# --------------------------------------------------------------------------- signals

Reader = Callable[[int, int], np.ndarray]  # samples lo .. hi, float32; zeros outside the signal
CHUNK = 1 << 18  # samples processed at a time (6 s at 44.1 kHz): memory stays bounded


def array_reader(audio: np.ndarray) -> Reader:
    """A :data:`Reader` over an array (``(samples,)`` or ``(channels, samples)``); what it
    returns may be a view of the array: never write to it."""
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]

    def read(lo: int, hi: int) -> np.ndarray:
        if 0 <= lo and hi <= n:
            view = audio[..., lo:hi]
            view.flags.writeable = False
            return view
        out = np.zeros((*audio.shape[:-1], max(hi - lo, 0)), np.float32)
        start, stop = max(lo, 0), min(hi, n)
        if stop > start:
            out[..., start - lo : stop - lo] = audio[..., start:stop]
        return out

    return read


def _collect(read: Reader, n: int) -> np.ndarray:
    out = np.empty(n, np.float32)
    for lo in range(0, n, CHUNK):
        out[lo : min(lo + CHUNK, n)] = read(lo, min(lo + CHUNK, n))
    return out


# --------------------------------------------------------------------------- loudness


def loudness(
    audio: np.ndarray, sample_rate: int, copies: int = 1, gain: np.ndarray | None = None
) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); -inf for silence.

    pyloudnorm's K-weighting filters and gating, applied faster and in bounded memory: the two
    biquads run as one float32 ``sosfilt`` carried from chunk to chunk, and the 400 ms blocks
    are sums of 100 ms sub-blocks instead of a Python loop (about 3x faster on a 10-minute mix;
    a test checks it against ``pyloudnorm.Meter.integrated_loudness`` to 0.01 LU).
    ``copies``: the number of identical channels the mono ``audio`` will be played on (BS.1770
    sums channel powers, so dual mono measures 10 log10(2) = 3.01 LU louder). ``gain``: an
    optional per-sample gain, applied on the fly (the product is never stored).
    """
    channels = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    meters = []
    for channel in channels:
        if gain is None:
            read = array_reader(channel)
        else:
            read = _product(array_reader(channel), array_reader(gain))
        meters.append(_measured(read, channel.shape[-1], sample_rate))
    return _integrated(sum(m.block_powers() for m in meters) * copies)


def stream_loudness(read: Reader, n: int, sample_rate: int, copies: int = 1) -> float:
    """:func:`loudness` of a mono signal given as a :data:`Reader` of ``n`` samples."""
    return _integrated(_measured(read, n, sample_rate).block_powers() * copies)


def _product(a: Reader, b: Reader) -> Reader:
    return lambda lo, hi: a(lo, hi) * b(lo, hi)


def _measured(read: Reader, n: int, sample_rate: int) -> _Meter:
    meter = _Meter(n, sample_rate)
    for lo in range(0, meter.n, CHUNK):
        meter.feed(read(lo, min(lo + CHUNK, meter.n)))
    return meter


def _integrated(total: np.ndarray) -> float:
    """BS.1770 gating of 400 ms block powers (absolute -70 LUFS, then relative -10 LU)."""
    gated = total[-0.691 + 10 * np.log10(total + 1e-30) > -70.0]  # absolute gate
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    kept = gated[-0.691 + 10 * np.log10(gated) > relative]
    return float(-0.691 + 10 * np.log10(kept.mean()))


class _Meter:
    """K-weighted power of every 400 ms gating block of one channel (pyloudnorm's block
    boundaries), as sums of four 100 ms sub-blocks, fed a piece at a time in order."""

    def __init__(self, n: int, sample_rate: int) -> None:
        from scipy.signal import sosfilt_zi

        self.sample_rate = sample_rate
        self.n = max(n, int(round(0.4 * sample_rate)))  # shorter: padded to one block
        seconds = self.n / sample_rate
        self.n_blocks = int(np.round((seconds - 0.4) / 0.1)) + 1  # 400 ms every 100 ms
        ticks = (0.1 * np.arange(self.n_blocks + 4) * sample_rate).astype(np.int64)
        self.edges = np.minimum(ticks, self.n)
        self.sos = _k_sos(sample_rate)
        self.state = np.zeros_like(sosfilt_zi(self.sos), dtype=np.float32)
        self.sub = np.zeros(self.n_blocks + 3)
        self.pos = 0

    def feed(self, piece: np.ndarray) -> None:
        from scipy.signal import sosfilt

        lo, hi = self.pos, self.pos + len(piece)
        self.pos = hi
        weighted, self.state = sosfilt(self.sos, piece, zi=self.state)
        if not len(piece):
            return
        first = int(np.searchsorted(self.edges, lo, "right")) - 1  # the sub-block lo is in
        inside = self.edges[(self.edges > lo) & (self.edges < hi)] - lo  # later ones that start
        sums = np.add.reduceat(np.square(weighted), np.concatenate([[0], inside]))
        sums = sums[: len(self.sub) - first]  # samples after the last block's end do not count
        self.sub[first : first + len(sums)] += sums

    def block_powers(self) -> np.ndarray:
        sub, n = self.sub, self.n_blocks
        return (sub[:n] + sub[1 : n + 1] + sub[2 : n + 2] + sub[3 : n + 3]) / (
            0.4 * self.sample_rate
        )


@functools.lru_cache(maxsize=4)
def _k_sos(sample_rate: int) -> np.ndarray:
    import pyloudnorm

    stages = pyloudnorm.Meter(sample_rate)._filters.values()  # high shelf, then high pass
    sos = [np.concatenate([f.b * f.passband_gain, f.a]) for f in stages]
    return np.asarray(sos, dtype=np.float32)


# --------------------------------------------------------------------------- true peak

_PEAK_BLOCK = 256  # samples oversampled together around loud samples
_PEAK_CONTEXT = 16  # samples of context either side (half the interpolation filter is 10)
_INTERPOLATOR_TAPS = 81  # the 4x interpolation filter (scipy's resample_poly design)


def true_peak(audio: np.ndarray, floor_db: float = -9.0) -> float:
    """True peak in dBTP: the maximum of the 4x oversampled signal (BS.1770 Annex 2).

    Only stretches whose sample peak is above ``floor_db`` are oversampled (inter-sample peaks
    exceed sample peaks by a few dB at most); below that the sample peak is returned.
    """
    audio = np.asarray(audio, dtype=np.float32)
    return _stream_true_peak(array_reader(audio), audio.shape[-1], floor_db)


def _stream_true_peak(read: Reader, n: int, floor_db: float = -9.0) -> float:
    """:func:`true_peak` of ``n`` samples given as a :data:`Reader` (mono or channels)."""
    floor = 10 ** (floor_db / 20)
    peak = 0.0
    for lo in range(0, max(n, 1), CHUNK):
        hi = min(lo + CHUNK, n)
        local = read(lo - _PEAK_CONTEXT, hi + _PEAK_CONTEXT)
        peak = max(peak, float(np.max(_peaks(local, floor), initial=0.0)))
    return 20 * float(np.log10(peak + 1e-12))


def _peaks(local: np.ndarray, floor: float) -> np.ndarray:
    """Per sample of ``local`` without its :data:`_PEAK_CONTEXT` samples at either end: the
    largest absolute value of the 4x oversampled signal around it (of any channel), computed
    where a block's sample peak exceeds ``floor`` (elsewhere the sample value itself)."""
    from scipy.signal import upfirdn

    channels = local if local.ndim == 2 else local[None]
    length = channels.shape[1] - 2 * _PEAK_CONTEXT
    padded = -(-length // _PEAK_BLOCK) * _PEAK_BLOCK
    if padded > length:
        channels = np.pad(channels, ((0, 0), (0, padded - length)))
    inner = channels[:, _PEAK_CONTEXT : _PEAK_CONTEXT + padded]
    peaks = np.abs(inner).max(axis=0)
    blocks = peaks.reshape(-1, _PEAK_BLOCK)
    loud = np.flatnonzero(blocks.max(axis=1) > floor)
    if len(loud):
        width = _PEAK_BLOCK + 2 * _PEAK_CONTEXT
        starts = loud * _PEAK_BLOCK  # in `channels` these are the context starts
        windows = channels[:, starts[:, None] + np.arange(width)]  # (channels, blocks, width)
        delay = (_INTERPOLATOR_TAPS - 1) // 2  # the filter's delay, in oversampled samples
        up = upfirdn(_interpolator(), windows, OVERSAMPLE, axis=-1)[..., delay : delay + width * 4]
        up = np.abs(up).max(axis=0).reshape(len(loud), width, OVERSAMPLE).max(axis=2)
        blocks[loud] = np.maximum(blocks[loud], up[:, _PEAK_CONTEXT : _PEAK_CONTEXT + _PEAK_BLOCK])
    return peaks[:length]


@functools.lru_cache(maxsize=1)
def _interpolator() -> np.ndarray:
    """The 4x interpolation low-pass (Kaiser-windowed sinc, as resample_poly designs it), in
    float32 so that upfirdn runs in float32."""
    from scipy.signal import firwin

    taps = firwin(_INTERPOLATOR_TAPS, 1.0 / OVERSAMPLE, window=("kaiser", 5.0))
    return (taps * OVERSAMPLE).astype(np.float32)


class _PeakMeter:
    """The true peak of a signal fed a piece at a time, each with the samples after it."""

    def __init__(self, floor_db: float = -9.0) -> None:
        self.floor = 10 ** (floor_db / 20)
        self.before = np.zeros(_PEAK_CONTEXT, np.float32)
        self.peak = 0.0

    def feed(self, piece: np.ndarray, after: np.ndarray) -> None:
        local = np.concatenate([self.before, piece, after])
        self.peak = max(self.peak, float(np.max(_peaks(local, self.floor), initial=0.0)))
        self.before = np.concatenate([self.before, piece])[-_PEAK_CONTEXT:]

    def db(self) -> float:
        return 20 * float(np.log10(self.peak + 1e-12))


# --------------------------------------------------------------------------- limiter

LOOKAHEAD_MS = 1.5  # the limiter's gain ramps in over this before a peak, and out after it


def limiter_gain(
    audio: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS
) -> np.ndarray:
    """Per-sample gain of a look-ahead brick-wall limiter on true peaks: the reduction ramps
    in over ``lookahead_ms`` before a peak and out over the same time after it."""
    audio = np.asarray(audio, dtype=np.float32)
    limited = _Limited(array_reader(audio), 1.0, sample_rate, ceiling_db, lookahead_ms)
    return _collect(limited.gain, audio.shape[-1])


class _Limited:
    """A signal times ``scale``, through the look-ahead true-peak limiter, read piece by piece:
    each piece is computed from the signal around it (margins wider than the limiter's
    filters and the oversampling context), so the pieces join exactly."""

    def __init__(
        self, read: Reader, scale: float, sample_rate: int, ceiling_db: float,
        lookahead_ms: float = LOOKAHEAD_MS,
    ) -> None:  # fmt: skip
        self.read, self.scale = read, np.float32(scale)
        self.ceiling = np.float32(10 ** (ceiling_db / 20))
        self.half = max(int(lookahead_ms / 1000 * sample_rate), 1)
        self.margin = 2 * self.half + 2

    def pieces(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """``(signal x scale, limiter gain)`` for samples ``lo .. hi``."""
        from scipy.ndimage import minimum_filter1d, uniform_filter1d

        reach = self.margin + _PEAK_CONTEXT
        wide = self.read(lo - reach, hi + reach) * self.scale
        signal = wide[reach : reach + hi - lo]
        peaks = _peaks(wide, self.ceiling * 10 ** (-6 / 20))  # wide without the context
        needed = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))
        if np.all(needed >= 1.0):
            return signal, np.ones(hi - lo, np.float32)
        # Every sample within `half` of a peak is at most that peak's gain; averaging over a
        # window of `half` then cannot exceed it, and removes the steps.
        smooth = minimum_filter1d(needed.astype(np.float32), size=2 * self.half + 1)
        smooth = uniform_filter1d(smooth, size=self.half + 1)
        return signal, smooth[self.margin : self.margin + hi - lo]

    def gain(self, lo: int, hi: int) -> np.ndarray:
        return self.pieces(lo, hi)[1] * self.scale

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        signal, gain = self.pieces(lo, hi)
        return signal * gain


def _normalised(
    read: Reader, n: int, sample_rate: int, target_lufs: float, ceiling_db: float, copies: int
) -> _Limited:
    """``read`` scaled to ``target_lufs`` and limited to true peaks of at most ``ceiling_db``:
    the scale is corrected (the limiter lowers the loudness a little) until within 0.1 LU.
    Silence stays as it is."""
    current = stream_loudness(read, n, sample_rate, copies)
    limited = _Limited(read, 1.0, sample_rate, ceiling_db - 0.05)
    scale = 1.0
    for _ in range(3):
        if not np.isfinite(current):
            break
        scale *= 10 ** ((target_lufs - current) / 20)
        limited = _Limited(read, scale, sample_rate, ceiling_db - 0.05)
        current = stream_loudness(limited, n, sample_rate, copies)
        if abs(current - target_lufs) < 0.1:
            break
    return limited


def normalise(
    audio: np.ndarray, sample_rate: int, target_lufs: float, ceiling_db: float, copies: int = 1
) -> np.ndarray:
    """Per-sample gain that brings ``audio`` to ``target_lufs`` with true peaks at most
    ``ceiling_db``: a loudness gain, then the limiter, the gain corrected until within
    0.1 LU. All ones for silence. ``copies`` as in :func:`loudness`."""
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    limited = _normalised(array_reader(audio), n, sample_rate, target_lufs, ceiling_db, copies)
    return _collect(limited.gain, n)


# --------------------------------------------------------------------------- the mix


def _level(read: Reader, n: int, sample_rate: int, lufs: float) -> float:
    """The gain that brings a signal to ``lufs`` (1 for silence)."""
    current = stream_loudness(read, n, sample_rate)
    return 1.0 if not np.isfinite(current) else float(10 ** ((lufs - current) / 20))


class _Mixer:
    """The mix of two mono signals of ``n`` samples, computed a piece at a time."""

    def __init__(
        self, voice: Reader, music: Reader, n: int, sample_rate: int, params: MixParams,
        activity: Activity,
    ) -> None:  # fmt: skip
        self.voice, self.music, self.n, self.rate = voice, music, n, sample_rate
        self.channels = params.channels
        self.speech = activity.frames(voice, n, sample_rate, params)
        speech_lufs = stream_loudness(voice, n, sample_rate)
        level = 1.0
        if np.isfinite(speech_lufs):
            level = _level(music, n, sample_rate, speech_lufs + params.music_db)
        self.music_gain = _envelope_reader(_duck_envelope(self.speech, params), sample_rate, level)
        self.out = _normalised(
            self.combined, n, sample_rate, params.target_lufs, params.true_peak_db,
            params.channels,
        )  # fmt: skip

    def combined(self, lo: int, hi: int) -> np.ndarray:
        """Voice plus ducked music, before loudness normalisation (zeros outside the signal,
        as the readers give)."""
        return self.voice(lo, hi) + self.music(lo, hi) * self.music_gain(lo, hi)

    def pieces(self):
        """``(lo, hi, mix, gain)`` for every piece in order (``gain``: the normalisation's),
        measuring the mix on the way: :attr:`loudness_lufs` and :attr:`true_peak_db` are
        the whole mix's once the pieces are exhausted."""
        self._meter, self._peaks = _Meter(self.n, self.rate), _PeakMeter()
        for lo in range(0, self.n, CHUNK):
            hi = min(lo + CHUNK, self.n)
            signal, gain = self.out.pieces(lo, hi)
            signal *= gain
            self._meter.feed(signal)
            self._peaks.feed(signal, after=self.out(hi, hi + _PEAK_CONTEXT))
            yield lo, hi, signal, gain * self.out.scale

    @property
    def loudness_lufs(self) -> float:
        return _integrated(self._meter.block_powers() * self.channels)

    @property
    def true_peak_db(self) -> float:
        return self._peaks.db()


def _frame_levels(read: Reader, n: int, sample_rate: int) -> np.ndarray:
    """RMS in dB of every FRAME_S frame."""
    hop = int(FRAME_S * sample_rate)
    step = hop * (CHUNK // hop)
    levels = []
    for lo in range(0, n - n % hop, step):
        hi = min(lo + step, n - n % hop)
        frames = read(lo, hi).reshape(-1, hop)
        ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / hop  # no big copy
        levels.append(10 * np.log10(ms + 1e-20))
    return np.concatenate(levels) if levels else np.zeros(0)


def _activity(level: np.ndarray, threshold_db: float) -> np.ndarray:
    from scipy.ndimage import binary_closing, binary_opening

    if not np.any(level > -90):
        return np.zeros(len(level), dtype=bool)
    loud = np.percentile(level[level > -90], 95)
    active = level > max(loud + threshold_db, -60.0)
    active = binary_closing(active, structure=np.ones(15, bool))  # 150 ms
    return binary_opening(active, structure=np.ones(3, bool))  # drop 30 ms blips


def mix(
    voice: np.ndarray,
    music: np.ndarray,
    sample_rate: int,
    params: MixParams | None = None,
    segments: Sequence[tuple[float, float]] = (),
    speech: Sequence[tuple[float, float]] | None = None,
) -> MixResult:
    """Mix mono ``voice`` and ``music`` of the same length (see the module docstring).

    ``segments`` are the transcript's ``(start_s, end_s)``, used when ``params.activity``
    names ``"transcript"``; ``speech`` the voice-activity detector's spans, used when it names
    ``"vad"`` (``None``: the detector is run on ``voice``). :func:`mix_files` does the same
    from files to a file, in bounded memory.
    """
    params = params or MixParams()
    if voice.shape != music.shape or voice.ndim != 1:
        raise InputError(f"voice {voice.shape} and music {music.shape} must be mono, same length")
    n = len(voice)
    if speech is None and "vad" in params.sources:
        speech = vad.detect_array(voice, sample_rate)
    activity = Activity(segments, speech)
    mixer = _Mixer(array_reader(voice), array_reader(music), n, sample_rate, params, activity)
    combined, voice_gain = np.empty(n, np.float32), np.empty(n, np.float32)
    for lo, hi, piece, gain in mixer.pieces():
        combined[lo:hi], voice_gain[lo:hi] = piece, gain
    music_gain = _collect(mixer.music_gain, n) * voice_gain
    return MixResult(
        mix=np.broadcast_to(combined, (params.channels, n)), music_gain=music_gain,
        voice_gain=voice_gain, speech=mixer.speech, loudness_lufs=mixer.loudness_lufs,
        true_peak_db=mixer.true_peak_db,
    )  # fmt: skip


@dataclass(frozen=True)
class MixSummary:
    """What :func:`mix_files` measured of the mix it wrote."""

    path: Path
    speech: np.ndarray  # (frames,) bool, speech activity at FRAME_S resolution
    loudness_lufs: float
    true_peak_db: float


def mix_files(
    voice_path: str | os.PathLike[str],
    music_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    n_samples: int,
    params: MixParams | None = None,
    segments: Sequence[tuple[float, float]] = (),
    speech: Sequence[tuple[float, float]] | None = None,
) -> MixSummary:
    """:func:`mix` from a voice and a music file (WAV or FLAC, the same sample rate; each cut
    or padded with silence to ``n_samples``) to a PCM WAV ``out_path``, written atomically.

    Memory stays bounded whatever the length: every pass reads the files a piece at a time
    (the speech activity and the ducking envelope, 100 values a second, are all it keeps).
    ``speech=None`` with ``"vad"`` in ``params.activity``: the detector runs on the voice file.
    """

    params = params or MixParams()
    with AudioReader(voice_path, n_samples) as voice, AudioReader(music_path, n_samples) as music:
        if voice.sample_rate != music.sample_rate:
            raise InputError(
                f"{voice_path} is at {voice.sample_rate} Hz but {music_path} at "
                f"{music.sample_rate} Hz"
            )
        rate = voice.sample_rate
        if speech is None and "vad" in params.sources:
            speech = vad.detect_file(voice_path)
        mixer = _Mixer(voice, music, n_samples, rate, params, Activity(segments, speech))
        blocks = (piece for _, _, piece, _ in mixer.pieces())
        write_audio_blocks(out_path, blocks, rate, params.channels)
    return MixSummary(
        path=Path(out_path), speech=mixer.speech,
        loudness_lufs=mixer.loudness_lufs, true_peak_db=mixer.true_peak_db,
    )  # fmt: skip


# --------------------------------------------------------------------------- what is delivered


@dataclass(frozen=True)
class Delivered:
    """Loudness and true peak of a delivered file's audio, as a viewer's player decodes it."""

    loudness_lufs: float
    true_peak_db: float


def measure_file(path: str | os.PathLike[str]) -> Delivered:
    """Integrated loudness and true peak of a media file's first audio stream (AAC, Opus,
    ...), decoded by ffmpeg to a temporary float WAV and read a piece at a time (memory stays
    flat), at the stream's own rate and channels."""
    import tempfile

    import soundfile as sf

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        media.run_ffmpeg(
            ["-y", "-i", str(path), "-map", "0:a:0", "-c:a", "pcm_f32le", str(wav)],
            path, "decoding the delivered audio",
        )  # fmt: skip
        with sf.SoundFile(wav) as decoded:
            return _measured_file(decoded)


def _measured_file(decoded) -> Delivered:
    n, rate = decoded.frames, decoded.samplerate

    def read(lo: int, hi: int) -> np.ndarray:  # (channels, hi - lo), zeros outside
        out = np.zeros((decoded.channels, max(hi - lo, 0)), np.float32)
        start, stop = max(lo, 0), min(hi, n)
        if stop > start:
            decoded.seek(start)
            out[:, start - lo : stop - lo] = decoded.read(stop - start, "float32", True).T
        return out

    powers = sum(
        _measured(lambda lo, hi, c=c: read(lo, hi)[c], n, rate).block_powers()
        for c in range(decoded.channels)
    )
    return Delivered(_integrated(powers), _stream_true_peak(read, n))
