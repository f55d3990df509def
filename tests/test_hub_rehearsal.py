"""The real path, rehearsed: a new user's run with ``profile=auto`` and the model hub's caches.

A local Hugging Face cache (``HF_HOME``), Whisper cache (``XDG_CACHE_HOME``) and torch.hub
folder are laid out like the real repositories (file names, ``model_index.json`` entries,
``.bin`` weights, the old tokenizer files, the empty published LoRA, demucs' hub repo), filled
with the tiny models, and ``videobgm`` runs in a fresh process under ``HF_HUB_OFFLINE=1``, as
a user would. The one thing changed is Whisper's two tables that describe the real files
(``whisper._MODELS``: each file's SHA-256; ``whisper._ALIGNMENT_HEADS``: a mask over the real
model's decoder heads): they are given the tiny file's, so Whisper's own checks pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from videobgm import media, separate

# Commits for the rehearsal's refs/main. Emotion and riffusion: the pinned ones. JD97: a real
from videobgm.models import profiles as models

# Commits for the rehearsal's refs/main. Emotion and riffusion: the pinned ones. JD97: a real
from videobgm.models import tiny

# Commits for the rehearsal's refs/main. Emotion and riffusion: the pinned ones. JD97: a real
# commit with both empty pickles (tree 52b2723). adefossez/HTDemucs: no commit could be
# verified, so the profile does not pin it and the rehearsal uses a made-up one.
REPOS = {
    "emotion": (models.PRETRAINED.emotion, models.EMOTION_REVISION),
    "diffusion": (models.PRETRAINED.diffusion, models.DIFFUSION_REVISION),
    "lora": (models.PUBLISHED_LORA, "52b27234b7b906109aa6f7c8b299a420f0adb71d"),
    "demucs": (models.DEMUCS_HF_REPO, "0" * 40),
    "clap": (models.PRETRAINED.clap, models.PRETRAINED.clap_revision),
}
WHISPER = models.PRETRAINED.whisper("cpu")  # the model a CPU run loads ("small")

DRIVER = """
import base64, gzip, hashlib, os, sys
import numpy, torch, whisper
name, path = sys.argv[1], sys.argv[2]
sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
whisper._MODELS[name] = f"https://openaipublic.azureedge.net/x/{sha}/{os.path.basename(path)}"
dims = torch.load(path, weights_only=True)["dims"]
heads = numpy.ones(dims["n_text_layer"] * dims["n_text_head"], bool)
whisper._ALIGNMENT_HEADS[name] = base64.b85encode(gzip.compress(heads.tobytes()))
from videobgm.cli import main
code = 0
for argv in " ".join(sys.argv[3:]).split(" ;; "):
    code = main(argv.split()) or code
