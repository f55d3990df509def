"""The composition plan: which 5.12 s clip plays where, asked for with which prompts and seeds.

A plan is made from an emotion timeline and a duration, once, and is then all that rendering
needs: :mod:`videobgm.compose` turns it into audio with either backend and writes it as JSON,
from which the same track is made again. Layout, in samples at 44.1 kHz:

- Clips follow each other from time 0, each overlapping the next by a crossfade of
  ``crossfade_beats`` beats of the music at the join. A clip holds a whole number of bars of
  every style, so within one emotion every clip starts on that emotion's beat grid.
- A clip *leads* the track from its start to the next clip's start (its cell). Its emotion is
  the timeline's there. When the emotion changes inside a cell, that clip is the transition:
  it interpolates from the old emotion's keyframe to the new one's, with ``alpha`` the share
  of the cell after the change (riffusion's transition, done in one clip). A change that
  happens and reverts within one cell (a span shorter than a clip) is not heard.
- Within a run of one emotion the clips walk between keyframes: keyframe ``j`` of a run is
  one of the emotion's prompt variants (in a seeded order, never the same twice in a row), a
  noise seed, and a seed clip of the procedural synthesiser (``variation`` cycling); clip ``i``
  of the run goes from keyframe ``i // M`` to ``i // M + 1`` at ``alpha = (i % M) / M`` with
  ``M = clips_per_prompt``.
- ``silence`` (a timeline label, or ``neutral`` under ``neutral="silence"``) has no keyframe:
  such clips are silent, and a transition into or out of silence fades inside the clip.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videobgm.errors import InputError
from videobgm.prompts import EMOTIONS, EmotionPrompt, load_prompts
from videobgm.synth import arrange as synth
from videobgm.vocab import SAMPLE_RATE, SILENCE

NEUTRAL_CHOICES = ("music", "silence")  # what neutral spans get
PLAN_FORMAT = "videobgm-compose-plan/1"
SILENCE_BEAT_S = 0.5  # s; the crossfade unit next to silence (it has no tempo)


@dataclass(frozen=True)
class TimelineSpan:
    """One span as the composer reads it (any object or dict with these fields will do)."""

    start: float  # s
    end: float  # s
    emotion: str
    confidence: float = 1.0


@dataclass(frozen=True)
class Keyframe:
    """One end of an interpolation: riffusion's prompt and noise seed, and the seed clip."""

    emotion: str
    prompt: str
    negative_prompt: str
    seed: int  # noise seed
    strength: float
    guidance_scale: float
    synth_seed: int  # seed clip = synth.clip(emotion, synth_seed, variation)
    variation: int


@dataclass(frozen=True)
class PlannedClip:
    """One clip on the track. ``start``/``end`` index the plan's keyframes (None = silence)."""

    start_sample: int  # where the clip begins on the track
    start: int | None
    end: int | None
    alpha: float  # 0 = start keyframe, 1 = end keyframe
    fade_in: int  # samples of equal-power fade-in (the crossfade with the previous clip)
    fade_out: int  # samples of equal-power fade-out (the crossfade with the next clip)
    change_sample: int | None = None  # transitions: where the new emotion begins, in the clip


