"""Emotion per phrase, and the emotion timeline that covers the whole video.

:func:`classify` gives every transcript segment the classifier's 7 probabilities, in the order
of :data:`videobgm.models.EMOTION_LABELS`. :func:`timeline` turns them into :class:`Span` s
that tile [0, duration] with no gaps or overlaps, following the original project's rules:

1. a phrase whose top score is below ``min_confidence`` is uncertain and counts as neutral;
2. consecutive phrases with the same emotion merge, and the pauses between phrases are split
   at their middle between the neighbouring spans;
3. a span shorter than ``min_span_s`` is dropped: when the spans on both sides share an
   emotion they join into one (the bridging rule), otherwise it merges into its stronger
   neighbour (higher confidence, then longer);
4. ``neutral_policy``: ``"extend"`` (neutral phrases take the emotion of the nearest emotional
   phrase), ``"ambient"`` (neutral keeps its own calm music) or ``"silence"`` (no music there:
   neutral spans become :data:`SILENCE`, the original project's behaviour).

A video with no speech gets one calm (neutral) span, or one silence span under ``"silence"``.
``method="viterbi"`` replaces the per-phrase argmax by the most probable label sequence under a
switching penalty (zero penalty gives the argmax back); steps 2-4 then apply as for the rules.

Timelines are written as JSON (a list of ``{start, end, emotion, confidence, segment_ids}``),
CSV or SRT by :mod:`videobgm.emotion.io`, which also validates hand-edited timelines. The
``videobgm timeline`` command is defined here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from videobgm.emotion import io as timeline_io
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.transcribe import (
    Segment,
    Transcript,
    add_sidecar_arguments,
    split_sentences,
    transcript_for,
)
from videobgm.vocab import EMOTION_LABELS, NEUTRAL, SILENCE, Span
from videobgm.vocab import (
    TIMELINE_LABELS as TIMELINE_LABELS,  # re-exported: the labels a timeline may hold
)

NEUTRAL_POLICIES = ("extend", "ambient", "silence")
METHODS = ("rules", "viterbi")
_NEUTRAL_INDEX = EMOTION_LABELS.index(NEUTRAL)
_EPS_S = 1e-9  # s; float slack when comparing span lengths with min_span_s
_LOG_FLOOR = 1e-6  # probability floor before taking logs in the Viterbi decoder


@dataclass(frozen=True)
class TimelineParams:
    """Every threshold of the post-processing (defaults as in the module docstring)."""

    min_confidence: float = 0.4  # top probability below this: the phrase is uncertain (neutral)
    min_span_s: float = 5.0  # s; shorter spans are bridged or merged (original project: 5 s)
    neutral_policy: str = "ambient"  # "extend" | "ambient" | "silence"
    method: str = "rules"  # "rules" | "viterbi"
    switch_penalty: float = 1.0  # nats per change of emotion (viterbi only)

    def __post_init__(self) -> None:
        if self.neutral_policy not in NEUTRAL_POLICIES:
            raise InputError(
                f"unknown neutral_policy {self.neutral_policy!r}; "
                f"choose one of {', '.join(NEUTRAL_POLICIES)}"
            )
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("min_confidence", "min_span_s", "switch_penalty"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0, not {value!r}")


# --------------------------------------------------------------------------- classification


def classify(
    texts: Transcript | Sequence[Segment] | Sequence[str],
    profile: str | models.ModelProfile = "auto",
    device: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """The 7 emotion probabilities of every text, shape ``(n, 7)`` float32, columns in the
    order of :data:`EMOTION_LABELS`. Texts longer than the model's context are truncated."""
    texts = [t if isinstance(t, str) else t.text for t in texts]
    if not texts:
        return np.zeros((0, len(EMOTION_LABELS)), dtype=np.float32)
    profile = models.resolve_profile(profile)
    classifier = models.load_emotion_classifier(profile, device)
    labels = {label.lower() for label in classifier.model.config.id2label.values()}
    if labels != set(EMOTION_LABELS):
        raise InputError(
            f"the emotion classifier's labels {sorted(labels)} are not {list(EMOTION_LABELS)}"
        )
    with models.model_threads(profile.emotion, classifier.device.type):
        return _scores(classifier, texts, batch_size, progress)


