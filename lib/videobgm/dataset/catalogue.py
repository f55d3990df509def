"""Mood-tagged music catalogues: where curation's tracks come from.

A catalogue is a table with one row per track: ``track_id``, ``audio`` (a local path, relative
to the table's folder, or a URL), ``moods`` and ``tags`` (lists, or strings separated by ``;``,
``|`` or ``,``), optionally ``genres`` and ``title``. Three kinds of source give one:

- a local CSV, Parquet or JSONL file, or a folder of them (read in name order);
- a Hugging Face Hub dataset id, e.g. ``Chr0my/Epidemic_music`` (the original project's:
  per-genre parquet files whose rows carry ``moods``, ``metadataTags``, ``genres`` and an audio
  ``url``; those column names are understood, and a row without an id is named after its file
  and row number). Its files are downloaded into ``data/raw/hub/``; offline that fails with
  one sentence saying how to pass a local copy instead;
- ``"synthetic"``: a small catalogue that the procedural synthesiser writes under
  ``data/raw/synthetic/`` (a few tracks per dataset mood, one ``calm`` track outside them,
  tracks with two moods, and one track too short for a clip), for offline runs and tests.

Tracks are unique: a row whose id or audio came earlier (the same track in two genre files) is
dropped and counted.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobgm import media, paths
from videobgm.dataset.fetch import is_url
from videobgm.errors import InputError
from videobgm.synth import arrange as synth
from videobgm.vocab import DATASET_MOODS

SYNTHETIC = "synthetic"  # the source name of the synthetic catalogue
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
# Our column -> the names a catalogue may use for it (first found wins).
COLUMNS = {
    "track_id": ("track_id", "id", "trackId", "track"),
    "audio": ("audio", "url", "audio_url", "path", "file"),
    "moods": ("moods", "mood"),
    "tags": ("tags", "metadataTags", "metadata_tags"),
    "genres": ("genres", "genre"),
    "title": ("title", "name"),
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SEPARATORS = re.compile(r"[;|,]")


@dataclass(frozen=True)
class Track:
    """One catalogue row: moods and tags lower-case, in the catalogue's order."""

    track_id: str
    audio: str  # absolute local path or URL
    moods: tuple[str, ...]
    tags: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    title: str = ""


@dataclass(frozen=True)
class Catalogue:
    tracks: tuple[Track, ...]
    source: str  # what was asked for: "synthetic", a path or a Hub id
    files: tuple[str, ...]  # the tables read
    duplicates: int = 0  # rows dropped because their track id came earlier


