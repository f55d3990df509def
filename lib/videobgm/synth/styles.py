"""The procedural synthesiser's musical table: one :class:`Style` per emotion label.

A style names a metre, a tempo (a whole number of bars per 5.12 s clip, so clips loop and chain
on the beat), a key and mode, a chord progression by chord names, a loudness, a reverb, and its
:class:`Part` s: which instrument plays what rhythm, in which register, through which effects.
:mod:`videobgm.synth` turns a style into audio. Variants are made with
``dataclasses.replace(STYLES["joy"], ...)`` and can be passed wherever an emotion name is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from videobgm import prompts, vocab
from videobgm.errors import InputError
from videobgm.prompts import EMOTIONS
from videobgm.synth import instruments as ins
from videobgm.vocab import CLIP_SECONDS

STEPS_PER_BEAT = 4  # rhythm grid: sixteenth notes

SCALES = {  # semitones above the tonic
    "major": (0, 2, 4, 5, 7, 9, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor (aeolian)
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "whole-tone": (0, 2, 4, 6, 8, 10),
}
MODE_FAMILY = {  # what a major/minor key-finder should hear
    "major": "major",
    "lydian": "major",
    "minor": "minor",
    "phrygian": "minor",
    "whole-tone": "neither",
}
CHORD_QUALITIES = {  # chord-name suffix: semitones above the root
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "7b5": (0, 4, 6, 10),
    "sus2": (0, 2, 7),
}
_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_CHORD_NAME = re.compile(r"^([A-G])([#b]?)(.*)$")
ROLES = ("drum", "bass", "chords", "arp", "melody", "drone")


def pitch_class(name: str) -> int:
    """``"C"`` -> 0, ``"F#"`` -> 6, ``"Bb"`` -> 10."""
    match = _CHORD_NAME.match(name)
    if not match or match.group(3):
        raise ValueError(f"not a note name: {name!r}")
    return (_PITCH_CLASSES[match.group(1)] + {"#": 1, "b": -1, "": 0}[match.group(2)]) % 12


def chord_notes(name: str) -> tuple[int, tuple[int, ...]]:
    """A chord name (``"Am"``, ``"Cmaj7"``, ``"Daug"``) -> (root pitch class, intervals)."""
    match = _CHORD_NAME.match(name)
    if not match or match.group(3) not in CHORD_QUALITIES:
        raise ValueError(f"not a chord name: {name!r} (qualities: {sorted(CHORD_QUALITIES)})")
    return pitch_class(match.group(1) + match.group(2)), CHORD_QUALITIES[match.group(3)]


@dataclass(frozen=True)
class Part:
    """One instrument's line in a style."""

    role: str  # one of ROLES
    instrument: str  # synth_instruments.TIMBRES or, for drums, .DRUMS
    rhythm: str = ""  # one bar of 16th steps: x hit, o soft, ? maybe (by seed), . rest;
    # "" = one note per chord (chords) or one per clip (drone)
    octave: int = 4  # register: the part's notes start at C of this octave (C4 = MIDI 60)
    gain_db: float = 0.0
    length_steps: float = 0.0  # how long each note is held, in steps; 0 = up to the next note
    voicing: str = "close"  # chords: "close" (inversion changes with variation) | "power"
    notes: tuple[int, ...] = ()  # drone: semitones above the tonic
    detune_cents: float = 0.0  # random mistuning of each note, +-cents (sour)
    drive: float = 0.0  # saturation (0 = clean)
    tremolo_depth: float = 0.0  # 0..1
    tremolo_per_beat: int = 4  # tremolo pulses per beat (locked to the tempo)
    lowpass_hz: float = 0.0  # 0 = no filter


@dataclass(frozen=True)
class Style:
    """The musical choices for one emotion (or mood). Derived timing values are properties."""

    name: str  # the emotion label (or dataset mood, for EXTRA_STYLES)
    beats_per_bar: int  # metre: 4 = 4/4, 3 = 3/4 (quarter-note beats)
    bars_per_clip: int  # whole bars in one 5.12 s clip: this fixes the tempo
    tonic: str  # key note, e.g. "C", "F#", "Bb"
    mode: str  # a scale of SCALES
    progression: tuple[str, ...]  # chord names, spread evenly over one clip
    parts: tuple[Part, ...]
    level_db: float  # dynamics: RMS level in dBFS
    reverb_s: float  # reverb time (RT60), seconds
    reverb_wet: float  # reverb level relative to the dry sound
    description: str = ""

    def __post_init__(self) -> None:
        _validate_style(self)

    @property
    def beats_per_clip(self) -> int:
        return self.beats_per_bar * self.bars_per_clip

    @property
    def tempo_bpm(self) -> float:
        return 60.0 * self.beats_per_clip / CLIP_SECONDS

    @property
    def seconds_per_beat(self) -> float:
        return CLIP_SECONDS / self.beats_per_clip

    @property
    def seconds_per_bar(self) -> float:
        return CLIP_SECONDS / self.bars_per_clip

    @property
    def metre(self) -> str:
        return f"{self.beats_per_bar}/4"

    @property
    def scale(self) -> tuple[int, ...]:
        return SCALES[self.mode]

    @property
    def tonic_pc(self) -> int:
        return pitch_class(self.tonic)

    @property
    def mode_family(self) -> str:
        return MODE_FAMILY[self.mode]

    @property
    def instrumentation(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(part.instrument for part in self.parts))

    @property
    def summary(self) -> str:
        return (
            f"{self.tempo_bpm:g} BPM in {self.metre}, {self.tonic} {self.mode}, "
            f"{' '.join(self.progression)}, {', '.join(self.instrumentation)}"
        )