@dataclass(frozen=True)
class Plan:
    """Everything needed to render one track, exactly (see the module doc)."""

    backend: str  # "riffusion" | "procedural"
    samples: int  # track length
    seed: int  # this track's seed (base seed + variant)
    keyframes: tuple[Keyframe, ...]
    clips: tuple[PlannedClip, ...]
    timeline: tuple[TimelineSpan, ...]
    neutral: str = "music"
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = field(default_factory=synth.clip_samples)
    fade_in_s: float = 0.02  # the track's first clip (no click at time 0)
    fade_out_s: float = 2.0  # the track's ending
    riffusion: dict[str, Any] = field(default_factory=dict)  # model refs, steps, batch, LoRA scale

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; clips also carry ``start_s`` (seconds) for the reader."""
        data = dataclasses.asdict(self)
        for clip in data["clips"]:
            clip["start_s"] = round(clip["start_sample"] / self.sample_rate, 6)
        return {"format": PLAN_FORMAT, "duration_s": self.duration_s, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise InputError(f"not a composition plan (format {data.get('format')!r})")
        data = {k: v for k, v in data.items() if k not in ("format", "duration_s")}
        try:
            data["keyframes"] = tuple(Keyframe(**k) for k in data["keyframes"])
            data["clips"] = tuple(
                PlannedClip(**{k: v for k, v in c.items() if k != "start_s"}) for c in data["clips"]
            )
            data["timeline"] = tuple(TimelineSpan(**s) for s in data["timeline"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise InputError(f"composition plan is incomplete or malformed ({exc})") from None


# --------------------------------------------------------------------------- the timeline


def read_spans(timeline: Iterable[Any], neutral: str = "music") -> tuple[TimelineSpan, ...]:
    """Spans from dicts or objects with ``start``, ``end``, ``emotion`` (and ``confidence``),
    sorted by start; ``neutral`` becomes ``silence`` under ``neutral="silence"``."""
    if neutral not in NEUTRAL_CHOICES:
        raise InputError(f"neutral must be one of {', '.join(NEUTRAL_CHOICES)}, not {neutral!r}")
    spans = []
    for number, item in enumerate(timeline, 1):
        get = item.get if isinstance(item, dict) else lambda key, d=None, o=item: getattr(o, key, d)
        try:
            start, end = float(get("start")), float(get("end"))
            emotion, confidence = str(get("emotion")), float(get("confidence", 1.0))
        except (TypeError, ValueError):
            raise InputError(
                f"timeline span {number} needs numeric start and end and an emotion"
            ) from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise InputError(f"timeline span {number}: need 0 <= start < end, not {start}-{end}")
        if emotion not in (*EMOTIONS, SILENCE):
            raise InputError(f"timeline span {number}: unknown emotion {emotion!r}")
        if emotion == "neutral" and neutral == "silence":
            emotion = SILENCE
        spans.append(TimelineSpan(start, end, emotion, confidence))
    if not spans:
        raise InputError("the timeline has no spans")
    return tuple(sorted(spans, key=lambda s: (s.start, s.end)))


class _Lookup:
    """The emotion at any sample: a span's own, the previous span's in a gap, the first span's
    before it, the last span's after it."""

    def __init__(self, spans: Sequence[TimelineSpan], sample_rate: int) -> None:
        self.starts = [round(s.start * sample_rate) for s in spans]
        self.emotions = [s.emotion for s in spans]

    def at(self, sample: int) -> str:
        return self.emotions[max(bisect.bisect_right(self.starts, sample) - 1, 0)]

    def last_change(self, lo: int, hi: int) -> int:
        """The last sample in (lo, hi) where the emotion differs from the sample before."""
        i = bisect.bisect_left(self.starts, hi) - 1
        while i > 0 and self.starts[i] > lo:
            if self.emotions[i] != self.emotions[i - 1]:
                return self.starts[i]
            i -= 1
        raise AssertionError("no change in the interval")  # callers check at(lo) != at(hi - 1)


# --------------------------------------------------------------------------- layout


def beat_samples(emotion: str, sample_rate: int = SAMPLE_RATE) -> int:
    """One beat of the emotion's seed music, in samples (silence: :data:`SILENCE_BEAT_S`)."""
    seconds = SILENCE_BEAT_S if emotion == SILENCE else synth.STYLES[emotion].seconds_per_beat
    return round(seconds * sample_rate)


@dataclass(frozen=True)
class _Cell:
    start: int  # clip start on the track
    lead_end: int  # where the next clip starts (or the track ends)
    crossfade: int  # samples shared with the next clip
    first: str  # emotion at the cell's start
    last: str  # emotion at the cell's end
    change: int | None  # where ``last`` begins, when it differs from ``first``