def as_list(value: object) -> tuple[str, ...]:
    """A cell as a tuple of stripped, non-empty strings: lists and arrays element-wise, a JSON
    list string parsed, any other string split on ``;``, ``|`` or ``,``; missing -> ()."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return as_list(json.loads(text))
            except json.JSONDecodeError:
                text = text.strip("[]")
        items: Iterable[object] = _SEPARATORS.split(text)
    elif isinstance(value, list | tuple | np.ndarray):
        items = value
    else:
        items = [value]
    return tuple(s for s in (str(item).strip() for item in items) if s)


def read_catalogue(source: str | Path = SYNTHETIC, *, hub_cache_dir: Path | None = None):
    """The :class:`Catalogue` of a source (see the module doc). Raises InputError naming the
    source when it does not exist, cannot be read or lacks a column."""
    text = str(source)
    if text == SYNTHETIC:
        path = synthetic_catalogue()
    elif Path(text).expanduser().exists():
        path = Path(text).expanduser()
    elif _HUB_ID.fullmatch(text) and not text.endswith(TABLE_SUFFIXES):
        path = download_hub(text, hub_cache_dir)
    else:
        raise InputError(
            f"catalogue source {text!r} is neither {SYNTHETIC!r}, an existing file or folder, "
            "nor a Hugging Face dataset id (owner/name)"
        )
    files = _tables(path)
    tracks: list[Track] = []
    ids: set[str] = set()
    audio: set[str] = set()
    duplicates = 0
    for file in files:
        for track in _read_table(file, genre=len(files) > 1):
            # A track listed again (e.g. in two genre files) has the same id or the same audio.
            if track.track_id in ids or track.audio in audio:
                duplicates += 1
                continue
            tracks.append(track)
            ids.add(track.track_id)
            audio.add(track.audio)
    return Catalogue(tuple(tracks), text, tuple(str(f) for f in files), duplicates)


def _tables(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(f"{path}: a catalogue must be {', '.join(TABLE_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: no catalogue table ({', '.join(TABLE_SUFFIXES)}) in it")
    return files


def _read_table(path: Path, genre: bool) -> list[Track]:
    """Tracks of one table; ``genre``: name a missing genre after the file (per-genre files)."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=False)
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"{path}: not a readable catalogue table ({exc})") from None
    found = {
        ours: next((c for c in names if c in frame.columns), None)
        for ours, names in COLUMNS.items()
    }
    missing = [ours for ours in ("audio", "moods") if found[ours] is None]
    if missing:
        has = ", ".join(map(str, frame.columns))
        raise InputError(f"{path}: no {' or '.join(missing)} column (it has {has})")
    stem = urllib.parse.unquote(path.stem)
    base = path.parent.resolve()
    tracks = []
    for i, row in enumerate(frame.to_dict("records")):
        cell = {ours: row[col] if col else None for ours, col in found.items()}
        audio = str(cell["audio"] or "").strip()
        if not audio:
            continue
        audio = audio if is_url(audio) else str(base / Path(audio).expanduser())
        track_id = str(cell["track_id"]).strip() if cell["track_id"] is not None else ""
        genres = as_list(cell["genres"]) or ((stem,) if genre else ())
        tracks.append(
            Track(
                track_id=track_id or f"{stem}-{i:05d}",
                audio=audio,
                moods=tuple(m.lower() for m in as_list(cell["moods"])),
                tags=tuple(t.lower() for t in as_list(cell["tags"])),
                genres=genres,
                title=str(cell["title"] or "") if cell["title"] is not None else "",
            )
        )
    return tracks


def download_hub(repo_id: str, cache_dir: Path | None = None) -> Path:
    """The local folder of a Hub dataset's tables (downloaded into ``data/raw/hub/``)."""
    from huggingface_hub import snapshot_download

    patterns = [f"{glob}{suffix}" for suffix in TABLE_SUFFIXES for glob in ("*", "**/*")]
    try:
        folder = snapshot_download(
            repo_id,
            repo_type="dataset",
            allow_patterns=patterns,
            cache_dir=str(cache_dir or paths.raw() / "hub"),
        )
    except Exception as exc:  # offline, unknown id, gated: all mean "not available here"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"Hub dataset {repo_id!r} could not be downloaded ({type(exc).__name__}: {reason}); "
            "without the Hub, download its files elsewhere and pass their folder as the source"
        ) from None
    return Path(folder)


# --------------------------------------------------------------------------- synthetic

# Tags per mood, in the style of a music library's metadata; the music is videobgm.synth's.
SYNTHETIC_TAGS = {
    "angry": ("distorted guitar", "aggressive", "power chords", "driving", "heavy", "rock"),
    "fear": ("drone", "suspense", "tremolo strings", "dark", "heartbeat", "horror"),
    "funny": ("oom-pah", "comedy", "reeds", "bouncy", "cartoon", "staccato"),
    "happy": ("ukulele", "sunny", "claps", "upbeat", "glockenspiel", "bright"),
    "quirky": ("marimba", "playful", "pizzicato", "whimsical", "syncopated", "plucks"),
    "sad": ("piano", "melancholic", "slow", "pads", "lonely", "reverb"),
    "weird": ("detuned", "eerie", "whole-tone", "wobbly", "experimental", "reeds"),
    "calm": ("ambient", "soft piano", "relaxing", "warm", "sustained", "gentle"),
}
# A second mood for some tracks (every second one), so that the selection rule matters.
SYNTHETIC_SECOND_MOOD = {"happy": "funny", "quirky": "weird", "calm": "sad", "fear": "weird"}
SYNTHETIC_GENRES = {
    "angry": "Rock", "fear": "Film", "funny": "Comedy", "happy": "Pop",
    "quirky": "Children", "sad": "Classical", "weird": "Experimental", "calm": "Ambient",
}  # fmt: skip
SHORT_TRACK_S = 3.0  # the one track shorter than any usual window


