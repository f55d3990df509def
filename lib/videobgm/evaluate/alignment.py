"""Zero-shot alignment of music with the seven emotions' prompts, and variant ranking."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobgm import media, prompts
from videobgm.errors import InputError
from videobgm.evaluate.clap import CLAP_RATE, Embedder, unit

EMOTIONS = prompts.EMOTIONS  # the confusion matrix's rows and columns, in this order


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


def align_file(
    track: str | os.PathLike[str], spans: Sequence[Any], embedder: Embedder,
    texts: np.ndarray | None = None,
) -> Alignment:  # fmt: skip
    """:func:`align` for a music file, read one span at a time (memory holds one span's
    audio, however long the track)."""
    texts = emotion_embeddings(embedder) if texts is None else texts
    rows, labels, times = [], [], []
    for span in spans:
        piece = media.decode_audio(track, CLAP_RATE, start_s=span.start,
                                   duration_s=span.end - span.start)  # fmt: skip
        if piece.size:
            rows.append(embedder.embed_audio([piece], CLAP_RATE)[0])
            labels.append(span.emotion)
            times.append((span.start, span.end))
    if not rows:
        raise InputError(f"{track}: no span of the timeline has music under it")
    return score_embeddings(np.stack(rows), labels, texts, embedder.logit_scale, times)


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
        alignment = align_file(track, spans, embedder, texts)
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
