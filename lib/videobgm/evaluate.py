"""Does the music fit the emotion? CLAP alignment per span, Fréchet Audio Distance, ranking.

The field measures music against text with audio-text embedding models. Here that model is
CLAP (``ClapModel`` + ``ClapProcessor`` from transformers; the profile's ``clap``, by default
``laion/larger_clap_music``, a random tiny CLAP under the ``tiny`` profile):

- :class:`Clap` embeds audio (at CLAP's 48 kHz, in 10 s windows averaged per clip) and text,
  batched, on CPU or CUDA; every embedding has unit length.
- :func:`align` scores each span of a timeline zero-shot against the seven emotions' prompts
  (the prompt table of :mod:`videobgm.prompts`): a span is aligned when its intended emotion
  ranks first. :class:`Alignment` reports top-1 accuracy, mean rank, cosine margin and the
  confusion matrix.
- :func:`frechet_distance` is the Fréchet distance between two Gaussians (pure numpy/scipy);
  :func:`fad` applies it to two sets of embeddings; :func:`embed_files` caches them per file.
- :func:`rank_variants` orders a run's variants by their fit to the timeline, best first.

Anything with ``embed_audio(clips, sample_rate)``, ``embed_text(texts)`` and ``logit_scale``
can stand in for :class:`Clap` (the scoring functions only need that).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from videobgm import media, models, paths, prompts
from videobgm.dataset_clips import to_rate
from videobgm.errors import InputError

CLAP_RATE = 48000  # Hz; CLAP's feature extractor works at 48 kHz
RATE_44K = 44100  # Hz; the project's audio rate (composed music, decoded dataset clips)
WINDOW_S = 10.0  # s; CLAP's input length: longer audio is cut into windows, averaged
MIN_TAIL_S = 1.0  # s; a last window shorter than this is dropped (unless it is the only one)
BATCH = 8  # windows per forward pass
EMOTIONS = prompts.EMOTIONS  # the confusion matrix's rows and columns, in this order
STUDY_BACKENDS = ("procedural", "riffusion", "riffusion+lora")  # what notebook 06 compares


class Embedder(Protocol):
    """What the scoring functions need from a CLAP."""

    logit_scale: float

    def embed_audio(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------- CLAP


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


# --------------------------------------------------------------------------- zero-shot


def emotion_texts(table: dict[str, prompts.EmotionPrompt] | None = None) -> dict[str, tuple]:
    """Each emotion's prompts from the prompt table, in :data:`EMOTIONS` order."""
    table = prompts.load_prompts() if table is None else table
    return {label: table[label].prompts for label in EMOTIONS}


