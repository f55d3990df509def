"""The training side of the spectrogram dataset: checking, loading, cropping, toy data.

The dataset is a Hugging Face ``imagefolder`` (``train/*.png`` + ``train/metadata.jsonl`` with
``file_name``, ``text`` and source columns) written by the curation stage, or a Hub dataset
with ``image`` and ``text`` columns. Training takes square crops: an image taller than the
resolution is scaled so that its height is the resolution (both axes alike), then a random
window in time is cut (10 s clips are 1000 px wide); validation takes the centre.

Randomness is a function of (seed, epoch, clip index) only, so that a resumed run draws the
same crops and the same order as an uninterrupted one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from videobgm import paths
from videobgm.errors import InputError
from videobgm.spectrogram import codec as spectrogram
from videobgm.vocab import DATASET_MOODS

MOODS = DATASET_MOODS  # the dataset's caption moods
PX_PER_S = 100  # riffusion images: 10 ms hop per pixel column
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TOY_TAGS = ("piano", "strings", "drums", "synth", "guitar", "bass", "pads", "ambient", "lofi")


# --------------------------------------------------------------------------- loading


def load_rows(source: str, resolution_px: int) -> Any:
    """The dataset's ``image`` and ``text`` columns as a ``datasets.Dataset``.

    ``source`` is a local imagefolder directory or a Hub dataset id. Raises
    :class:`InputError` for a missing, empty or malformed dataset, and when its images are
    smaller than ``resolution_px``.
    """
    import datasets

    path = Path(source).expanduser()
    if path.exists():
        check_imagefolder(path)
        rows = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
    elif _HUB_ID.fullmatch(source):
        try:
            rows = datasets.load_dataset(source, split="train")
        except Exception as exc:  # offline, unknown id, no train split: all mean "cannot use"
            raise InputError(f"dataset {source!r} is not a directory nor loadable ({exc})") from exc
    else:
        raise InputError(f"dataset directory {source} does not exist")
    missing = {"image", "text"} - set(rows.column_names)
    if missing:
        raise InputError(f"dataset {source} lacks the column(s) {', '.join(sorted(missing))}")
    if len(rows) == 0:
        raise InputError(f"dataset {source} is empty")
    rows = rows.select_columns(["image", "text"])
    height = rows[0]["image"].height
    if resolution_px > height:
        raise InputError(
            f"resolution {resolution_px} px is larger than the dataset's images "
            f"({height} px high) in {source}"
        )
    return rows


def check_imagefolder(path: Path) -> int:
    """Check an imagefolder's layout and metadata; return its number of clips."""
    train = path / "train"
    meta = train / "metadata.jsonl"
    if not meta.is_file():
        raise InputError(f"dataset {path} has no train/metadata.jsonl (not an imagefolder)")
    names = []
    for number, line in enumerate(meta.read_text().splitlines(), start=1):
        if line.strip():
            names.append(_check_line(line, f"{meta}:{number}", train))
    if not names:
        raise InputError(f"dataset {path} is empty: {meta} lists no clips")
    unlisted = {p.name for p in train.glob("*.png")} - set(names)
    if unlisted:
        raise InputError(
            f"dataset {path} has {len(unlisted)} image(s) without a metadata line, "
            f"e.g. {sorted(unlisted)[0]}"
        )
    return len(names)


def _check_line(line: str, where: str, train: Path) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where} is not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise InputError(f"{where} is not a JSON object")
    for key in ("file_name", "text"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise InputError(f"{where} has no {key!r} string")
    if not (train / row["file_name"]).is_file():
        raise InputError(f"{where} names {row['file_name']}, which is not in {train}")
    return row["file_name"]


# --------------------------------------------------------------------------- clips


def crop_clip(image: Any, resolution_px: int, rng: np.random.Generator | None = None):
    """A square crop as float32 ``(3, px, px)`` in [-1, 1]: scaled to the resolution's height,
    then a random window in time (``rng``) or the centre one (``rng=None``)."""
    from PIL import Image

    image = image.convert("RGB")
    width = round(image.width * resolution_px / image.height)
    if image.height < resolution_px or width < resolution_px:
        raise InputError(
            f"a {image.width} x {image.height} px clip is smaller than the {resolution_px} px crop"
        )
    if image.height != resolution_px:
        image = image.resize((width, resolution_px), Image.Resampling.BILINEAR)
    slack = width - resolution_px
    x = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    pixels = np.asarray(image.crop((x, 0, x + resolution_px, resolution_px)), dtype=np.float32)
    return np.ascontiguousarray((pixels / 127.5 - 1.0).transpose(2, 0, 1))


class SpectrogramClips:
    """Map-style dataset for a DataLoader: key ``(epoch, index)`` -> pixel values, token ids."""

    def __init__(self, rows, tokenizer, resolution_px: int, seed: int, random_crop: bool = True):
        self.rows, self.tokenizer = rows, tokenizer
        self.resolution_px, self.seed, self.random_crop = resolution_px, seed, random_crop

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, index = key
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, epoch, index]) if self.random_crop else None
        ids = self.tokenizer(
            row["text"],
            max_length=self.tokenizer.model_max_length,
            padding="max_length",
            truncation=True,
        ).input_ids
        pixels = crop_clip(row["image"], self.resolution_px, rng)
        return {"pixel_values": pixels, "input_ids": np.asarray(ids, dtype=np.int64)}

    def sampler(self) -> EpochSampler:
        return EpochSampler(len(self), self.seed)

    @staticmethod
    def collate(items: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(np.stack([item[k] for item in items])) for k in items[0]}


