"""Procedural music by emotion: numpy/scipy synthesis, deterministic by seed, no model weights.

Each emotion label has a :class:`Style` (the table is in :mod:`videobgm.synth.styles`): metre,
tempo, key, chord progression, and parts (drums, bass, chords, arpeggio, melody, drone) played
by the instruments of :mod:`videobgm.synth.instruments`, with per-part saturation,
tempo-locked tremolo and low-pass, a reverb and a soft limiter. Every tempo fits a whole number
of bars into one 5.12 s clip (one riffusion image), so clips loop and chain on the beat. Audio
is mono float32, peak below 1; the same arguments give the same samples, bit for bit.

Uses: each emotion's seed clip for riffusion img2img (:func:`clip`), the ``procedural`` music
backend, the synthetic mood-tagged catalogue and the demo's music (:func:`track`).

Seamless loops: one clip's notes are rendered with their tails (at most one more clip long)
and the tails are folded onto the clip's start, as if the previous repetition rang into it;
the reverb is a circular convolution. So ``np.tile(clip(...), k)`` has no seam at all, and
:func:`render`, which overlap-adds the same per-clip renders end to end, plays the same music
continuously across every bar.
"""

from __future__ import annotations

import argparse
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import signal

from videobgm import vocab
from videobgm.errors import InputError
from videobgm.media import write_audio
from videobgm.synth import instruments as ins
from videobgm.synth.styles import (
    EMOTIONS,
    EXTRA_STYLES,
    STEPS_PER_BEAT,
    STYLES,
    Part,
    Style,
    chord_notes,
    style_for,
)
from videobgm.vocab import CLIP_SECONDS, SAMPLE_RATE

__all__ = [  # the table's names are re-exported: `synth` is the one module callers need
    "CLIP_SECONDS",
    "DEFAULT_VARIATIONS",
    "EMOTIONS",
    "EXTRA_STYLES",
    "SAMPLE_RATE",
    "STEPS_PER_BEAT",
    "STYLES",
    "Part",
    "Style",
    "add_cli",
    "bar_times",
    "beat_times",
    "chord_notes",
    "clear_caches",
    "clip",
    "clip_samples",
    "render",
    "style_for",
    "track",
]

DEFAULT_VARIATIONS = (0, 1, 0, 2)  # the variation each successive clip of render() plays
_RENDER_BLOCK_CLIPS = 8  # render() reverberates and limits this many clips at a time
_VELOCITY = {"x": 1.0, "o": 0.55, "?": 0.8}  # rhythm marks; "?" plays or not, by seed


# --- arranging: from a style to notes ---------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    samples: int  # samples per clip
    steps: int  # grid steps per clip
    steps_per_bar: int

    def at(self, step: float) -> int:
        return round(step * self.samples / self.steps)


@dataclass(frozen=True)
class _Context:
    style: Style
    part: Part
    grid: _Grid
    variation: int
    motif: np.random.Generator  # seed-level choices, shared by all variations (melody rhythm)
    vary: np.random.Generator  # choices that change with the variation (pitches, fills)

    def chord_at(self, step: int) -> tuple[int, tuple[int, ...]]:
        slot = step * len(self.style.progression) // self.grid.steps
        return chord_notes(self.style.progression[slot])

    @property
    def base_midi(self) -> int:
        return 12 * (self.part.octave + 1)