def _validate_style(style: Style) -> None:
    steps_per_bar = style.beats_per_bar * STEPS_PER_BEAT
    steps = steps_per_bar * style.bars_per_clip
    if style.mode not in SCALES or steps % len(style.progression):
        raise ValueError(f"style {style.name}: unknown mode or progression not evenly spread")
    for chord in style.progression:
        chord_notes(chord)
    for part in style.parts:
        if part.role not in ROLES or (part.rhythm and len(part.rhythm) != steps_per_bar):
            raise ValueError(f"style {style.name}: bad role or rhythm length in {part}")
        known = ins.DRUMS if part.role == "drum" else ins.TIMBRES
        if part.instrument not in known:
            raise ValueError(f"style {style.name}: unknown instrument {part.instrument!r}")


_S = Part  # short alias for the table below

STYLES: dict[str, Style] = {
    "joy": Style(
        "joy", 4, 3, "C", "major", ("C", "F", "G"),
        (
            _S("drum", "kick", "x...x...x...x...", gain_db=-2),
            _S("drum", "clap", "....x.......x...", gain_db=-10),
            _S("drum", "hat", "..x...x...x...x?", gain_db=-16),
            _S("bass", "bass", "x..x..x.x..x..o.", octave=2, gain_db=-4, length_steps=2),
            _S("arp", "pluck", "x.x.x.x.x.x.x.x.", octave=5, gain_db=-9, length_steps=2),
            _S("chords", "warm", octave=4, gain_db=-15, lowpass_hz=3000),
            _S("melody", "glock", "x...?.x.?.x...?.", octave=6, gain_db=-12, length_steps=3),
        ),
        level_db=-16, reverb_s=1.2, reverb_wet=0.2,
        description="major, bright plucked arpeggios over I-IV-V, steady four-on-the-floor kick",
    ),
    "sadness": Style(
        "sadness", 4, 2, "A", "minor", ("Am", "F", "Dm", "E"),
        (
            _S("chords", "pad", octave=3, gain_db=-6, lowpass_hz=1400),
            _S("arp", "piano", "x.o.x.o.x.o.x.o.", octave=4, gain_db=-7, length_steps=4),
            _S("bass", "sub", "x.......x.......", octave=2, gain_db=-6, length_steps=8),
            _S("melody", "flute", "x.......?...x...", octave=4, gain_db=-13),
            _S("drum", "kick", "x...o...x...o...", gain_db=-12),
        ),
        level_db=-21, reverb_s=2.6, reverb_wet=0.35,
        description="minor, slow warm pads and soft piano arpeggios, long reverb",
    ),
    "anger": Style(
        "anger", 4, 3, "E", "phrygian", ("Em", "Em", "F", "Em", "Em", "G"),
        (
            _S("drum", "kick", "x.....x.x.....x.", gain_db=-1),
            _S("drum", "snare", "....x.......x...", gain_db=-4),
            _S("drum", "hat", "x...x...x...x...", gain_db=-14),
            _S("bass", "distbass", "x.xxx.xxx.xxx.xx", octave=2, gain_db=-5, length_steps=1,
               drive=3.0, lowpass_hz=700),
            _S("chords", "power", "x.xxx.xxx.xxx.xx", octave=3, gain_db=-9, length_steps=1,
               voicing="power", drive=6.0, lowpass_hz=3200),
            _S("melody", "lead", "x..x..x.x.?.x...", octave=4, gain_db=-12, length_steps=2,
               drive=2.0, lowpass_hz=4000),
        ),
        level_db=-14, reverb_s=0.8, reverb_wet=0.12,
        description="low, distorted, driving: galloping power chords and bass, phrygian i-bII-bIII",
    ),
    "fear": Style(
        "fear", 3, 2, "D", "phrygian", ("Dm", "Eb"),
        (
            _S("drone", "drone", notes=(0, 15), octave=1, gain_db=-5, lowpass_hz=500),
            _S("chords", "strings", octave=4, gain_db=-9, tremolo_depth=0.8, tremolo_per_beat=6,
               lowpass_hz=2500),
            _S("drone", "drone", notes=(12, 13), octave=5, gain_db=-24, tremolo_depth=0.5,
               tremolo_per_beat=3, lowpass_hz=3000),
            _S("drum", "heartbeat", "xo..xo..xo..", gain_db=-4),
            _S("melody", "bell", "x.....?.....", octave=5, gain_db=-16, length_steps=6),
        ),
        level_db=-22, reverb_s=3.0, reverb_wet=0.4,
        description="low drone, tremolo strings, minor-second cluster, heartbeat",
    ),
    "surprise": Style(
        "surprise", 4, 3, "F", "lydian", ("F", "G", "F", "G"),
        (
            _S("drum", "kick", "x...x...x..x.x..", gain_db=-3),
            _S("drum", "rim", "...x..x..x...x..", gain_db=-11),
            _S("drum", "shaker", "x.o.x.o.x.o.x.o.", gain_db=-14),
            _S("drum", "openhat", "...............?", gain_db=-15),
            _S("bass", "bass", "x.....x...x.....", octave=2, gain_db=-5, length_steps=1),
            _S("chords", "pizz", "..x..x...x..x..x", octave=4, gain_db=-8, length_steps=0.5),
            _S("melody", "marimba", "x.?x..?.x?..x.?.", octave=5, gain_db=-7, length_steps=0.7),
        ),
        level_db=-17, reverb_s=1.0, reverb_wet=0.2,
        description="lydian, syncopated staccato pizzicato and marimba, off-beat accents",
    ),
    "disgust": Style(
        "disgust", 3, 3, "C", "whole-tone", ("Caug", "Daug", "C7b5"),
        (
            _S("chords", "sour", octave=3, gain_db=-7, detune_cents=35, lowpass_hz=1100),
            _S("bass", "reed", "x.....x..?..", octave=2, gain_db=-6, length_steps=2,
               detune_cents=25),
            _S("melody", "reed", "x..?.x..?...", octave=4, gain_db=-9, detune_cents=40),
            _S("drum", "kick", "x.........?.", gain_db=-5),
            _S("drum", "rim", "....x...x...", gain_db=-9),
            _S("drum", "shaker", "x.o.x.o.x.o.", gain_db=-18),
        ),
        level_db=-19, reverb_s=1.4, reverb_wet=0.25,
        description="whole-tone, detuned wobbling pads and reeds, lurching 3/4",
    ),
    "neutral": Style(
        "neutral", 4, 2, "G", "major", ("Gmaj7", "Cmaj7", "Gmaj7", "D"),
        (
            _S("chords", "warm", octave=3, gain_db=-4, lowpass_hz=2500),
            _S("arp", "piano", "x...x...x...x...", octave=4, gain_db=-11, length_steps=4),
            _S("bass", "sub", "x...............", octave=2, gain_db=-7, length_steps=14),
            _S("melody", "bell", "x.......?.......", octave=4, gain_db=-18, length_steps=8),
            _S("drum", "shaker", "..o...o...o...o.", gain_db=-20),
        ),
        level_db=-20, reverb_s=2.0, reverb_wet=0.3,
        description="calm sustained major-seventh chords, gentle piano pulse",
    ),
}  # fmt: skip

