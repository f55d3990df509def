"""Composition: exact length, clean joins, plans that regenerate the track, variants.

The procedural backend (no model weights) carries the property tests; the riffusion backend
is exercised end to end with the tiny pipeline in ``test_riffusion_*``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videobgm import cli
from videobgm.compose import plan as compose_plan
from videobgm.compose import renderer as compose
from videobgm.compose.renderer import join_points
from videobgm.errors import InputError
from videobgm.metrics import local_rms, step_excess
from videobgm.synth import arrange as synth
from videobgm.synth import instruments as synth_instruments
from videobgm.vocab import SILENCE

RATE = 44100
CLIP = synth.clip_samples()
LABELS = (*compose_plan.EMOTIONS, SILENCE)


def spans(*items: tuple[float, float, str]) -> list[dict]:
    return [{"start": a, "end": b, "emotion": e, "confidence": 0.9} for a, b, e in items]


STORY = spans((0, 7.3, "joy"), (7.3, 20, "sadness"), (20, 21, "anger"),
              (21, 30, "neutral"), (30, 44.4, "fear"), (44.4, 52, SILENCE))  # fmt: skip


def assert_no_clicks(audio: np.ndarray, plan: compose_plan.Plan, fraction: float = 0.05):
    """No step at a join beyond the music's own there (joins sit on the beat, where drum hits
    start) plus ``fraction`` of the local RMS."""
    clips = compose.procedural_clips(plan)
    for at in join_points(plan):
        own = sum(
            max(step_excess(audio_, at - clip.start_sample), 0.0)
            for clip, audio_ in zip(plan.clips, clips, strict=True)
        )
        excess = step_excess(audio, at)
        assert excess <= own + fraction * local_rms(audio, at) + 1e-5, (at / RATE, excess, own)


@st.composite
def timelines(draw):
    duration = draw(st.floats(0.05, 45.0))
    end = duration * draw(st.floats(0.5, 1.5))
    cuts = sorted(draw(st.lists(st.floats(0.01, 0.99), max_size=6, unique=True)))
    edges = [0.0, *(c * end for c in cuts), end]
    items = [
        (a, b, draw(st.sampled_from(LABELS)))
        for a, b in zip(edges, edges[1:], strict=False)
        if b - a > 1e-3
    ]
    return spans(*items), duration, draw(st.integers(0, 2))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_length_is_exact_and_joins_are_clean_for_random_timelines(case):
    timeline, duration, seed = case
    [track] = compose.compose(timeline, duration, seed=seed, progress=False)
    assert track.audio.dtype == np.float32 and track.audio.ndim == 1
    assert len(track.audio) == round(duration * RATE)
    assert np.all(np.isfinite(track.audio)) and np.abs(track.audio).max() < 1.0
    assert_no_clicks(track.audio, track.plan)


def test_the_click_check_catches_joins_without_crossfades():
    [track] = compose.compose(STORY, 40.0, progress=False)
    plan = track.plan
    butted = [dataclasses.replace(c, fade_in=0, fade_out=0) for c in plan.clips]
    # butt joins: each clip starts where the previous one ends
    butted = [dataclasses.replace(c, start_sample=i * CLIP) for i, c in enumerate(butted)]
    bad_plan = dataclasses.replace(plan, clips=tuple(butted), fade_in_s=0.0)
    bad = compose.stitch(bad_plan, compose.procedural_clips(bad_plan))
    with pytest.raises(AssertionError):
        assert_no_clicks(bad, bad_plan)


def test_clips_start_on_the_beat_grid_and_cross_fade_for_one_beat():
    [track] = compose.compose(spans((0, 60, "fear")), 60.0, progress=False)
    beat = round(synth.STYLES["fear"].seconds_per_beat * RATE)
    plan = track.plan
    assert all(clip.start_sample % beat == 0 for clip in plan.clips)
    assert {clip.fade_out for clip in plan.clips[:-1]} == {beat}
    assert plan.clips[-1].start_sample + CLIP >= plan.samples


def test_the_clip_that_straddles_a_change_interpolates_from_one_emotion_to_the_other():
    plan = compose_plan.make_plan(spans((0, 10, "joy"), (10, 30, "sadness")), 30.0)
    kinds = [(plan.keyframes[c.start].emotion, plan.keyframes[c.end].emotion) for c in plan.clips]
    [index] = [i for i, kind in enumerate(kinds) if kind == ("joy", "sadness")]
    assert set(kinds[:index]) == {("joy", "joy")}
    assert set(kinds[index + 1 :]) == {("sadness", "sadness")}
    clip = plan.clips[index]
    lead_end = plan.clips[index + 1].start_sample
    change = 10 * RATE
    assert clip.start_sample <= change < lead_end
    assert clip.alpha == pytest.approx((lead_end - change) / (lead_end - clip.start_sample), 1e-3)
    # inside a span, alpha walks between two different prompt variants
    inside = [c for c in plan.clips[index + 1 :]]
    assert len({c.alpha for c in inside}) > 1
    assert all(plan.keyframes[c.start].prompt != plan.keyframes[c.end].prompt for c in inside)


def test_clips_tile_the_track_from_its_first_sample_and_walk_the_keyframes():
    """The module doc's layout, worked out here for one 30 s emotion: clips from sample 0, each
    starting one beat before the previous one ends, the last reaching the end; clip i walks
    from keyframe i // M to i // M + 1 at alpha (i % M) / M."""
    m, total = 3, 30 * RATE
    plan = compose_plan.make_plan(spans((0, 30, "joy")), 30.0, clips_per_prompt=m)
    beat = round(synth.STYLES["joy"].seconds_per_beat * RATE)
    starts = [0]
    while starts[-1] + CLIP < total:
        starts.append(starts[-1] + CLIP - beat)
    assert [c.start_sample for c in plan.clips] == starts and len(starts) > 2 * m
    assert [(c.fade_in, c.fade_out) for c in plan.clips] == [
        (0 if i == 0 else beat, 0 if i == len(starts) - 1 else beat) for i in range(len(starts))
    ]
    assert [c.alpha for c in plan.clips] == [(i % m) / m for i in range(len(starts))]
    for i, clip in enumerate(plan.clips):
        first = plan.clips[i // m * m]  # the first clip of this keyframe pair
        assert (clip.start, clip.end) == (first.start, first.end) and clip.start != clip.end
        if i + m < len(starts):
            assert plan.clips[i + m].start == clip.end  # the next pair starts where this ends


def test_span_objects_without_confidence_read_like_dicts_without_it():
    """``confidence`` is optional for dicts and objects alike: full confidence when absent."""
    from types import SimpleNamespace

    as_dict = compose_plan.read_spans([{"start": 0, "end": 2, "emotion": "joy"}])
    as_object = compose_plan.read_spans([SimpleNamespace(start=0, end=2, emotion="joy")])
    assert as_object == as_dict == (compose_plan.TimelineSpan(0.0, 2.0, "joy", 1.0),)
    given = compose_plan.read_spans(
        [SimpleNamespace(start=0, end=2, emotion="joy", confidence=0.3)]
    )
    assert given == (compose_plan.TimelineSpan(0.0, 2.0, "joy", 0.3),)  # kept when given
    with pytest.raises(InputError, match=r"timeline span 2: need 0 <= start < end, not 3.0-2.0"):
        compose_plan.read_spans(spans((0, 3, "joy"), (3, 2, "joy")))


def test_the_plan_keeps_its_neutral_policy_and_uses_the_prompt_table_given():
    from videobgm.prompts import load_prompts

    table = load_prompts()
    table = {**table, "joy": dataclasses.replace(table["joy"], prompts=("a", "b"))}
    plan = compose_plan.make_plan(spans((0, 20, "joy")), 20.0, neutral="silence", prompts=table)
    assert plan.neutral == "silence"
    assert {k.prompt for k in plan.keyframes} == {"a", "b"}


def test_neutral_spans_get_calm_music_or_silence():
    timeline = spans((0, 10, "joy"), (10, 30, "neutral"), (30, 40, "joy"))
    middle = slice(16 * RATE, 24 * RATE)
    [music] = compose.compose(timeline, 40.0, progress=False)
    [quiet] = compose.compose(timeline, 40.0, neutral="silence", progress=False)
    assert np.sqrt(np.mean(np.square(music.audio[middle]))) > 0.01
    assert not np.any(quiet.audio[middle])
    assert np.abs(quiet.audio[: 8 * RATE]).max() > 0.1 and np.abs(quiet.audio[32 * RATE :]).max()
    assert_no_clicks(quiet.audio, quiet.plan)


def test_the_plan_json_regenerates_the_identical_track(tmp_path):
    [track] = compose.compose(STORY, 50.0, seed=4, progress=False)
    written = compose.write(track, tmp_path / "bgm.wav")
    assert written["plan"] == tmp_path / "bgm.plan.json"
    again = compose.regenerate(tmp_path / "bgm.plan.json")
    assert again.plan == track.plan
    assert np.array_equal(again.audio, track.audio)
    info = sf.info(tmp_path / "bgm.wav")
    assert (info.samplerate, info.frames) == (RATE, round(50.0 * RATE))


def test_variants_differ_and_variant_k_is_the_seed_plus_k():
    tracks = compose.compose(STORY, 30.0, variants=3, seed=5, progress=False)
    assert [t.plan.seed for t in tracks] == [5, 6, 7]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(tracks[a].audio - tracks[b].audio).mean() > 0.01
    [alone] = compose.compose(STORY, 30.0, seed=6, progress=False)
    assert np.array_equal(alone.audio, tracks[1].audio)


@dataclass(frozen=True)
class Span:  # what videobgm.emotion hands over: any object with these attributes
    start: float
    end: float
    emotion: str
    confidence: float = 0.0


def test_span_objects_and_dicts_compose_alike():
    objects = [Span(s["start"], s["end"], s["emotion"], 0.9) for s in STORY]
    [a] = compose.compose(objects, 20.0, progress=False)
    [b] = compose.compose(STORY, 20.0, progress=False)
    assert np.array_equal(a.audio, b.audio)


@pytest.mark.parametrize(
    ("timeline", "duration"),
    [
        (spans((0, 5, "happy")), 5.0),  # a mood, not a label
        (spans((3, 2, "joy")), 5.0),
        ([], 5.0),
        (spans((0, 5, "joy")), 0.0),
        (spans((0, 5, "joy")), float("nan")),
        ([{"start": "soon", "end": 2, "emotion": "joy"}], 5.0),
    ],
)
def test_bad_input_is_one_clear_error(timeline, duration):
    with pytest.raises(InputError):
        compose.compose(timeline, duration, progress=False)


def test_cli_composes_variants_and_rerenders_a_plan(tmp_path, capsys):
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(spans((0, 7.3, "joy"), (7.3, 9.5, "sadness"))))
    out = tmp_path / "bgm.wav"
    assert cli.main(["compose", str(path), "--duration", "9.5", "--variants", "2",
                     "--seed", "3", "-o", str(out)]) == 0  # fmt: skip
    first = tmp_path / "bgm-1.wav"
    for k in (1, 2):
        assert sf.info(tmp_path / f"bgm-{k}.wav").frames == round(9.5 * RATE)
        assert (tmp_path / f"bgm-{k}.plan.json").is_file()
    again = tmp_path / "again.wav"
    assert cli.main(["compose", "--plan", str(tmp_path / "bgm-1.plan.json"), "-o", str(again)]) == 0
    assert np.array_equal(sf.read(first)[0], sf.read(again)[0])
    capsys.readouterr()
    assert cli.main(["compose", str(path), "--duration", "12", "-o", str(out)]) == 1
    assert "cover the whole video" in capsys.readouterr().err