sys.exit(code)
"""


def lay_out(root, parts=tuple(REPOS)):
    """The caches under ``root``, with the repos in ``parts`` (and Whisper's file)."""
    built = {**models.build_tiny_models(), "demucs": separate.build_tiny_demucs()}
    repos = {part: REPOS[part] for part in parts}
    repos["whisper"] = (WHISPER, models.whisper_file(WHISPER).name)
    return tiny.build_hub_rehearsal(root / "hf", root / "xdg" / "whisper", built, repos)


def videobgm(root, *commands: list[str]) -> subprocess.CompletedProcess:
    """``videobgm`` commands (one after the other) in a new process, as a user with the
    caches under ``root`` and no network would run them."""
    env = {k: v for k, v in os.environ.items() if k != "VIDEOBGM_PROFILE"}
    env.update(
        HF_HOME=str(root / "hf"), XDG_CACHE_HOME=str(root / "xdg"),
        TORCH_HOME=str(root / "torch"), VIDEOBGM_HOME=str(root / "home"),
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VIDEOBGM_DEVICE="cpu",
        OMP_NUM_THREADS="1",
    )  # fmt: skip
    (root / "home").mkdir(exist_ok=True)
    whisper_file = root / "xdg" / "whisper" / models.whisper_file(WHISPER).name
    args = [sys.executable, "-c", DRIVER, WHISPER, str(whisper_file)]
    args += " ;; ".join(" ".join(c) for c in commands).split(" ")
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    lay_out(root)
    return root


def test_layout_matches_the_real_repos(caches):
    """The file names the real repos have (hub listings), where huggingface_hub looks."""
    snap = caches / "hf" / "hub" / "models--riffusion--riffusion-model-v1" / "snapshots"
    riff = snap / models.DIFFUSION_REVISION
    index = json.loads((riff / "model_index.json").read_text())
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert index["requires_safety_checker"] is True
    assert (riff / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert (riff / "text_encoder" / "pytorch_model.bin").is_file()
    assert sorted(p.name for p in (riff / "tokenizer").iterdir()) == [
        "merges.txt", "tokenizer_config.json", "vocab.json"
    ]  # fmt: skip
    emo = "models--j-hartmann--emotion-english-distilroberta-base"
    assert (caches / "hf" / "hub" / emo / "snapshots" / models.EMOTION_REVISION /
            "pytorch_model.bin").is_file()  # fmt: skip
    assert models.whisper_file("turbo").name == "large-v3-turbo.pt"
    assert models.whisper_file("large-v3").name == "large-v3.pt"


def test_default_run_on_a_rehearsal_cache_delivers_the_video(caches, make_video):
    """The issue's repro: ``videobgm run talk.mp4 --music riffusion`` with the hub's caches.
    Every stage stays pretrained (no banner), loading goes through the hub ids at their
    commits, one line says why there is no LoRA, and the video comes out."""
    video = make_video(3.0, name="talk.mp4")
    out, run_dir = video.with_name("talk.out.mp4"), video.parent / "run"
    done = videobgm(caches, ["models", "profile"],
                    ["run", str(video), "-o", str(out), "--music", "riffusion", "--steps", "2",
                     "--run-dir", str(run_dir), "-q"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OFFLINE MODELS" not in done.stderr and "Traceback" not in done.stderr
    lora_lines = [line for line in done.stderr.splitlines() if "LoRA" in line]
    assert len(lora_lines) == 1 and "holds no weights" in lora_lines[0], done.stderr
    profile = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    assert profile["separator"] == "demucs" and profile["substituted"] == "()"
    assert media.probe(out).duration_s == pytest.approx(media.probe(video).duration_s, abs=0.05)
    transcript = json.loads((run_dir / "transcript.json").read_text())
    assert transcript["source"] == f"whisper:{WHISPER}"
    plan = json.loads((run_dir / "bgm.plan.json").read_text())
    assert plan["riffusion"]["diffusion"] == "riffusion/riffusion-model-v1"
    assert plan["riffusion"]["diffusion_revision"] == models.DIFFUSION_REVISION
    assert plan["riffusion"]["lora"] is None


def test_the_empty_published_lora_asked_for_is_one_sentence(caches, tmp_path):
    """``--lora JD97/Riffusion_sentiment_LoRA``: asked for explicitly, so the run stops, with
    one sentence naming the file, never a traceback."""
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps([{"start": 0, "end": 3, "emotion": "joy", "confidence": 1}]))
    compose = ["compose", str(timeline), "--music", "riffusion", "--steps", "1"]
    done = videobgm(
        caches, [*compose, "--lora", models.PUBLISHED_LORA, "-o", str(tmp_path / "m.wav")]
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("videobgm: error: ") and "pytorch_lora_weights.bin" in lines[-1]
    assert "holds no LoRA weights" in lines[-1]


def test_the_banner_names_only_the_stages_not_cached(tmp_path):
    """Demucs missing from the caches (and no network): only ``voice`` is substituted."""
    lay_out(tmp_path, parts=("emotion", "diffusion", "lora", "clap"))
    done = videobgm(tmp_path, ["models", "profile"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OFFLINE MODELS for: voice." in done.stderr
    profile = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    assert profile["separator"] == "spectral" and profile["diffusion"].startswith("riffusion/")
    assert profile["whisper_cpu"] == WHISPER
