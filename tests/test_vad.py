"""Speech activity from Silero VAD, and ducking that follows it on noisy talking scenes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.signal import resample_poly

from videobgm import mix, vad
from videobgm.bench import ducking
from videobgm.errors import InputError

RATE = ducking.RATE


@pytest.fixture(scope="module")
def scenes():
    cache = {}

    def get(noise_dbfs: float) -> ducking.Scene:
        if noise_dbfs not in cache:
            cache[noise_dbfs] = ducking.noisy_scene(noise_dbfs)
        return cache[noise_dbfs]

    return get


def at_16k(audio: np.ndarray) -> np.ndarray:
    return resample_poly(audio, 160, 441).astype(np.float32)


def test_streamed_spans_equal_silero_on_the_whole_audio(scenes):
    import torch
    from silero_vad import get_speech_timestamps

    audio = at_16k(scenes(-35.0).original)[: 20 * vad.VAD_RATE]
    model = vad.load_model()
    p = vad.VadParams()
    whole = get_speech_timestamps(  # the package's own one-piece path, same settings
        torch.from_numpy(audio), model, threshold=p.threshold, sampling_rate=vad.VAD_RATE,
        min_speech_duration_ms=p.min_speech_ms, min_silence_duration_ms=p.min_silence_ms,
        speech_pad_ms=p.speech_pad_ms,
    )  # fmt: skip
    expected = [(s["start"] / vad.VAD_RATE, s["end"] / vad.VAD_RATE) for s in whole]
    pieces = [audio[i : i + 7777] for i in range(0, len(audio), 7777)]  # not whole windows
    assert len(expected) >= 4
    assert vad.detect(pieces, model=model) == expected
    assert vad.detect([audio], model=model) == expected


@pytest.mark.parametrize("noise_dbfs", ducking.NOISE_LEVELS_DBFS)
def test_every_turn_is_found_in_noise(scenes, noise_dbfs):
    scene = scenes(noise_dbfs)
    spans = vad.detect_array(scene.original, RATE)
    for start, end in scene.turns:
        starts = [a for a, b in spans if a < end and b > start]
        ends = [b for a, b in spans if a < end and b > start]
        assert starts, f"turn {start:.2f}-{end:.2f} s not found"
        assert -0.4 <= min(starts) - start <= 0.15  # late would let the first word be masked
        assert -0.1 <= max(ends) - end <= 0.5
    covered = sum(b - a for a, b in spans)
    spoken = sum(b - a for a, b in scene.turns)
    assert covered < spoken + 0.5 * len(scene.turns)  # the pauses stay pauses


@pytest.mark.parametrize("noise_dbfs", ducking.NOISE_LEVELS_DBFS)
def test_music_comes_back_in_pauses(scenes, noise_dbfs):
    scene = scenes(noise_dbfs)
    depth = ducking.ducking_depth_db(ducking.mix_scene(scene, "vad"), scene)
    assert depth >= ducking.DEPTH_BAR_DB


def test_the_voice_envelope_does_not_follow_noisy_speech(scenes):
    """The fixture is one the old activity source fails on (the bug this replaced)."""
    scene = scenes(-35.0)
    assert ducking.ducking_depth_db(ducking.mix_scene(scene, "voice"), scene) < 3.0


def test_unions_of_sources_duck_at_least_where_each_does(scenes):
    scene = scenes(-40.0)
    speech = vad.detect_array(scene.original, RATE)
    segments = [(1.0, 2.0), (38.9, 39.4)]  # the second after the last turn
    alone = mix.mix(scene.voice, scene.music, RATE, mix.MixParams(activity="vad"), speech=speech)
    both = mix.mix(
        scene.voice, scene.music, RATE, mix.MixParams(activity="vad+transcript"),
        segments=segments, speech=speech,
    )  # fmt: skip
    assert np.all(both.speech >= alone.speech)
    frames = (np.arange(len(both.speech)) + 0.5) * mix.FRAME_S
    added = (frames > 38.9) & (frames < 39.4) & ~alone.speech
    assert np.any(added) and np.all(both.speech[added])


def _pieces(seconds: float, piece_s: float = 5.0):
    """Noise with bursts of a tone, made a piece at a time (nothing held whole)."""
    rng = np.random.default_rng(0)
    n_piece = int(piece_s * vad.VAD_RATE)
    t = np.arange(n_piece) / vad.VAD_RATE
    for _ in range(int(seconds / piece_s)):
        burst = (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 2.0)).astype(np.float32)
        yield burst + rng.standard_normal(n_piece).astype(np.float32) * 0.01


def _peak_bytes(seconds: float, model) -> int:
    tracemalloc.start()
    try:
        vad.detect(_pieces(seconds), model=model)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_length():
    model = vad.load_model()
    one, three = _peak_bytes(60.0, model), _peak_bytes(180.0, model)
    two_minutes = 120 * vad.VAD_RATE * 4  # bytes of float32 audio the longer one adds
    assert three - one < two_minutes / 20


def test_spans_round_trip_and_a_bad_file_is_one_sentence(tmp_path):
    spans = [(0.25, 1.5), (2.0, 3.125)]
    path = vad.save_spans(spans, tmp_path / "speech.json")
    assert vad.load_spans(path) == spans
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="bad.json"):
        vad.load_spans(tmp_path / "bad.json")


@pytest.mark.parametrize("bad", [{"threshold": 1.5}, {"min_silence_ms": -1}])
def test_bad_vad_parameters_are_one_clear_error(bad):
    with pytest.raises(InputError):
        vad.VadParams(**bad)


def test_snap_moves_boundaries_to_near_edges_only():
    spans = [(1.0, 2.0), (4.0, 5.5)]
    segments = [(0.8, 2.3), (3.0, 5.9), (6.5, 7.0)]
    assert vad.snap_segments(segments, spans, 0.5) == [(1.0, 2.0), (3.0, 5.5), (6.5, 7.0)]


def test_bench_rows_say_before_and_after():
    rows = {r["metric"]: r for r in ducking.bench_ducking(noise_levels=(-35.0,))}
    depth = rows["ducking depth, noise at -35 dBFS"]
    assert depth["section"] == "ducking" and depth["meets_bar"]
    assert depth["ours"] - depth["baseline"] >= 6.0  # the detector against the envelope
    assert rows["speech activity (Silero VAD) real-time factor"]["ours"] > 1.0