def _cells(lookup: _Lookup, total: int, clip: int, crossfade_beats: int, rate: int) -> list[_Cell]:
    cells: list[_Cell] = []
    start = 0
    while True:
        if start + clip >= total:  # this clip reaches the end of the track
            lead_end, crossfade = total, 0
        else:
            guess = crossfade_beats * beat_samples(lookup.at(start + clip - 1), rate)
            emotion = lookup.at(max(start + clip - guess - 1, start))
            crossfade = min(crossfade_beats * beat_samples(emotion, rate), clip // 2)
            lead_end = start + clip - crossfade
        first, last = lookup.at(start), lookup.at(lead_end - 1)
        change = lookup.last_change(start, lead_end) if first != last else None
        cells.append(_Cell(start, lead_end, crossfade, first, last, change))
        if crossfade == 0:
            return cells
        start = lead_end


# --------------------------------------------------------------------------- keyframes


def _derive(*values: int) -> int:
    """A 31-bit seed from a tuple of integers (stable across runs and machines)."""
    return int(np.random.SeedSequence([v & 0xFFFFFFFF for v in values]).generate_state(1)[0] >> 1)


class _Run:
    """A stretch of one emotion: its keyframes, made on demand."""

    def __init__(self, emotion: str, index: int, plan: _Planner) -> None:
        self.emotion, self.index, self.plan = emotion, index, plan
        self.pure = 0  # clips played so far that are not transitions
        self.ids: dict[int, int] = {}
        if emotion != SILENCE:
            count = len(plan.table[emotion].prompts)
            rng = np.random.default_rng(_derive(plan.seed, index, zlib.crc32(emotion.encode())))
            self.order = [int(i) for i in rng.permutation(count)]

    def keyframe(self, j: int) -> int | None:
        if self.emotion == SILENCE:
            return None
        if j not in self.ids:
            entry: EmotionPrompt = self.plan.table[self.emotion]
            variations = synth.DEFAULT_VARIATIONS
            self.ids[j] = self.plan.add(
                Keyframe(
                    emotion=self.emotion,
                    prompt=entry.prompts[self.order[j % len(self.order)]],
                    negative_prompt=entry.negative_prompt,
                    seed=_derive(self.plan.seed, self.index, j),
                    strength=entry.strength,
                    guidance_scale=entry.guidance_scale,
                    synth_seed=self.plan.seed,
                    variation=variations[j % len(variations)],
                )
            )
        return self.ids[j]


class _Planner:
    def __init__(self, table: dict[str, EmotionPrompt], seed: int, per_prompt: int) -> None:
        self.table, self.seed, self.per_prompt = table, seed, per_prompt
        self.keyframes: list[Keyframe] = []
        self.runs = 0

    def add(self, keyframe: Keyframe) -> int:
        self.keyframes.append(keyframe)
        return len(self.keyframes) - 1

    def run(self, emotion: str) -> _Run:
        self.runs += 1
        return _Run(emotion, self.runs - 1, self)

    def clips(self, cells: list[_Cell]) -> list[tuple[int | None, int | None, float]]:
        """(start keyframe, end keyframe, alpha) for every cell."""
        out = []
        run = self.run(cells[0].first)
        for cell in cells:
            if cell.first != run.emotion:  # a change exactly at a clip start: no transition
                run = self.run(cell.first)
            if cell.change is None:
                pair, step = divmod(run.pure, self.per_prompt)
                out.append((run.keyframe(pair), run.keyframe(pair + 1), step / self.per_prompt))
                run.pure += 1
                continue
            here = run.keyframe(math.floor(run.pure / self.per_prompt + 0.5))
            run = self.run(cell.last)
            alpha = round((cell.lead_end - cell.change) / (cell.lead_end - cell.start), 4)
            out.append((here, run.keyframe(0), min(max(alpha, 0.0001), 0.9999)))
        return out


# --------------------------------------------------------------------------- planning


def make_plan(
    timeline: Iterable[Any],
    duration_s: float,
    *,
    backend: str = "procedural",
    seed: int = 0,
    neutral: str = "music",
    prompts: dict[str, EmotionPrompt] | None = None,
    crossfade_beats: int = 1,
    clips_per_prompt: int = 4,
    fade_out_s: float = 2.0,
    riffusion: dict[str, Any] | None = None,
) -> Plan:
    """The plan of one track of exactly ``round(duration_s * 44100)`` samples (module doc)."""
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"duration must be a positive number of seconds, not {duration_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, not {seed!r}")
    if crossfade_beats < 1 or clips_per_prompt < 1:
        raise InputError("crossfade_beats and clips_per_prompt must be at least 1")
    spans = read_spans(timeline, neutral)
    total = max(round(duration_s * SAMPLE_RATE), 1)
    clip = synth.clip_samples(SAMPLE_RATE)
    cells = _cells(_Lookup(spans, SAMPLE_RATE), total, clip, crossfade_beats, SAMPLE_RATE)
    planner = _Planner(
        prompts if prompts is not None else load_prompts(), int(seed), clips_per_prompt
    )
    clips = []
    fade_in = 0
    for cell, (start, end, alpha) in zip(cells, planner.clips(cells), strict=True):
        change = None if cell.change is None else cell.change - cell.start
        clips.append(PlannedClip(cell.start, start, end, alpha, fade_in, cell.crossfade, change))
        fade_in = cell.crossfade
    return Plan(
        backend=backend,
        samples=total,
        seed=int(seed),
        keyframes=tuple(planner.keyframes),
        clips=tuple(clips),
        timeline=spans,
        neutral=neutral,
        fade_out_s=fade_out_s,
        riffusion=dict(riffusion or {}),
    )
