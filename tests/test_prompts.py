"""The prompt table: defaults as specified, user edits picked up, malformed files refused in one
sentence naming the file."""

from __future__ import annotations

import pytest
import tomllib

from videobgm import prompts
from videobgm.errors import InputError

EXPECTED_MOODS = {
    "joy": "happy",
    "sadness": "sad",
    "anger": "angry",
    "fear": "fear",
    "surprise": "quirky",
    "disgust": "weird",
    "neutral": "calm",
}


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _toml(table: dict) -> str:
    """A minimal TOML writer for the prompt table's shape (tables of scalars and lists)."""
    lines = []
    for key, value in table.get("defaults", {}).items():
        lines.append(f"defaults.{key} = {_toml_value(value)}")
    for label, entry in table.get("emotions", {}).items():
        lines.append(f"[emotions.{label}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def table() -> dict:
    """The packaged table as plain data, to edit."""
    return tomllib.loads(prompts.default_path().read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _no_user_table(monkeypatch):
    monkeypatch.delenv(prompts.PROMPTS_ENV, raising=False)


def test_default_table_maps_every_label_to_its_mood_and_prompts():
    loaded = prompts.load_prompts()
    assert tuple(loaded) == prompts.EMOTIONS
    for label, entry in loaded.items():
        assert entry.emotion == label
        assert entry.mood == EXPECTED_MOODS[label]
        assert len(entry.prompts) >= 3
        assert all(p.startswith(f"{entry.mood}, ") and p.count(",") >= 2 for p in entry.prompts)
        assert entry.strength == 0.75 and entry.guidance_scale == 7.0
        assert "vocals" in entry.negative_prompt


def test_every_dataset_mood_has_an_emotion_and_back():
    for mood in prompts.DATASET_MOODS:
        assert prompts.emotion_of(mood) in prompts.EMOTIONS
    assert prompts.emotion_of("funny") == "joy"  # no entry uses it: the documented fallback
    assert prompts.emotion_of("calm") == "neutral"
    assert prompts.mood_of("surprise") == "quirky"
    with pytest.raises(InputError, match="unknown mood 'elated'"):
        prompts.emotion_of("elated")
    with pytest.raises(InputError, match="unknown emotion"):
        prompts.mood_of("happy")


def test_an_edited_file_is_picked_up_by_path_and_by_environment(tmp_path, monkeypatch, table):
    table["emotions"]["joy"] = {
        "mood": "funny",
        "prompts": ["funny, kazoo, silly", "funny, tuba, bouncy"],
        "strength": 0.5,
    }
    table["defaults"]["guidance_scale"] = 5.5
    path = tmp_path / "my_prompts.toml"
    path.write_text(_toml(table), encoding="utf-8")

    loaded = prompts.load_prompts(path)
    joy = loaded["joy"]
    assert joy.mood == "funny" and joy.strength == 0.5
    assert joy.prompts == ("funny, kazoo, silly", "funny, tuba, bouncy")
    assert joy.guidance_scale == 5.5 and loaded["anger"].guidance_scale == 5.5
    assert loaded["joy"].negative_prompt == table["defaults"]["negative_prompt"]
    assert prompts.emotion_of("funny", loaded) == "joy"

    monkeypatch.setenv(prompts.PROMPTS_ENV, str(path))
    assert prompts.load_prompts()["joy"].mood == "funny"
    assert prompts.mood_of("joy") == "funny"
    # An explicit path still wins over the environment.
    assert prompts.load_prompts(prompts.default_path())["joy"].mood == "happy"


def _set(path: tuple[str, ...], value=None, delete: bool = False):
    """An edit of the table: set (or delete) the value at ``path``."""

    def edit(table: dict) -> None:
        parent = table
        for key in path[:-1]:
            parent = parent[key]
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value

    return edit


BREAKAGES = {
    "missing label": _set(("emotions", "fear"), delete=True),
    "unknown label": _set(("emotions", "elation"), {"mood": "happy", "prompts": ["happy, x"]}),
    "empty prompts": _set(("emotions", "sadness", "prompts"), []),
    "blank prompt": _set(("emotions", "sadness", "prompts"), ["sad, piano", "  "]),
    "strength too high": _set(("emotions", "anger", "strength"), 1.5),
    "strength zero": _set(("emotions", "anger", "strength"), 0),
    "strength as text": _set(("emotions", "anger", "strength"), "0.7"),
    "no mood": _set(("emotions", "neutral", "mood"), delete=True),
    "typo key": _set(("emotions", "joy", "promts"), ["happy, typo"]),
    "bad guidance": _set(("defaults", "guidance_scale"), -1.0),
}


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing label", "emotion 'fear' is missing"),
        ("unknown label", "unknown emotion 'elation'"),
        ("empty prompts", "emotion 'sadness' needs a non-empty list of prompts"),
        ("blank prompt", "emotion 'sadness' needs a non-empty text prompt"),
        ("strength too high", r"emotion 'anger' needs strength in \(0, 1\], not 1.5"),
        ("strength zero", r"needs strength in \(0, 1\], not 0"),
        ("strength as text", "needs strength in"),
        ("no mood", "emotion 'neutral' needs a non-empty text mood"),
        ("typo key", "unknown key 'promts'"),
        ("bad guidance", "guidance_scale a positive number"),
    ],
)
def test_malformed_tables_are_refused_in_one_sentence(tmp_path, table, case, words):
    path = tmp_path / "prompts.toml"
    BREAKAGES[case](table)
    path.write_text(_toml(table), encoding="utf-8")
    with pytest.raises(InputError, match=words) as caught:
        prompts.load_prompts(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        prompts.load_prompts(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[emotions.joy\nmood = happy\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        prompts.load_prompts(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"\[emotions\] must be a table"):
        prompts.load_prompts(empty)
