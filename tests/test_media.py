from __future__ import annotations

import numpy as np
import pytest

from videobgm import media
from videobgm.media import MediaError


def test_probe_sample(sample_video):
    info = media.probe(sample_video)
    assert info.has_video and info.has_audio
    assert info.video_codec == "h264"
    assert (info.width, info.height) == (320, 180)
    assert info.fps == pytest.approx(15)
    assert info.sample_rate == 44100 and info.channels in (1, 2)
    assert 30 <= info.duration_s <= 60


def test_sample_is_small(sample_video):
    assert sample_video.stat().st_size <= 1.5 * 1024 * 1024


def test_decode_length_matches_duration(sample_video):
    info = media.probe(sample_video)
    audio = media.decode_audio(sample_video, sample_rate=44100)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - info.duration_s * 44100) <= 441  # one 10 ms hop
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0.05


def test_decode_stereo_and_resample(make_video):
    video = make_video(1.0)
    stereo = media.decode_audio(video, sample_rate=16000, mono=False)
    assert stereo.ndim == 2 and stereo.shape[0] == 1  # the tone is mono: one channel kept
    assert abs(stereo.shape[1] - 16000) <= 160


def test_iter_audio_streams_the_same_samples(make_video):
    video = make_video(3.0)
    whole = media.decode_audio(video)
    chunks = list(media.iter_audio(video, chunk_s=0.5))
    assert len(chunks) >= 6
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_no_audio_stream_is_a_clear_error(make_video):
    video = make_video(1.0, audio=False, name="silent.mp4")
    assert not media.probe(video).has_audio
    with pytest.raises(MediaError, match="no audio stream") as err:
        media.decode_audio(video)
    assert str(video) in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"this is not a video at all\n" * 20, "not a readable")],
)
def test_bad_files_name_the_path(tmp_path, content, message):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    for call in (media.probe, media.decode_audio):
        with pytest.raises(MediaError, match=message) as err:
            call(bad)
        assert str(bad) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        media.probe(tmp_path / "nope.mp4")


def test_write_audio_is_atomic_and_checks_format(tmp_path):
    audio = np.stack([np.zeros(100), np.ones(100) * 0.5]).astype(np.float32)
    out = media.write_audio(tmp_path / "a.wav", audio, 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
    back = media.decode_audio(out, sample_rate=8000, mono=False)
    assert back.shape == (2, 100)
    with pytest.raises(MediaError, match="unsupported audio format"):
        media.write_audio(tmp_path / "a.mp3", audio, 8000)
    with pytest.raises(MediaError, match="NaN"):
        media.write_audio(tmp_path / "b.wav", np.array([np.nan], np.float32), 8000)
    assert not (tmp_path / "b.wav").exists()


def test_mux_copies_video_bit_for_bit(sample_video, tmp_path):
    info = media.probe(sample_video)
    new_audio = np.zeros(int(info.duration_s * 44100) - 4410, np.float32)  # 0.1 s short
    wav = media.write_audio(tmp_path / "new.wav", new_audio, 44100)
    out = media.mux(sample_video, wav, tmp_path / "out.mp4")
    assert media.packet_md5s(out) == media.packet_md5s(sample_video)
    assert abs(media.probe(out).duration_s - info.duration_s) <= 0.05
    assert media.probe(out).audio_codec == "aac"
    # the sample's own soundtrack (speech and music) is gone: the new audio is silence
    assert np.max(np.abs(media.decode_audio(out))) < 1e-3


def test_mux_webm_uses_opus(tmp_path, make_video):
    video = make_video(1.0, audio=False)
    webm = tmp_path / "vp9.webm"
    media.run_ffmpeg(["-i", str(video), "-c:v", "libvpx-vp9", "-b:v", "50k", str(webm)], webm, "x")
    wav = media.write_audio(tmp_path / "a.wav", np.zeros(44100, np.float32), 44100)
    out = media.mux(webm, wav, tmp_path / "out.webm")
    assert media.probe(out).audio_codec == "opus"
    assert np.max(np.abs(media.decode_audio(out))) < 1e-3  # the silent mix, nothing else
    assert media.packet_md5s(out) == media.packet_md5s(webm)


def test_mux_refuses_to_overwrite_its_input(sample_video, tmp_path):
    wav = media.write_audio(tmp_path / "a.wav", np.zeros(4410, np.float32), 44100)
    before = sample_video.read_bytes()
    with pytest.raises(MediaError, match="refusing to overwrite"):
        media.mux(sample_video, wav, sample_video)
    assert sample_video.read_bytes() == before


def test_mux_failure_leaves_no_output(tmp_path, make_video):
    video = make_video(1.0)
    not_audio = tmp_path / "not.wav"
    not_audio.write_text("garbage" * 100)
    with pytest.raises(MediaError, match=r"out.mp4: muxing failed \("):
        media.mux(video, not_audio, tmp_path / "out.mp4")
    assert not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir())


def test_mono_downmix_is_the_channel_average(tmp_path):
    left = np.full(4410, 0.9, np.float32)
    right = np.full(4410, 0.3, np.float32)
    wav = media.write_audio(tmp_path / "st.wav", np.stack([left, right]), 44100, subtype="FLOAT")
    mono = media.decode_audio(wav)
    np.testing.assert_allclose(mono, 0.6, atol=1e-6)  # not ffmpeg's -3 dB sum (0.85)
