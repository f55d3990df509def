"""What a curated dataset is made of: :class:`CurateParams` and a :class:`Selected` track.

The data model of curation, apart from the code that fetches, cuts and captions
(:mod:`~videobgm.dataset.clips` and :mod:`~videobgm.dataset.curation` both read it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np

from videobgm.dataset.catalogue import Track
from videobgm.errors import InputError
from videobgm.spectrogram.codec import SpectrogramParams
from videobgm.vocab import CLIP_SECONDS, DATASET_MOODS

MOOD_RULES = ("first", "rarest", "priority")
DEFAULT_NAME = "spectro-caption"  # default dataset folder under data/processed/
_MOOD_WORD = re.compile(r"[a-z][a-z0-9 _-]*")


@dataclass(frozen=True)
class CurateParams:
    """What the dataset is made of; every field changes the files written."""

    moods: tuple[str, ...] = DATASET_MOODS  # the caption moods to select
    mood_rule: str = "first"  # "first" | "rarest" | "priority": one mood per track
    clips_per_track: int = 10  # random windows per track (the original project: 10)
    window_s: float = CLIP_SECONDS  # seconds per clip: 5.12 -> 512 px, 10 -> 1000 px
    sample_rate: int = 44100  # Hz the audio is resampled to (original project: 8000)
    seed: int = 0  # window positions: a generator per (seed, track id)
    limit: int | None = None  # at most this many tracks, taken in turn from each mood
    max_tags: int | None = None  # tags per caption after the mood (None: all)
    spectrogram: SpectrogramParams = SpectrogramParams()  # the image format (riffusion's)

    def __post_init__(self) -> None:
        moods = (self.moods,) if isinstance(self.moods, str) else tuple(self.moods)
        object.__setattr__(self, "moods", tuple(m.strip().lower() for m in moods))
        if not self.moods or not all(_MOOD_WORD.fullmatch(m) for m in self.moods):
            raise InputError(f"moods must be lower-case words, got {moods!r}")
        if self.mood_rule not in MOOD_RULES:
            raise InputError(f"mood_rule must be one of {', '.join(MOOD_RULES)}")
        check_int("clips_per_track", self.clips_per_track, 1)
        check_int("sample_rate", self.sample_rate, 4000)
        check_int("seed", self.seed, 0)
        if self.limit is not None:
            check_int("limit", self.limit, 1)
        if self.max_tags is not None:
            check_int("max_tags", self.max_tags, 0)
        if not (isinstance(self.window_s, int | float) and math.isfinite(self.window_s)):
            raise InputError(f"window_s must be a number of seconds, not {self.window_s!r}")
        if self.window_px < 1 or self.sample_rate > 192000:
            raise InputError(
                f"need window_s >= {self.spectrogram.step_size_ms / 1000} s and a sample rate "
                f"<= 192000 Hz, got {self.window_s} s at {self.sample_rate} Hz"
            )

    @property
    def window_px(self) -> int:
        """Image width: one column per spectrogram step."""
        return round(self.window_s * 1000 / self.spectrogram.step_size_ms)

    @property
    def duration_s(self) -> float:
        """Seconds one clip covers (``window_s`` rounded to the 10 ms grid)."""
        return round(self.window_px * self.spectrogram.step_size_ms / 1000, 6)

    @property
    def window_samples(self) -> int:
        """Samples per clip at the spectrogram's rate."""
        return self.window_px * self.spectrogram.hop_length

    def content(self) -> dict:
        """The fields that decide a track's clips (everything but the selection's)."""
        keys = ("clips_per_track", "window_s", "sample_rate", "seed", "max_tags")
        return {k: getattr(self, k) for k in keys} | {
            "window_px": self.window_px,
            "spectrogram": dataclasses.asdict(self.spectrogram),
        }


def check_int(name: str, value: object, low: int) -> None:
    """Raise :class:`InputError` unless ``value`` is a whole number >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InputError(f"{name} must be a whole number >= {low}, not {value!r}")


@dataclass(frozen=True)
class Selected:
    """A selected track with its one mood and its caption."""

    track: Track
    mood: str
    text: str
