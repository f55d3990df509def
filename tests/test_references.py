"""The formats and closed forms the code promises, checked against references that do not come
from the code under test: librosa's HTK mel filterbank (so the mel scale is checked on every
clone, without ``../shared``) and the equal-power crossfade's defining property, on the
stitched track itself."""

from __future__ import annotations

import numpy as np
import pytest

from videobgm import compose
from videobgm import spectrogram as sp
from videobgm.compose import plan as compose_plan
from videobgm.synth import arrange as synth
from videobgm.vocab import SILENCE

RATE = 44100


# --------------------------------------------------------------------------- the mel filterbank


@pytest.mark.parametrize(
    "params",
    [
        sp.SpectrogramParams(),  # riffusion's: 512 HTK bands 0-10 kHz on a 400 ms FFT
        sp.SpectrogramParams(sample_rate=8000, num_frequencies=16, max_frequency=4000,
                             window_duration_ms=32, padded_duration_ms=64),
        sp.SpectrogramParams(min_frequency=300, max_frequency=8000, num_frequencies=64),
    ],
)  # fmt: skip
def test_mel_filterbank_is_librosas_htk_filterbank_without_normalisation(params):
    import librosa

    reference = librosa.filters.mel(
        sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.num_frequencies,
        fmin=params.min_frequency, fmax=params.max_frequency, htk=True, norm=None,
        dtype=np.float64,
    ).T  # fmt: skip
    ours = sp.mel_filterbank(params)
    assert ours.shape == reference.shape == (params.n_fft // 2 + 1, params.num_frequencies)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_the_mel_bands_peak_at_the_htk_mel_scale():
    """Band k peaks at the FFT bin nearest the HTK mel scale's k-th point (2595 log10(1 + f/700)),
    computed here from the formula, and the first band starts at 0 Hz."""
    params = sp.SpectrogramParams()
    fb = sp.mel_filterbank(params)
    top = 2595 * np.log10(1 + params.max_frequency / 700)
    centres_hz = 700 * (10 ** (np.linspace(0, top, params.num_frequencies + 2)[1:-1] / 2595) - 1)
    bin_hz = params.sample_rate / params.n_fft
    peaks = fb.argmax(axis=0)
    # the peak is one of the two bins either side of the centre
    assert np.all(np.abs(peaks * bin_hz - centres_hz) <= bin_hz)
    assert np.all(fb.max(axis=0) > 0.5)  # no band falls between bins and vanishes
    assert fb[0, 0] == 0 and np.all(fb[params.max_frequency * params.n_fft // RATE + 2 :] == 0)


@pytest.mark.parametrize("seconds", [1.0, 0.1])  # 0.1 s: shorter than half an FFT, zero-padded
@pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")  # librosa, for the 0.1 s
def test_the_image_is_librosas_mel_spectrogram_on_riffusions_pixel_scale(seconds):
    """Riffusion's format, computed here with librosa: centred STFT (Hann window of 100 ms in a
    400 ms FFT, 10 ms hop, reflect padding), magnitude (power 1) through the HTK filterbank of
    512 bands 0-10 kHz on int16-scaled samples; pixel = 255 - 255 (mel / max)^0.25, truncated,
    low frequencies at the bottom, the same grey in R, G and B; the peak in EXIF."""
    import librosa

    params = sp.SpectrogramParams()
    rng = np.random.default_rng(5)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float64) * 32768, sr=RATE, n_fft=17640, hop_length=441,
        win_length=4410, window="hann", center=True,
        pad_mode="reflect" if seconds > 0.2 else "constant", power=1.0, n_mels=512, fmin=0,
        fmax=10000, htk=True, norm=None,
    )  # fmt: skip
    ours = sp.mel_from_audio(audio, params)
    assert ours.shape == (1, 512, 1 + audio.size // 441) == (1, *mel.shape)
    np.testing.assert_allclose(ours[0], mel, rtol=1e-3, atol=1e-3 * mel.max())
    image = sp.image_from_audio(audio, params)
    pixels = np.asarray(image, dtype=np.int16)
    expected = np.floor(255 - 255 * (mel / mel.max()) ** 0.25)[::-1]
    assert pixels.shape == (512, mel.shape[1], 3)
    assert np.all(pixels == pixels[..., :1])  # mono: grey
    assert np.max(np.abs(pixels[..., 0] - expected)) <= 1  # float32 rounding at a level's edge
    assert np.mean(pixels[..., 0] == expected) > 0.99
    assert sp.read_exif(image)[1] == pytest.approx(mel.max(), rel=1e-3)


def _librosa_mel(audio: np.ndarray, params) -> np.ndarray:
    """Riffusion's mel amplitudes of one channel, computed by librosa from ``params``' fields."""
    import librosa

    rate = params.sample_rate
    return librosa.feature.melspectrogram(
        y=audio.astype(np.float64) * 32768, sr=rate,
        n_fft=rate * params.padded_duration_ms // 1000,
        hop_length=rate * params.step_size_ms // 1000,
        win_length=rate * params.window_duration_ms // 1000, window="hann", center=True,
        pad_mode="reflect", power=1.0, n_mels=params.num_frequencies,
        fmin=params.min_frequency, fmax=params.max_frequency, htk=True, norm=None,
    )  # fmt: skip


def _noisy_tone(seconds: float, rate: int, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_a_clip_longer_than_one_stft_block_is_librosas_mel_spectrogram_throughout():
    """12.5 s is 1251 frames: past the 1024 frames the codec transforms at a time, so the
    frames on both sides of a block edge must match librosa's one-piece transform."""
    params = sp.SpectrogramParams(num_frequencies=128)
    audio = _noisy_tone(12.5, RATE, 440.0, seed=7)
    mel = _librosa_mel(audio, params)
    ours = sp.mel_from_audio(audio, params)
    assert ours.shape == (1, *mel.shape) == (1, 128, 1251)
    np.testing.assert_allclose(ours[0], mel, rtol=1e-3, atol=1e-3 * mel.max())


def test_stereo_parameters_take_two_channels_and_double_a_mono_one():
    """``stereo=True``: each of the first two channels' own mel spectrogram (a third channel is
    dropped); mono audio gives two identical channels. ``stereo=False`` averages the channels."""
    stereo = sp.SpectrogramParams(stereo=True, num_frequencies=64)
    left, right, third = (_noisy_tone(1.0, RATE, f, seed=i) for i, f in enumerate((330, 660, 990)))
    ours = sp.mel_from_audio(np.stack([left, right, third]), stereo)
    assert ours.shape[0] == 2
    for channel, audio in zip(ours, (left, right), strict=True):
        reference = _librosa_mel(audio, stereo)
        np.testing.assert_allclose(channel, reference, rtol=1e-3, atol=1e-3 * reference.max())
    doubled = sp.mel_from_audio(left, stereo)
    assert doubled.shape[0] == 2 and np.array_equal(doubled[0], doubled[1])
    reference = _librosa_mel(left, stereo)
    np.testing.assert_allclose(doubled[0], reference, rtol=1e-3, atol=1e-3 * reference.max())
    mono = sp.SpectrogramParams(num_frequencies=64)
    mean = (left + right) / 2
    reference = _librosa_mel(mean, mono)
    averaged = sp.mel_from_audio(np.stack([left, right]), mono)
    assert averaged.shape[0] == 1
    np.testing.assert_allclose(averaged[0], reference, rtol=1e-3, atol=1e-3 * reference.max())


def test_spectral_convergence_at_other_parameters_is_the_normalised_distance():
    """At 22.05 kHz, 20 ms steps and 96 bands: ~0 against the audio's own mel spectrogram (from
    librosa), and ``||a/|a| - b/|b|||`` (computed here with numpy) against another sound's."""
    params = sp.SpectrogramParams(
        sample_rate=22050, step_size_ms=20, window_duration_ms=80, padded_duration_ms=160,
        num_frequencies=96, min_frequency=50, max_frequency=8000,
    )  # fmt: skip
    audio = _noisy_tone(1.5, 22050, 523.0, seed=3)
    own = _librosa_mel(audio, params)
    assert sp.spectral_convergence(audio, own, params) < 1e-3
    other = _librosa_mel(_noisy_tone(1.5, 22050, 1200.0, seed=4), params)
    expected = np.linalg.norm(own / np.linalg.norm(own) - other / np.linalg.norm(other))
    assert expected > 0.5  # the two sounds differ: the check below can fail
    assert sp.spectral_convergence(audio, other, params) == pytest.approx(expected, abs=2e-3)


# --------------------------------------------------------------------------- crossfades


def test_equal_power_fades_sum_to_unit_power_and_mirror_each_other():
    for length in (2, 7, 441, 22050):
        fade_in, fade_out = compose.equal_power(length)
        assert fade_in.shape == fade_out.shape == (length,)
        np.testing.assert_allclose(fade_in**2 + fade_out**2, 1.0, atol=1e-6)
        np.testing.assert_allclose(fade_in, fade_out[::-1], atol=1e-6)
        assert np.all(np.diff(fade_in) >= 0) and 0 <= fade_in[0] < 0.5 < fade_in[-1] <= 1
    # one sample: the midpoint, half the power each
    np.testing.assert_allclose(compose.equal_power(1), [[0.5**0.5], [0.5**0.5]], atol=1e-6)


def _two_clip_plan(clip_samples: int, overlap: int) -> compose_plan.Plan:
    """Two clips overlapping by ``overlap`` samples, the track exactly as long as both."""
    first = compose_plan.PlannedClip(0, None, None, 0.0, fade_in=0, fade_out=overlap)
    second = compose_plan.PlannedClip(clip_samples - overlap, None, None, 0.0, overlap, 0)
    return compose_plan.Plan(
        backend="procedural", samples=2 * clip_samples - overlap, seed=0, keyframes=(),
        clips=(first, second), timeline=(), clip_samples=clip_samples, fade_in_s=0.0,
        fade_out_s=0.0,
    )  # fmt: skip


def _window_power_db(x: np.ndarray, window: int) -> np.ndarray:
    frames = x[: len(x) // window * window].reshape(-1, window).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1))


def test_a_crossfade_between_two_noises_keeps_the_loudness_flat():
    """Two independent noises of equal power, crossfaded: equal power means no dip. A linear
    crossfade would dip by 3 dB in the middle (0.5^2 + 0.5^2 = 0.5)."""
    clip, overlap, window = RATE, RATE // 2, RATE // 40  # 1 s clips, 0.5 s crossfade, 25 ms
    rng = np.random.default_rng(7)
    a, b = (0.1 * rng.standard_normal((2, clip))).astype(np.float32)  # below the limiter's knee
    track = compose.stitch(_two_clip_plan(clip, overlap), [a, b])
    assert len(track) == 2 * clip - overlap
    levels = _window_power_db(track, window)
    expected = 10 * np.log10(0.01)  # the noises' power
    # 25 ms of noise: the measured power wanders by about 0.15 dB (1 sigma); 4 sigmas allowed
    assert np.max(np.abs(levels - expected)) < 0.6
    middle = (clip - overlap // 2) // window
    assert np.mean(levels[middle - 2 : middle + 3]) == pytest.approx(expected, abs=0.3)


def test_a_crossfade_hands_a_constant_over_exactly():
    """Stitching is linear below the limiter's knee: feeding ones then zeros (and zeros then
    ones) reads the two gains off the track; their squares sum to 1 across the overlap, each
    clip is untouched outside it, and the fade-in rises where the fade-out falls."""
    clip, overlap = 4410, 1000
    plan = _two_clip_plan(clip, overlap)
    ones, zeros = np.full(clip, 0.4, np.float32), np.zeros(clip, np.float32)
    out_gain = compose.stitch(plan, [ones, zeros]) / 0.4
    in_gain = compose.stitch(plan, [zeros, ones]) / 0.4
    shared = slice(clip - overlap, clip)
    np.testing.assert_allclose(out_gain[shared] ** 2 + in_gain[shared] ** 2, 1.0, atol=1e-5)
    np.testing.assert_allclose(out_gain[: clip - overlap], 1.0, atol=1e-6)
    np.testing.assert_allclose(in_gain[clip:], 1.0, atol=1e-6)
    assert np.all(np.diff(in_gain[shared]) > 0) and np.all(np.diff(out_gain[shared]) < 0)


def _gain_curve(plan: compose_plan.Plan, index: int) -> np.ndarray:
    """The gain the procedural transition clip ``index`` puts on its one sounding keyframe's
    seed clip, read off as their ratio (NaN where the seed clip is too quiet to divide by)."""
    clip = plan.clips[index]
    keyframe = plan.keyframes[clip.start if clip.start is not None else clip.end]
    seed = synth.clip(keyframe.emotion, keyframe.synth_seed, keyframe.variation)
    out = compose.procedural_clips(plan)[index]
    assert out.dtype == np.float32 and out.shape == seed.shape
    loud = np.abs(seed) > 0.02
    return np.where(loud, out / np.where(loud, seed, 1), np.nan)


@pytest.mark.parametrize(
    ("timeline", "fades_out"),
    [
        ([(0, 3.1, "joy"), (3.1, 12, SILENCE)], True),  # the change mid-clip
        ([(0, 4.6, SILENCE), (4.6, 12, "joy")], False),  # near the clip's end: kept inside
    ],
)
def test_a_transition_to_or_from_silence_is_a_one_second_equal_power_fade(timeline, fades_out):
    """The plan doc: a transition into or out of silence fades inside the clip. The renderer's
    doc: over TRANSITION_S (1 s) centred on the change, snapped to the incoming music's beat
    (silence has none), kept inside the clip. Worked out here from those rules: where the fade
    begins; then, read off the clip, the whole music before it, none after it, and equal power
    point-symmetric about its middle: gain(j)^2 + gain(L - 1 - j)^2 = 1 (sin^2 + cos^2 of
    complementary angles), which holds only for a fade centred on its samples."""
    items = [{"start": a, "end": b, "emotion": e} for a, b, e in timeline]
    plan = compose_plan.make_plan(items, 12.0)
    index, clip = next((i, c) for i, c in enumerate(plan.clips) if c.change_sample is not None)
    n, length = plan.clip_samples, RATE
    if fades_out:  # into silence: no beat grid, centred on the change itself
        begin = clip.change_sample - length // 2
    else:  # into joy: the centre on joy's beat grid, then the fade moved inside the clip
        beat = compose_plan.beat_samples("joy")
        centre = round(clip.change_sample / beat) * beat
        assert centre + length // 2 > n  # the case is the one that needs moving
        begin = n - length
    gain = _gain_curve(plan, index)
    gain = gain if fades_out else 1 - gain  # "old music" share either way: 1 before, 0 after
    before, fade, after = gain[:begin], gain[begin : begin + length], gain[begin + length :]
    assert np.allclose(before[~np.isnan(before)], 1.0, atol=1e-6)
    assert np.allclose(after[~np.isnan(after)], 0.0, atol=1e-6)
    fade = fade if fades_out else np.sqrt(np.clip(1 - (1 - fade) ** 2, 0, 1))  # sin -> cos
    pairs = fade**2 + fade[::-1] ** 2
    np.testing.assert_allclose(pairs[~np.isnan(pairs)], 1.0, atol=1e-5)
    quarter = np.nanmean(fade[length // 4 - 50 : length // 4 + 50])
    assert quarter == pytest.approx(np.cos(np.pi / 8), abs=2e-3)  # a quarter in: cos(pi/8)
