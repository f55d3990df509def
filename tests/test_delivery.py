"""A noisy talking video with a music bed, end to end: the delivered file (decoded, as a player
hears it) has music that ducks under speech, the loudness target and the true-peak ceiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from videobgm import media, mix, pipeline
from videobgm.bench import ducking


def independent_true_peak_db(audio: np.ndarray) -> float:
    """4x oversampled peak of the whole signal (scipy's polyphase resampler)."""
    return 20 * float(np.log10(np.max(np.abs(resample_poly(audio, 4, 1, axis=-1)))))


@pytest.fixture(scope="module")
def scene():
    return ducking.noisy_scene(ducking.TALK_NOISE_DBFS)


@pytest.fixture(scope="module", params=sorted(ducking.CONTAINERS))
def delivered(request, scene, tmp_path_factory):
    """``(run result, decoded delivered audio (channels, samples))`` for a talking video in
    ``request.param``'s container (its audio: the noisy scene)."""
    base = tmp_path_factory.mktemp("noisy")
    video = ducking.talking_video(scene, base / f"talk{request.param}")
    result = pipeline.run(video, base / "out" / video.name, run_dir=base / "run", progress=False)
    return result, media.decode_audio(result.outputs[0], ducking.RATE, mono=False)


def test_delivered_true_peak_and_loudness(delivered):
    result, audio = delivered
    assert independent_true_peak_db(audio) <= -1.0
    assert abs(mix.loudness(audio, ducking.RATE) - (-14.0)) <= 0.5
    (record,) = json.loads(result.delivered.read_text())
    assert record["true_peak_db"] <= -1.0
    assert abs(record["true_peak_db"] - independent_true_peak_db(audio)) <= 0.1


def test_delivered_music_ducks_under_speech(delivered, scene):
    result, _ = delivered
    assert ducking.delivered_depth_db(result, scene) >= ducking.DEPTH_BAR_DB


def test_report_shows_the_ducking_and_the_delivered_figures(delivered):
    result, _ = delivered
    text = result.report.read_text()
    assert "ducking.png" in text and (result.run_dir / "ducking.png").stat().st_size > 10_000
    assert result.outputs[0].name in text and "true peak" in text
    assert result.stages["vad"] == "ran"
