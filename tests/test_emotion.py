"""Emotion per phrase and the timeline: properties over random inputs, the original project's
rules on hand-made cases, exports and hand-edited timelines, the stage and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import phrases
from videobgm import cli, media
from videobgm.emotion import classifier as emotion
from videobgm.emotion import eval as emotion_eval
from videobgm.emotion import io as timeline_io
from videobgm.emotion.classifier import TimelineParams
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.transcribe import Segment, Transcript
from videobgm.vocab import EMOTION_LABELS, Span

LABEL = {name: i for i, name in enumerate(EMOTION_LABELS)}


# --------------------------------------------------------------------------- properties

segment_st = st.tuples(
    st.floats(0, 100), st.floats(0, 8), st.lists(st.floats(0.01, 1), min_size=7, max_size=7)
)
params_st = st.builds(
    TimelineParams,
    min_confidence=st.floats(0, 0.9),
    min_span_s=st.floats(0, 15),
    neutral_policy=st.sampled_from(emotion.NEUTRAL_POLICIES),
    method=st.sampled_from(emotion.METHODS),
    switch_penalty=st.floats(0, 5),
)


@st.composite
def timelines(draw):
    duration = draw(st.floats(0.5, 110))
    raw = draw(st.lists(segment_st, max_size=25))
    segments = [Segment(s, s + n, "x", id=i) for i, (s, n, _) in enumerate(raw)]
    scores = np.array([np.array(p) / sum(p) for _, _, p in raw]).reshape(-1, 7)
    transcript = Transcript(tuple(segments), duration, "en", "test")
    params = draw(params_st)
    return transcript, scores, params, emotion.timeline(transcript, scores, params)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_spans_tile_the_video_and_respect_min_span(case):
    transcript, _, params, spans = case
    duration = transcript.duration_s
    assert spans[0].start == 0.0 and spans[-1].end == duration
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end == b.start  # sorted, no gap, no overlap
        assert a.emotion != b.emotion
    assert all(span.end > span.start for span in spans)
    if duration >= params.min_span_s:
        assert all(span.duration_s >= params.min_span_s - 1e-9 for span in spans)
    else:
        assert len(spans) == 1
    ids = [i for span in spans for i in span.segment_ids]
    assert len(ids) == len(set(ids)) and set(ids) <= {seg.id for seg in transcript}
    assert all(0.0 <= span.confidence <= 1.0 for span in spans)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_postprocessing_its_own_output_changes_nothing(case):
    transcript, _, params, spans = case
    assert emotion.postprocess(spans, transcript.duration_s, params) == spans


@settings(max_examples=200, deadline=None)
@given(timelines())
def test_neutral_policy_decides_the_labels(case):
    _, _, params, spans = case
    names = {span.emotion for span in spans}
    assert names <= set(emotion.TIMELINE_LABELS)
    if params.neutral_policy == "silence":
        assert emotion.NEUTRAL not in names
    else:
        assert emotion.SILENCE not in names
    if params.neutral_policy == "extend" and len(spans) > 1:
        assert emotion.NEUTRAL not in names


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40))
def test_viterbi_with_zero_penalty_is_the_argmax(seed, n):
    scores = np.random.default_rng(seed).dirichlet(np.ones(7), size=n)
    np.testing.assert_array_equal(emotion.viterbi_path(scores, 0.0), scores.argmax(axis=1))
    labels = emotion.segment_labels(scores, min_confidence=0.0, method="viterbi", switch_penalty=0)
    np.testing.assert_array_equal(labels, scores.argmax(axis=1))


def test_viterbi_penalty_removes_a_blip_and_a_huge_one_keeps_one_label():
    sad, joy = np.full(7, 0.05), np.full(7, 0.05)
    sad[LABEL["sadness"]], joy[LABEL["joy"]] = 0.7, 0.7
    scores = np.array([sad, sad, joy, sad, sad])
    assert list(emotion.viterbi_path(scores, 0.0)) == [5, 5, 3, 5, 5]
    assert list(emotion.viterbi_path(scores, 2.0)) == [5] * 5
    scores = np.array([sad] * 3 + [joy] * 3)
    assert list(emotion.viterbi_path(scores, 2.0)) == [5, 5, 5, 3, 3, 3]
    assert len(set(emotion.viterbi_path(scores, 1e6))) == 1


# --------------------------------------------------------------------------- the rules by hand


def test_bridging_joins_equal_neighbours_of_a_short_span():
    transcript, scores = phrases(
        (0, 9, "joy", 0.9), (10, 12, "anger", 0.95), (13, 20, "joy", 0.6), duration_s=20
    )
    (span,) = emotion.timeline(transcript, scores, min_span_s=5)
    assert (span.start, span.end, span.emotion, span.segment_ids) == (0, 20, "joy", (0, 1, 2))
    # the confidence is joy's, weighted by the time each joyful phrase covers
    assert span.confidence == pytest.approx((0.9 * 9.5 + 0.6 * 7.5) / 17)


def test_a_short_span_between_different_emotions_joins_the_stronger_one():
    transcript, scores = phrases(
        (0, 9, "joy", 0.9), (10, 12, "anger", 0.95), (13, 20, "fear", 0.6), duration_s=20
    )
    spans = emotion.timeline(transcript, scores, min_span_s=5)
    assert [(s.start, s.end, s.emotion) for s in spans] == [(0, 12.5, "joy"), (12.5, 20, "fear")]
    assert spans[0].segment_ids == (0, 1) and spans[0].confidence == pytest.approx(0.9)


def test_pauses_are_split_between_neighbours_and_edges_extend_the_first_and_last():
    transcript, scores = phrases((3, 8, "joy", 0.9), (12, 18, "sadness", 0.9), duration_s=25)
    spans = emotion.timeline(transcript, scores, min_span_s=0)
    assert [(s.start, s.end, s.emotion) for s in spans] == [(0, 10, "joy"), (10, 25, "sadness")]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("ambient", [(0, 11, "joy"), (11, 21, "neutral"), (21, 30, "sadness")]),
        ("silence", [(0, 11, "joy"), (11, 21, "silence"), (21, 30, "sadness")]),
        ("extend", [(0, 16, "joy"), (16, 30, "sadness")]),
    ],
)
def test_neutral_policies(policy, expected):
    transcript, scores = phrases(
        (0, 10, "joy", 0.9), (12, 15, "neutral", 0.9), (17, 20, "neutral", 0.8),
        (22, 30, "sadness", 0.9), duration_s=30,
    )  # fmt: skip
    spans = emotion.timeline(transcript, scores, min_span_s=2, neutral_policy=policy)
    assert [(s.start, s.end, s.emotion) for s in spans] == expected
    assert sorted(i for s in spans for i in s.segment_ids) == [0, 1, 2, 3]


@pytest.mark.parametrize(("policy", "label"), [("ambient", "neutral"), ("extend", "neutral"),
                                               ("silence", "silence")])  # fmt: skip
def test_no_speech_gets_one_calm_span_unless_silence(policy, label):
    transcript = Transcript((), 42.0, None, "silence")
    spans = emotion.timeline(transcript, np.zeros((0, 7)), neutral_policy=policy)
    assert spans == [Span(0.0, 42.0, label, 0.0, ())]


def test_uncertain_phrases_give_a_calm_span():
    transcript, scores = phrases((0, 5, "anger", 0.2), (6, 9, "joy", 0.25), duration_s=10)
    (span,) = emotion.timeline(transcript, scores, min_confidence=0.4, min_span_s=0)
    assert span.emotion == "neutral" and span.segment_ids == (0, 1)
    spans = emotion.timeline(transcript, scores, min_confidence=0.1, min_span_s=0)
    assert [s.emotion for s in spans] == ["anger", "joy"]


def test_bad_parameters_and_inputs_are_refused():
    with pytest.raises(InputError, match="neutral_policy"):
        TimelineParams(neutral_policy="loud")
    with pytest.raises(InputError, match="method"):
        TimelineParams(method="magic")
    with pytest.raises(InputError, match="min_span_s"):
        TimelineParams(min_span_s=-1)
    transcript, scores = phrases((0, 5, "joy", 0.9), duration_s=10)
    with pytest.raises(InputError, match="do not fit"):
        emotion.timeline(transcript, scores[:, :6])
    with pytest.raises(InputError, match="positive duration"):
        emotion.timeline(transcript, scores, duration_s=0)


def test_agreement_and_sensitivity():
    a = [Span(0, 10, "joy"), Span(10, 20, "sadness")]
    b = [Span(0, 15, "joy"), Span(15, 20, "sadness")]
    assert emotion_eval.agreement(a, a) == 1.0
    assert emotion_eval.agreement(a, b) == pytest.approx(0.75, abs=0.01)
    transcript, scores = phrases(
        (0, 3, "joy", 0.9), (4, 6, "anger", 0.5), (7, 20, "sadness", 0.8), duration_s=20
    )
    table = emotion_eval.sensitivity(transcript, scores, (0, 5), (0, 0.6))
    assert table.shape == (2, 2) and table.iloc[0, 0] == 3 and table.iloc[1, 0] == 2


def test_a_perfect_simulated_classifier_recovers_the_intended_timeline():
    transcript, _ = phrases((1, 8, "joy", 1), (9, 17, "fear", 1), (18, 30, "joy", 1), duration_s=30)
    intended = [Span(0, 8.5, "joy"), Span(8.5, 17.5, "fear"), Span(17.5, 30, "joy")]
    scores = emotion_eval.simulate_scores(transcript, intended, accuracy=1.0, seed=3)
    assert scores.shape == (3, 7) and list(scores.argmax(axis=1)) == [3, 2, 3]
    spans = emotion.timeline(transcript, scores, min_confidence=0)
    assert emotion_eval.agreement(spans, intended) == 1.0
    variants = {"rules": TimelineParams(min_confidence=0), "viterbi": TimelineParams(
        min_confidence=0, method="viterbi")}  # fmt: skip
    table = emotion_eval.recovery(transcript, intended, variants, accuracies=(1.0, 0.5), seeds=3)
    assert list(table.columns) == ["agreement", "spans", "shortest_s"]
    assert (table.loc["100%"]["agreement"] == 1.0).all() and len(table) == 4


# --------------------------------------------------------------------------- files


def test_exports_and_hand_edited_round_trip(tmp_path):
    transcript, scores = phrases((0, 9, "joy", 0.9), (10, 20.0004, "fear", 0.7), duration_s=20.0004)
    spans = emotion.timeline(transcript, scores)
    for suffix in timeline_io.FORMATS:
        timeline_io.save_timeline(spans, tmp_path / f"t{suffix}")
    records = json.loads((tmp_path / "t.json").read_text())
    keys = {"start", "end", "emotion", "confidence", "segment_ids"}
    assert [set(r) for r in records] == [keys, keys]
    loaded = timeline_io.load_timeline(tmp_path / "t.json", duration_s=20.0004)
    assert [(s.emotion, s.segment_ids) for s in loaded] == [("joy", (0,)), ("fear", (1,))]
    assert loaded[0].end == loaded[1].start == 9.5 and loaded[-1].end == 20.0004
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == "0.0,9.5,joy,0.9,0"
    srt = (tmp_path / "t.srt").read_text()
    assert "00:00:09,500 --> 00:00:20,000\nfear (0.70)" in srt
    with pytest.raises(InputError, match="unsupported timeline format"):
        timeline_io.save_timeline(spans, tmp_path / "t.xml")


def test_a_minimal_hand_written_timeline_is_accepted_and_snapped(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        '[{"start": 0, "end": 12.02, "emotion": "Joy"},'
        ' {"start": 12, "end": 39.95, "emotion": "silence", "note": "no music"}]'
    )
    spans = timeline_io.load_timeline(path, duration_s=40.0)
    assert spans == [Span(0.0, 12.02, "joy", 1.0), Span(12.02, 40.0, "silence", 1.0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{]", "not valid JSON"),
        ('{"start": 0}', "non-empty JSON list"),
        ('[{"start": 0, "end": 5, "emotion": "joy"}, {"start": 6, "end": 40, "emotion": "fear"}]',
         "span 2 .* leaves a gap of 1.000 s"),
        ('[{"start": 0, "end": 5, "emotion": "joy"}, {"start": 4, "end": 40, "emotion": "fear"}]',
         "an overlap of 1.000 s"),
        ('[{"start": 0, "end": 40, "emotion": "happy"}]', "unknown emotion 'happy'"),
        ('[{"start": 0, "end": 30, "emotion": "joy"}]', "end at 30.000 s but the video lasts 40"),
        ('[{"start": 1, "end": 40, "emotion": "joy"}]', "starts at 1.000 s, not at 0"),
        ('[{"start": 0, "emotion": "joy"}]', "span 1 lacks end"),
        ('[{"start": 0, "end": "40", "emotion": "joy"}]', "end must be a number"),
        ('[{"start": 10, "end": 5, "emotion": "joy"}]', "ends .* before it starts"),
        ('[{"start": 0, "end": 40, "emotion": "joy", "confidence": 2}]', "outside"),
    ],
)  # fmt: skip
def test_hand_edited_timeline_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "edited.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        timeline_io.load_timeline(path, duration_s=40.0)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- models, stage, CLI


def test_tiny_classifier_returns_seven_scores_in_label_order():
    texts = ["I am so happy today!", "It is so sad.", "word " * 2000, ""]
    scores = emotion.classify(texts, "tiny", device="cpu", batch_size=3, progress=False)
    assert scores.shape == (4, 7) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    classifier = models.load_emotion_classifier(models.TINY, "cpu")
    direct = {d["label"]: d["score"] for d in classifier(texts[:1])[0]}
    np.testing.assert_allclose(scores[0], [direct[label] for label in EMOTION_LABELS], rtol=1e-5)
    assert emotion.classify([], "tiny").shape == (0, 7)


@pytest.fixture
def talk(tmp_path):
    """A 20 s audio file with captions beside it."""
    rng = np.random.default_rng(0)
    audio = media.write_audio(tmp_path / "talk.wav", 0.1 * rng.standard_normal(20 * 16000), 16000)
    (tmp_path / "talk.srt").write_text(
        "1\n00:00:01,000 --> 00:00:04,000\nI am so happy today!\n\n"
        "2\n00:00:09,000 --> 00:00:12,000\nIt is so sad that she left.\n"
    )
    return audio


def test_analyze_uses_the_sidecar_and_covers_the_file(talk):
    transcript, scores, spans = emotion.analyze(talk, "tiny", device="cpu", progress=False)
    assert transcript.source.endswith("talk.srt") and scores.shape == (2, 7)
    assert spans[0].start == 0 and spans[-1].end == pytest.approx(20.0, abs=0.01)
    # the random tiny classifier is unsure of everything: one calm span
    assert [s.emotion for s in spans] == ["neutral"]


def test_the_demo_sample_gets_a_timeline_from_its_captions(sample_video):
    duration = media.probe(sample_video).duration_s
    transcript, scores, spans = emotion.analyze(sample_video, "tiny", progress=False)
    assert transcript.source.endswith("story.srt") and scores.shape == (13, 7)  # sentences
    assert spans[0].start == 0 and spans[-1].end == duration
    intended = timeline_io.load_timeline(sample_video.with_suffix(".timeline.json"), duration)
    assert [s.emotion for s in intended] == ["joy", "sadness", "fear", "anger", "surprise"]


def test_cli_timeline_writes_and_prints(talk, tmp_path, capsys):
    out = tmp_path / "out" / "talk.srt"
    status = cli.main(["timeline", str(talk), "-o", str(out), "--profile", "tiny",
                       "--neutral-policy", "silence", "--min-span-s", "3"])  # fmt: skip
    assert status == 0 and "silence" in out.read_text()
    printed = capsys.readouterr().out
    assert "emotion" in printed and "1 spans from 2 phrases" in printed
    assert cli.main(["timeline", str(talk), "-o", str(tmp_path / "t.xml")]) == 1


def test_figures_render_and_save(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from videobgm.plots import emotion as emotion_plots
    from videobgm.plots import save_figure

    monkeypatch.setenv("VIDEOBGM_HOME", str(tmp_path))
    transcript, scores = phrases((1, 4, "joy", 0.8), (5, 9, "fear", 0.6), duration_s=10)
    spans = emotion.timeline(transcript, scores, min_span_s=0)
    audio = np.sin(np.linspace(0, 2000, 10 * 16000)).astype(np.float32)
    figures = [
        emotion_plots.plot_waveform(audio, 16000, transcript),
        emotion_plots.plot_scores(transcript, scores),
        emotion_plots.plot_timelines({"a": spans, "b": [Span(0, 10, "silence")]}),
    ]
    for i, fig in enumerate(figures):
        path = save_figure(fig, f"figure-{i}")
        assert path.parent == tmp_path / "reports" / "figures"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        plt.close(fig)
