"""The spectrogram codec: riffusion's image format exactly, and a decoder that keeps the sound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from videobgm import cli, media, paths
from videobgm.errors import InputError
from videobgm.spectrogram import codec as sp
from videobgm.spectrogram import dsp

RATE = 44100
CONFORMANCE = "clip_2_start_103694_ms_duration_5678_ms"


def tone(seconds: float, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chord(seconds: float) -> np.ndarray:
    """Notes with onsets over soft noise: music-like material for the decoder."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.01 * rng.standard_normal(t.size)
    for onset, freq in [(0.0, 220.0), (0.4, 330.0), (0.8, 523.0), (1.2, 784.0)]:
        audio += 0.2 * np.sin(2 * np.pi * freq * t) * np.exp(-2 * (t - onset)) * (t >= onset)
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def conformance():
    folder = paths.shared() / "conformance" / "riffusion"
    wav, png = folder / f"{CONFORMANCE}.wav", folder / f"{CONFORMANCE}.png"
    if not (wav.exists() and png.exists()):
        pytest.skip(f"riffusion conformance files not found in {folder} (set VIDEOBGM_SHARED)")
    import soundfile as sf

    samples, rate = sf.read(wav, dtype="int16", always_2d=True)
    assert rate == RATE
    return samples.T.astype(np.float32) / 32768, sp.open_image(png)


# --------------------------------------------------------------------------- the format


def test_conformance_with_riffusion_image(conformance, tmp_path):
    audio, reference = conformance
    image = sp.image_from_audio(audio[0])  # riffusion's image encodes channel 0
    ours = np.asarray(image).astype(int)
    theirs = np.asarray(reference).astype(int)
    assert ours.shape == theirs.shape == (512, 568, 3)
    assert np.abs(ours - theirs).max() <= 1
    ours_exif, theirs_exif = dict(image.getexif()), dict(reference.getexif())
    assert ours_exif.keys() == theirs_exif.keys()
    for tag in sp.EXIF_TAGS.values():
        assert ours_exif[tag] == theirs_exif[tag]
        assert type(ours_exif[tag]) is type(theirs_exif[tag])
    assert ours_exif[sp.MAX_VALUE_TAG] == pytest.approx(theirs_exif[sp.MAX_VALUE_TAG], rel=1e-6)
    saved = sp.open_image(sp.save_image(image, tmp_path / "ours.png"))
    assert dict(saved.getexif()) == ours_exif
    assert np.array_equal(np.asarray(saved), np.asarray(image))


def test_conformance_decode_meets_the_bar(conformance):
    audio, reference = conformance
    target = sp.mel_from_image(reference)
    assert sp.spectral_convergence(audio[0], target) < 0.01  # the original, against its image
    decoded = sp.audio_from_image(reference, device="cpu")
    assert decoded.shape == (568 * 441,)
    assert sp.spectral_convergence(decoded, target) <= 0.08
    # The peak amplitude in EXIF restores the loudness: RMS within 1 dB of the original.
    ratio = np.sqrt(np.mean(decoded**2) / np.mean(audio[0] ** 2))
    assert abs(20 * np.log10(ratio)) < 1.0


def test_default_parameters_are_riffusions():
    params = sp.SpectrogramParams()
    assert (params.n_fft, params.win_length, params.hop_length) == (17640, 4410, 441)
    assert (params.num_frequencies, params.min_frequency, params.max_frequency) == (512, 0, 10000)
    assert params.power_for_image == 0.25 and params.stereo is False
    assert sp.phase_rate(params) == (4, 7)  # Griffin-Lim at 25.2 kHz: a 2520-point FFT
    assert sp.phase_rate(dataclasses.replace(params, max_frequency=20000)) == (1, 1)


