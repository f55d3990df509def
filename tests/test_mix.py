from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from videobgm import media, mix, paths
from videobgm.errors import InputError
from videobgm.synth import arrange as synth

RATE = 44100
CUES = [(0.8, 7.17), (8.37, 17.52), (18.72, 26.14), (27.34, 33.27), (34.47, 41.27)]


def independent_true_peak_db(audio: np.ndarray) -> float:
    """4x oversampled peak of the whole signal (not the module's block-wise shortcut)."""
    return 20 * np.log10(np.max(np.abs(resample_poly(audio, 4, 1, axis=-1))))


@pytest.fixture(scope="module")
def voice():
    return media.decode_audio(paths.samples() / "story.voice.flac", RATE)


@pytest.fixture(scope="module")
def music(voice):
    return synth.render("anger", len(voice) / RATE, seed=1)[: len(voice)]


@pytest.mark.parametrize("target", mix.COMMON_TARGETS_LUFS)
def test_loudness_target_and_true_peak(voice, music, target):
    result = mix.mix(voice, music, RATE, mix.MixParams(target_lufs=target))
    assert result.mix.shape == (2, len(voice))
    assert abs(mix.loudness(result.mix, RATE) - target) <= 0.5
    assert independent_true_peak_db(result.mix) <= -1.0 + 0.05
    assert result.true_peak_db <= -1.0
    # the reported figure is the delivered signal's (the same 4x filter as resample_poly's)
    assert result.true_peak_db == pytest.approx(independent_true_peak_db(result.mix), abs=0.01)


def test_true_peak_of_a_quarter_rate_sine_sampled_off_its_crests_is_its_amplitude():
    """A sine at a quarter of the sample rate, sampled 45 degrees off its crests: every sample
    is A / sqrt(2), the waveform reaches A (3 dB more). A = 0.5, rising smoothly to 0.9 and
    back over 100 ms centred on a chunk boundary of the streamed measurement (a Hann swell)."""
    k = np.arange(3 * mix.CHUNK)
    swell = np.clip((k - 2 * mix.CHUNK) / 2205, -1, 1)  # -1 .. 1 across the 100 ms
    amplitude = 0.5 + 0.4 * np.cos(np.pi / 2 * swell) ** 2
    x = (amplitude * np.sin(np.pi / 2 * k + np.pi / 4)).astype(np.float32)
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(20 * np.log10(0.9 / 2**0.5), abs=1e-4)
    assert mix.true_peak(x) == pytest.approx(20 * np.log10(0.9), abs=0.05)
    quiet = x[: mix.CHUNK]  # samples at -9.03 dBFS: under the default floor the sample peak
    assert mix.true_peak(quiet) == pytest.approx(20 * np.log10(0.5 / 2**0.5), abs=1e-4)


def test_true_peak_agrees_with_oversampling_the_whole_signal(music):
    assert mix.true_peak(music, floor_db=-60) == pytest.approx(
        independent_true_peak_db(music), abs=0.01
    )


def test_an_array_reader_gives_float32_zeros_outside_and_never_a_writable_view():
    audio = np.arange(1, 11, dtype=np.float32)
    read = mix.array_reader(audio)
    inside = read(0, 4)
    with pytest.raises(ValueError):  # a view of the caller's array: writing to it must fail
        inside[0] = 0.0
    edges = read(-2, 12)
    assert edges.dtype == np.float32
    assert edges.tolist() == [0, 0, *range(1, 11), 0, 0]
    assert audio.tolist() == list(range(1, 11))


def test_transcript_activity_marks_the_frames_a_segment_touches():
    """Frame k covers [k, k + 1) * FRAME_S (10 ms): a segment marks the frames it overlaps;
    times before 0 mark nothing."""
    frames = mix.transcript_activity([(0.0, 0.05), (0.123, 0.131)], 20)
    assert np.flatnonzero(frames).tolist() == [0, 1, 2, 3, 4, 12, 13]
    assert not mix.transcript_activity([(-1.0, -0.5), (-0.2, 0.0)], 20).any()


def test_duck_curve_is_duck_db_under_long_speech_and_0_db_in_long_pauses():
    params = mix.MixParams()  # -12 dB, 50 ms attack (starting 100 ms early), 200 ms release
    times, gain_db = mix.duck_curve([(1.0, 3.0)], 5.0, params)
    assert len(times) == len(gain_db) == 500
    np.testing.assert_allclose(times, (np.arange(500) + 0.5) * mix.FRAME_S)
    assert np.all(gain_db[:85] == 0.0)  # untouched until the look-ahead, 0.1 s before 1.0 s
    # e^(-t / 50 ms) of the 12 dB left after t: under 0.01 dB within 0.4 s of speech
    assert gain_db[140:300] == pytest.approx(params.duck_db, abs=0.01)
    assert gain_db[-1] == pytest.approx(0.0, abs=0.01)  # 2 s after: 10 release times
    # the release, a one-pole smoother of time constant release_ms from the ducked level: j + 1
    # frames after the last speech frame (299), 1 - (1 - g) e^(-(j + 1) FRAME_S / release)
    ducked = 10 ** (params.duck_db / 20)
    after = np.exp(-(np.arange(100) + 1) * mix.FRAME_S / (params.release_ms / 1000))
    np.testing.assert_allclose(10 ** (gain_db[300:400] / 20), 1 - (1 - ducked) * after, rtol=1e-5)