def _onsets(rhythm: str, grid: _Grid, rng: np.random.Generator) -> list[tuple[int, float]]:
    hits = []
    for bar in range(grid.steps // grid.steps_per_bar):
        for i, mark in enumerate(rhythm):
            maybe = rng.random() if mark == "?" else 0.0
            if mark in "xo" or (mark == "?" and maybe < 0.5):
                hits.append((bar * grid.steps_per_bar + i, _VELOCITY[mark]))
    return hits


def _lengths(hits: list[tuple[int, float]], part: Part, total: int) -> list[float]:
    if part.length_steps:
        return [part.length_steps] * len(hits)
    starts = [step for step, _ in hits] + [total]
    return [float(b - a) for a, b in zip(starts, starts[1:], strict=False)]


def _voicing(ctx: _Context, root: int, intervals: tuple[int, ...]) -> list[int]:
    """Chord tones (MIDI) in close position from the part's register, inverted by variation."""
    low = ctx.base_midi + (root - ctx.base_midi) % 12
    if ctx.part.voicing == "power":
        return [low, low + 7, low + 12]
    notes = sorted(ctx.base_midi + (root + i - ctx.base_midi) % 12 for i in intervals)
    for _ in range(ctx.variation % len(notes)):
        notes = notes[1:] + [notes[0] + 12]
    return notes


Note = tuple[float, float, float, float]  # start step, length in steps, MIDI pitch, velocity


def _chord_notes(ctx: _Context) -> Iterator[Note]:
    slot = ctx.grid.steps // len(ctx.style.progression)
    if ctx.part.rhythm:
        hits = _onsets(ctx.part.rhythm, ctx.grid, ctx.vary)
        lengths = _lengths(hits, ctx.part, ctx.grid.steps)
    else:
        hits = [(k * slot, 1.0) for k in range(len(ctx.style.progression))]
        lengths = [float(slot)] * len(hits)
    for (step, velocity), length in zip(hits, lengths, strict=True):
        chord = _voicing(ctx, *ctx.chord_at(step))
        for midi in chord:
            yield step, length, midi, velocity / math.sqrt(len(chord))


def _arp_order(count: int, variation: int, rng: np.random.Generator) -> list[int]:
    kind = variation % 4
    if kind == 0:
        return list(range(count))
    if kind == 1:
        return list(range(count)) + list(range(count - 2, 0, -1))
    if kind == 2:
        return [i + d for i in range(count - 2) for d in (0, 2)]  # broken thirds
    return list(rng.permutation(count))


def _arp_notes(ctx: _Context) -> Iterator[Note]:
    hits = _onsets(ctx.part.rhythm, ctx.grid, ctx.vary)
    lengths = _lengths(hits, ctx.part, ctx.grid.steps)
    count, current = 0, None
    for (step, velocity), length in zip(hits, lengths, strict=True):
        chord = ctx.chord_at(step)
        if chord != current:
            count, current = 0, chord
            tones = _voicing(ctx, *chord)
            tones = tones + [t + 12 for t in tones]
            order = _arp_order(len(tones), ctx.variation, ctx.vary)
        yield step, length, tones[order[count % len(order)]], velocity
        count += 1


def _bass_notes(ctx: _Context) -> Iterator[Note]:
    hits = _onsets(ctx.part.rhythm, ctx.grid, ctx.vary)
    lengths = _lengths(hits, ctx.part, ctx.grid.steps)
    for (step, velocity), length in zip(hits, lengths, strict=True):
        root, _ = ctx.chord_at(step)
        midi = ctx.base_midi + (root - ctx.base_midi) % 12
        if velocity < 1.0:  # soft hits leave the root: octave or fifth, by variation
            midi += 12 if ctx.variation % 2 == 0 else 7
        yield step, length, midi, velocity


def _melody_notes(ctx: _Context) -> Iterator[Note]:
    """A random walk on the scale that lands on chord tones on the beat."""
    style = ctx.style
    pool = [ctx.base_midi + style.tonic_pc + s + 12 * o for o in (0, 1) for s in style.scale]
    hits = _onsets(ctx.part.rhythm, ctx.grid, ctx.motif)
    pos = len(pool) // 2
    lengths = _lengths(hits, ctx.part, ctx.grid.steps)
    for (step, velocity), length in zip(hits, lengths, strict=True):
        if step % STEPS_PER_BEAT == 0:
            root, intervals = ctx.chord_at(step)
            tones = {(root + i) % 12 for i in intervals}
            near = [j for j, m in enumerate(pool) if m % 12 in tones and abs(j - pos) <= 3]
            pos = near[ctx.vary.integers(len(near))] if near else pos
        else:
            pos = int(np.clip(pos + ctx.vary.choice((-2, -1, -1, 1, 1, 2)), 0, len(pool) - 1))
        yield step, length, pool[pos], velocity


def _drone_notes(ctx: _Context) -> Iterator[Note]:
    for offset in ctx.part.notes:
        yield 0, ctx.grid.steps, ctx.base_midi + ctx.style.tonic_pc + offset, 1.0


_ARRANGERS = {
    "chords": _chord_notes,
    "arp": _arp_notes,
    "bass": _bass_notes,
    "melody": _melody_notes,
    "drone": _drone_notes,
}


# --- rendering: notes to audio ------------------------------------------------------------------


def _rng(style: Style, seed: int, part_index: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(style.name.encode()), part_index, *more])


