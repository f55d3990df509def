"""Measurements shared by benchmarks and tests: clicks at joins, SI-SDR, mixing at an SNR.

Measurement code lives here, apart from the stages it measures (as audiocraft keeps its
``metrics/``), so that a benchmark and a test judge a stage by the same function and tests
never keep their own copy. Audio is float numpy, ``(samples,)`` unless said otherwise. The
codec's round-trip measure, :func:`videobgm.spectrogram.spectral_convergence`, stays beside the
codec whose mel transform it needs.
"""

from __future__ import annotations

import numpy as np

from videobgm.vocab import SAMPLE_RATE

# --------------------------------------------------------------------------- clicks

CLICK_WIDTH = 16  # samples either side of a join that a click must stand out from
CLICK_FRACTION = 0.05  # of the local RMS (50 ms): how far it must stand out to be heard


def step_excess(audio: np.ndarray, at: int, width: int = CLICK_WIDTH) -> float:
    """How much the step into sample ``at`` (``|x[at] - x[at-1]|``) exceeds the largest step
    within ``width`` samples around it; 0 too close to either end."""
    if not width < at < len(audio) - width:
        return 0.0
    steps = np.abs(np.diff(audio[at - width - 1 : at + width].astype(np.float64)))
    return float(steps[width] - np.delete(steps, width).max())


def local_rms(audio: np.ndarray, at: int, sample_rate: int = SAMPLE_RATE, seconds: float = 0.05):
    """RMS of the ``seconds`` of audio centred on sample ``at``."""
    half = round(seconds * sample_rate / 2)
    window = audio[max(at - half, 0) : at + half].astype(np.float64)
    return float(np.sqrt(np.mean(np.square(window)))) if window.size else 0.0


def is_click(
    audio: np.ndarray, at: int, own: float = 0.0, sample_rate: int = SAMPLE_RATE,
    fraction: float = CLICK_FRACTION,
) -> bool:  # fmt: skip
    """Whether the track has a click at sample ``at``: a step that stands out from its
    neighbours (:func:`step_excess`) by more than the music itself has there (``own``: the
    same measure in the clips that play there, each on its own, since joins sit on the beat
    where notes start) plus ``fraction`` of the local RMS."""
    excess = step_excess(audio, at)
    return excess > own + fraction * local_rms(audio, at, sample_rate) + 1e-5


# --------------------------------------------------------------------------- separation


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio of ``estimate`` against ``reference`` in dB
    (Le Roux et al., 2019): the reference scaled to fit the estimate best, over what is left.
    Both mono and of the same length; no mean removal (audio is zero-mean)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    alpha = np.dot(estimate, reference) / np.dot(reference, reference)
    target = alpha * reference
    return float(10 * np.log10(np.sum(target**2) / np.sum((estimate - target) ** 2)))


def mix_at_snr(voice: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """``voice`` plus ``background`` scaled so that the voice is ``snr_db`` dB above it (RMS
    over the whole length; the background is cut or must be at least as long)."""
    background = np.asarray(background[: len(voice)], dtype=np.float64)
    power = np.mean(np.square(voice, dtype=np.float64)) / np.mean(np.square(background))
    return (voice + background * np.sqrt(power) * 10 ** (-snr_db / 20)).astype(np.float32)