EXTRA_STYLES: dict[str, Style] = {
    # The dataset mood "funny" has no emotion label of its own; for the catalogue it gets a
    # joy-like major style of its own (oom-pah bass and staccato reeds) so it stays distinct.
    "funny": Style(
        "funny", 4, 3, "F", "major", ("F", "Bb", "C7"),
        (
            _S("drum", "kick", "x.......x.......", gain_db=-4),
            _S("drum", "rim", "....x.......x...", gain_db=-9),
            _S("bass", "reed", "x.......x.......", octave=2, gain_db=-4, length_steps=2),
            _S("chords", "pizz", "....x.......x...", octave=4, gain_db=-8, length_steps=1),
            _S("melody", "reed", "x.x.?.x.x.?.x...", octave=4, gain_db=-8, length_steps=1.2),
        ),
        level_db=-17, reverb_s=0.8, reverb_wet=0.15,
        description="major, bouncy oom-pah bass and staccato reed tune",
    ),
}  # fmt: skip


def style_for(name: str | Style) -> Style:
    """The style for an emotion label, ``"funny"``, or another dataset mood (through the prompt
    table's mood -> emotion mapping); a :class:`Style` is returned as is."""
    if isinstance(name, Style):
        return name
    if name in STYLES:
        return STYLES[name]
    if name in EXTRA_STYLES:
        return EXTRA_STYLES[name]
    table = prompts.load_prompts()  # a broken user table says so itself
    try:
        return STYLES[prompts.emotion_of(name, table)]
    except InputError:
        raise InputError(
            f"unknown emotion or mood {name!r} (emotions: {', '.join(EMOTIONS)}; "
            f"moods: {', '.join(vocab.DATASET_MOODS)})"
        ) from None