def _note_filter(part: Part) -> float:
    """A part's low-pass cutoff when it can be applied note by note (a linear chain: no
    drive or tremolo before it), so that cached notes come filtered; else 0."""
    return part.lowpass_hz if not (part.drive or part.tremolo_depth) else 0.0


def _part_waves(ctx: _Context, sample_rate: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, waveform) of every note or hit of one part in one clip."""
    part, grid = ctx.part, ctx.grid
    if part.role == "drum":
        hit = ins.drum_sample(part.instrument, sample_rate)
        for step, velocity in _onsets(part.rhythm, grid, ctx.vary):
            yield grid.at(step), np.float32(velocity) * hit
        return
    lock_s = CLIP_SECONDS if part.role == "drone" else 0.0  # drones repeat in phase per clip
    cutoff = _note_filter(part)
    for step, length, midi, velocity in _ARRANGERS[part.role](ctx):
        cents = 0.0
        if part.detune_cents:  # in 5-cent steps, so that detuned notes are cached too
            cents = 5.0 * round(ctx.vary.uniform(-part.detune_cents, part.detune_cents) / 5)
        start = grid.at(step)
        freq = ins.midi_hz(midi + cents / 100)
        n_on = grid.at(step + length) - start
        yield (
            start,
            ins.note_wave(part.instrument, freq, n_on, velocity, sample_rate, lock_s, cutoff),
        )


def _effects(bus: np.ndarray, part: Part, style: Style, sample_rate: int) -> np.ndarray:
    """The part's bus chain: saturation, then tremolo, then low-pass (if not done per note)."""
    if part.drive:
        bus = ins.saturate(bus, part.drive)
    if part.tremolo_depth:
        rate_hz = part.tremolo_per_beat / style.seconds_per_beat  # whole cycles per clip
        bus = bus * ins.tremolo(len(bus), rate_hz, part.tremolo_depth, sample_rate)
    if part.lowpass_hz and not _note_filter(part):
        bus = ins.lowpass(bus, part.lowpass_hz, sample_rate)
    return bus


@lru_cache(maxsize=32)
def _cycle(style: Style, seed: int, variation: int, sample_rate: int) -> np.ndarray:
    """One clip's dry mix with its tails: two clips long, before level and reverb (read-only
    float32). Parts with bus effects get a bus; the others are mixed directly."""
    samples = clip_samples(sample_rate)
    steps_per_bar = style.beats_per_bar * STEPS_PER_BEAT
    grid = _Grid(samples, steps_per_bar * style.bars_per_clip, steps_per_bar)
    mix = np.zeros(2 * samples, dtype=np.float32)
    for index, part in enumerate(style.parts):
        motif, vary = _rng(style, seed, index), _rng(style, seed, index, variation + 1)
        ctx = _Context(style, part, grid, variation, motif, vary)
        gain = np.float32(10 ** (part.gain_db / 20))
        direct = not (part.drive or part.tremolo_depth or (part.lowpass_hz and part.role == "drum"))
        bus = mix if direct else np.zeros_like(mix)
        used = 0
        for start, wave in _part_waves(ctx, sample_rate):
            end = min(start + len(wave), len(bus))
            bus[start:end] += gain * wave[: end - start] if direct else wave[: end - start]
            used = max(used, end)
        if not direct:
            used = min(len(bus), used + round(0.02 * sample_rate))  # room for the filter's ring
            mix[:used] += gain * _effects(bus[:used], part, style, sample_rate)
    mix.flags.writeable = False
    return mix