def _scores(classifier, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    max_length = min(
        classifier.tokenizer.model_max_length,
        classifier.model.config.max_position_embeddings - 2,  # RoBERTa: 2 padding positions
    )
    rows = []
    starts = range(0, len(texts), batch_size)
    bar = tqdm(starts, desc="emotion", unit="batch", disable=not progress or len(starts) < 2)
    for first in bar:
        batch = [t if t.strip() else "." for t in texts[first : first + batch_size]]
        out = classifier(batch, batch_size=batch_size, truncation=True, max_length=max_length)
        for result in out:
            by_label = {item["label"].lower(): item["score"] for item in result}
            rows.append([by_label[label] for label in EMOTION_LABELS])
    return np.asarray(rows, dtype=np.float32)


# --------------------------------------------------------------------------- labels per phrase


def segment_labels(
    scores: np.ndarray,
    min_confidence: float = 0.4,
    method: str = "rules",
    switch_penalty: float = 1.0,
) -> np.ndarray:
    """Label index per phrase (into :data:`EMOTION_LABELS`): uncertain phrases (top score below
    ``min_confidence``) count as neutral; then the argmax (``rules``) or the Viterbi path."""
    evidence = np.array(scores, dtype=np.float64).reshape(-1, len(EMOTION_LABELS))
    uncertain = evidence.max(axis=1, initial=0.0) < min_confidence
    evidence[uncertain] = np.eye(len(EMOTION_LABELS))[_NEUTRAL_INDEX]
    if method == "viterbi":
        return viterbi_path(evidence, switch_penalty)
    return evidence.argmax(axis=1)


def viterbi_path(scores: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The label sequence maximising ``sum log p(label_i) - switch_penalty * changes``.

    ``scores``: ``(n, k)`` probabilities. With zero penalty this is the per-row argmax. On a
    tie between staying and switching, the decoder switches to the best previous label (so ties
    resolve like ``argmax``, to the lowest index).
    """
    log_p = np.log(np.clip(np.asarray(scores, dtype=np.float64), _LOG_FLOOR, 1.0))
    n, k = log_p.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    best = log_p[0] - log_p[0].max()
    back = np.zeros((n, k), dtype=np.int64)
    for i in range(1, n):
        previous = int(best.argmax())
        switch = best[previous] - switch_penalty
        back[i] = np.where(best > switch, np.arange(k), previous)
        best = np.maximum(best, switch) + log_p[i]
        best -= best.max()  # keeps a zero penalty exact: best == log_p[i] - max
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(best.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def _extend_neutral(segments: Sequence[Segment], labels: np.ndarray) -> np.ndarray:
    """Each neutral phrase takes the label of the nearest non-neutral phrase in time (the earlier
    one on a tie); all-neutral stays neutral."""
    labels = labels.copy()
    emotional = [i for i, label in enumerate(labels) if label != _NEUTRAL_INDEX]
    if not emotional:
        return labels
    for i in np.flatnonzero(labels == _NEUTRAL_INDEX):
        seg = segments[i]
        nearest = min(
            (max(0.0, other.start - seg.end, seg.start - other.end), j > i, abs(j - i), j)
            for j in emotional
            for other in (segments[j],)
        )
        labels[i] = labels[nearest[-1]]
    return labels


# --------------------------------------------------------------------------- the timeline


@dataclass(frozen=True)
class _Piece:
    """A span under construction; ``support_s`` is how much of it its own phrases back."""

    start: float
    end: float
    emotion: str
    confidence: float
    support_s: float
    ids: tuple[int, ...]

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def timeline(
    transcript: Transcript | Sequence[Segment],
    scores: np.ndarray,
    params: TimelineParams | None = None,
    duration_s: float | None = None,
    **changes,
) -> list[Span]:
    """The emotion timeline of a transcript, covering [0, duration] exactly.

    ``scores`` from :func:`classify`; ``duration_s`` defaults to the transcript's. Parameters
    come from ``params`` with keyword ``changes`` (any :class:`TimelineParams` field) on top.
    """
    params = dataclasses.replace(params or TimelineParams(), **changes)
    if duration_s is None:
        if not isinstance(transcript, Transcript):
            raise InputError("duration_s is needed when segments are given without a transcript")
        duration_s = transcript.duration_s
    segments = list(transcript)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(segments), len(EMOTION_LABELS)):
        raise InputError(
            f"scores of shape {scores.shape} do not fit {len(segments)} segments x "
            f"{len(EMOTION_LABELS)} emotions"
        )
    order = np.argsort([seg.start for seg in segments], kind="stable")
    segments, scores = [segments[i] for i in order], scores[order]
    labels = segment_labels(scores, params.min_confidence, params.method, params.switch_penalty)
    evidence = labels.copy()
    if params.neutral_policy == "extend":
        labels = _extend_neutral(segments, labels)
    pieces = _tile(segments, labels, scores, evidence == labels, _checked(duration_s))
    return postprocess([_span(p) for p in pieces], duration_s, params)


def _checked(duration_s: float) -> float:
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"the timeline needs a positive duration, not {duration_s!r} s")
    return float(duration_s)


def _tile(segments, labels, scores, supported, duration_s: float) -> list[_Piece]:
    """One piece per phrase, the pauses split at their middle, [0, duration] covered exactly."""
    if not segments:
        return [_Piece(0.0, duration_s, NEUTRAL, 0.0, 0.0, ())]
    cuts = [(a.end + b.start) / 2 for a, b in zip(segments, segments[1:], strict=False)]
    bounds = np.maximum.accumulate(np.clip([0.0, *cuts, duration_s], 0.0, duration_s))
    bounds[-1] = duration_s
    pieces = []
    for i, seg in enumerate(segments):
        start, end = float(bounds[i]), float(bounds[i + 1])
        if end > start:
            support = end - start if supported[i] else 0.0
            confidence = float(scores[i, labels[i]]) if supported[i] else 0.0
            pieces.append(
                _Piece(start, end, EMOTION_LABELS[labels[i]], confidence, support, (seg.id,))
            )
    return pieces or [_Piece(0.0, duration_s, NEUTRAL, 0.0, 0.0, ())]


def postprocess(
    spans: Sequence[Span],
    duration_s: float | None = None,
    params: TimelineParams | None = None,
    **changes,
) -> list[Span]:
    """Steps 2-4 on spans that already tile [0, duration]: merge equal neighbours, apply the
    neutral policy and ``min_span_s`` (bridging, then the stronger neighbour). Applying it to
    its own output changes nothing."""
    params = dataclasses.replace(params or TimelineParams(), **changes)
    if not spans:
        if duration_s is None:
            raise InputError("an empty timeline needs duration_s")
        spans = [Span(0.0, _checked(duration_s), NEUTRAL)]
    pieces = _coalesce([_piece(s) for s in spans])
    if params.neutral_policy == "extend":
        pieces = _absorb(pieces, lambda p, ps: p.emotion == NEUTRAL and len(ps) > 1)
    pieces = _absorb(pieces, lambda p, ps: p.duration_s < params.min_span_s - _EPS_S)
    if params.neutral_policy == "silence":
        pieces = _coalesce(
            [dataclasses.replace(p, emotion=SILENCE) if p.emotion == NEUTRAL else p for p in pieces]
        )
    return [_span(p) for p in pieces]


def _piece(span: Span) -> _Piece:
    support = span.duration_s if span.confidence > 0 else 0.0
    return _Piece(span.start, span.end, span.emotion, span.confidence, support, span.segment_ids)


def _span(piece: _Piece) -> Span:
    return Span(piece.start, piece.end, piece.emotion, piece.confidence, piece.ids)


def _join(parts: Sequence[_Piece], emotion: str) -> _Piece:
    """One piece from adjacent parts, with ``emotion``; its confidence is the support-weighted
    mean of the parts that have that emotion (the others add no evidence for it)."""
    same = [p for p in parts if p.emotion == emotion]
    support = sum(p.support_s for p in same)
    confidence = sum(p.confidence * p.support_s for p in same) / support if support > 0 else 0.0
    ids = tuple(sorted({i for p in parts for i in p.ids}))
    return _Piece(parts[0].start, parts[-1].end, emotion, confidence, support, ids)


def _coalesce(pieces: list[_Piece]) -> list[_Piece]:
    """Merge neighbours that have the same emotion."""
    out: list[_Piece] = []
    for piece in pieces:
        if out and out[-1].emotion == piece.emotion:
            out[-1] = _join([out[-1], piece], piece.emotion)
        else:
            out.append(piece)
    return out


def _absorb(pieces: list[_Piece], doomed: Callable[[_Piece, list[_Piece]], bool]) -> list[_Piece]:
    """Remove pieces for which ``doomed(piece, pieces)`` holds, shortest first: bridged when both
    neighbours share an emotion, else merged into the stronger neighbour."""
    while len(pieces) > 1:
        candidates = [i for i, piece in enumerate(pieces) if doomed(piece, pieces)]
        if not candidates:
            break
        i = min(candidates, key=lambda j: (pieces[j].duration_s, j))
        left = pieces[i - 1] if i > 0 else None
        right = pieces[i + 1] if i + 1 < len(pieces) else None
        if left and right and left.emotion == right.emotion:
            pieces[i - 1 : i + 2] = [_join(pieces[i - 1 : i + 2], left.emotion)]
        elif right is None or (left is not None and _strength(left) >= _strength(right)):
            pieces[i - 1 : i + 1] = [_join(pieces[i - 1 : i + 1], left.emotion)]
        else:
            pieces[i : i + 2] = [_join(pieces[i : i + 2], right.emotion)]
        pieces = _coalesce(pieces)
    return pieces


def _strength(piece: _Piece) -> tuple[float, float]:
    return (piece.confidence, piece.duration_s)


# --------------------------------------------------------------------------- the stage


def analyze(
    path: str | os.PathLike[str],
    profile: str | models.ModelProfile = "auto",
    params: TimelineParams | None = None,
    sidecar: str | os.PathLike[str] | bool | None = None,
    device: str | None = None,
    language: str | None = None,
    sentences: bool = True,
    progress: bool = True,
    **changes,
) -> tuple[Transcript, np.ndarray, list[Span]]:
    """Video (or audio) file -> (transcript, scores ``(n, 7)``, timeline).

    The transcript comes from the sidecar captions when there are any (see
    :func:`videobgm.transcribe.transcript_for`), else from Whisper; with ``sentences`` its
    segments are cut into sentences (:func:`~videobgm.transcribe.split_sentences`) so that each
    is classified on its own. Each stage is also callable on its own:
    :func:`~videobgm.transcribe.transcript_for`, :func:`classify`, :func:`timeline`.
    """

    params = dataclasses.replace(params or TimelineParams(), **changes)
    profile = models.resolve_profile(profile)
    device = device or models.default_device()
    transcript = transcript_for(
        path, profile, sidecar, device=device, language=language, progress=progress
    )
    if sentences:
        transcript = split_sentences(transcript)
    scores = classify(transcript, profile, device, progress=progress)
    return transcript, scores, timeline(transcript, scores, params)


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    """``videobgm timeline VIDEO [-o timeline.json] [...]``."""

    defaults = TimelineParams()
    parser = subparsers.add_parser(
        "timeline", help="the emotion timeline of a video's speech (JSON, CSV or SRT)"
    )
    parser.add_argument("video", help="video or audio file")
    parser.add_argument(
        "-o", "--output", help="timeline file, .json/.csv/.srt (default: <stem>.timeline.json)"
    )
    parser.add_argument("--profile", default="auto", help="auto | pretrained | tiny (default auto)")
    parser.add_argument("--language", default=None, help="spoken language code; skips detection")
    add_sidecar_arguments(parser)
    parser.add_argument(
        "--min-span-s", type=float, default=defaults.min_span_s,
        help=f"shortest span in seconds (default {defaults.min_span_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--min-confidence", type=float, default=defaults.min_confidence,
        help=f"phrases less sure than this count as neutral (default {defaults.min_confidence:g})",
    )  # fmt: skip
    parser.add_argument(
        "--neutral-policy", choices=NEUTRAL_POLICIES, default=defaults.neutral_policy,
        help=f"what neutral stretches get (default {defaults.neutral_policy})",
    )  # fmt: skip
    parser.add_argument(
        "--whole-segments", dest="sentences", action="store_false",
        help="classify each transcript segment whole instead of sentence by sentence",
    )  # fmt: skip
    parser.add_argument(
        "--method", choices=METHODS, default=defaults.method,
        help=f"phrase labels: argmax (rules) or a Viterbi path (default {defaults.method})",
    )  # fmt: skip
    parser.add_argument(
        "--switch-penalty", type=float, default=defaults.switch_penalty,
        help=f"viterbi: cost of a change of emotion in nats (default {defaults.switch_penalty:g})",
    )  # fmt: skip
    parser.set_defaults(func=_cli_timeline)


def _cli_timeline(args) -> int:
    from pathlib import Path

    params = TimelineParams(
        args.min_confidence, args.min_span_s, args.neutral_policy, args.method, args.switch_penalty
    )
    output = Path(args.output or f"{Path(args.video).stem}.timeline.json")
    if output.suffix.lower() not in timeline_io.FORMATS:
        raise InputError(f"{output}: unsupported timeline format; use .json, .csv or .srt")
    transcript, _, spans = analyze(
        args.video, args.profile, params, args.sidecar, language=args.language,
        sentences=args.sentences,
    )  # fmt: skip
    timeline_io.save_timeline(spans, output)
    print(timeline_io.format_table(spans))
    print(f"{len(spans)} spans from {len(transcript)} phrases ({transcript.source}) -> {output}")
    return 0
