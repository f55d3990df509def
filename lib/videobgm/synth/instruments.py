"""The procedural synthesiser's instruments: wavetable voices, drums, reverb, limiter.

Building blocks for :mod:`videobgm.synth` (the arranging; the table is
:mod:`videobgm.synth.styles`): every function returns float arrays at a given sample rate and
is deterministic (drum and reverb noise come from fixed seeds). Notes and drum hits are
cached, read-only, because an arrangement repeats them many times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import signal

TABLE_SIZE = 4096  # samples in one wavetable period (a power of two: indices wrap with a mask)
VIBRATO_HZ = 26 / 5.12  # 26 cycles per 5.12 s clip (about 5.1 Hz), so vibrato repeats per clip
_HARMONIC_LEVELS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # band limits, harmonics
_NYQUIST_MARGIN = 0.45  # keep every harmonic below 0.45 * sample rate (no audible aliasing)


def _harmonics(wave: str, count: int) -> dict[int, float]:
    """Amplitude of each harmonic 1..count of a named waveform."""
    ks = range(1, count + 1)
    shapes = {
        "sine": {1: 1.0},
        "saw": {k: 1.0 / k for k in ks},
        "square": {k: 1.0 / k for k in ks if k % 2},
        "triangle": {k: (-1.0) ** (k // 2) / k**2 for k in ks if k % 2},
        "organ": {1: 1.0, 2: 0.5, 3: 0.35, 4: 0.25, 6: 0.12, 8: 0.08},
        "piano": {k: 1.0 / k**1.8 for k in ks if k <= 12},
        "reed": {k: (1.0 if k % 2 else 0.35) / k for k in ks if k <= 24},
        "flute": {1: 1.0, 2: 0.25, 3: 0.1},
    }
    if wave not in shapes:
        raise ValueError(f"unknown waveform {wave!r}")
    return {k: a for k, a in shapes[wave].items() if k <= count}


@lru_cache(maxsize=128)
def wavetable(wave: str, harmonics: int) -> np.ndarray:
    """One period of ``wave`` with at most ``harmonics`` partials, peak 1 (read-only)."""
    x = np.arange(TABLE_SIZE) / TABLE_SIZE
    table = np.zeros(TABLE_SIZE)
    for k, amp in _harmonics(wave, harmonics).items():
        table += amp * np.sin(2 * np.pi * k * x)
    table = (table / np.max(np.abs(table))).astype(np.float32)
    table.flags.writeable = False
    return table


def _band_limit(freq: float, sample_rate: int) -> int:
    allowed = _NYQUIST_MARGIN * sample_rate / max(freq, 1e-6)
    fitting = [h for h in _HARMONIC_LEVELS if h <= allowed]
    return fitting[-1] if fitting else 1


_PHASE_BITS = 32  # phase accumulator: a uint32 that wraps once per cycle
_INDEX_SHIFT = _PHASE_BITS - int(math.log2(TABLE_SIZE))


@lru_cache(maxsize=16)
def _vibrato_curve(n: int, sample_rate: int) -> np.ndarray:
    """Phase offset (cycles per Hz of depth) of a sine frequency modulation at VIBRATO_HZ."""
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
    omega = np.float32(2 * np.pi * VIBRATO_HZ)
    curve = (1 - np.cos(omega * t)) / omega
    curve.flags.writeable = False
    return curve


def _phases(freq: float, n: int, sample_rate: int, vibrato_cents: float) -> np.ndarray:
    """Fixed-point phases (uint32, one cycle = 2**32) of an oscillator starting at phase 0."""
    step = np.uint32(round(freq / sample_rate * 2**_PHASE_BITS) % 2**_PHASE_BITS)
    phase = np.arange(n, dtype=np.uint32) * step  # wraps modulo 2**32, like an accumulator
    if vibrato_cents:
        depth = freq * (2 ** (vibrato_cents / 1200) - 1) * 2.0**_PHASE_BITS
        curve = _vibrato_curve(_round_up(n), sample_rate)[:n]
        phase += (curve * np.float32(depth)).astype(np.int64).astype(np.uint32)
    return phase


def _round_up(n: int, block: int = 1 << 16) -> int:
    """Lengths rounded up so that cached curves serve many note lengths."""
    return -(-n // block) * block


def oscillator(
    wave: str, freq: float, n: int, sample_rate: int, vibrato_cents: float = 0.0
) -> np.ndarray:
    """``n`` float32 samples of a band-limited ``wave`` at ``freq`` Hz starting at phase 0.

    ``"bell"`` is inharmonic (partials 1, 2, 2.76, 5.4, the higher ones dying faster).
    Vibrato is a frequency modulation at :data:`VIBRATO_HZ` of ``vibrato_cents`` depth.
    """
    if wave == "bell":
        t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
        out = np.zeros(n, dtype=np.float32)
        for ratio, amp in ((1.0, 1.0), (2.0, 0.45), (2.76, 0.4), (5.4, 0.2)):
            if ratio * freq < _NYQUIST_MARGIN * sample_rate:
                partial = oscillator("sine", ratio * freq, n, sample_rate, vibrato_cents)
                out += np.float32(amp) * partial * np.exp(t * np.float32(-ratio / 1.2))
        return out
    table = wavetable(wave, _band_limit(freq, sample_rate))
    return table[_phases(freq, n, sample_rate, vibrato_cents) >> np.uint32(_INDEX_SHIFT)]


@dataclass(frozen=True)
class Timbre:
    """How one pitched instrument sounds: waveform(s) and an ADSR envelope (seconds)."""

    wave: str
    attack_s: float
    decay_s: float  # time constant of the exponential fall from peak to ``sustain``
    sustain: float  # level held while the note is on (0: percussive, dies away)
    release_s: float  # linear fade after the note ends
    voices: int = 1  # detuned unison copies (chorus)
    spread_cents: float = 0.0  # detune between the outermost unison copies / 2
    vibrato_cents: float = 0.0
    layer: str = ""  # optional second waveform with its own decay (brightness that fades)
    layer_gain: float = 0.0
    layer_decay_s: float = 1.0


TIMBRES = {
    "pluck": Timbre(
        "saw", 0.002, 0.16, 0.0, 0.06, layer="triangle", layer_gain=0.7, layer_decay_s=0.45
    ),
    "piano": Timbre("piano", 0.003, 0.7, 0.0, 0.3, layer="sine", layer_gain=0.6, layer_decay_s=1.8),
    "pad": Timbre("saw", 0.35, 1.5, 0.75, 0.9, voices=3, spread_cents=12),
    "warm": Timbre("organ", 0.6, 2.0, 0.8, 1.2, voices=2, spread_cents=6),
    "strings": Timbre("saw", 0.2, 1.0, 0.85, 0.5, voices=3, spread_cents=10, vibrato_cents=12),
    "drone": Timbre("organ", 1.0, 1.0, 1.0, 1.0, voices=2, spread_cents=6),
    "sour": Timbre("saw", 0.15, 1.0, 0.8, 0.4, voices=3, spread_cents=30, vibrato_cents=25),
    "bass": Timbre(
        "triangle", 0.004, 0.3, 0.45, 0.06, layer="saw", layer_gain=0.25, layer_decay_s=0.08
    ),
    "sub": Timbre("sine", 0.01, 1.0, 0.9, 0.25, layer="triangle", layer_gain=0.3),
    "distbass": Timbre("saw", 0.003, 0.3, 0.7, 0.04),
    "power": Timbre("saw", 0.003, 0.35, 0.6, 0.05, voices=2, spread_cents=8),
    "lead": Timbre("square", 0.01, 0.4, 0.6, 0.08, vibrato_cents=15),
    "bell": Timbre("bell", 0.002, 1.5, 0.0, 0.4),
    "glock": Timbre("sine", 0.002, 0.5, 0.0, 0.2, layer="organ", layer_gain=0.3, layer_decay_s=0.1),
    "pizz": Timbre(
        "triangle", 0.002, 0.1, 0.0, 0.03, layer="saw", layer_gain=0.3, layer_decay_s=0.03
    ),
    "marimba": Timbre(
        "sine", 0.002, 0.25, 0.0, 0.05, layer="organ", layer_gain=0.4, layer_decay_s=0.05
    ),
    "reed": Timbre("reed", 0.02, 0.3, 0.7, 0.06),
    "flute": Timbre("flute", 0.08, 1.0, 0.8, 0.25, vibrato_cents=15),
}


def envelope(
    n_on: int, sample_rate: int, attack_s: float, decay_s: float, sustain: float, release_s: float
) -> np.ndarray:
    """ADSR gain for a note held ``n_on`` samples, then released (length ``n_on`` + release).

    The attack and release are linear and of equal slope when equally long, so a note and its
    own repetition one period later cross-fade to a constant level (what drones rely on).
    """
    n_release = max(1, round(release_s * sample_rate))
    t = np.arange(n_on + n_release, dtype=np.float32) / np.float32(sample_rate)
    attack = np.float32(max(attack_s, 1e-3))
    fall = np.exp(np.maximum(t - attack, 0) * np.float32(-1 / decay_s))
    env = np.float32(sustain) + np.float32(1 - sustain) * fall
    env *= np.minimum(t / attack, np.float32(1))
    env[n_on:] *= 1 - np.arange(n_release, dtype=np.float32) / np.float32(n_release)
    return env


def midi_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@lru_cache(maxsize=1024)
def note_wave(
    instrument: str,
    freq: float,
    n_on: int,
    velocity: float,
    sample_rate: int,
    lock_s: float = 0.0,
    lowpass_hz: float = 0.0,
) -> np.ndarray:
    """One note of ``instrument`` at ``freq`` Hz held ``n_on`` samples, with its release tail.

    With ``lock_s`` every oscillator has a whole number of cycles in ``lock_s`` seconds (see
    :func:`lock_frequency`); with ``lowpass_hz`` the note is low-pass filtered (10 ms longer,
    for the filter's ring). Peak about ``velocity``; read-only float32 (cached: arrangements
    repeat notes).
    """
    tb = TIMBRES[instrument]
    env = envelope(n_on, sample_rate, tb.attack_s, tb.decay_s, tb.sustain, tb.release_s)
    n = len(env)
    spreads = np.linspace(-tb.spread_cents, tb.spread_cents, tb.voices) if tb.voices > 1 else [0]
    freqs = [freq * 2 ** (c / 1200) for c in spreads]
    if lock_s:
        freqs = [lock_frequency(f, lock_s) for f in freqs]
    tone = sum(oscillator(tb.wave, f, n, sample_rate, tb.vibrato_cents) for f in freqs)
    tone = tone / np.float32(len(freqs))
    wave = tone * env
    if tb.layer and tb.layer_gain:
        env2 = envelope(n_on, sample_rate, tb.attack_s, tb.layer_decay_s, tb.sustain, tb.release_s)
        layer = oscillator(tb.layer, freqs[len(freqs) // 2], n, sample_rate)
        wave = (wave + np.float32(tb.layer_gain) * layer * env2) / np.float32(1 + tb.layer_gain)
    out = np.float32(velocity) * wave
    if lowpass_hz:
        out = lowpass(np.pad(out, (0, round(0.01 * sample_rate))), lowpass_hz, sample_rate)
    out = out.astype(np.float32)
    out.flags.writeable = False
    return out


def lock_frequency(freq: float, period_s: float) -> float:
    """The nearest frequency with a whole number of cycles in ``period_s`` (at most ~0.1 Hz
    away for 5.12 s): a note repeated every period then restarts exactly in phase."""
    return max(1, round(freq * period_s)) / period_s


# --- drums ----------------------------------------------------------------------------------


def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def _band(x: np.ndarray, low: float, high: float, sample_rate: int) -> np.ndarray:
    high = min(high, 0.45 * sample_rate)
    sos = signal.butter(2, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _kick(t: np.ndarray, sr: int, low_hz: float = 45.0, sweep_hz: float = 110.0) -> np.ndarray:
    freq = low_hz + sweep_hz * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.16)
    click = _band(_noise(len(t), 1), 1500, 6000, sr) * np.exp(-t / 0.004) * 0.15
    return body + click


def _snare(t: np.ndarray, sr: int) -> np.ndarray:
    rattle = _band(_noise(len(t), 2), 1500, 9000, sr) * np.exp(-t / 0.09)
    tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
    return 0.7 * rattle / np.max(np.abs(rattle)) + 0.5 * tone


def _clap(t: np.ndarray, sr: int) -> np.ndarray:
    bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
    tail = np.exp(-t / 0.09)
    noise = _band(_noise(len(t), 3), 900, 3500, sr)
    return noise * np.maximum(bursts, 0.6 * tail) / np.max(np.abs(noise))


def _hat(t: np.ndarray, sr: int, decay_s: float) -> np.ndarray:
    noise = _band(_noise(len(t), 4), 6000, 16000, sr)
    return noise / np.max(np.abs(noise)) * np.exp(-t / decay_s)


def _rim(t: np.ndarray, sr: int) -> np.ndarray:
    return (np.sin(2 * np.pi * 1250 * t) + 0.6 * np.sin(2 * np.pi * 820 * t)) * np.exp(-t / 0.025)


def _shaker(t: np.ndarray, sr: int) -> np.ndarray:
    noise = _band(_noise(len(t), 5), 4000, 12000, sr)
    swell = np.minimum(t / 0.02, 1.0) * np.exp(-t / 0.05)
    return noise / np.max(np.abs(noise)) * swell


_DRUMS = {  # name: (length in seconds, generator)
    "kick": (0.45, _kick),
    "heartbeat": (0.4, lambda t, sr: _kick(t, sr, 38.0, 40.0)),
    "snare": (0.3, _snare),
    "clap": (0.3, _clap),
    "hat": (0.12, lambda t, sr: _hat(t, sr, 0.025)),
    "openhat": (0.45, lambda t, sr: _hat(t, sr, 0.14)),
    "rim": (0.15, _rim),
    "shaker": (0.25, _shaker),
}
DRUMS = tuple(_DRUMS)


@lru_cache(maxsize=64)
def drum_sample(name: str, sample_rate: int) -> np.ndarray:
    """One hit of drum ``name``, peak 1, with a 1 ms fade-in (no click); read-only float32."""
    seconds, make = _DRUMS[name]
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    hit = make(t, sample_rate)
    hit *= np.minimum(t / 0.001, 1.0) * np.minimum((t[-1] - t) / 0.01, 1.0)
    hit = (hit / np.max(np.abs(hit))).astype(np.float32)
    hit.flags.writeable = False
    return hit


# --- effects ----------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def impulse_response(rt60_s: float, sample_rate: int) -> np.ndarray:
    """A small room/hall: exponentially decaying noise (60 dB down after ``rt60_s``), highs
    dying faster than lows, 15 ms pre-delay, unit energy. Read-only float64."""
    n = round(rt60_s * sample_rate)
    t = np.arange(n) / sample_rate
    noise = _noise(n, 6)
    dark = signal.sosfilt(signal.butter(2, 2500, fs=sample_rate, output="sos"), noise)
    ir = dark * np.exp(-6.91 * t / rt60_s) + 0.5 * noise * np.exp(-6.91 * t / (0.35 * rt60_s))
    predelay = round(0.015 * sample_rate)
    ir = np.concatenate([np.zeros(predelay), ir * np.minimum(t / 0.005, 1.0)])
    ir /= math.sqrt(float(np.sum(ir**2)))
    ir.flags.writeable = False
    return ir


@lru_cache(maxsize=32)
def circular_reverb_kernel(rt60_s: float, wet: float, n: int, sample_rate: int) -> np.ndarray:
    """rfft of (dry impulse + ``wet`` x reverb), folded to period ``n``: multiplying a
    periodic signal's spectrum by it reverberates it as if it had always been playing."""
    ir = impulse_response(rt60_s, sample_rate)
    periods = -(-len(ir) // n)
    folded = np.zeros(periods * n)
    folded[: len(ir)] = ir
    kernel = wet * scipy.fft.rfft(folded.reshape(periods, n).sum(axis=0))
    kernel = (kernel + 1.0).astype(np.complex64)
    kernel.flags.writeable = False
    return kernel


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """Soft clipping (tanh of ``drive`` x input), scaled so that full scale stays full scale:
    more drive means more harmonics and a flatter, louder-sounding signal."""
    return np.tanh(drive * x) / math.tanh(drive)


@lru_cache(maxsize=16)
def tremolo(n: int, rate_hz: float, depth: float, sample_rate: int) -> np.ndarray:
    """Gain curve between 1 - ``depth`` and 1, starting at 1 (cosine LFO); read-only float32."""
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
    curve = 1 - np.float32(depth / 2) * (1 - np.cos(np.float32(2 * np.pi * rate_hz) * t))
    curve.flags.writeable = False
    return curve


def lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    sos = _butter_lowpass(cutoff_hz, sample_rate)
    return signal.sosfilt(sos, x)


@lru_cache(maxsize=64)
def _butter_lowpass(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    return signal.butter(2, min(cutoff_hz, 0.45 * sample_rate), fs=sample_rate, output="sos")


LIMIT_KNEE = 0.5  # the limiter is transparent below this absolute level
LIMIT_CEILING = 0.97  # and never reaches this one


def limit(x: np.ndarray) -> np.ndarray:
    """Memoryless soft limiter: identity below :data:`LIMIT_KNEE`, then a tanh knee that
    approaches :data:`LIMIT_CEILING` (so the output never clips, and a periodic input stays
    periodic)."""
    mag = np.abs(x)
    room = LIMIT_CEILING - LIMIT_KNEE
    over = LIMIT_KNEE + room * np.tanh((mag - LIMIT_KNEE) / room)
    return np.where(mag > LIMIT_KNEE, np.sign(x) * over, x)