def emotion_embeddings(embedder: Embedder, table=None) -> np.ndarray:
    """``(7, dim)``: per emotion, the mean of its prompts' embeddings, renormalised (the usual
    prompt ensemble of zero-shot CLIP/CLAP)."""
    texts = emotion_texts(table)
    flat = [text for label in EMOTIONS for text in texts[label]]
    embedded = embedder.embed_text(flat)
    bounds = np.cumsum([0] + [len(texts[label]) for label in EMOTIONS])
    return unit(
        np.stack([embedded[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    )


def zero_shot(audio: np.ndarray, texts: np.ndarray, logit_scale: float) -> np.ndarray:
    """``(n, k)`` probabilities: softmax over the ``k`` texts of ``logit_scale`` x cosine."""
    logits = logit_scale * (unit(audio) @ unit(texts).T)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class SpanScore:
    """One span's music against the seven emotions."""

    start_s: float
    end_s: float
    intended: str
    recognised: str  # the emotion that ranks first
    rank: int  # 1 when the intended emotion ranks first, 7 when last
    margin: float  # cosine of the intended emotion minus the best other one
    probability: float  # zero-shot probability of the intended emotion


@dataclass(frozen=True)
class Alignment:
    """Span scores and their summaries (duration-weighted where it says so)."""

    spans: tuple[SpanScore, ...]

    @property
    def accuracy(self) -> float:
        """Fraction of spans whose intended emotion ranks first."""
        return float(np.mean([s.rank == 1 for s in self.spans]))

    @property
    def mean_rank(self) -> float:
        """Mean rank of the intended emotion (1 best, 7 worst; chance 4)."""
        return float(np.mean([s.rank for s in self.spans]))

    @property
    def mean_margin(self) -> float:
        """Mean cosine margin (> 0 when the intended emotion wins)."""
        return float(np.mean([s.margin for s in self.spans]))

    @property
    def fit(self) -> float:
        """Duration-weighted mean probability of the intended emotion: the ranking score."""
        weights = np.array([s.end_s - s.start_s for s in self.spans])
        probs = np.array([s.probability for s in self.spans])
        return float(np.average(probs, weights=weights if weights.sum() > 0 else None))

    def confusion(self) -> np.ndarray:
        """7 x 7 counts: rows the intended emotion, columns the recognised one."""
        return confusion_matrix(
            [s.intended for s in self.spans], [s.recognised for s in self.spans]
        )

    def summary(self) -> dict[str, float]:
        return {"spans": len(self.spans), "accuracy": self.accuracy, "mean_rank": self.mean_rank,
                "mean_margin": self.mean_margin, "fit": self.fit}  # fmt: skip


def confusion_matrix(intended: Sequence[str], recognised: Sequence[str]) -> np.ndarray:
    """Counts ``(7, 7)``: row = intended emotion, column = recognised, in :data:`EMOTIONS`."""
    index = {label: i for i, label in enumerate(EMOTIONS)}
    matrix = np.zeros((len(EMOTIONS), len(EMOTIONS)), dtype=np.int64)
    for a, b in zip(intended, recognised, strict=True):
        matrix[index[a], index[b]] += 1
    return matrix


def score_embeddings(
    audio: np.ndarray, intended: Sequence[str], texts: np.ndarray, logit_scale: float,
    times: Sequence[tuple[float, float]] | None = None,
) -> Alignment:  # fmt: skip
    """Alignment of audio embeddings ``(n, dim)`` with their intended emotions, given the
    emotions' text embeddings ``(7, dim)``."""
    unknown = sorted(set(intended) - set(EMOTIONS))
    if unknown:
        raise InputError(f"unknown emotion {unknown[0]!r} (the labels are {', '.join(EMOTIONS)})")
    cosines = unit(audio) @ unit(texts).T
    probs = zero_shot(audio, texts, logit_scale)
    times = times or [(0.0, 1.0)] * len(intended)
    spans = []
    for row, label, prob, (start, end) in zip(cosines, intended, probs, times, strict=True):
        k = EMOTIONS.index(label)
        others = np.delete(row, k)
        spans.append(SpanScore(
            start_s=float(start), end_s=float(end), intended=label,
            recognised=EMOTIONS[int(np.argmax(row))], rank=int(1 + np.sum(others > row[k])),
            margin=float(row[k] - others.max()), probability=float(prob[k]),
        ))  # fmt: skip
    return Alignment(tuple(spans))


def align(
    music: np.ndarray, sample_rate: int, spans: Sequence[Any], embedder: Embedder,
    texts: np.ndarray | None = None,
) -> Alignment:  # fmt: skip
    """Score each span (``start``, ``end`` in s, ``emotion``) of a timeline against the music
    track under it. ``texts``: the emotions' embeddings (computed when not given)."""
    texts = emotion_embeddings(embedder) if texts is None else texts
    pieces, labels, times = [], [], []
    for span in spans:
        piece = music[int(round(span.start * sample_rate)) : int(round(span.end * sample_rate))]
        if piece.size:
            pieces.append(piece)
            labels.append(span.emotion)
            times.append((span.start, span.end))
    if not pieces:
        raise InputError("the timeline has no span with music under it")
    audio = embedder.embed_audio(pieces, sample_rate)
    return score_embeddings(audio, labels, texts, embedder.logit_scale, times)


# --------------------------------------------------------------------------- FAD


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``."""
    from scipy import linalg  # deferred: only FAD needs it

    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1, sigma2 = (
        np.atleast_2d(sigma1).astype(np.float64),
        np.atleast_2d(sigma2).astype(np.float64),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InputError(f"Fréchet distance of different dimensions: {mu1.shape} and {mu2.shape}")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product (fewer samples than dimensions)
        offset = np.eye(len(mu1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # rounding leaves a negligible imaginary part
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def gaussian(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of ``(n, dim)`` embeddings; ``n >= 2``."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise InputError(f"FAD needs at least 2 embeddings per set, got {len(embeddings)}")
    return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False)


def fad(generated: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet Audio Distance between two sets of embeddings ``(n, dim)`` (0: same Gaussian)."""
    return frechet_distance(*gaussian(generated), *gaussian(reference))


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


# --------------------------------------------------------------------------- ranking


def rank_variants(
    tracks: Sequence[str | os.PathLike[str]], spans: Sequence[Any], embedder: Embedder
) -> list[dict[str, Any]]:
    """Score each music track (a variant of one run) against the timeline ``spans`` and return
    one record per variant, best first: ``variant`` (its 1-based number in the run), ``file``,
    and :meth:`Alignment.summary`. Ties keep the variants' order, so a ranking is
    reproducible."""
    texts = emotion_embeddings(embedder)
    records = []
    for number, track in enumerate(tracks, start=1):
        music = media.decode_audio(track, CLAP_RATE)
        alignment = align(music, CLAP_RATE, spans, embedder, texts)
        records.append({"variant": number, "file": Path(track).name, **alignment.summary()})
    return sorted(records, key=lambda r: (-round(r["fit"], 9), -r["accuracy"], r["variant"]))


def ranking_markdown(records: Sequence[dict[str, Any]]) -> str:
    """The ranking as a markdown section for a run's report."""
    lines = [
        "## Variants ranked by fit to the timeline (CLAP)", "",
        "Output 1 is the best. fit: duration-weighted probability of the intended emotion; "
        "top-1: share of spans whose intended emotion ranks first.", "",
        "| output | composed as | fit | top-1 | mean rank | margin |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for place, r in enumerate(records, start=1):
        lines.append(
            f"| {place} | variant {r['variant']} ({r['file']}) | {r['fit']:.5f} | "
            f"{r['accuracy']:.2f} | {r['mean_rank']:.2f} | {r['mean_margin']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- study


def backend_clips(
    backend: str, emotion: str, seeds: Sequence[int], seconds: float, profile: Any,
    lora: str | None = None, steps: int | None = None, device: str | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """One clip of ``seconds`` per seed for ``emotion`` from a backend: ``procedural``,
    ``riffusion`` (no LoRA: scale 0) or ``riffusion+lora`` (``lora``, default the profile's),
    through :func:`videobgm.compose.compose` (44.1 kHz mono float32)."""
    import dataclasses

    from videobgm import compose
    from videobgm.emotion import Span

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

    from videobgm import dataset, spectrogram

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