class EpochSampler:
    """Yields ``(epoch, index)`` keys: a permutation that depends only on (seed, epoch)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return iter([(self.epoch, int(i)) for i in order])


def spectrogram_audio(images: list[Any], postfilter: str = "normalize") -> tuple[list, int]:
    """Audio of spectrogram images through the codec (:mod:`videobgm.spectrogram`) and its
    sample rate. Images less than 512 px high (low-resolution training runs) are first scaled
    to riffusion's 512 mel bands, both axes alike, which undoes the training crop's scaling
    (a column is 10 ms again). ``postfilter="normalize"`` (peak at -0.1 dBFS) because an
    image without EXIF has no recorded loudness and raw decodes can exceed full scale."""
    from PIL import Image

    params = spectrogram.SpectrogramParams()
    bands = params.num_frequencies
    ready = [
        image.convert("RGB").resize(
            (round(image.width * bands / image.height), bands), Image.Resampling.BILINEAR
        )
        if image.height != bands
        else image.convert("RGB")
        for image in images
    ]
    return spectrogram.audio_from_images(ready, params, postfilter=postfilter), params.sample_rate


# --------------------------------------------------------------------------- toy data


def toy_spectrogram(mood_index: int, height_px: int, width_px: int, rng) -> np.ndarray:
    """A grey uint8 image in riffusion's look (white is silence, low notes at the bottom): a
    harmonic tone whose pitch and rhythm depend on the mood, over a faint noise floor."""
    level = rng.uniform(0.0, 1e-4, size=(height_px, width_px))  # a faint floor: light grey
    fundamental = height_px * (0.04 + 0.05 * mood_index) * rng.uniform(0.9, 1.1)
    period = int((25 + 10 * mood_index) * rng.uniform(0.9, 1.1))  # px per beat
    on = (np.arange(width_px) + rng.integers(period)) % period < 0.6 * period
    thickness = max(1, height_px // 256)
    for harmonic in range(1, 6):
        row = height_px - 1 - int(fundamental * harmonic)
        if row < thickness:
            break
        level[row - thickness : row + thickness, on] += 1.0 / harmonic
    pixels = 255.0 * (1.0 - np.clip(level, 0.0, 1.0) ** 0.25)
    return pixels.astype(np.uint8)


def make_toy_dataset(
    directory: str | Path,
    clips_per_mood: int = 2,
    *,
    height_px: int = 512,
    width_px: int = 1000,
    seed: int = 0,
) -> Path:
    """Write a small synthetic mood dataset in the curation stage's imagefolder format
    (a stand-in for tests and quick runs; real data comes from :mod:`videobgm.dataset`)."""
    from PIL import Image

    train = paths.ensure_dir(Path(directory) / "train")
    rng = np.random.default_rng(seed)
    lines = []
    for k, mood in enumerate(MOODS):
        for i in range(clips_per_mood):
            name = f"toy-{mood}-{i:03d}.png"
            grey = toy_spectrogram(k, height_px, width_px, rng)
            with paths.atomic_output(train / name) as tmp:
                Image.fromarray(grey).convert("RGB").save(tmp, format="PNG")
            tags = ", ".join(rng.choice(_TOY_TAGS, size=2, replace=False))
            row = {"file_name": name, "text": f"{mood}, {tags}", "mood": mood}
            row |= {"track_id": f"toy-{mood}", "start_s": 0.0, "duration_s": width_px / PX_PER_S}
            lines.append(json.dumps(row))
    with paths.atomic_output(train / "metadata.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(directory)