def test_vad_spans_duck_the_music_without_running_the_detector(voice, music):
    """``activity="vad"`` with the detector's spans given: exactly those frames are speech."""
    spans = [(2.0, 4.0), (10.0, 12.5)]
    result = mix.mix(voice, music, RATE, mix.MixParams(activity="vad"), speech=spans)
    expected = mix.transcript_activity(spans, len(result.speech))
    assert np.array_equal(result.speech, expected) and result.speech.sum() == 450
    with pytest.raises(InputError, match="needs the detector's spans"):
        mix.Activity().frames(mix.array_reader(voice), len(voice), RATE, mix.MixParams())


def _rms_db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def test_music_is_ducked_under_speech(voice, music):
    result = mix.mix(voice, music, RATE, mix.MixParams(activity="transcript"), segments=CUES)
    t = np.arange(len(voice)) / RATE
    speaking = np.zeros(len(voice), bool)
    clear_pause = np.ones(len(voice), bool)
    for start, end in CUES:
        speaking |= (t >= start + 0.2) & (t <= end - 0.2)
        clear_pause &= (t < start - 0.1) | (t > end + 0.9)  # release has had time to finish
    raw = music * result.music_gain  # the music as it sounds in the mix
    drop = _rms_db(raw[clear_pause]) - _rms_db(raw[speaking])
    undone = _rms_db(music[clear_pause]) - _rms_db(music[speaking])  # the music's own swing
    assert drop - undone >= 10.0


def test_voice_activity_finds_the_words(voice):
    active = mix.voice_activity(voice, RATE)
    times = (np.arange(len(active)) + 0.5) * mix.FRAME_S
    inside = np.zeros(len(active), bool)
    for start, end in CUES:
        inside |= (times >= start) & (times <= end)
    assert active[inside].mean() > 0.8
    assert active[~inside].mean() < 0.2


def test_ducking_starts_before_the_first_word():
    active = np.zeros(300, bool)
    active[100:200] = True
    params = mix.MixParams(attack_ms=50, release_ms=400)
    gain = mix.duck_gain(active, params, 300 * 441, RATE)
    assert gain[100 * 441] < 10 ** (-8 / 20)  # already 8 dB down when speech starts
    assert gain[180 * 441] == pytest.approx(10 ** (-12 / 20), rel=0.05)
    assert gain[0] == pytest.approx(1.0)
    assert 0.2 < gain[230 * 441] < 0.9  # released gradually


def test_silent_voice_gives_normalised_music(music):
    silent = np.zeros_like(music)
    result = mix.mix(silent, music, RATE)
    assert np.all(np.isfinite(result.mix))
    assert abs(result.loudness_lufs - (-14.0)) <= 0.5


def test_all_silence_stays_silent():
    quiet = np.zeros(RATE * 2, np.float32)
    result = mix.mix(quiet, quiet, RATE)
    assert np.all(result.mix == 0)


def test_limiter_catches_intersample_peaks():
    t = np.arange(RATE) / RATE
    # A tone at fs/4 with a 45 degree phase: samples at 0.707, true peak 1.0 -> +3 dB overs.
    tone = np.sin(2 * np.pi * RATE / 4 * t + np.pi / 4).astype(np.float32) * 1.3
    gain = mix.limiter_gain(tone, RATE, -1.0)
    assert independent_true_peak_db(tone * gain) <= -1.0 + 0.05


@pytest.mark.parametrize(
    "bad",
    [
        {"target_lufs": 3.0},
        {"target_lufs": -40.1},
        {"target_lufs": -4.9},
        {"true_peak_db": 1.0},
        {"duck_db": 6.0},
        {"activity": "psychic"},
        {"activity": "vad+psychic"},
    ],
)
def test_bad_parameters_are_one_clear_error(bad):
    with pytest.raises(InputError):
        mix.MixParams(**bad)


def test_the_ends_of_the_documented_ranges_are_accepted():
    for target in (-40.0, -5.0):  # "outside -40..-5" is an error: the ends are inside
        assert mix.MixParams(target_lufs=target).target_lufs == target
    assert mix.MixParams(true_peak_db=0.0, duck_db=0.0).duck_db == 0.0


@pytest.mark.parametrize("seconds", [0.5, 3.3, 20.0, 30.0])  # more than one piece
def test_loudness_agrees_with_pyloudnorm(voice, music, seconds):
    import pyloudnorm

    n = int(seconds * RATE)
    for audio in (voice[:n], music[:n] * 0.1, np.stack([voice[:n], music[:n]])):
        reference = pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))
        assert mix.loudness(audio, RATE) == pytest.approx(reference, abs=0.01)
    dual = mix.loudness(voice[:n], RATE, copies=2)
    stereo = pyloudnorm.Meter(RATE).integrated_loudness(np.stack([voice[:n]] * 2).T.astype(float))
    assert dual == pytest.approx(stereo, abs=0.01)


