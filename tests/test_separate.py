from __future__ import annotations

import numpy as np
import pytest

from videobgm import media, paths, separate, synth
from videobgm.errors import InputError

RATE = 44100


si_sdr = separate.si_sdr


def mixture(voice: np.ndarray, emotion: str, snr_db: float, seed: int = 3):
    music = synth.render(emotion, len(voice) / RATE, seed=seed)
    return separate.mix_at_snr(voice, music, snr_db)


def test_si_sdr_and_mix_at_snr():
    rng = np.random.default_rng(0)
    voice, noise = rng.standard_normal((2, 8000)).astype(np.float32)
    assert separate.si_sdr(2.5 * voice, voice) > 100  # scale does not matter
    for snr in (0.0, -6.0):
        mixed = separate.mix_at_snr(voice, noise, snr)
        added = mixed - voice
        assert 10 * np.log10(np.mean(voice**2) / np.mean(added**2)) == pytest.approx(snr, abs=1e-3)
        # noise (nearly) orthogonal to the voice: SI-SDR of the mixture is its SNR
        assert separate.si_sdr(mixed, voice) == pytest.approx(snr, abs=0.2)


@pytest.fixture(scope="module")
def voice():
    return media.decode_audio(paths.samples() / "story.voice.flac", RATE)


@pytest.mark.parametrize(("emotion", "snr_db"), [("joy", 0.0), ("sadness", -6.0)])
def test_spectral_separation_improves_si_sdr(voice, emotion, snr_db):
    mixed = mixture(voice, emotion, snr_db)
    estimate = separate.separate(mixed, RATE, "spectral")
    assert estimate.shape == voice.shape and estimate.dtype == np.float32
    improvement = si_sdr(estimate, voice) - si_sdr(mixed, voice)
    assert improvement >= 6.0, f"{emotion} at {snr_db} dB: only +{improvement:.1f} dB"


def test_spectral_chunks_join_without_seams(voice):
    mixed = mixture(voice, "neutral", 0.0)
    params = separate.SpectralParams(chunk_s=20.0, overlap_s=1.0)  # three chunks
    estimate = separate.separate(mixed, RATE, "spectral", params)
    assert np.all(np.isfinite(estimate))
    assert si_sdr(estimate, voice) - si_sdr(mixed, voice) > 3.0


def test_short_and_silent_input():
    silence = np.zeros(RATE // 2, np.float32)
    assert np.all(separate.separate(silence, RATE, "spectral") == 0)
    stereo = np.stack([silence, silence])
    assert separate.separate(stereo, RATE, "none").shape == silence.shape


def test_none_keeps_the_audio(voice):
    np.testing.assert_array_equal(separate.separate(voice, RATE, "none"), voice)


def test_demucs_backend_through_the_real_loader(voice):
    excerpt = voice[: RATE * 2]
    estimate = separate.separate(excerpt, RATE, "demucs", model="tiny")
    assert estimate.shape == excerpt.shape and np.all(np.isfinite(estimate))
    bag = separate.load_demucs("tiny", "cpu")
    assert type(bag.models[0]).__name__ == "HTDemucs" and "vocals" in bag.sources


def test_unknown_separator():
    with pytest.raises(InputError, match="unknown separator 'magic'"):
        separate.separate(np.zeros(10, np.float32), RATE, "magic")
