"""Evaluation: the tiny CLAP through the real loader, zero-shot alignment, FAD, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg

from videobgm import evaluate, media, prompts
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.synth import arrange as synth
from videobgm.vocab import Span

RATE = 44100  # Hz


@pytest.fixture(scope="module")
def clap():
    return evaluate.load_clap("tiny", device="cpu")


def test_tiny_clap_is_saved_in_the_real_format_and_loads_through_the_loader(clap):
    folder = models.build_tiny_models()["clap"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "clap" and config["architectures"] == ["ClapModel"]
    assert (folder / "model.safetensors").exists()
    assert (folder / "tokenizer_config.json").exists() and (folder / "tokenizer.json").exists()
    assert (folder / "processor_config.json").exists()
    assert clap.processor.feature_extractor.sampling_rate == evaluate.CLAP_RATE
    assert clap.dim == config["projection_dim"]


def test_embeddings_have_the_model_dimension_unit_length_and_are_deterministic(clap):
    clips = [synth.render("joy", 3.0), synth.render("sadness", 23.0)]  # one spans 3 windows
    first = clap.embed_audio(clips, RATE)
    again = evaluate.load_clap("tiny", device="cpu").embed_audio(clips, RATE)
    assert first.shape == (2, clap.dim)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    texts = clap.embed_text(["happy, ukulele", "sad, piano, slow"])
    assert texts.shape == (2, clap.dim)
    np.testing.assert_array_equal(texts, clap.embed_text(["happy, ukulele", "sad, piano, slow"]))
    assert not np.allclose(first[0], first[1])  # different music, different embeddings


def test_zero_shot_over_the_seven_emotion_prompts_sums_to_one(clap):
    texts = evaluate.emotion_embeddings(clap)
    assert texts.shape == (7, clap.dim)
    audio = clap.embed_audio([synth.render(e, 2.0) for e in prompts.EMOTIONS], RATE)
    probs = evaluate.zero_shot(audio, texts, clap.logit_scale)
    assert probs.shape == (7, 7) and (probs > 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


class PlantedClap:
    """An embedder made for this test only: audio made for an emotion (a constant level that
    encodes the emotion's index) embeds exactly as that emotion's prompts do."""

    logit_scale = 14.3

    def __init__(self, clap):
        self.clap, self.texts = clap, evaluate.emotion_embeddings(clap)

    def embed_text(self, texts):
        return self.clap.embed_text(texts)

    def embed_audio(self, clips, sample_rate):
        return np.stack([self.texts[int(round(np.median(c) * 10))] for c in clips])


def planted_music(spans, rate=RATE):
    track = np.zeros(int(round(spans[-1].end * rate)), np.float32)
    for span in spans:
        track[int(span.start * rate) : int(span.end * rate)] = (
            prompts.EMOTIONS.index(span.emotion) / 10
        )
    return track


def test_a_planted_signal_gives_full_accuracy_and_a_diagonal_confusion_matrix(clap):
    spans = [Span(2.0 * i, 2.0 * (i + 1), e) for i, e in enumerate(prompts.EMOTIONS)]
    result = evaluate.align(planted_music(spans), RATE, spans, PlantedClap(clap))
    assert result.accuracy == 1.0 and result.mean_rank == 1.0 and result.mean_margin > 0
    np.testing.assert_array_equal(result.confusion(), np.eye(7, dtype=int))
    assert [s.recognised for s in result.spans] == list(prompts.EMOTIONS)


def test_shuffled_labels_score_at_chance(clap):
    planted = PlantedClap(clap)
    rng = np.random.default_rng(0)
    made_for = rng.integers(0, 7, size=700)
    audio = planted.texts[made_for]
    shuffled = [prompts.EMOTIONS[k] for k in rng.permutation(made_for)]
    result = evaluate.score_embeddings(audio, shuffled, planted.texts, planted.logit_scale)
    # Chance: top-1 1/7 (binomial sd 0.013 for 700 spans), mean rank 4 of 7.
    assert abs(result.accuracy - 1 / 7) < 0.05
    assert abs(result.mean_rank - 4.0) < 0.3
    assert result.confusion().sum() == 700


def test_unknown_emotion_is_one_clear_sentence(clap):
    with pytest.raises(InputError, match="unknown emotion 'bliss'"):
        evaluate.score_embeddings(np.ones((1, 4)), ["bliss"], np.ones((7, 4)), 1.0)


# --------------------------------------------------------------------------- FAD


def test_fad_of_identical_sets_is_zero():
    embeddings = np.random.default_rng(1).normal(size=(200, 8))
    assert evaluate.fad(embeddings, embeddings.copy()) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    # The 2-Wasserstein distance in its symmetric form, through eigendecompositions.
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    w, v = np.linalg.eigh(root1 @ s2 @ root1)
    cross = np.sum(np.sqrt(np.clip(w, 0, None)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert evaluate.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    # Diagonal covariances: sum (mu1 - mu2)^2 + sum (sqrt(d1) - sqrt(d2))^2.
    d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    diagonal = evaluate.frechet_distance(np.zeros(3), np.diag(d1), np.ones(3), np.diag(d2))
    assert diagonal == pytest.approx(3 + 1 + 1 + 0)


def test_fad_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(3)
    cov1, cov2 = np.diag([1.0, 2.0, 0.5]), np.diag([2.0, 1.0, 0.5])
    x = rng.multivariate_normal([0, 0, 0], cov1, size=20000)
    y = rng.multivariate_normal([1, 0, 0], cov2, size=20000)
    expected = 1 + 2 * (np.sqrt(2) - 1) ** 2  # closed form for these diagonal Gaussians
    assert evaluate.fad(x, y) == pytest.approx(expected, rel=0.05)
    assert linalg.norm(x.mean(0)) < 0.05  # sanity of the sample itself


def test_fad_needs_two_embeddings_per_set():
    with pytest.raises(InputError, match="at least 2 embeddings"):
        evaluate.fad(np.ones((1, 4)), np.ones((5, 4)))


def test_embeddings_are_cached_per_file(clap, tmp_path):
    files = []
    for emotion in ("joy", "fear"):
        files.append(media.write_audio(tmp_path / f"{emotion}.wav", synth.render(emotion, 2), RATE))
    cache = tmp_path / "cache"
    first = evaluate.embed_files(clap, files, cache)
    direct = clap.embed_audio([media.decode_audio(f, evaluate.CLAP_RATE) for f in files], 48000)
    np.testing.assert_allclose(first, direct, atol=1e-6)
    stored = sorted(cache.glob("*.npy"))
    assert len(stored) == 2
    np.save(stored[0], np.full(clap.dim, 7.0, np.float32))  # the cache, not the model, answers
    again = evaluate.embed_files(clap, files, cache)
    assert (again == 7.0).all(axis=1).sum() == 1


def test_cli_scores_a_track_against_its_timeline(tmp_path, capsys):
    from videobgm import cli
    from videobgm.emotion import io as timeline_io

    spans = [Span(0.0, 4.0, "joy", 1.0), Span(4.0, 9.0, "sadness", 1.0)]
    timeline = timeline_io.save_timeline(spans, tmp_path / "t.json")
    music = np.concatenate([synth.render("joy", 4.0), synth.render("sadness", 5.0)])
    track = media.write_audio(tmp_path / "bgm.wav", music, RATE)
    out = tmp_path / "scores.json"
    argv = ["evaluate", str(track), "--timeline", str(timeline), "-o", str(out), "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "2 spans: top-1" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert [s["intended"] for s in record["spans"]] == ["joy", "sadness"]
    assert [s["end_s"] for s in record["spans"]] == [4.0, 9.0]
    assert 1 <= record["mean_rank"] <= 7


def test_cli_refuses_a_timeline_that_is_not_one(tmp_path, capsys):
    from videobgm import cli

    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    track = media.write_audio(tmp_path / "bgm.wav", synth.render("joy", 2.0), RATE)
    assert cli.main(["evaluate", str(track), "--timeline", str(bad)]) == 1
    assert "t.json" in capsys.readouterr().err


@pytest.mark.requires_cuda
def test_clap_on_cuda_gives_the_cpu_embeddings(clap):
    on_gpu = evaluate.load_clap("tiny", device="cuda")
    clips = [synth.render("fear", 12.0), synth.render("joy", 3.0)]
    np.testing.assert_allclose(on_gpu.embed_audio(clips, RATE), clap.embed_audio(clips, RATE),
                               atol=1e-3)  # fmt: skip
    texts = ["fear, dark, tense", "happy, ukulele"]
    np.testing.assert_allclose(on_gpu.embed_text(texts), clap.embed_text(texts), atol=1e-3)


def test_a_file_is_scored_span_by_span_as_the_array_is(clap, tmp_path):
    spans = [Span(1.5 * i, 1.5 * (i + 1), e) for i, e in enumerate(prompts.EMOTIONS)]
    track = media.write_audio(tmp_path / "planted.wav", planted_music(spans), RATE)
    result = evaluate.align_file(track, spans, PlantedClap(clap))
    assert result.accuracy == 1.0
    np.testing.assert_array_equal(result.confusion(), np.eye(7, dtype=int))
    assert [(s.start_s, s.end_s) for s in result.spans] == [(s.start, s.end) for s in spans]


def _hub_cache(root, revision):
    """A local hub cache holding laion/larger_clap_music at ``revision`` in the repo's layout
    at that commit (config, pytorch_model.bin, preprocessor and tokenizer files), with the tiny
    CLAP's weights."""
    import torch
    from transformers import ClapModel, ClapProcessor

    tiny = models.build_tiny_models()["clap"]
    repo = root / "models--laion--larger_clap_music"
    snapshot = repo / "snapshots" / revision
    model, processor = ClapModel.from_pretrained(tiny), ClapProcessor.from_pretrained(tiny)
    model.config.save_pretrained(snapshot)
    torch.save(model.state_dict(), snapshot / "pytorch_model.bin")
    processor.feature_extractor.save_pretrained(snapshot)
    processor.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return root


def test_pretrained_clap_loads_from_the_hub_cache_at_its_pinned_revision(
    clap, tmp_path, monkeypatch
):
    import huggingface_hub

    pinned = models.PRETRAINED.clap_revision
    assert models.PRETRAINED.clap == "laion/larger_clap_music" and len(pinned) == 40
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VIDEOBGM_PROFILE")
    _hub_cache(tmp_path / "hub", pinned)
    loaded = evaluate.load_clap(models.PRETRAINED, device="cpu")
    clip = [synth.render("sadness", 2.0)]
    # Same weights; only torch's thread count differs (tiny models run on one thread).
    np.testing.assert_allclose(
        loaded.embed_audio(clip, RATE), clap.embed_audio(clip, RATE), atol=1e-6
    )


def test_another_revision_in_the_cache_is_not_taken_for_the_pinned_one(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VIDEOBGM_PROFILE")
    _hub_cache(tmp_path / "hub", "0" * 40)
    with pytest.raises(models.ModelUnavailableError, match="laion/larger_clap_music"):
        evaluate.load_clap(models.PRETRAINED, device="cpu")
