"""The baselines compute what their definitions say (checked on toy cases), and the benchmark
returns the figures it promises."""

from __future__ import annotations

import numpy as np
import torch

from videobgm import bench
from videobgm.bench import baselines
from videobgm.spectrogram import codec as sp

# Small parameters keep the definitions' loops cheap: 8 kHz, 64 ms FFT, 16 bands.
TOY = sp.SpectrogramParams(
    sample_rate=8000, step_size_ms=10, window_duration_ms=32, padded_duration_ms=64,
    num_frequencies=16, max_frequency=4000,
)  # fmt: skip


def test_naive_image_matches_ours():
    rng = np.random.default_rng(0)
    t = np.arange(30000) / 44100
    # Broadband like music: where a spectrum is at float32's noise floor, pixels are noise too.
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    audio = audio.astype(np.float32)
    mel, naive_mel = sp.mel_from_audio(audio), baselines.naive_mel_from_audio(audio)
    assert np.allclose(mel, naive_mel, rtol=1e-4, atol=1e-6 * mel.max())
    ours, naive = sp.image_from_audio(audio), baselines.naive_image_from_audio(audio)
    assert ours.size == naive.size
    assert np.abs(np.asarray(ours).astype(int) - np.asarray(naive).astype(int)).max() <= 1
    assert dict(ours.getexif()).keys() == dict(naive.getexif()).keys()


def test_inverse_mel_is_torchaudios_sgd():
    """SGD with momentum on sum-over-bands, mean-over-frames squared error, clamped at zero."""
    import librosa

    mel = torch.rand(2, TOY.num_frequencies, 5) * 10
    ours = baselines.riffusion_inverse_mel(mel, TOY, max_iter=7, generator=torch.manual_seed(3))
    # the filterbank torchaudio's InverseMelScale uses (HTK, unnormalised), from librosa
    fb = librosa.filters.mel(
        sr=TOY.sample_rate, n_fft=TOY.n_fft, n_mels=TOY.num_frequencies, fmin=TOY.min_frequency,
        fmax=TOY.max_frequency, htk=True, norm=None, dtype=np.float64,
    ).T  # fmt: skip
    x = torch.rand(2, 5, fb.shape[0], generator=torch.manual_seed(3)).double().numpy()
    target = mel.transpose(1, 2).double().numpy()
    velocity = np.zeros_like(x)
    for step in range(7):
        grad = -2 * (target - x @ fb) @ fb.T / (2 * 5)
        velocity = grad if step == 0 else 0.9 * velocity + grad
        x = np.maximum(x - 0.1 * velocity, 0)
    assert np.allclose(ours.numpy(), x.transpose(0, 2, 1), rtol=1e-4, atol=1e-5)


def test_griffin_lim_is_torchaudios():
    """Random complex start, then rebuilt - m/(1+m) * previous rebuilt, normalised."""
    rate = TOY.sample_rate
    audio = torch.sin(2 * torch.pi * 440 * torch.arange(4000) / rate)[None]
    window = torch.hann_window(TOY.win_length)
    kw = {"n_fft": TOY.n_fft, "hop_length": TOY.hop_length, "win_length": TOY.win_length}
    mag = torch.stft(audio, window=window, return_complex=True, **kw).abs()
    ours = baselines.riffusion_griffin_lim(mag, TOY, n_iter=3, generator=torch.manual_seed(5))
    angles = torch.rand(mag.shape, dtype=torch.complex64, generator=torch.manual_seed(5))
    previous = torch.zeros(())
    for _ in range(3):
        rebuilt = torch.stft(
            torch.istft(mag * angles, window=window, **kw), window=window, return_complex=True, **kw
        )
        angles = rebuilt - 0.99 / 1.99 * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    expected = torch.istft(mag * angles, window=window, **kw)
    assert ours.shape == expected.shape == (1, (mag.shape[-1] - 1) * TOY.hop_length)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_riffusion_decoder_runs_and_normalises():
    image = sp.image_from_audio(np.sin(np.arange(20000) / 10).astype(np.float32))
    audio = baselines.riffusion_audio_from_image(image, mel_iterations=3, gl_iterations=2)
    assert audio.shape == ((image.width - 1) * 441,)
    assert 32766 / 32768 <= np.abs(audio).max() <= 32767 / 32768


def test_bench_codec_returns_its_figures(tmp_path):
    rows = bench.bench_codec(
        repeats=1, baseline_repeats=1, width=24, batch=2, clips=1, iterations=2,
        device="cpu", sc_width=24, baseline_mel_iterations=2,
    )  # fmt: skip
    assert len(rows) == 4
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row)
        assert row["section"] == "codec" and row["ours"] > 0 and row["baseline"] > 0
    metrics = " ".join(row["metric"] for row in rows)
    assert "image->audio" in metrics and "spectral convergence" in metrics
    assert "batch of 2" in metrics and "audio->image" in metrics
    path = bench.write_report("codec", rows, tmp_path)
    assert path.exists() and (tmp_path / "codec.csv").exists()
    assert {"cpu", "cores", "torch", "gpu"} <= set(bench.machine_info())
