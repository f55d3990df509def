"""Every documented rule of the emotion timeline, each on a small case whose expected result is
worked out by hand in the test (the comments show the working), never read off the code.

The rules (``videobgm.emotion``'s docstring): the confidence threshold, the minimum span,
bridging, shortest-first absorption, the stronger neighbour (confidence, then duration), and
the neutral policies with their ties.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import phrases
from videobgm import emotion
from videobgm.emotion import EMOTION_LABELS, Span
from videobgm.errors import InputError

LABEL = {name: i for i, name in enumerate(EMOTION_LABELS)}


def shape(spans: list[Span]) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.emotion) for s in spans]


# --------------------------------------------------------------------------- 1. the threshold


@pytest.mark.parametrize(
    ("top", "expected"),
    [(0.41, "anger"), (0.40, "anger"), (0.39, "neutral")],  # strictly below 0.4 is uncertain
)
def test_a_phrase_below_the_confidence_threshold_counts_as_neutral(top, expected):
    transcript, scores = phrases((1, 9, "anger", top), duration_s=10)
    (span,) = emotion.timeline(transcript, scores, min_confidence=0.4, min_span_s=0)
    assert (span.start, span.end, span.emotion) == (0, 10, expected)
    # the confidence is the classifier's probability of the span's label: the top score, or
    # for an uncertain phrase its neutral share, (1 - top) / 6
    assert span.confidence == pytest.approx(top if expected == "anger" else (1 - top) / 6)


# --------------------------------------------------------------------------- 2. the minimum span


def test_a_span_of_exactly_min_span_s_stays_and_a_shorter_one_goes():
    # joy 0-10 | anger 10-15 (5 s) | fear 15-30: with min 5 s anger stays, with 5.01 s it goes
    spans = [Span(0, 10, "joy", 0.9), Span(10, 15, "anger", 0.8), Span(15, 30, "fear", 0.7)]
    assert shape(emotion.postprocess(spans, params=None, min_span_s=5.0)) == shape(spans)
    # at 5.01 s anger merges into its stronger neighbour: joy (0.9 > 0.7)
    kept = emotion.postprocess(spans, min_span_s=5.01)
    assert shape(kept) == [(0, 15, "joy"), (15, 30, "fear")]


# --------------------------------------------------------------------------- 3. bridging


def test_bridging_joins_both_neighbours_even_when_the_short_span_is_stronger():
    # sadness 0-8 (0.5) | joy 8-10 (0.99) | sadness 10-20 (0.6): the neighbours agree, so the
    # three become one sadness span, whatever joy's confidence
    spans = [Span(0, 8, "sadness", 0.5), Span(8, 10, "joy", 0.99), Span(10, 20, "sadness", 0.6)]
    (span,) = emotion.postprocess(spans, min_span_s=5)
    assert (span.start, span.end, span.emotion) == (0, 20, "sadness")
    # its confidence: sadness's own, weighted by the time it covers: (0.5*8 + 0.6*10) / 18
    assert span.confidence == pytest.approx((0.5 * 8 + 0.6 * 10) / 18)


# --------------------------------------------------------------------------- 4. shortest first


def test_the_shortest_short_span_is_absorbed_first():
    # joy 0-10 (0.9) | anger 10-13 (3 s, 0.95) | fear 13-17 (4 s, 0.6) | sadness 17-30 (0.5)
    # Shortest first: anger goes first, into joy (0.9 beats fear's 0.6) -> joy 0-13; then fear
    # (4 s) goes into joy (0.9 beats sadness's 0.5) -> joy 0-17, sadness 17-30.
    # (Longest first would give anger 10-17: fear into anger, 0.95 beating 0.5.)
    spans = [
        Span(0, 10, "joy", 0.9), Span(10, 13, "anger", 0.95),
        Span(13, 17, "fear", 0.6), Span(17, 30, "sadness", 0.5),
    ]  # fmt: skip
    out = emotion.postprocess(spans, min_span_s=5)
    assert shape(out) == [(0, 17, "joy"), (17, 30, "sadness")]
    assert out[0].confidence == pytest.approx(0.9)  # only joy's own time backs joy


def test_absorbing_one_short_span_can_bridge_the_next():
    # joy 0-10 | fear 10-12 (2 s) | anger 12-15 (3 s) | joy 15-25, all 0.8 except fear 0.9:
    # fear (shortest) has neighbours joy (0.8, 10 s) and anger (0.8, 3 s): equal confidence,
    # joy longer -> joy 0-12. Now anger sits between joy and joy: bridged -> one joy 0-25.
    spans = [
        Span(0, 10, "joy", 0.8), Span(10, 12, "fear", 0.9),
        Span(12, 15, "anger", 0.8), Span(15, 25, "joy", 0.8),
    ]  # fmt: skip
    assert shape(emotion.postprocess(spans, min_span_s=5)) == [(0, 25, "joy")]


# --------------------------------------------------------------------------- 5. the stronger one


@pytest.mark.parametrize(
    ("left", "right", "winner"),
    [
        ((0.9, 6), (0.8, 12), "joy"),  # higher confidence wins although shorter
        ((0.8, 12), (0.9, 6), "fear"),  # the same, on the other side
        ((0.8, 6), (0.8, 12), "fear"),  # equal confidence: the longer wins
        ((0.8, 12), (0.8, 6), "joy"),
    ],
)
def test_a_short_span_joins_the_stronger_neighbour(left, right, winner):
    (c_left, d_left), (c_right, d_right) = left, right
    spans = [
        Span(0, d_left, "joy", c_left),
        Span(d_left, d_left + 2, "anger", 0.99),
        Span(d_left + 2, d_left + 2 + d_right, "fear", c_right),
    ]
    out = emotion.postprocess(spans, min_span_s=5)
    cut = d_left + 2 if winner == "joy" else d_left  # anger's 2 s go to the winner
    assert shape(out) == [(0, cut, "joy"), (cut, d_left + 2 + d_right, "fear")]


def test_a_short_span_at_either_end_joins_its_only_neighbour():
    # anger 0-2 | joy 2-12 (0.3) | fear 12-14 (0.99): both ends are short; their only
    # neighbour takes them, however weak it is
    spans = [Span(0, 2, "anger", 0.9), Span(2, 12, "joy", 0.3), Span(12, 14, "fear", 0.99)]
    assert shape(emotion.postprocess(spans, min_span_s=5)) == [(0, 14, "joy")]


# --------------------------------------------------------------------------- 6. neutral policies


def test_extend_gives_a_neutral_phrase_the_nearest_emotion_in_time():
    # joy 0-4, neutral 6-8, sadness 8.5-14: the neutral phrase is 2 s from joy and 0.5 s from
    # sadness -> sadness. Pauses split at their middles: 5 and 8.25.
    transcript, scores = phrases(
        (0, 4, "joy", 0.9), (6, 8, "neutral", 0.9), (8.5, 14, "sadness", 0.8), duration_s=14
    )
    spans = emotion.timeline(transcript, scores, min_span_s=0, neutral_policy="extend")
    assert shape(spans) == [(0, 5, "joy"), (5, 14, "sadness")]
    # the borrowed stretch adds no evidence: sadness's confidence is its own phrase's 0.8
    assert spans[1].confidence == pytest.approx(0.8)


def test_extend_tie_goes_to_the_earlier_phrase():
    # joy 0-4, neutral 6-8, sadness 10-14: 2 s either side, a tie -> the earlier one (joy).
    # Pauses split at 5 and 9: joy 0-9, sadness 9-14.
    transcript, scores = phrases(
        (0, 4, "joy", 0.9), (6, 8, "neutral", 0.9), (10, 14, "sadness", 0.8), duration_s=14
    )
    spans = emotion.timeline(transcript, scores, min_span_s=0, neutral_policy="extend")
    assert shape(spans) == [(0, 9, "joy"), (9, 14, "sadness")]


def test_extend_measures_the_gap_between_phrases_even_under_a_second():
    # joy 0-5.2, neutral 6-8, sadness 8.3-14: gaps 0.8 s and 0.3 s -> sadness.
    # Pauses split at 5.6 and 8.15.
    transcript, scores = phrases(
        (0, 5.2, "joy", 0.9), (6, 8, "neutral", 0.9), (8.3, 14, "sadness", 0.8), duration_s=14
    )
    spans = emotion.timeline(transcript, scores, min_span_s=0, neutral_policy="extend")
    assert shape(spans) == [(0, 5.6, "joy"), (5.6, 14, "sadness")]


def test_extend_counts_overlapping_phrases_as_touching():
    # neutral 5-10 overlaps joy 0-6 by 1 s and sadness 8-14 by 2 s: both are at distance 0,
    # a tie, so the earlier (joy) wins. Cuts at the middles of the "pauses": (6+5)/2 = 5.5 and
    # (10+8)/2 = 9 -> joy 0-9, sadness 9-14.
    transcript, scores = phrases(
        (0, 6, "joy", 0.9), (5, 10, "neutral", 0.9), (8, 14, "sadness", 0.8), duration_s=14
    )
    spans = emotion.timeline(transcript, scores, min_span_s=0, neutral_policy="extend")
    assert shape(spans) == [(0, 9, "joy"), (9, 14, "sadness")]


def test_extend_with_only_neutral_phrases_stays_calm():
    transcript, scores = phrases((1, 4, "neutral", 0.9), (5, 9, "neutral", 0.9), duration_s=10)
    spans = emotion.timeline(transcript, scores, min_span_s=0, neutral_policy="extend")
    assert shape(spans) == [(0, 10, "neutral")]


def test_extend_on_spans_merges_a_long_neutral_span_into_the_stronger_neighbour():
    # postprocess under "extend": a neutral span of any length goes, here to joy (0.9 > 0.8)
    spans = [Span(0, 10, "joy", 0.9), Span(10, 20, "neutral", 0.0), Span(20, 30, "sadness", 0.8)]
    out = emotion.postprocess(spans, min_span_s=0, neutral_policy="extend")
    assert shape(out) == [(0, 20, "joy"), (20, 30, "sadness")]


def test_a_merged_span_keeps_the_duration_weighted_confidence_of_its_own_emotion():
    # joy 0-10 (0.9) | fear 10-11 (0.2) | anger 11-12 (0.2) | joy 12-20 (0.5), min span 2 s.
    # fear and anger are both 1 s: the earlier goes first, into joy (0.9 > 0.2); then anger
    # sits between two joys and is bridged. Only the joy spans back joy:
    # (0.9 * 10 + 0.5 * 8) / (10 + 8) = 13 / 18
    spans = [Span(0, 10, "joy", 0.9), Span(10, 11, "fear", 0.2), Span(11, 12, "anger", 0.2),
             Span(12, 20, "joy", 0.5)]  # fmt: skip
    (out,) = emotion.postprocess(spans, min_span_s=2)
    assert (out.start, out.end, out.emotion) == (0, 20, "joy")
    assert out.confidence == pytest.approx(13 / 18)


def test_extend_with_one_neighbour_gives_it_the_neutral_span():
    # two spans: neutral 0-12 then joy 12-20: the one neighbour takes it, whatever its length
    out = emotion.postprocess(
        [Span(0, 12, "neutral"), Span(12, 20, "joy", 0.6)], neutral_policy="extend"
    )
    assert shape(out) == [(0, 20, "joy")]


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan")])
def test_a_timeline_needs_a_positive_duration(duration):
    with pytest.raises(InputError, match="needs a positive duration"):
        emotion.postprocess([], duration_s=duration)


@pytest.mark.parametrize(("policy", "label"), [("ambient", "neutral"), ("silence", "silence")])
def test_ambient_keeps_neutral_and_silence_replaces_it(policy, label):
    spans = [Span(0, 10, "joy", 0.9), Span(10, 20, "neutral", 0.7), Span(20, 30, "sadness", 0.8)]
    out = emotion.postprocess(spans, min_span_s=5, neutral_policy=policy)
    assert shape(out) == [(0, 10, "joy"), (10, 20, label), (20, 30, "sadness")]


def test_silence_policy_drops_a_short_neutral_span_before_it_becomes_silence():
    # joy 0-10 (0.9) | neutral 10-12 | sadness 12-30 (0.8): the short neutral span goes to joy
    # first, so no 2 s of silence remain
    spans = [Span(0, 10, "joy", 0.9), Span(10, 12, "neutral", 0.5), Span(12, 30, "sadness", 0.8)]
    out = emotion.postprocess(spans, min_span_s=5, neutral_policy="silence")
    assert shape(out) == [(0, 12, "joy"), (12, 30, "sadness")]


# --------------------------------------------------------------------------- 7. the Viterbi path


def _row(**probabilities: float) -> np.ndarray:
    """Seven probabilities: the named ones, the rest sharing what is left equally."""
    row = np.zeros(len(EMOTION_LABELS))
    for name, p in probabilities.items():
        row[LABEL[name]] = p
    rest = [i for i, name in enumerate(EMOTION_LABELS) if name not in probabilities]
    row[rest] = (1 - sum(probabilities.values())) / len(rest)
    return row


def test_viterbi_weighs_each_phrase_once_against_the_penalty():
    # joy 0.6 then sadness 0.9 (the others share the rest: 0.4/6 and 0.1/6).
    # [joy, sadness] scores log 0.6 + log 0.9 - penalty; [sadness, sadness] log(0.4/6) + log 0.9;
    # the difference is log(0.6 / (0.4/6)) - penalty = log 9 - penalty = 2.197 - penalty.
    scores = np.array([_row(joy=0.6), _row(sadness=0.9)])
    assert list(emotion.viterbi_path(scores, 2.0)) == [LABEL["joy"], LABEL["sadness"]]
    assert list(emotion.viterbi_path(scores, 3.0)) == [LABEL["sadness"]] * 2


def test_viterbi_tie_resolves_like_argmax_to_the_lowest_index():
    # phrase 1: anger and disgust tie at 0.4; phrase 2: disgust. Zero penalty: the argmax,
    # whose tie goes to the lowest index (anger)
    scores = np.array([_row(anger=0.4, disgust=0.4), _row(disgust=0.7)])
    assert list(emotion.viterbi_path(scores, 0.0)) == [LABEL["anger"], LABEL["disgust"]]


def test_viterbi_stays_exact_over_a_long_talk():
    rng = np.random.default_rng(11)
    scores = rng.dirichlet(np.ones(7), size=400)  # about an hour of phrases
    np.testing.assert_array_equal(emotion.viterbi_path(scores, 0.0), scores.argmax(axis=1))


def test_viterbi_survives_zero_probabilities():
    # a phrase with no probability anywhere (all zeros) must not poison the path: with the
    # floor it is uniform, so sadness on both sides carries through it
    scores = np.array([_row(sadness=0.9), np.zeros(7), _row(sadness=0.9)])
    assert list(emotion.viterbi_path(scores, 1.0)) == [LABEL["sadness"]] * 3
    empty = emotion.viterbi_path(np.zeros((0, 7)), 1.0)
    assert empty.shape == (0,) and empty.dtype.kind == "i"  # usable as an index
