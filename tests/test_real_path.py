"""The real path's choices: languages, CPU defaults, pinned commits, LoRA resolution and its
failures, models released between stages, demucs in reproducible windows."""

from __future__ import annotations

import re
import weakref

import numpy as np
import pytest

from videobgm import generate, pipeline, separate
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.transcribe import normalise_language

RATE = 44100


@pytest.mark.parametrize(
    ("given", "code"), [("English", "en"), ("EN", "en"), ("en", "en"), ("castilian", "es")]
)
def test_language_names_and_codes_through_whispers_table(given, code):
    assert normalise_language(given) == code
    assert pipeline.RunParams(language=given).language == code


def test_unknown_language_is_one_sentence():
    with pytest.raises(InputError, match=r"^unknown language 'Klingon'; give one Whisper knows"):
        pipeline.RunParams(language="Klingon")


def test_cpu_defaults(capsys):
    """On a CPU, music=auto is procedural and says roughly what riffusion would take;
    translation uses the CPU's Whisper (large-v3 would take hours there)."""
    assert pipeline._music_backend("auto", models.PRETRAINED, "cpu", 60.0) == "procedural"
    said = capsys.readouterr().err
    assert "riffusion was skipped on the CPU" in said and "12 min" in said  # 12 clips x 1 min
    assert pipeline._music_backend("auto", models.PRETRAINED, "cuda", 60.0) == "riffusion"
    assert models.PRETRAINED.whisper("cpu", translate=True) == "small"
    assert models.PRETRAINED.whisper("cuda", translate=True) == "large-v3"


def test_every_hub_model_is_pinned_to_a_commit():
    commit = re.compile(r"^[0-9a-f]{40}$")
    assert commit.match(models.PRETRAINED.emotion_revision)
    assert commit.match(models.PRETRAINED.diffusion_revision)
    moved = models.dataclasses.replace(models.PRETRAINED, diffusion_revision="f" * 40)
    assert pipeline._key(moved) != pipeline._key(models.PRETRAINED), "the run key follows it"


def test_whisper_cache_names_are_the_librarys(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not models.whisper_cached("turbo")
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "large-v3-turbo.pt").write_bytes(b"x")
    assert models.whisper_cached("turbo") and not models.whisper_cached("large-v3")


@pytest.mark.parametrize("value", ["1", "ON", "yes", "True"])
def test_offline_read_as_huggingface_hub_reads_it(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert models.hub_offline()
    assert models.reachable_all({"https://huggingface.co"}) == {"https://huggingface.co": False}


def test_release_models_drops_what_the_loaders_hold():
    model = models.load_whisper(models.TINY, "cpu")
    alive = weakref.ref(model)
    del model
    assert alive() is not None, "cached while the stage runs"
    models.release_models()
    assert alive() is None, "released when the stage ends"


# --------------------------------------------------------------------------- LoRA


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDEOBGM_HOME", str(tmp_path))
    monkeypatch.setattr(generate, "_LORA_SAID", set())
    return tmp_path


def test_auto_lora_without_a_trained_one_is_none_said_once(home, capsys):
    assert generate.resolve_lora("auto") == (None, False)
    assert generate.resolve_lora("auto") == (None, False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and models.PUBLISHED_LORA in lines[0] and "notebooks 01-02" in lines[0]
    assert generate.resolve_lora("none") == (None, False)
    assert generate.resolve_lora("someone/lora") == ("someone/lora", True)


def test_a_broken_trained_lora_is_skipped_but_a_requested_one_stops(home, capsys):
    folder = home / "data" / "models" / "lora-moods-pretrained"
    folder.mkdir(parents=True)
    (folder / models.TRAINED_LORA_FILE).write_bytes(b"not a safetensors file")
    ref, required = generate.resolve_lora("auto")
    assert ref == str(folder) and not required
    riff = generate.riffusion_from_refs("tiny:diffusion", ref, "cpu", lora_required=False)
    assert riff.lora_layers == 0
    assert "going on without the mood LoRA" in capsys.readouterr().err
    with pytest.raises(generate.LoraError, match=r"pytorch_lora_weights.safetensors: cannot read"):
        generate.riffusion_from_refs("tiny:diffusion", ref, "cpu", lora_required=True)
    models.release_models()


def test_an_empty_lora_file_names_the_file(tmp_path):
    import torch

    torch.save({"step": 3}, tmp_path / "pytorch_lora_weights.bin")  # a pickle, no tensors
    with pytest.raises(generate.LoraError, match=r"pytorch_lora_weights.bin: the file holds no"):
        generate.read_lora(tmp_path)


# --------------------------------------------------------------------------- demucs

SHORT = separate.DemucsParams(window_s=2.0, overlap_s=0.5)  # several windows in seconds


@pytest.fixture(scope="module")
def stereo():
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal((2, int(5.3 * RATE)))).astype(np.float32)


def test_demucs_two_runs_are_bit_identical(stereo):
    first = separate.separate_demucs(stereo, RATE, "tiny", "cpu", SHORT)
    models.release_models()  # a freshly loaded model gives the same voice too
    second = separate.separate_demucs(stereo, RATE, "tiny", "cpu", SHORT)
    assert first.shape == (stereo.shape[1],) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_demucs_windows_stream_like_the_whole(stereo):
    """Fed in odd blocks, the windows give the same voice as the whole array."""
    whole = separate.separate_demucs(stereo, RATE, "tiny", "cpu", SHORT)
    blocks = (stereo[:, i : i + 30011] for i in range(0, stereo.shape[1], 30011))
    streamed = np.concatenate(list(separate._demucs_stream(blocks, RATE, "tiny", "cpu", SHORT)))
    np.testing.assert_array_equal(streamed, whole)


def test_demucs_memory_is_flat_in_the_length(tmp_path):
    """Numpy's peak (tracemalloc) for 60 s of audio is that of 20 s: one window at a time."""
    import tracemalloc

    from videobgm import media

    params = separate.DemucsParams(window_s=5.0, overlap_s=1.0)
    rng = np.random.default_rng(0)
    separate.separate_demucs(np.zeros(RATE, np.float32), RATE, "tiny", "cpu", params)
    peaks = {}
    for seconds in (20, 60):
        noise = (
            0.1 * rng.standard_normal(10 * RATE).astype(np.float32) for _ in range(seconds // 10)
        )
        source = media.write_audio_blocks(tmp_path / f"in-{seconds}.wav", noise, RATE)
        tracemalloc.start()
        try:
            separate.separate_file(source, tmp_path / "v.wav", seconds * RATE, RATE, "demucs",
                                   params, model="tiny", device="cpu")  # fmt: skip
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    forty_seconds = 40 * RATE * 4 * 2  # bytes of float32 stereo
    assert peaks[60] - peaks[20] < 0.1 * forty_seconds, peaks