def _looped(style: Style, seed: int, variation: int, sample_rate: int) -> np.ndarray:
    """One clip as if it had always been looping: tails folded in, circular reverb."""
    samples = clip_samples(sample_rate)
    cycle = _cycle(style, seed, variation, sample_rate)
    dry = cycle[:samples] + cycle[samples:]
    kernel = ins.circular_reverb_kernel(style.reverb_s, style.reverb_wet, samples, sample_rate)
    return scipy.fft.irfft(scipy.fft.rfft(dry) * kernel, samples)


@lru_cache(maxsize=32)
def _level_gain(style: Style, sample_rate: int) -> float:
    """The gain that puts seed 0, variation 0 at the style's RMS level; used for every seed and
    variation so that clips of one style join without level jumps."""
    rms = float(np.sqrt(np.mean(np.square(_looped(style, 0, 0, sample_rate), dtype=np.float64))))
    return 10 ** (style.level_db / 20) / rms


def _check_ints(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise InputError(f"{key} must be a non-negative integer, not {value!r}")


def _check_rate(sample_rate: int) -> None:
    _check_ints(sample_rate=sample_rate)
    if not 8000 <= sample_rate <= 192000:
        raise InputError(f"sample_rate must be between 8000 and 192000 Hz, not {sample_rate}")


def clip_samples(sample_rate: int = SAMPLE_RATE) -> int:
    """Samples in one clip: ``round(CLIP_SECONDS * sample_rate)`` (225792 at 44.1 kHz)."""
    return round(CLIP_SECONDS * sample_rate)


def clip(
    emotion: str | Style, seed: int = 0, variation: int = 0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """One loopable 5.12 s clip (mono float32, read-only, cached): ``np.tile`` of it is seamless.

    ``variation`` changes melody, voicing and fills but keeps the tempo, key and progression,
    so clips of one emotion chain on the beat in any order. Peak below 1.
    """
    style = style_for(emotion)
    _check_ints(seed=seed, variation=variation)
    _check_rate(sample_rate)
    return _clip(style, int(seed), int(variation), int(sample_rate))


@lru_cache(maxsize=128)
def _clip(style: Style, seed: int, variation: int, sample_rate: int) -> np.ndarray:
    gain = np.float32(_level_gain(style, sample_rate))
    out = ins.limit(gain * _looped(style, seed, variation, sample_rate)).astype(np.float32)
    out.flags.writeable = False
    return out


def _sample_count(seconds: float, sample_rate: int) -> int:
    if not isinstance(seconds, int | float | np.number) or not math.isfinite(seconds):
        raise InputError(f"seconds must be a finite number, not {seconds!r}")
    if seconds < 0:
        raise InputError(f"seconds must not be negative, not {seconds}")
    return round(seconds * sample_rate)


def _fade_out(audio: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    n = min(len(audio), round(max(seconds, 0.0) * sample_rate))
    if n:
        audio[-n:] *= 0.5 * (1 + np.cos(np.pi * np.arange(1, n + 1) / n))  # ends at exactly 0
    return audio


def render(
    emotion: str | Style,
    seconds: float,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    *,
    variations: Sequence[int] = DEFAULT_VARIATIONS,
    fade_out_s: float = 1.0,
) -> np.ndarray:
    """``round(seconds * sample_rate)`` samples of music (mono float32, peak below 1).

    Successive 5.12 s clips play ``variations`` in turn; notes and reverb ring on across the
    joins (the same music as :func:`clip`, rendered continuously), and the last
    ``fade_out_s`` seconds fade to silence so that the track ends cleanly.
    """
    style = style_for(emotion)
    _check_rate(sample_rate)
    _check_ints(seed=seed, **{f"variations[{i}]": v for i, v in enumerate(variations)})
    n = _sample_count(seconds, sample_rate)
    if not variations:
        raise InputError("variations must name at least one variation")
    samples = clip_samples(sample_rate)
    cycles = -(-n // samples)
    dry = np.zeros((cycles + 1) * samples, dtype=np.float32)
    for k in range(cycles):
        variation = int(variations[k % len(variations)])
        dry[k * samples : (k + 2) * samples] += _cycle(style, int(seed), variation, sample_rate)
    # Reverb, level and limiter block by block: memory stays ~2 x the output for any length.
    out = dry[:n].copy()
    ir = ins.impulse_response(style.reverb_s, sample_rate).astype(np.float32)
    block = _RENDER_BLOCK_CLIPS * samples
    for start in range(0, n, block):
        wet = signal.oaconvolve(dry[start : min(start + block, n)], ir)[: n - start]
        out[start : start + len(wet)] += np.float32(style.reverb_wet) * wet
    gain = np.float32(_level_gain(style, sample_rate))
    for start in range(0, n, block):
        out[start : start + block] = ins.limit(gain * out[start : start + block])
    return _fade_out(out, fade_out_s, sample_rate)


def track(
    mood_or_emotion: str | Style,
    seconds: float,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    level_db: float | None = None,
    fade_out_s: float = 2.0,
) -> np.ndarray:
    """A whole piece for an emotion label or a dataset mood (``happy``, ``funny``, ``weird``...):
    :func:`render` with a longer fade-out, optionally at RMS ``level_db`` dBFS (e.g. -30 for
    quiet background music). Mono float32, exactly ``round(seconds * sample_rate)`` samples."""
    audio = render(mood_or_emotion, seconds, seed, sample_rate, fade_out_s=fade_out_s)
    if level_db is not None and audio.size:
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms > 0:
            audio = ins.limit(audio * (10 ** (level_db / 20) / rms)).astype(np.float32)
    return audio


def clear_caches() -> None:
    """Forget every cached clip, note and reverb (memory back; results stay identical)."""
    for cached in (_clip, _cycle, _level_gain, ins.note_wave, ins.drum_sample, ins.wavetable):
        cached.cache_clear()
    for cached in (ins.impulse_response, ins.circular_reverb_kernel, ins.tremolo):
        cached.cache_clear()


def beat_times(emotion: str | Style, seconds: float) -> np.ndarray:
    """Beat onsets in seconds from 0 up to (not including) ``seconds``: the grid that clips of
    this emotion join on (the first beat of every clip is one of them)."""
    style = style_for(emotion)
    return np.arange(math.ceil(seconds / style.seconds_per_beat - 1e-9)) * style.seconds_per_beat


def bar_times(emotion: str | Style, seconds: float) -> np.ndarray:
    """Bar starts (downbeats) in seconds from 0 up to (not including) ``seconds``."""
    style = style_for(emotion)
    return np.arange(math.ceil(seconds / style.seconds_per_bar - 1e-9)) * style.seconds_per_bar


# --- command line -------------------------------------------------------------------------------


def add_cli(subparsers) -> None:
    """``videobgm synth EMOTION --seconds S -o out.wav [--seed N]``."""
    table = "\n".join(f"  {name:9} {style.summary}" for name, style in STYLES.items())
    parser = subparsers.add_parser(
        "synth",
        help="render procedural music for an emotion (no model weights)",
        description=(
            "Render copyright-free procedural music for one emotion: numpy synthesis, "
            "deterministic by seed, mono 44.1 kHz, ending with a fade-out."
        ),
        epilog=(
            f"emotions:\n{table}\n"
            f"dataset moods are accepted too: {', '.join(vocab.DATASET_MOODS)}\n\n"
            "example: videobgm synth joy --seconds 30 -o joy.wav --seed 3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("emotion", metavar="EMOTION", help=f"one of: {', '.join(EMOTIONS)}")
    parser.add_argument("--seconds", type=float, required=True, help="length in seconds (exact)")
    parser.add_argument("-o", "--output", required=True, help="output file (.wav or .flac)")
    parser.add_argument("--seed", type=int, default=0, help="melody, voicing and fills (default 0)")
    parser.add_argument("--level-db", type=float, default=None, help="RMS level in dBFS")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="Hz (default 44100)")
    parser.set_defaults(func=_cli_synth)


def _cli_synth(args) -> int:
    style = style_for(args.emotion)
    audio = track(args.emotion, args.seconds, args.seed, args.sample_rate, args.level_db)
    path = write_audio(args.output, audio, args.sample_rate)
    print(f"{path}: {len(audio) / args.sample_rate:.3f} s of {style.name} ({style.summary})")
    return 0