def test_exif_round_trip(tmp_path):
    params = sp.SpectrogramParams(stereo=True, max_frequency=8000, power_for_image=0.5)
    exif = params.to_exif(max_value=1234.5)
    assert sorted(exif) == [11000, 11005, 11010, 11020, 11030, 11040, 11050, 11060, 11070, 11080]
    assert sp.SpectrogramParams.from_exif(exif) == params
    assert sp.SpectrogramParams.from_exif({}) == sp.SpectrogramParams()
    audio = np.stack([tone(0.5), tone(0.5, 880)])
    image = sp.image_from_audio(audio, params)
    reread = sp.open_image(sp.save_image(image, tmp_path / "s.png"))
    read_params, max_value = sp.read_exif(reread)
    assert read_params == params
    assert max_value == float(np.float32(sp.mel_from_audio(audio, params).max()))


def test_stereo_layout_keeps_channels_in_green_and_blue():
    params = sp.SpectrogramParams(stereo=True)
    left, right = tone(1.0, 440), tone(1.0, 2000, level=0.05)
    image = sp.image_from_audio(np.stack([left, right]), params)
    rgb = np.asarray(image)
    assert np.all(rgb[..., 0] == 0)
    assert not np.array_equal(rgb[..., 1], rgb[..., 2])
    mel = sp.mel_from_audio(np.stack([left, right]), params)
    for channel, colour in ((0, 1), (1, 2)):
        mono = sp.image_from_mel(mel[channel], max_value=float(mel.max()))
        assert np.array_equal(rgb[..., colour], np.asarray(mono)[..., 0])
    decoded = sp.audio_from_image(image, device="cpu")
    assert decoded.shape == (2, image.width * 441)
    assert np.sqrt(np.mean(decoded[0] ** 2)) > 4 * np.sqrt(np.mean(decoded[1] ** 2))


def test_mono_params_average_stereo_audio():
    audio = np.stack([tone(0.5), tone(0.5, 660)])
    assert np.allclose(sp.mel_from_audio(audio), sp.mel_from_audio(audio.mean(axis=0)), rtol=1e-4)


