from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from videobgm import paths
from videobgm.errors import InputError
from videobgm.models import profiles as models


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """An empty project home: the tiny models must be built from nothing, offline."""
    monkeypatch.setenv("VIDEOBGM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for cached in (models._whisper, models._classifier):
        cached.cache_clear()
    yield tmp_path
    for cached in (models._whisper, models._classifier):
        cached.cache_clear()


def test_tiny_models_build_offline_and_run(fresh_home):
    built = models.build_tiny_models()
    assert all(path.exists() for path in built.values())
    assert paths.tiny_models() == fresh_home / "data" / "models" / "tiny"

    profile = models.TINY
    whisper_model = models.load_whisper(profile, device="cpu")
    audio = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
    result = whisper_model.transcribe(audio, fp16=False, temperature=0.0, language="en")
    assert result["segments"], "the tiny Whisper returns at least one segment"
    assert all(s["start"] < s["end"] for s in result["segments"])

    classifier = models.load_emotion_classifier(profile, device="cpu")
    scores = classifier("I am so happy today!", top_k=None)
    assert sorted(s["label"] for s in scores) == sorted(models.EMOTION_LABELS)
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)
    config = classifier.model.config
    assert [config.id2label[i] for i in range(7)] == list(models.EMOTION_LABELS)

    pipe = models.load_diffusion(profile, device="cpu")
    init = Image.fromarray(np.full((512, 512, 3), 128, np.uint8))
    out = pipe(
        prompt="happy, piano", image=init, strength=0.5, num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
    ).images[0]  # fmt: skip
    assert out.size == (512, 512)
    assert pipe.safety_checker is None


def test_tiny_build_is_deterministic(tmp_path):
    a = models.build_tiny_models(tmp_path / "a")
    b = models.build_tiny_models(tmp_path / "b")
    sa = torch.load(a["whisper"], weights_only=True)["model_state_dict"]
    sb = torch.load(b["whisper"], weights_only=True)["model_state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for name in (
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ):
        assert (a["diffusion"] / name).read_bytes() == (b["diffusion"] / name).read_bytes()
    assert (a["emotion"] / "tokenizer.json").read_text() == (
        b["emotion"] / "tokenizer.json"
    ).read_text()


def test_tiny_lora_is_in_the_old_attn_procs_format():
    lora = models.build_tiny_models()["lora"] / "pytorch_lora_weights.bin"
    state = torch.load(lora, weights_only=True)
    assert state and all(".processor.to_" in key and "_lora." in key for key in state)
    assert any(key.endswith("attn1.processor.to_q_lora.down.weight") for key in state)


def test_resolve_profile_honours_the_variable(monkeypatch):
    monkeypatch.setenv("VIDEOBGM_PROFILE", "tiny")
    assert models.resolve_profile("pretrained") is models.TINY
    monkeypatch.delenv("VIDEOBGM_PROFILE")
    assert models.resolve_profile("pretrained") is models.PRETRAINED
    with pytest.raises(InputError, match="unknown model profile 'huge'"):
        models.resolve_profile("huge")


def test_auto_substitutes_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("VIDEOBGM_PROFILE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))  # empty caches
    monkeypatch.setattr(models, "_ANNOUNCED", set())
    profile = models.resolve_profile("auto")
    assert profile.name == "auto"
    assert set(profile.substituted) == {"speech", "emotion", "music", "voice", "fit"}
    assert profile.clap == "tiny:clap"  # the music-text fit model (CLAP) is substituted too
    assert profile.offline and profile.separator == "spectral"
    banner = capsys.readouterr().err
    assert "OFFLINE MODELS" in banner and "music" in banner
    models.resolve_profile("auto")
    assert "OFFLINE" not in capsys.readouterr().err, "one banner per process"


@pytest.mark.parametrize(
    ("run", "named"),
    [
        ({}, "speech, emotion, music, voice"),  # the defaults: no CLAP without --rank
        ({"rank": True}, "speech, emotion, music, voice, fit"),
        ({"music": "procedural", "separator": "spectral"}, "speech, emotion"),
    ],
)
def test_the_banner_names_only_the_stages_the_run_loads(monkeypatch, tmp_path, capsys, run, named):
    from videobgm.pipeline import RunParams

    monkeypatch.delenv("VIDEOBGM_PROFILE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))  # empty caches: every stage is missing
    monkeypatch.setattr(models, "_ANNOUNCED", set())
    profile = models.resolve_profile("auto", "cpu", RunParams(**run).model_stages())
    assert len(profile.substituted) == 5  # the profile itself still swaps every missing stage
    assert f"OFFLINE MODELS for: {named}.\n" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown model stage 'clap'"):
        models.resolve_profile("auto", "cpu", ["clap"])


def test_whisper_choice_follows_device_and_task():
    profile = models.PRETRAINED
    assert profile.whisper("cpu") == "small"
    assert profile.whisper("cuda:0") == "turbo"
    assert profile.whisper("cuda", translate=True) == "large-v3"


def test_cli_profile(capsys):
    from videobgm import cli

    assert cli.main(["models", "profile", "--profile", "tiny"]) == 0
    assert "tiny:diffusion" in capsys.readouterr().out