def synthetic_catalogue(
    directory: str | Path | None = None,
    tracks_per_mood: int = 3,
    seconds: tuple[float, float] = (8.0, 20.0),
    seed: int = 0,
    *,
    sample_rate: int = 44100,
    audio_format: str = "flac",
) -> Path:
    """Write (or reuse) a synthetic catalogue; return its ``catalogue.csv``.

    ``tracks_per_mood`` tracks for each dataset mood and for ``calm`` (outside them), each
    ``seconds`` long (uniform in the range, by ``seed``), plus one happy track of
    :data:`SHORT_TRACK_S`; audio by :func:`videobgm.synth.track` at ``sample_rate`` as
    ``audio_format`` (``flac`` or ``mp3``). Made again only when an argument changed.
    """
    directory = Path(directory) if directory else paths.raw() / SYNTHETIC
    if audio_format not in ("flac", "mp3"):
        raise InputError(f"audio_format must be 'flac' or 'mp3', not {audio_format!r}")
    spec = {
        "tracks_per_mood": tracks_per_mood,
        "seconds": list(seconds),
        "seed": seed,
        "sample_rate": sample_rate,
        "audio_format": audio_format,
        "version": 2,
    }
    table, stamp = directory / "catalogue.csv", directory / "synthetic.json"
    if stamp.is_file() and table.is_file() and json.loads(stamp.read_text()) == spec:
        return table
    rows = _synthetic_rows(tracks_per_mood, seconds, seed)
    for row in rows:
        _write_synthetic_audio(directory / row["audio"], row, sample_rate, audio_format)
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in ("moods", "tags"):
        frame[column] = frame[column].map(";".join)
    with paths.atomic_output(table) as tmp:
        frame.drop(columns=["seconds", "seed"]).to_csv(tmp, index=False)
    with paths.atomic_output(stamp) as tmp:
        tmp.write_text(json.dumps(spec, indent=1) + "\n")
    return table


def _synthetic_rows(tracks_per_mood: int, seconds: tuple[float, float], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for mood in (*DATASET_MOODS, "calm"):
        for i in range(tracks_per_mood):
            moods = [mood]
            if i % 2 == 1 and mood in SYNTHETIC_SECOND_MOOD:
                moods.append(SYNTHETIC_SECOND_MOOD[mood])
            size = int(rng.integers(3, 6))  # 3 to 5 tags, as a library's metadata varies
            tags = rng.choice(SYNTHETIC_TAGS[mood], size=size, replace=False).tolist()
            rows.append(_synthetic_row(f"syn-{mood}-{i:02d}", moods, tags, rng, seconds))
    rows.append(_synthetic_row("syn-short-00", ["happy"], ["jingle", "sting"], rng, None))
    return rows


def _synthetic_row(track_id, moods, tags, rng, seconds) -> dict:
    length = SHORT_TRACK_S if seconds is None else round(float(rng.uniform(*seconds)), 2)
    return {
        "track_id": track_id,
        "title": track_id.replace("-", " ").title(),
        "audio": f"audio/{track_id}",  # suffix added when written
        "moods": moods,
        "tags": tags,
        "genres": SYNTHETIC_GENRES[moods[0]],
        "seconds": length,
        "seed": int(rng.integers(0, 2**31)),
    }


def _write_synthetic_audio(stem: Path, row: dict, sample_rate: int, audio_format: str) -> None:
    audio = synth.track(row["moods"][0], row["seconds"], row["seed"], sample_rate)
    target = stem.with_suffix(f".{audio_format}")
    row["audio"] = f"{row['audio']}.{audio_format}"
    if audio_format == "flac":
        media.write_audio(target, audio, sample_rate)
        return
    wav = media.write_audio(stem.with_suffix(".tmp.wav"), audio, sample_rate)
    try:
        with paths.atomic_output(target) as tmp:
            media.run_ffmpeg(
                ["-y", "-i", str(wav), "-codec:a", "libmp3lame", "-b:a", "128k", str(tmp)],
                target,
                "encoding",
            )
    finally:
        wav.unlink(missing_ok=True)