def test_measure_file_agrees_with_pyloudnorm_and_oversampling(tmp_path, voice, music):
    """A delivered file's figures, decoded by ffmpeg: the loudness pyloudnorm measures on the
    same samples and the 4x oversampled peak, for two different channels."""
    import pyloudnorm

    n = 12 * RATE  # two chunks and more
    stereo = np.stack([voice[:n], 0.5 * music[:n]]).astype(np.float32)
    path = media.write_audio(tmp_path / "delivered.flac", stereo, RATE)
    decoded = media.decode_audio(path, RATE, mono=False)
    measured = mix.measure_file(path)
    reference = pyloudnorm.Meter(RATE).integrated_loudness(decoded.T.astype(np.float64))
    assert measured.loudness_lufs == pytest.approx(reference, abs=0.01)
    assert measured.true_peak_db == pytest.approx(independent_true_peak_db(decoded), abs=0.01)


def test_mix_files_cuts_a_longer_voice_to_n_samples(tmp_path, voice, music):
    """Both files are cut (or padded) to ``n_samples``: a voice 2 s longer than asked for
    gives the mix of its first ``n`` samples, ``n`` samples long."""
    import soundfile as sf

    n = 6 * RATE
    voice_path = media.write_audio(tmp_path / "voice.wav", voice[: n + 2 * RATE], RATE)
    music_path = media.write_audio(tmp_path / "bgm.wav", music[:n], RATE)
    params = mix.MixParams(activity="transcript")
    mix.mix_files(voice_path, music_path, tmp_path / "mix.wav", n, params, segments=CUES)
    written, _ = sf.read(tmp_path / "mix.wav", dtype="float32")
    with media.AudioReader(voice_path) as v, media.AudioReader(music_path) as m:
        expected = mix.mix(v(0, n), m(0, n), RATE, params, segments=CUES)
    assert written.shape == (n, 2)
    assert np.max(np.abs(written.T - expected.mix)) <= 1.5 / 32768


def test_mix_files_writes_the_same_mix_as_mix_in_one_piece(tmp_path, voice, music):
    """The pipeline's streamed mix (files in, file out, a piece at a time) is the in-memory
    mix: same samples to 16-bit precision, same measurements; the inputs are left as they
    were, and music shorter than the voice is padded with silence."""
    import soundfile as sf

    voice_path = media.write_audio(tmp_path / "voice.wav", voice, RATE)
    music_path = media.write_audio(tmp_path / "bgm.wav", music[:-RATE], RATE)
    before = voice_path.read_bytes(), music_path.read_bytes()
    n = len(voice)  # 42 s: more than one piece
    summary = mix.mix_files(voice_path, music_path, tmp_path / "mix.wav", n, segments=CUES)
    assert (voice_path.read_bytes(), music_path.read_bytes()) == before
    written, rate = sf.read(tmp_path / "mix.wav", dtype="float32")
    assert rate == RATE and written.shape == (n, 2)

    with media.AudioReader(voice_path) as v, media.AudioReader(music_path, n) as m:
        expected = mix.mix(v(0, n), m(0, n), RATE, segments=CUES)
    assert np.max(np.abs(written.T - expected.mix)) <= 1.5 / 32768
    assert summary.loudness_lufs == pytest.approx(expected.loudness_lufs, abs=1e-6)
    assert summary.true_peak_db == pytest.approx(expected.true_peak_db, abs=1e-6)
    assert np.array_equal(summary.speech, expected.speech)
    assert abs(mix.loudness(written.T, RATE) - (-14.0)) <= 0.5
    assert independent_true_peak_db(written.T) <= -1.0 + 0.05


def test_mix_files_memory_does_not_grow_with_length(tmp_path):
    """Peak traced memory of the streamed mix is the same for 1 and 3 minutes of audio (and
    well under one copy of the 3-minute audio): it holds pieces, not the whole."""
    import tracemalloc

    rng = np.random.default_rng(0)
    peaks = []
    for minutes in (1, 3):
        n = minutes * 60 * RATE
        words = np.sin(np.arange(n) * (2 * np.pi * 0.4 / RATE)) > 0  # 1.25 s on, 1.25 s off
        voice = (rng.standard_normal(n) * 0.1 * words).astype(np.float32)
        music = np.sin(np.arange(n) * (2 * np.pi * 220 / RATE)).astype(np.float32) * 0.3
        paths = [media.write_audio(tmp_path / f"{k}{minutes}.wav", a, RATE)
                 for k, a in (("v", voice), ("m", music))]  # fmt: skip
        del voice, music, words
        mix.loudness(np.zeros(RATE, np.float32), RATE)  # imports and filter design first
        tracemalloc.start()
        mix.mix_files(*paths, tmp_path / f"mix{minutes}.wav", n)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    one_copy = 3 * 60 * RATE * 4
    assert peaks[1] < 1.15 * peaks[0], f"peak grew from {peaks[0]} to {peaks[1]} bytes"
    assert peaks[1] < one_copy, f"peak {peaks[1]} bytes; the audio itself is {one_copy}"