def test_width_follows_duration():
    image = sp.image_from_audio(tone(1.0))
    assert image.size == (1 + RATE // 441, 512)  # 101 px for 1 s
    assert sp.audio_from_image(image, iterations=4, device="cpu").shape == (101 * 441,)
    assert sp.image_from_audio(tone(0.05)).width == 6  # shorter than half an FFT: zero padding


# --------------------------------------------------------------------------- decoding


def test_tone_keeps_its_pitch_and_the_bar():
    image = sp.image_from_audio(tone(2.0))
    decoded = sp.audio_from_image(image, device="cpu")
    spectrum = np.abs(np.fft.rfft(decoded[RATE // 4 : -RATE // 4]))
    peak_hz = np.argmax(spectrum) * RATE / (decoded.size - RATE // 2)
    edges = sp._mel_to_hz(np.linspace(0, sp._hz_to_mel(10000), 514))
    band_hz = edges[np.searchsorted(edges, 440) + 1] - edges[np.searchsorted(edges, 440) - 1]
    assert abs(peak_hz - 440) < band_hz / 2
    assert sp.spectral_convergence(decoded, sp.mel_from_image(image)) <= 0.08


def test_more_iterations_fit_better():
    image = sp.image_from_audio(chord(1.6))
    target = sp.mel_from_image(image)
    errors = [
        sp.spectral_convergence(sp.audio_from_image(image, iterations=n, device="cpu"), target)
        for n in (0, 8, sp.DEFAULT_ITERATIONS)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] <= 0.08


def test_silence_decodes_to_silence():
    image = sp.image_from_audio(np.zeros(RATE // 2, np.float32))
    assert np.all(np.asarray(image) == 255)
    assert sp.read_exif(image)[1] == 0.0
    decoded = sp.audio_from_image(image, device="cpu")
    assert np.all(np.isfinite(decoded)) and np.all(decoded == 0)
    blank = Image.new("RGB", (40, 512), "white")  # no EXIF: riffusion's defaults
    assert np.all(sp.audio_from_image(blank, device="cpu") == 0)


def test_images_without_exif_use_riffusions_defaults():
    image = sp.image_from_audio(tone(0.5))
    bare = Image.fromarray(np.asarray(image))  # as the model's raw outputs: no EXIF
    mel = sp.mel_from_image(bare)
    assert mel.max() == pytest.approx(sp.DEFAULT_MAX_VALUE)
    assert np.isfinite(sp.audio_from_image(bare, iterations=2, device="cpu")).all()


@pytest.mark.parametrize("mode", ["RGBA", "F", "I;16", "CMYK", "1"])
def test_wrong_mode_is_a_clear_error(mode):
    image = Image.new(mode, (32, 512))
    with pytest.raises(InputError, match="mode"):
        sp.audio_from_image(image)


def test_wrong_height_is_a_clear_error():
    with pytest.raises(InputError, match="height 256 px"):
        sp.audio_from_image(Image.new("RGB", (32, 256)))


def test_bad_arguments_are_clear_errors():
    image = sp.image_from_audio(tone(0.2))
    with pytest.raises(InputError, match="iterations"):
        sp.audio_from_image(image, iterations=-1)
    with pytest.raises(InputError, match="postfilter"):
        sp.audio_from_image(image, postfilter="loud")
    with pytest.raises(InputError, match="samples"):
        sp.image_from_audio(np.zeros((3, 2, 100), np.float32))
    with pytest.raises(InputError):
        sp.SpectrogramParams(max_frequency=30000)
    for field in ("sample_rate", "step_size_ms", "num_frequencies"):  # each must be > 0
        for value in (0, -1):
            with pytest.raises(InputError, match="must be positive"):
                sp.SpectrogramParams(**{field: value})


def test_batched_decode_equals_one_at_a_time():
    images = [sp.image_from_audio(chord(1.0)), sp.image_from_audio(tone(1.0, 330))]
    images.append(sp.image_from_audio(tone(0.6, 990)))  # another width: its own batch
    batched = sp.audio_from_images(images, iterations=12, device="cpu")
    for image, audio in zip(images, batched, strict=True):
        alone = sp.audio_from_image(image, iterations=12, device="cpu")
        assert audio.shape == alone.shape
        assert np.allclose(audio, alone, atol=1e-4 * np.abs(alone).max())
    # One pass over all rows (what a GPU does) equals row by row (what a CPU does).
    mels = np.stack([sp.mel_from_image(image) for image in images[:2]])
    together = sp.audio_from_mel(mels, iterations=12, device="cpu", rows_per_pass=2)
    apart = sp.audio_from_mel(mels, iterations=12, device="cpu", rows_per_pass=1)
    assert np.allclose(together, apart, atol=1e-4 * np.abs(apart).max())


def test_audio_from_mel_accepts_batches():
    params = sp.SpectrogramParams(stereo=True)
    mel = sp.mel_from_audio(np.stack([tone(0.5), tone(0.5, 660)]), params)
    assert sp.audio_from_mel(mel[0], iterations=2, device="cpu").shape == (51 * 441,)
    batch = sp.audio_from_mel(np.stack([mel, mel]), params, iterations=2, device="cpu")
    assert batch.shape == (2, 2, 51 * 441)


def test_the_image_is_the_same_at_any_level_and_the_peak_goes_to_exif():
    """Pixels are mel / peak: a clip 160 dB quieter (its mel peak under 1 on the int16 scale)
    draws the same picture, only its EXIF peak is 1e-8 times the loud one's."""
    audio = chord(1.0)
    loud, quiet = sp.image_from_audio(audio), sp.image_from_audio(audio * np.float32(1e-8))
    a, b = np.asarray(loud, dtype=np.int16), np.asarray(quiet, dtype=np.int16)
    assert np.max(np.abs(a - b)) <= 1 and np.mean(a == b) > 0.99  # float32 rounding at edges
    assert a.min() == 0 and a.max() > 200  # a real picture: the loudest bin black
    assert sp.read_exif(quiet)[1] < 1 and sp.read_exif(quiet)[1] == pytest.approx(
        1e-8 * sp.read_exif(loud)[1], rel=1e-3
    )


def test_spectral_convergence_is_scale_free():
    audio = chord(1.0)
    target = sp.mel_from_audio(audio)
    assert sp.spectral_convergence(audio, target) < 1e-5
    assert sp.spectral_convergence(0.1 * audio, 7 * target) < 1e-5
    assert sp.spectral_convergence(np.zeros_like(audio), target) == 1.0


# --------------------------------------------------------------------------- post-filters


def test_postfilters():
    audio = tone(1.0, level=0.1) * np.linspace(0.1, 1, RATE, dtype=np.float32)
    assert np.abs(dsp.normalize_peak(audio)).max() == pytest.approx(10 ** (-0.1 / 20), rel=1e-5)
    squeezed = dsp.compress_dynamic_range(dsp.normalize_peak(audio), RATE)
    assert np.all(np.abs(squeezed) <= np.abs(dsp.normalize_peak(audio)) + 1e-7)
    quiet, loud = slice(0, RATE // 10), slice(-RATE // 10, None)
    ratio_before = np.abs(audio[loud]).max() / np.abs(audio[quiet]).max()
    ratio_after = np.abs(squeezed[loud]).max() / np.abs(squeezed[quiet]).max()
    assert ratio_after < ratio_before  # the dynamic range shrinks
    filtered = dsp.riffusion_postfilter(audio, RATE)
    assert np.abs(filtered).max() == pytest.approx(10 ** (-0.1 / 20), rel=1e-4)
    image = sp.image_from_audio(tone(0.5))
    plain = sp.audio_from_image(image, iterations=4, device="cpu")
    normalized = sp.audio_from_image(image, iterations=4, postfilter="normalize", device="cpu")
    assert np.allclose(normalized, dsp.normalize_peak(plain))


# --------------------------------------------------------------------------- CLI


def test_cli_round_trip(tmp_path, capsys):
    wav = media.write_audio(tmp_path / "in.wav", chord(1.0), RATE)
    png, out = tmp_path / "in.png", tmp_path / "out.wav"
    assert cli.main(["spectrogram", "to-image", str(wav), str(png)]) == 0
    image = sp.open_image(png)
    assert image.size == (101, 512) and sp.read_exif(image)[0] == sp.SpectrogramParams()
    args = ["spectrogram", "to-audio", str(png), str(out), "--iterations", "8"]
    assert cli.main(args) == 0
    decoded = media.decode_audio(out)
    assert decoded.shape == (101 * 441,)
    assert sp.spectral_convergence(decoded, sp.mel_from_image(image)) < 0.2
    assert cli.main(["spectrogram", "to-audio", str(wav), str(tmp_path / "x.wav")]) == 1
    assert "not a readable image" in capsys.readouterr().err


def test_cli_help_lists_the_actions(capsys):
    with pytest.raises(SystemExit):
        cli.main(["spectrogram", "--help"])
    text = capsys.readouterr().out
    assert "to-image" in text and "to-audio" in text


def test_resampler_keeps_a_band_limited_signal():
    def sine(rate: int, samples: int) -> np.ndarray:  # 9 kHz: near the image's top band
        return np.sin(2 * np.pi * 9000 * np.arange(samples) / rate).astype(np.float32)

    # From Griffin-Lim's rate for the defaults (25.2 kHz) to 44.1 kHz: a ratio of 7 / 4.
    up = dsp.resample(torch.from_numpy(sine(25200, 2520)[None]), 4, 7)[0].numpy()
    assert up.shape == (4410,)
    assert np.abs(up[500:-500] - sine(44100, 4410)[500:-500]).max() < 1e-3
