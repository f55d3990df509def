"""Measuring emotion timelines: agreement with an intended timeline, how the number of spans
reacts to the thresholds, and a simulated classifier to study the post-processing with.

The tiny offline classifier has random weights, so its scores say nothing; :func:`simulate_scores`
stands in for a classifier of known accuracy on a transcript whose intended emotions are known
(the demo sample's ``story.timeline.json``), which is how notebook 03 compares the rules with
the Viterbi decoder offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from videobgm.emotion.classifier import TimelineParams, timeline
from videobgm.transcribe import Transcript
from videobgm.vocab import EMOTION_LABELS, NEUTRAL, Span


def labels_at(spans: Sequence[Span], times_s: np.ndarray) -> list[str]:
    """The emotion at each time (seconds); times past the end take the last span's."""
    ends = np.array([span.end for span in spans])
    index = np.minimum(np.searchsorted(ends, times_s, side="right"), len(spans) - 1)
    return [spans[i].emotion for i in index]


def agreement(a: Sequence[Span], b: Sequence[Span], step_s: float = 0.05) -> float:
    """Fraction of time (sampled every ``step_s`` seconds) at which two timelines agree."""
    end = min(a[-1].end, b[-1].end)
    times = np.arange(step_s / 2, end, step_s)
    if times.size == 0:
        return 1.0
    pairs = zip(labels_at(a, times), labels_at(b, times), strict=True)
    return float(np.mean([x == y for x, y in pairs]))


def sensitivity(
    transcript: Transcript,
    scores: np.ndarray,
    min_span_values: Sequence[float] = (0.0, 2.0, 5.0, 10.0),
    min_confidence_values: Sequence[float] = (0.0, 0.3, 0.5, 0.7),
    params: TimelineParams | None = None,
):
    """A pandas table: the number of spans for each ``min_span_s`` (rows) and
    ``min_confidence`` (columns), other parameters from ``params``."""
    import pandas as pd

    params = params or TimelineParams()
    table = {
        f"min_confidence={c:g}": [
            len(timeline(transcript, scores, params, min_span_s=s, min_confidence=c))
            for s in min_span_values
        ]
        for c in min_confidence_values
    }
    index = pd.Index([f"{s:g} s" for s in min_span_values], name="min_span_s")
    return pd.DataFrame(table, index=index)


def simulate_scores(
    transcript: Transcript, intended: Sequence[Span], accuracy: float = 0.7, seed: int = 0
) -> np.ndarray:
    """Scores ``(n, 7)`` of a pretend classifier that ranks each phrase's intended emotion (the
    one at its midpoint; neutral for silence) first with probability ``accuracy``, else another
    emotion chosen at random; the margin of the winner, hence its probability, varies."""
    rng = np.random.default_rng(seed)
    middles = np.array([(seg.start + seg.end) / 2 for seg in transcript])
    truth = labels_at(intended, middles) if len(middles) else []
    rows = []
    for name in truth:
        index = EMOTION_LABELS.index(name if name in EMOTION_LABELS else NEUTRAL)
        if rng.random() >= accuracy:
            index = int(rng.choice([i for i in range(len(EMOTION_LABELS)) if i != index]))
        logits = rng.normal(0.0, 1.0, len(EMOTION_LABELS))
        logits[index] = logits.max() + rng.uniform(0.2, 4.0)
        rows.append(np.exp(logits) / np.exp(logits).sum())
    return np.array(rows, dtype=np.float32).reshape(-1, len(EMOTION_LABELS))


def recovery(
    transcript: Transcript,
    intended: Sequence[Span],
    variants: Mapping[str, TimelineParams],
    accuracies: Sequence[float] = (0.5, 0.7, 0.9),
    seeds: int = 20,
):
    """A pandas table, one row per (classifier accuracy, parameter variant), averaged over
    ``seeds`` simulated classifiers: ``agreement`` with ``intended`` (fraction of time), the
    number of ``spans`` and the ``shortest_s`` span. Accuracy is not the whole story: the
    post-processing buys stable music (fewer, longer spans) and may pay for it in agreement."""
    import pandas as pd

    records = []
    for accuracy in accuracies:
        for seed in range(seeds):
            scores = simulate_scores(transcript, intended, accuracy, seed)
            for name, params in variants.items():
                spans = timeline(transcript, scores, params, duration_s=intended[-1].end)
                records.append(
                    {
                        "classifier accuracy": f"{accuracy:.0%}",
                        "variant": name,
                        "agreement": agreement(spans, intended),
                        "spans": len(spans),
                        "shortest_s": min(span.duration_s for span in spans),
                    }
                )
    table = pd.DataFrame.from_records(records)
    keys = ["classifier accuracy", "variant"]
    return table.groupby(keys, sort=False).mean()
