"""CLAP through transformers: unit-length audio and text embeddings, cached per file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from videobgm import media, paths
from videobgm.dataset.clips import to_rate
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.vocab import SAMPLE_RATE

CLAP_RATE = 48000  # Hz; CLAP's feature extractor works at 48 kHz
RATE_44K = SAMPLE_RATE  # Hz; the project's audio rate (composed music, decoded dataset clips)
WINDOW_S = 10.0  # s; CLAP's input length: longer audio is cut into windows, averaged
MIN_TAIL_S = 1.0  # s; a last window shorter than this is dropped (unless it is the only one)
BATCH = 8  # windows per forward pass


class Embedder(Protocol):
    """What the scoring functions need from a CLAP."""

    logit_scale: float

    def embed_audio(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...


class Clap:
    """A loaded CLAP model: unit-length audio and text embeddings, and its zero-shot scale."""

    def __init__(self, model: Any, processor: Any, device: str, ref: str):
        self.model, self.processor, self.device, self.ref = model, processor, device, ref
        # CLAP's audio->text temperature
        self.logit_scale = float(model.logit_scale_a.detach().exp())
        self.dim = int(model.config.projection_dim)
        fusion = bool(model.config.audio_config.enable_fusion)
        # Our windows are never longer than the model's input, so "rand_trunc" never crops at
        # random: the same audio always gives the same embedding.
        self.truncation = "fusion" if fusion else "rand_trunc"

    def embed_audio(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """``(len(clips), dim)`` float32: each clip (mono, any length) resampled to 48 kHz,
        cut into 10 s windows, embedded in batches; window embeddings averaged, renormalised."""
        if not clips:
            return np.zeros((0, self.dim), np.float32)
        windows, owner = [], []
        for index, clip in enumerate(clips):
            pieces = audio_windows(to_rate(np.asarray(clip, np.float32), sample_rate, CLAP_RATE))
            windows += pieces
            owner += [index] * len(pieces)
        embedded = np.concatenate(
            [self._audio_batch(windows[i : i + BATCH]) for i in range(0, len(windows), BATCH)]
        )
        owner_ids = np.asarray(owner)
        means = np.stack([embedded[owner_ids == i].mean(axis=0) for i in range(len(clips))])
        return unit(means)

    def _audio_batch(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch  # deferred: heavy import

        features = self.processor.feature_extractor(
            windows, sampling_rate=CLAP_RATE, truncation=self.truncation, return_tensors="pt"
        )
        features = {k: v.to(self.device) for k, v in features.items()}
        with torch.inference_mode(), models.model_threads(self.ref, self.device):
            out = self.model.get_audio_features(**features).pooler_output
        return out.float().cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit-length text embeddings."""
        import torch  # deferred: heavy import

        tokens = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, return_tensors="pt"
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode(), models.model_threads(self.ref, self.device):
            out = self.model.get_text_features(**tokens).pooler_output
        return unit(out.float().cpu().numpy())


def load_clap(
    profile: str | models.ModelProfile = "auto", device: str | None = None, ref: str | None = None
) -> Clap:
    """The profile's CLAP (``ClapModel`` + ``ClapProcessor``, at its pinned revision) on
    ``device`` (default: CUDA when visible); ``ref`` names another one (hub id at its newest
    revision, or a local folder). Raises ModelUnavailableError when the weights are neither
    cached nor downloadable."""
    from transformers import ClapModel, ClapProcessor  # deferred: heavy import

    resolved = models.resolve_profile(profile)
    device = device or models.default_device()
    pinned = not ref or ref == resolved.clap
    ref = ref or resolved.clap
    where = models.locate(ref)
    local = ref.startswith("tiny:") or Path(where).exists()
    revision = resolved.clap_revision if pinned and not local else None
    try:
        model = ClapModel.from_pretrained(where, revision=revision)
        processor = ClapProcessor.from_pretrained(where, revision=revision)
    except OSError as exc:
        raise models.ModelUnavailableError(
            f"CLAP model {ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc
    return Clap(model.eval().to(device), processor, device, ref)


def audio_windows(audio: np.ndarray, rate: int = CLAP_RATE) -> list[np.ndarray]:
    """``audio`` cut into consecutive :data:`WINDOW_S` windows; a last piece shorter than
    :data:`MIN_TAIL_S` is dropped unless it is all there is (CLAP repeat-pads short input)."""
    size, tail = int(WINDOW_S * rate), int(MIN_TAIL_S * rate)
    if audio.size == 0:
        raise InputError("cannot embed empty audio")
    pieces = [audio[i : i + size] for i in range(0, audio.size, size)]
    if len(pieces) > 1 and pieces[-1].size < tail:
        pieces.pop()
    return pieces


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def embed_files(
    embedder: Clap, files: Sequence[str | os.PathLike[str]], cache: Path | None = None
) -> np.ndarray:
    """``(len(files), dim)`` embeddings of audio files, cached per file (its bytes' hash and the
    model's reference) under ``cache`` (default ``data/interim/clap-embeddings``)."""
    folder = paths.ensure_dir(cache or paths.interim() / "clap-embeddings")
    rows = []
    for file in files:
        digest = hashlib.sha256(Path(file).read_bytes() + embedder.ref.encode()).hexdigest()
        stored = folder / f"{digest[:24]}.npy"
        if stored.exists():
            rows.append(np.load(stored))
            continue
        audio = media.decode_audio(file, CLAP_RATE)
        row = embedder.embed_audio([audio], CLAP_RATE)[0]
        with paths.atomic_output(stored) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, row)
        rows.append(row)
    return np.stack(rows)
