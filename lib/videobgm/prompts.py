"""The prompt table: emotion label -> dataset mood -> riffusion prompts and img2img settings.

The table is data, not code: ``prompts.toml`` beside this module is the default, and users
point ``$VIDEOBGM_PROMPTS`` (or ``load_prompts(path)``) at an edited copy. A copy replaces the
packaged table entirely (it must cover all 7 labels), so what runs is what the file says.

Moods are the mood LoRA's caption moods: angry, fear, funny, happy, quirky, sad, weird. By
default every emotion has one (joy->happy, sadness->sad, anger->angry, fear->fear,
surprise->quirky, disgust->weird) except neutral, which uses "calm". "funny" is used by no
emotion; :data:`EXTRA_MOOD_EMOTIONS` sends it to joy when a mood must become music (the
synthetic catalogue), and :mod:`videobgm.synth` gives it a joy-like style of its own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from videobgm.errors import InputError
from videobgm.vocab import DATASET_MOODS as DATASET_MOODS  # re-exported beside the table
from videobgm.vocab import EMOTION_LABELS

EMOTIONS = EMOTION_LABELS  # the classifier's labels, in its order
EXTRA_MOOD_EMOTIONS = {"funny": "joy"}  # moods no table entry uses -> the emotion they resemble
PROMPTS_ENV = "VIDEOBGM_PROMPTS"  # environment variable naming a user's prompt table
_KEYS = {"mood", "prompts", "negative_prompt", "strength", "guidance_scale"}


@dataclass(frozen=True)
class EmotionPrompt:
    """What riffusion is asked for when the timeline says ``emotion``."""

    emotion: str
    mood: str  # the dataset mood (first word of the LoRA's captions)
    prompts: tuple[str, ...]  # variants "<mood>, <tag>, <tag>, ..."
    negative_prompt: str
    strength: float  # img2img strength, in (0, 1]
    guidance_scale: float  # classifier-free guidance scale, > 0


def default_path() -> Path:
    """The packaged table."""
    return Path(__file__).with_name("prompts.toml")


def prompts_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The table in use: ``path`` if given, else ``$VIDEOBGM_PROMPTS`` if set, else the default."""
    if path is not None:
        return Path(path)
    override = os.environ.get(PROMPTS_ENV)
    return Path(override).expanduser() if override else default_path()


def load_prompts(path: str | os.PathLike[str] | None = None) -> dict[str, EmotionPrompt]:
    """Read and check a prompt table; one entry per emotion label, in :data:`EMOTIONS` order.

    Raises InputError (one sentence naming the file) for a missing or unreadable file, bad
    TOML, a missing or unknown label, a missing mood, an empty prompt list, a strength outside
    (0, 1] or a guidance scale that is not a positive number.
    """
    source = prompts_path(path)
    data = _read(source)
    defaults = _table(source, data.get("defaults", {}), "[defaults]")
    emotions = _table(source, data.get("emotions"), "[emotions]")
    unknown = sorted(set(emotions) - set(EMOTIONS))
    if unknown:
        raise InputError(
            f"{source}: unknown emotion {unknown[0]!r} (the labels are {', '.join(EMOTIONS)})"
        )
    return {label: _entry(source, label, emotions.get(label), defaults) for label in EMOTIONS}


def _read(source: Path) -> dict:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: prompt table not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: prompt table cannot be read ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: prompt table is not valid TOML ({exc})") from None


def _table(source: Path, value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{source}: {where} must be a table of emotion entries")
    return value


def _entry(source: Path, label: str, raw: object, defaults: dict) -> EmotionPrompt:
    where = f"{source}: emotion {label!r}"
    if raw is None:
        raise InputError(f"{where} is missing (every label needs an [emotions.{label}] entry)")
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a table with a mood and prompts")
    entry = {**defaults, **raw}
    extra = sorted(set(entry) - _KEYS)
    if extra:
        raise InputError(f"{where} has an unknown key {extra[0]!r} (known: {sorted(_KEYS)})")
    return EmotionPrompt(
        emotion=label,
        mood=_text(where, entry.get("mood"), "mood"),
        prompts=_prompt_list(where, entry.get("prompts")),
        negative_prompt=_text(where, entry.get("negative_prompt", ""), "negative_prompt", True),
        strength=_number(where, entry.get("strength"), "strength", upper=1.0),
        guidance_scale=_number(where, entry.get("guidance_scale"), "guidance_scale"),
    )


def _text(where: str, value: object, key: str, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or not (empty_ok or value.strip()):
        raise InputError(f"{where} needs a non-empty text {key}, not {value!r}")
    return value.strip()


def _prompt_list(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where} needs a non-empty list of prompts, not {value!r}")
    return tuple(_text(where, item, "prompt") for item in value)


def _number(where: str, value: object, key: str, upper: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 < value <= upper) or not math.isfinite(value):  # type: ignore[operator]
        bounds = f"in (0, {upper:g}]" if upper < math.inf else "a positive number"
        raise InputError(f"{where} needs {key} {bounds}, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def mood_of(emotion: str, table: dict[str, EmotionPrompt] | None = None) -> str:
    """The dataset mood an emotion label is prompted with (default table: see module doc)."""
    table = load_prompts() if table is None else table
    if emotion not in table:
        raise InputError(f"unknown emotion {emotion!r} (the labels are {', '.join(EMOTIONS)})")
    return table[emotion].mood


def emotion_of(mood: str, table: dict[str, EmotionPrompt] | None = None) -> str:
    """The emotion label whose music fits a dataset mood: the first label (in
    :data:`EMOTIONS` order) whose entry uses that mood, else :data:`EXTRA_MOOD_EMOTIONS`."""
    table = load_prompts() if table is None else table
    for label, entry in table.items():
        if entry.mood == mood:
            return label
    if mood in EXTRA_MOOD_EMOTIONS:
        return EXTRA_MOOD_EMOTIONS[mood]
    moods = sorted({entry.mood for entry in table.values()} | set(EXTRA_MOOD_EMOTIONS))
    raise InputError(f"unknown mood {mood!r} (the prompt table's moods are {', '.join(moods)})")
