"""Curation of one track: cut random windows, render them, write the images and a record.

:func:`process_track` is what a worker process runs for a :class:`TrackJob`: fetch the audio,
decode it at the dataset's rate (ffmpeg resamples), bring it to the spectrogram's 44.1 kHz, cut
``clips_per_track`` windows at random starts and write each as a PNG with EXIF parameters; then
write the track's shard record ``shards/<stem>.json`` (status, rows of the metadata), whose
presence with the same ``key`` marks the track as finished. A track that cannot be fetched or
decoded gets a ``failed`` record (tried again by the next run); one shorter than a window a
``short`` one. Window starts depend on (seed, track id) only, never on the order of work.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from videobgm import media, paths
from videobgm.dataset.fetch import FetchParams, fetch
from videobgm.errors import VideobgmError
from videobgm.spectrogram import codec as sp
from videobgm.spectrogram.codec import SpectrogramParams, hz_to_mel, mel_to_hz

if TYPE_CHECKING:
    from videobgm.dataset.params import CurateParams, Selected

FORMAT = "videobgm-spectrogram-dataset/2"  # changes when the same inputs would give other files
SHARDS = "shards"  # folder of the per-track records, beside train/
# zlib level of the PNGs: measured on a 512 x 512 spectrogram, level 3 takes 19 ms and 205 KiB
# against Pillow's default 6 at 62 ms and 216 KiB (and 9 at 234 ms, 185 KiB).
PNG_COMPRESS_LEVEL = 3


def to_rate(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Audio resampled from ``rate`` to ``target`` Hz (polyphase, band-limited), float32."""
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def track_rng(seed: int, track_id: str) -> np.random.Generator:
    """The generator of one track's windows: a function of (seed, track id) only."""
    key = int.from_bytes(hashlib.sha256(track_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def clip_starts(track_id: str, samples: int, params: CurateParams) -> list[int]:
    """Sorted start samples (at the spectrogram's rate, on its 10 ms grid) of a track's
    windows; ``[]`` when the track is shorter than one window."""
    hop = params.spectrogram.hop_length
    if samples < params.window_samples:
        return []
    slots = (samples - params.window_samples) // hop + 1
    steps = track_rng(params.seed, track_id).integers(0, slots, size=params.clips_per_track)
    return sorted(int(k) * hop for k in steps)


def render_clip(audio: np.ndarray, params: CurateParams):
    """The spectrogram image (EXIF parameters) of one window: ``window_px`` wide, 512 high."""

    mel = sp.mel_from_audio(audio, params.spectrogram, device="cpu")
    return sp.image_from_mel(mel[..., : params.window_px], params.spectrogram)


def band_limited(audio: np.ndarray, low_rate: int, rate: int = 44100) -> np.ndarray:
    """``audio`` (at ``rate``) as it is after resampling to ``low_rate`` and back: what a
    dataset made at ``low_rate`` holds."""
    return to_rate(to_rate(audio, rate, low_rate), low_rate, rate)[: len(audio)]


def band_centres_hz(params: SpectrogramParams | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, i.e. of each image row, lowest first."""

    p = params or SpectrogramParams()
    low, high = hz_to_mel(p.min_frequency), hz_to_mel(p.max_frequency)
    return mel_to_hz(np.linspace(low, high, p.num_frequencies + 2)[1:-1])


def rows_above(frequency_hz: float, params: SpectrogramParams | None = None) -> int:
    """Image rows (mel bands) whose centre lies above ``frequency_hz``: the rows, at the top of
    the image, left empty by audio band-limited there (sampled at 2 x ``frequency_hz``)."""
    return int(np.sum(band_centres_hz(params) > frequency_hz))


# --------------------------------------------------------------------------- one track


@dataclass(frozen=True)
class TrackJob:
    """Everything a worker needs for one track (picklable)."""

    track_id: str
    audio: str
    mood: str
    text: str
    stem: str  # file-name stem of its images and shard record
    out: str
    params: CurateParams
    fetch: FetchParams
    key: str  # hash of the inputs and parameters: a record with another key is redone


def file_stem(track_id: str) -> str:
    """A file-name-safe stem for a track id (a hash is appended when characters changed)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", track_id.lower()).strip("-.")[:60]
    if slug == track_id:
        return slug
    return f"{slug or 'track'}-{hashlib.sha1(track_id.encode()).hexdigest()[:8]}"


def make_job(selected: Selected, out: Path, params: CurateParams, fetch: FetchParams) -> TrackJob:
    t = selected.track
    inputs = {"format": FORMAT, "track_id": t.track_id, "audio": t.audio, "mood": selected.mood}
    inputs |= {"text": selected.text, "params": params.content()}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    stem = file_stem(t.track_id)
    return TrackJob(
        t.track_id, t.audio, selected.mood, selected.text, stem, str(out), params, fetch, key
    )


def shard_path(out: Path, stem: str) -> Path:
    return Path(out) / SHARDS / f"{stem}.json"


def read_record(out: Path, stem: str) -> dict | None:
    """A track's shard record, or None when it has none (or an unreadable one)."""
    try:
        return json.loads(shard_path(out, stem).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_done(job: TrackJob) -> bool:
    """Finished in an earlier run with the same inputs (failed tracks are tried again)."""
    record = read_record(Path(job.out), job.stem)
    return bool(record) and record["key"] == job.key and record["status"] != "failed"


def save_png(image, path: Path) -> Path:
    """Write a spectrogram image as PNG with its EXIF, atomically."""
    with paths.atomic_output(path) as tmp:
        image.save(tmp, format="PNG", exif=image.getexif(), compress_level=PNG_COMPRESS_LEVEL)
    return path


def process_track(job: TrackJob) -> dict:
    """Fetch, decode, cut, render and write one track; write and return its shard record
    (``status`` ``ok``, ``short`` or ``failed`` with the ``error``)."""

    params = job.params
    rate = params.spectrogram.sample_rate
    record = {"track_id": job.track_id, "key": job.key, "status": "ok", "rows": []}
    try:
        path = fetch(job.audio, job.fetch)
        audio = media.decode_audio(path, params.sample_rate, mono=True)
    except (VideobgmError, OSError) as exc:
        record |= {"status": "failed", "error": str(exc)}
    else:
        audio = to_rate(audio, params.sample_rate, rate)
        record["track_s"] = round(len(audio) / rate, 3)
        starts = clip_starts(job.track_id, len(audio), params)
        record["status"] = "ok" if starts else "short"
        digits = max(2, len(str(params.clips_per_track - 1)))
        for k, start in enumerate(starts):
            name = f"{job.stem}-{k:0{digits}d}.png"
            window = audio[start : start + params.window_samples]
            save_png(render_clip(window, params), Path(job.out) / "train" / name)
            row = {"file_name": name, "text": job.text, "mood": job.mood, "track_id": job.track_id}
            row |= {"start_s": round(start / rate, 6), "duration_s": params.duration_s}
            record["rows"].append(row)
    with paths.atomic_output(shard_path(Path(job.out), job.stem)) as tmp:
        tmp.write_text(json.dumps(record) + "\n")
    return record
