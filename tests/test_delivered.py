"""What a person receives: the delivered file is decoded and compared with what it should carry.

- the muxed audio is the new mix (not the source's old soundtrack), for mono and stereo sources
  and for webm, in sync with the video, at the promised codec and bitrate;
- before ducking, the music sits ``music_db`` below the speech, measured with pyloudnorm on the
  mix's own parts.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import gradient_frames
from videobgm import media, mix, paths, synth

RATE = 44100
SECONDS = 3.0
MAX_LAG = 2048  # samples searched either side when lining the decoded audio up with the mix


def _stereo_music(seconds: float, seed: int) -> np.ndarray:
    """Two different noisy chords, one per channel: easy to tell apart from a tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    left = np.sin(2 * np.pi * 311 * t) + np.sin(2 * np.pi * 1250 * t) * np.sin(2 * np.pi * 3 * t)
    right = np.sin(2 * np.pi * 523 * t + 1) + np.sin(2 * np.pi * 2200 * t)
    noise = rng.standard_normal((2, t.size)) * 0.01  # a little: AAC does not keep noise's shape
    return (0.2 * np.stack([left, right]) + noise).astype(np.float32)


def _old_soundtrack(seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([tone * (1 + 0.5 * c) for c in range(channels)]).astype(np.float32)


def _source_video(folder, channels: int, suffix: str = ".mp4"):
    """A small video whose soundtrack is a 440 Hz tone with ``channels`` channels."""
    old = media.write_audio(folder / f"old{channels}.wav", _old_soundtrack(SECONDS, channels), RATE)
    video = media.write_video(folder / f"src{channels}.mp4", gradient_frames(SECONDS), 10, old)
    if suffix == ".webm":
        webm = folder / f"src{channels}.webm"
        args = ["-i", str(video), "-c:v", "libvpx-vp9", "-b:v", "50k", "-c:a", "libopus"]
        video = media.run_ffmpeg([*args, str(webm)], webm, "encoding the webm source")
        video = webm
    assert media.probe(video).channels == channels
    return video


def _correlation_at_best_lag(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """The normalised correlation of two mono signals at the lag (within MAX_LAG) where it is
    largest, and that lag in samples (positive: ``a`` is late)."""
    from scipy.signal import correlate

    n = min(len(a), len(b)) - 2 * MAX_LAG
    ref = b[MAX_LAG : MAX_LAG + n].astype(np.float64)
    corr = correlate(a[: n + 2 * MAX_LAG].astype(np.float64), ref, mode="valid")
    lag = int(np.argmax(np.abs(corr)))
    window = a[lag : lag + n].astype(np.float64)
    value = corr[lag] / np.sqrt(np.sum(window**2) * np.sum(ref**2))
    return float(value), lag - MAX_LAG


@pytest.mark.parametrize(
    ("channels", "suffix", "codec"),
    [(1, ".mp4", "aac"), (2, ".mp4", "aac"), (2, ".webm", "opus")],
)
def test_the_delivered_audio_is_the_new_mix_in_sync(tmp_path, channels, suffix, codec):
    video = _source_video(tmp_path, channels, suffix)
    new = _stereo_music(SECONDS, seed=channels)
    wav = media.write_audio(tmp_path / "mix.wav", new, RATE)
    out = media.mux(video, wav, tmp_path / f"out{suffix}")

    info = media.probe(out)
    assert info.audio_codec == codec and info.channels == 2
    delivered = media.decode_audio(out, RATE, mono=False)
    assert delivered.shape[0] == 2
    old = _old_soundtrack(SECONDS, 1)[0]
    for channel in range(2):
        value, lag = _correlation_at_best_lag(delivered[channel], new[channel])
        assert value > 0.98, f"channel {channel} is not the new mix (correlation {value:.3f})"
        assert abs(lag) <= RATE // 1000, f"channel {channel} is {lag} samples out of sync"
        leak, _ = _correlation_at_best_lag(delivered[channel], old)
        assert abs(leak) < 0.05, f"the old soundtrack is still in channel {channel}"
    assert abs(delivered.shape[1] / RATE - media.probe(video).duration_s) <= 0.05


def test_the_delivered_audio_has_the_promised_bitrate(tmp_path):
    video = _source_video(tmp_path, 2)
    wav = media.write_audio(tmp_path / "mix.wav", _stereo_music(SECONDS, seed=5), RATE)
    for bitrate, kbps in (("192k", 192), ("96k", 96)):
        out = media.mux(video, wav, tmp_path / f"out{kbps}.mp4", audio_bitrate=bitrate)
        packets = media.packet_md5s(out, "a:0")
        measured = 8 * sum(size for size, _ in packets) / media.probe(out).duration_s / 1000
        assert measured == pytest.approx(kbps, rel=0.2), f"{measured:.0f} kb/s for {bitrate}"


def test_a_silent_mix_is_delivered_silent(tmp_path):
    """The new audio replaces the old even when it is silence: no trace of the old tone."""
    video = _source_video(tmp_path, 2)
    wav = media.write_audio(tmp_path / "mix.wav", np.zeros((2, int(SECONDS * RATE))), RATE)
    out = media.mux(video, wav, tmp_path / "out.mp4")
    delivered = media.decode_audio(out, RATE, mono=False)
    assert np.max(np.abs(delivered)) < 1e-3


# --------------------------------------------------------------------------- the mix's balance


@pytest.fixture(scope="module")
def voice_and_music():
    voice = media.decode_audio(paths.samples() / "story.voice.flac", RATE)[: 15 * RATE]
    music = synth.render("joy", len(voice) / RATE, seed=2)[: len(voice)]
    return voice, music


@pytest.mark.parametrize("music_db", [-6.0, -12.0, 3.0])
def test_before_ducking_the_music_sits_music_db_below_the_speech(voice_and_music, music_db):
    """Mixed with no ducking, the music as it is added to the voice (``music * music_gain /
    voice_gain``: the normalisation and limiter, common to both, taken out) is ``music_db`` LU
    from the voice, both measured with pyloudnorm (ITU-R BS.1770)."""
    import pyloudnorm

    voice, music = voice_and_music
    params = mix.MixParams(music_db=music_db, duck_db=0.0, channels=1)
    result = mix.mix(voice, music, RATE, params)
    meter = pyloudnorm.Meter(RATE)
    speech = meter.integrated_loudness(voice.astype(np.float64))
    added = meter.integrated_loudness((music * result.music_gain / result.voice_gain).astype(float))
    assert added - speech == pytest.approx(music_db, abs=0.1)
    assert meter.integrated_loudness(result.mix[0].astype(np.float64)) == pytest.approx(
        params.target_lufs, abs=0.5
    )


def test_where_the_limiter_rests_the_delivered_balance_is_music_db(voice_and_music):
    """At -23 LUFS the limiter has nothing to do, so the balance a listener hears in the mix
    (voice and music as mixed, each measured with pyloudnorm) is ``music_db`` itself. (At the
    default -14 LUFS the limiter takes up to 4.6 dB off this voice's peaks and the music
    sounds about 1.5 LU closer to the speech.)"""
    import pyloudnorm

    voice, music = voice_and_music
    result = mix.mix(voice, music, RATE, mix.MixParams(target_lufs=-23, duck_db=0.0, channels=1))
    meter = pyloudnorm.Meter(RATE)
    speech = meter.integrated_loudness((voice * result.voice_gain).astype(np.float64))
    heard = meter.integrated_loudness((music * result.music_gain).astype(np.float64))
    assert heard - speech == pytest.approx(-6.0, abs=0.3)


def test_a_short_mix_is_padded_to_the_video_and_a_long_one_cut(tmp_path):
    """The delivered audio lasts as long as the video whatever the mix's length (silence
    after a short mix), and the file starts with its index (``+faststart``: plays while it
    downloads) and keeps the source's metadata."""
    source = tmp_path / "titled.mp4"
    plain = _source_video(tmp_path, 2)
    args = ["-i", str(plain), "-c", "copy", "-metadata", "title=Holiday talk"]
    media.run_ffmpeg([*args, str(source)], source, "titling the source")
    duration = media.probe(source).duration_s
    for seconds in (SECONDS - 1.0, SECONDS + 1.0):
        wav = media.write_audio(tmp_path / "mix.wav", _stereo_music(seconds, seed=3), RATE)
        out = media.mux(source, wav, tmp_path / f"out{seconds:g}.mp4")
        delivered = media.decode_audio(out, RATE)
        assert abs(len(delivered) / RATE - duration) <= 0.05
        tail = delivered[int((SECONDS - 0.9) * RATE) :]
        assert (np.max(np.abs(tail)) < 1e-3) == (seconds < SECONDS)  # padded with silence
        data = out.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")
        assert "Holiday talk" in media.run_ffmpeg(["-i", str(out), "-f", "null", "-"], out, "x")


def test_muxing_into_a_file_without_video_is_one_clear_error(tmp_path):
    audio_only = media.write_audio(tmp_path / "talk.wav", _old_soundtrack(1.0, 1), RATE)
    wav = media.write_audio(tmp_path / "mix.wav", _stereo_music(1.0, seed=1), RATE)
    with pytest.raises(media.MediaError) as info:
        media.mux(audio_only, wav, tmp_path / "out.mp4")
    assert str(info.value) == f"{audio_only}: has no video stream to mux audio into"
    assert not list(tmp_path.glob("out*"))
    with pytest.raises(media.MediaError) as info:
        media.mux(audio_only, wav, wav)  # the mix itself as the output
    assert str(info.value) == f"{wav}: output path is the same as an input; refusing to overwrite"
