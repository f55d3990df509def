"""End to end with the tiny offline models: video in, video out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import gradient_frames, tone
from videobgm import cli, media, mix, pipeline
from videobgm.errors import InputError
from videobgm.media import MediaError


def _no_partial_files(folder):
    return not [p for p in folder.rglob("*") if ".part" in p.name]


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    """One run on the demo sample (procedural music, spectral separation)."""
    base = tmp_path_factory.mktemp("story")
    video = base / "story.mp4"
    for name in ("story.mp4", "story.srt", "story.timeline.json"):
        shutil.copy(pipeline.paths.samples() / name, base / name)
    before = pipeline.file_hash(video)
    result = pipeline.run(video, base / "out" / "story.mp4", run_dir=base / "run", progress=False)
    return result, before


def test_output_keeps_the_video_and_the_duration(story_run):
    result, before = story_run
    out = result.outputs[0]
    assert pipeline.file_hash(result.input) == before, "the input was written to"
    assert media.packet_md5s(out) == media.packet_md5s(result.input)
    assert abs(media.probe(out).duration_s - media.probe(result.input).duration_s) <= 0.05
    assert _no_partial_files(result.run_dir) and _no_partial_files(out.parent)


def test_mix_loudness_and_true_peak(story_run):
    result, _ = story_run
    mixed = media.decode_audio(result.mix[0], 44100, mono=False)
    assert abs(mix.loudness(mixed, 44100) - (-14.0)) <= 0.5
    assert mix.true_peak(mixed, floor_db=-60) <= -1.0
    delivered = media.decode_audio(result.outputs[0], 44100, mono=False)  # after AAC
    assert abs(mix.loudness(delivered, 44100) - (-14.0)) <= 0.5
    # what is delivered is this mix (AAC keeps the waveform of speech and music closely)
    n = min(delivered.shape[1], mixed.shape[1])
    assert np.corrcoef(delivered[0, :n], mixed[0, :n])[0, 1] > 0.95


def test_artefacts_are_all_there(story_run):
    result, _ = story_run
    out = result.outputs[0]
    for path in (result.voice, *result.bgm, *result.mix, *result.plans, result.transcript,
                 result.report, *result.timeline.values()):  # fmt: skip
        assert path.exists(), path
    for stem in ("voice", "bgm", "mix"):
        assert out.with_name(f"{out.stem}.{stem}.wav").exists()
    spans = json.loads(result.timeline["json"].read_text())
    assert [s["emotion"] for s in spans] == ["joy", "sadness", "fear", "anger", "surprise"]
    assert result.music == "procedural"


def test_rerun_reuses_and_edited_timeline_recomputes_only_the_music(story_run, tmp_path):
    result, _ = story_run
    again = pipeline.run(result.input, result.outputs[0], run_dir=result.run_dir, progress=False)
    assert set(again.stages.values()) == {"reused"}
    spans = json.loads(result.timeline["json"].read_text())
    spans[0]["emotion"] = "fear"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(spans))
    changed = pipeline.run(
        result.input, result.outputs[0], run_dir=result.run_dir, progress=False,
        timeline=str(edited),
    )  # fmt: skip
    assert changed.stages["transcribe"] == "reused" and changed.stages["separate"] == "reused"
    assert changed.stages["vad"] == "reused"
    assert {changed.stages[s] for s in ("compose", "mix", "deliver")} == {"ran"}
    assert json.loads(changed.timeline["json"].read_text())[0]["emotion"] == "fear"


def test_failure_keeps_previous_outputs(story_run, tmp_path):
    result, _ = story_run
    bad = tmp_path / "bad.json"
    bad.write_text('[{"start": 0, "end": 3, "emotion": "euphoria"}]')
    out_bytes = result.outputs[0].read_bytes()
    with pytest.raises(InputError):
        pipeline.run(result.input, result.outputs[0], run_dir=result.run_dir, progress=False,
                     timeline=str(bad))  # fmt: skip
    assert result.outputs[0].read_bytes() == out_bytes
    assert _no_partial_files(result.run_dir)


def _video(path, seconds, audio=None, rate=44100):
    wav = None
    if audio is not None:
        wav = media.write_audio(path.with_suffix(".src.wav"), audio, rate)
    return media.write_video(path, gradient_frames(seconds, 10), 10, wav)


def test_generated_video_with_riffusion_and_variants(tmp_path):
    speechy = tone(10.0, 220) * (np.sin(np.linspace(0, 40, 441000)) > 0)
    video = _video(tmp_path / "ten.mp4", 10.0, speechy)
    result = pipeline.run(video, run_dir=tmp_path / "run", progress=False, music="riffusion",
                          steps=2, variants=2, seed=5)  # fmt: skip
    assert [p.name for p in result.outputs] == ["ten.videobgm.mp4", "ten.videobgm-2.mp4"]
    for out in result.outputs:
        assert abs(media.probe(out).duration_s - media.probe(video).duration_s) <= 0.05
        assert media.packet_md5s(out) == media.packet_md5s(video)
    one, two = (media.decode_audio(p, 44100) for p in result.bgm)
    assert len(one) == len(two) == int(round(media.probe(video).duration_s * 44100))
    assert not np.allclose(one, two)


def test_video_without_audio_gets_calm_music(tmp_path):
    video = _video(tmp_path / "mute.mp4", 3.0)
    result = pipeline.run(video, run_dir=tmp_path / "run", progress=False)
    info = media.probe(result.outputs[0])
    assert info.has_audio and abs(info.duration_s - 3.0) <= 0.05
    assert np.max(np.abs(media.decode_audio(result.outputs[0]))) > 0.01
    # calm: the whole track was planned from the neutral emotion's music
    plan = json.loads(result.plans[0].read_text())
    assert {k["emotion"] for k in plan["keyframes"]} == {"neutral"}
    assert [s["emotion"] for s in plan["timeline"]] == ["neutral"]


def test_audio_only_input_gives_audio_output(tmp_path):
    wav = media.write_audio(tmp_path / "talk.wav", tone(4.0, 180), 44100)
    result = pipeline.run(wav, run_dir=tmp_path / "run", progress=False)
    assert result.outputs[0].name == "talk.videobgm.wav"
    assert abs(media.probe(result.outputs[0]).duration_s - 4.0) <= 0.05


def test_silence_only_gives_music(tmp_path):
    video = _video(tmp_path / "quiet.mp4", 3.0, np.zeros(3 * 44100, np.float32))
    result = pipeline.run(video, run_dir=tmp_path / "run", progress=False)
    assert np.max(np.abs(media.decode_audio(result.mix[0]))) > 0.01


@pytest.mark.parametrize(
    ("make", "params", "error", "message"),
    [
        (lambda d: d / "missing.mp4", {}, MediaError, "no such file"),
        (lambda d: _text(d / "notes.mp4"), {}, MediaError, "not a readable"),
        (lambda d: _video(d / "blink.mp4", 0.5, tone(0.5)), {}, InputError, "at least 1 s"),
        (lambda d: _video(d / "v.mp4", 2.0, tone(2.0)), {"music": "jazz"}, InputError, "music"),
        (lambda d: _video(d / "v.mp4", 2.0, tone(2.0)), {"variants": 0}, InputError, "variants"),
        (lambda d: _video(d / "v.mp4", 2.0, tone(2.0)), {"tempo": 3}, InputError, "'tempo'"),
        (lambda d: _video(d / "v.mp4", 2.0, tone(2.0)), {"neutral_policy": "x"}, InputError, "'x'"),
    ],
    ids=["missing", "not-a-video", "too-short", "bad-music", "bad-variants", "unknown", "policy"],
)
def test_bad_input_is_one_clear_error(tmp_path, make, params, error, message):
    path = make(tmp_path)
    with pytest.raises(error, match=message):
        pipeline.run(path, run_dir=tmp_path / "run", progress=False, **params)
    assert not list(tmp_path.glob("*.videobgm*"))


def _text(path):
    path.write_text("not a video\n" * 50)
    return path


def test_output_equal_to_input_is_refused(tmp_path):
    video = _video(tmp_path / "v.mp4", 2.0, tone(2.0))
    before = video.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        pipeline.run(video, video, run_dir=tmp_path / "run", progress=False)
    assert video.read_bytes() == before


def test_cli_folder_with_one_corrupt_file(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _video(folder / "a.mp4", 2.0, tone(2.0))
    _text(folder / "b.mp4")
    (folder / "a.src.wav").unlink()
    status = cli.main(["run", str(folder), "-q", "--profile", "tiny", "--run-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "1 done, 1 failed" in out and "b.mp4" in out
    assert (folder / "videobgm" / "a.videobgm.mp4").exists()


def test_waveform_envelope_from_a_file_matches_the_array(tmp_path):
    """The report's waveform is drawn from the WAV a piece at a time: the same minima and
    maxima as from the whole array, and every sample inside some bin's range."""
    from videobgm.plots.pipeline import waveform_envelope

    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(44100 * 20) * 0.2).clip(-1, 1).astype(np.float32)
    path = media.write_audio(tmp_path / "a.wav", audio, 44100)
    stored = media.AudioReader(path)(0, len(audio))
    times, low, high = waveform_envelope(path, 44100, bins=700)
    t2, low2, high2 = waveform_envelope(stored, 44100, bins=700)
    assert np.array_equal(low, low2) and np.array_equal(high, high2) and np.allclose(times, t2)
    width = len(audio) // 700
    assert len(times) == 700 and times[-1] < 20.0
    assert np.all(low <= stored[: 700 * width].reshape(700, width).min(axis=1))
    assert np.all(high >= stored[: 700 * width].reshape(700, width).max(axis=1))