@pytest.fixture
def one_thread():
    """torch on one thread: on the shared 2-core machine this test takes 10 s so, 15 s with
    two threads (and 20x longer without OMP_WAIT_POLICY=PASSIVE)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_riffusion_backend_variants_in_one_pass_exact_length_images_and_regeneration(
    tmp_path, one_thread
):
    timeline = spans((0, 5, "joy"), (5, 12, "sadness"), (12, 14, SILENCE))
    tracks = compose.compose(timeline, 14.0, music="riffusion", profile="tiny", steps=2,
                             variants=2, seed=1, progress=False)  # fmt: skip
    assert [len(t.audio) for t in tracks] == [14 * RATE] * 2
    assert all(np.all(np.isfinite(t.audio)) and np.abs(t.audio).max() < 1 for t in tracks)
    assert np.abs(tracks[0].audio - tracks[1].audio).mean() > 0.01
    plan = tracks[1].plan
    assert plan.riffusion["diffusion"] == "tiny:diffusion" and plan.riffusion["steps"] == 2
    emotions = [
        tuple(None if k is None else plan.keyframes[k].emotion for k in (c.start, c.end))
        for c in plan.clips
    ]
    assert emotions == [("joy", "joy"), ("joy", "sadness"), ("sadness", None)]
    assert 0 < plan.clips[1].alpha < 1
    assert all(im is None or im.size == (512, 512) for im in tracks[1].images)
    written = compose.write(tracks[1], tmp_path / "bgm.wav")
    pngs = sorted(written["images"].glob("clip-*.png"))
    assert len(pngs) == sum(im is not None for im in tracks[1].images) > 0
    # the second variant alone, from its JSON plan: the same samples (on the CPU clips are
    # generated one at a time, so they do not depend on the other variant's clips)
    again = compose.regenerate(written["plan"])
    assert np.array_equal(again.audio, tracks[1].audio)


# --------------------------------------------------------------------------- streaming


def reference_stitch(plan: compose_plan.Plan, clips) -> np.ndarray:
    """The track as one overlap-add on a full-length array, limited and faded out whole (what
    stitching did before it streamed)."""
    n = plan.clip_samples
    out = np.zeros(max(plan.clips[-1].start_sample + n, plan.samples), np.float32)
    first_fade = min(round(plan.fade_in_s * RATE), n)
    for index, (clip, audio) in enumerate(zip(plan.clips, clips, strict=True)):
        gain = np.ones(n, np.float32)
        fade_in = clip.fade_in if index else first_fade
        if fade_in:
            gain[:fade_in] = compose.equal_power(fade_in)[0]
        if clip.fade_out:
            gain[n - clip.fade_out :] *= compose.equal_power(clip.fade_out)[1]
        out[clip.start_sample : clip.start_sample + n] += gain * audio
    out = synth_instruments.limit(out[: plan.samples]).astype(np.float32)
    fade = min(plan.samples, round(plan.fade_out_s * RATE))
    ramp = 0.5 * (1 + np.cos(np.pi * np.arange(1, fade + 1) / max(fade, 1)))
    out[len(out) - fade :] *= ramp.astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("duration", "neutral", "options"),
    [(52.0, "music", {}), (47.3, "silence", {"fade_out_s": 7.5}), (3.0, "music", {})],
)
def test_streamed_stitching_is_the_same_track_as_one_overlap_add(duration, neutral, options):
    plan = compose_plan.make_plan(STORY, duration, neutral=neutral, **options)
    assert any(c.change_sample is not None for c in plan.clips) or duration < 5
    clips = compose.procedural_clips(plan)
    expected = reference_stitch(plan, clips)
    np.testing.assert_array_equal(compose.stitch(plan, clips), expected)
    blocks = list(compose.stitch_blocks(plan, compose.iter_procedural_clips(plan)))
    assert all(b.dtype == np.float32 and b.ndim == 1 and len(b) <= 2 * CLIP for b in blocks)
    assert len(blocks) >= len(plan.clips) - 1
    np.testing.assert_array_equal(np.concatenate(blocks), expected)


def test_stitching_needs_clips_in_order_of_their_start():
    plan = compose_plan.make_plan(STORY, 20.0)
    swapped = dataclasses.replace(plan, clips=(plan.clips[1], plan.clips[0], *plan.clips[2:]))
    with pytest.raises(ValueError, match="order"):
        compose.stitch(swapped, compose.procedural_clips(swapped))


def test_stitching_a_plan_with_gaps_and_clips_past_the_end():
    """Hand-edited plans: no clip plays in a gap (silence), and clips past the end are cut."""
    plan = compose_plan.make_plan(STORY, 20.0)
    moved = [dataclasses.replace(c, start_sample=c.start_sample + i * CLIP)
             for i, c in enumerate(plan.clips)]  # fmt: skip
    gapped = dataclasses.replace(plan, clips=tuple(moved))
    clips = compose.procedural_clips(gapped)
    streamed = compose.stitch(gapped, iter(clips))
    np.testing.assert_array_equal(streamed, reference_stitch(gapped, clips))
    gap = slice(moved[0].start_sample + CLIP, moved[1].start_sample)
    assert gap.stop - gap.start > RATE and not np.any(streamed[gap])
    assert moved[-1].start_sample > gapped.samples


def test_compose_to_files_writes_what_compose_and_write_write(tmp_path):
    options = {"variants": 2, "seed": 3, "neutral": "silence", "progress": False}
    outputs = [tmp_path / "streamed" / "bgm-1.wav", tmp_path / "streamed" / "bgm-2.wav"]
    written = compose.compose_to_files(STORY, 31.5, outputs, procedural_images=True, **options)
    tracks = compose.compose(STORY, 31.5, procedural_images=True, **options)
    for track, files, name in zip(tracks, written, ("bgm-1", "bgm-2"), strict=True):
        whole = compose.write(track, tmp_path / "whole" / f"{name}.wav")
        assert files["audio"] == tmp_path / "streamed" / f"{name}.wav"
        assert sf.info(files["audio"]).frames == round(31.5 * RATE)
        assert files["audio"].read_bytes() == whole["audio"].read_bytes()
        assert files["plan"].read_text() == whole["plan"].read_text()
        pngs = sorted(p.name for p in files["images"].glob("*.png"))
        assert pngs == sorted(p.name for p in whole["images"].glob("*.png")) and pngs
    with pytest.raises(InputError, match="2 tracks"):
        compose.compose_to_files(STORY, 31.5, outputs[:1], **options)


def test_riffusion_clips_are_stitched_and_written_in_blocks_too(tmp_path, monkeypatch):
    """render_to_files writes riffusion tracks as write() writes their Compositions (the
    batched generation is stood in for by fixed clips and images)."""
    from PIL import Image

    plans = compose.plan_tracks(STORY, 26.0, music="riffusion", profile="tiny", variants=2)
    rng = np.random.default_rng(0)
    made = [
        ([(0.3 * rng.standard_normal(CLIP)).astype(np.float32) for _ in plan.clips],
         [Image.new("L", (8, 8), i) if i % 2 else None for i in range(len(plan.clips))])
        for plan in plans
    ]  # fmt: skip
    monkeypatch.setattr(compose, "_riffusion_render", lambda *args: list(made))
    outputs = [tmp_path / "bgm-1.wav", tmp_path / "bgm-2.wav"]
    written = compose.render_to_files(plans, outputs, progress=False)
    for plan, (clips, images), files in zip(plans, made, written, strict=True):
        track = compose.Composition(compose.stitch(plan, clips), plan, tuple(images))
        whole = compose.write(track, tmp_path / "whole" / files["audio"].name)
        assert files["audio"].read_bytes() == whole["audio"].read_bytes()
        assert files["plan"].read_text() == whole["plan"].read_text()
        assert len(list(files["images"].glob("*.png"))) == len(clips) // 2


def test_write_stream_memory_does_not_grow_with_the_length(tmp_path):
    """A six-minute track is written holding a few clips, as a three-minute one is."""
    import tracemalloc

    minute = ((0, 25, "joy"), (25, 35, SILENCE), (35, 60, "sadness"))  # the same every minute
    timeline = spans(*((a + 60 * m, b + 60 * m, e) for m in range(6) for a, b, e in minute))
    plans = {m: compose_plan.make_plan(timeline, 60.0 * m) for m in (3, 6)}
    for plan in plans.values():  # the synthesiser's caches fill (bounded: lru_cache)
        compose.write_stream(plan, tmp_path / "warm.wav")
    peaks = {}
    for minutes, plan in plans.items():
        tracemalloc.start()
        try:
            compose.write_stream(plan, tmp_path / f"bgm-{minutes}.wav")
            peaks[minutes] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert sf.info(tmp_path / f"bgm-{minutes}.wav").frames == plan.samples
    three_minutes = 3 * 60 * RATE * 4  # bytes of a three-minute track as float32
    assert peaks[6] - peaks[3] < 0.05 * three_minutes, peaks
    assert peaks[6] < 0.5 * three_minutes, peaks
