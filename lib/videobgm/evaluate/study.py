"""The study of notebook 06: the same prompts through several backends, scored side by side."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobgm import prompts
from videobgm.compose import renderer as compose
from videobgm.dataset import curation as dataset
from videobgm.errors import InputError
from videobgm.evaluate.alignment import Alignment, emotion_embeddings, score_embeddings
from videobgm.evaluate.clap import RATE_44K, Clap
from videobgm.evaluate.fad import fad
from videobgm.models import profiles as models
from videobgm.spectrogram import codec as spectrogram
from videobgm.vocab import Span

STUDY_BACKENDS = ("procedural", "riffusion", "riffusion+lora")  # what notebook 06 compares


def backend_clips(
    backend: str, emotion: str, seeds: Sequence[int], seconds: float, profile: Any,
    lora: str | None = None, steps: int | None = None, device: str | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """One clip of ``seconds`` per seed for ``emotion`` from a backend: ``procedural``,
    ``riffusion`` (no LoRA: scale 0) or ``riffusion+lora`` (``lora``, default the profile's),
    through :func:`videobgm.compose.compose` (44.1 kHz mono float32)."""

    if backend not in STUDY_BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(STUDY_BACKENDS)}")
    resolved = models.resolve_profile(profile)
    if lora:
        resolved = dataclasses.replace(resolved, lora=lora)
    music = "procedural" if backend == "procedural" else "riffusion"
    scale = 1.0 if backend == "riffusion+lora" else 0.0
    span = [Span(0.0, seconds, emotion, 1.0)]
    return [
        compose.compose(span, seconds, music=music, seed=seed, profile=resolved, steps=steps,
                        lora_scale=scale, device=device, progress=False)[0].audio
        for seed in seeds
    ]  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One backend's clips in a study: the audio, what each was made for, and its scores."""

    backend: str
    emotions: tuple[str, ...]  # the intended emotion of each clip
    seeds: tuple[int, ...]
    clips: tuple[np.ndarray, ...]  # 44.1 kHz mono float32
    embeddings: np.ndarray  # (clips, dim)
    alignment: Alignment

    def extremes(self) -> list[tuple[str, int, int]]:
        """Per emotion: (emotion, index of its best clip, index of its worst clip), by the
        zero-shot probability of the intended emotion."""
        rows = []
        for emotion in dict.fromkeys(self.emotions):
            own = [i for i, e in enumerate(self.emotions) if e == emotion]
            probs = [self.alignment.spans[i].probability for i in own]
            rows.append((emotion, own[int(np.argmax(probs))], own[int(np.argmin(probs))]))
        return rows


def study_arm(
    backend: str, emotions: Sequence[str], seeds: Sequence[int], seconds: float, clap: Clap,
    profile: Any = "auto", lora: str | None = None, steps: int | None = None,
    texts: np.ndarray | None = None,
) -> Arm:  # fmt: skip
    """Generate one clip per (emotion, seed) with ``backend`` and score them all."""
    from tqdm.auto import tqdm  # deferred: only studies show this bar

    made, clips = [], []
    for emotion in tqdm(emotions, desc=backend, leave=False):
        for clip in backend_clips(backend, emotion, seeds, seconds, profile, lora, steps,
                                  clap.device):  # fmt: skip
            made.append(emotion)
            clips.append(clip)
    embeddings = clap.embed_audio(clips, RATE_44K)
    texts = emotion_embeddings(clap) if texts is None else texts
    alignment = score_embeddings(embeddings, made, texts, clap.logit_scale)
    seed_list = tuple(seed for _ in emotions for seed in seeds)
    return Arm(backend, tuple(made), seed_list, tuple(clips), embeddings, alignment)


def reference_embeddings(
    clap: Clap, dataset_dir: str | os.PathLike[str], moods: Sequence[str], per_mood: int = 4
) -> dict[str, np.ndarray]:
    """Embeddings of up to ``per_mood`` clips of each mood from a curated dataset (its
    spectrogram images decoded back to audio): ``{mood: (n, dim)}``; moods the dataset lacks
    are left out."""
    import json

    folder = Path(dataset_dir) / "train"
    metadata = folder / "metadata.jsonl"
    if not metadata.exists():
        raise InputError(f"{dataset_dir}: is not a curated dataset (no train/metadata.jsonl)")
    rows = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
    out = {}
    for mood in dict.fromkeys(moods):
        names = [r["file_name"] for r in rows if r.get("mood") == mood][:per_mood]
        if names:
            images = [spectrogram.open_image(folder / name) for name in names]
            out[mood] = clap.embed_audio(dataset.preview_audio(images, RATE_44K), RATE_44K)
    return out


def study_table(arms: Sequence[Arm], references: dict[str, np.ndarray], table=None):
    """One row per backend: top-1 accuracy, mean rank, mean margin and FAD against the
    reference clips of the moods its emotions are prompted with (pooled; NaN with fewer than
    2 clips on either side). A ``pandas.DataFrame``."""
    import pandas as pd  # deferred: only the notebook's tables need it

    table = prompts.load_prompts() if table is None else table
    rows = []
    for arm in arms:
        moods = {table[e].mood for e in arm.emotions}
        pooled = [references[m] for m in moods if m in references]
        reference = np.concatenate(pooled) if pooled else np.zeros((0, arm.embeddings.shape[1]))
        usable = len(arm.clips) >= 2 and len(reference) >= 2
        rows.append({
            "backend": arm.backend, "clips": len(arm.clips), **arm.alignment.summary(),
            "reference clips": len(reference),
            "FAD": fad(arm.embeddings, reference) if usable else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows).drop(columns=["spans"]).set_index("backend")
