"""The benchmark code: it runs on tiny inputs and returns the rows it promises, the baselines
compute what their definitions say (toy cases), the bench-profile builders make the real
classes and formats (on scaled-down sizes), and the reports carry the promised columns.
No test asserts a time."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from videobgm import bench, media, sample
from videobgm.bench import baselines, video
from videobgm.compose import renderer as compose
from videobgm.models import full as bench_models
from videobgm.models import profiles as models
from videobgm.synth import arrange as synth

RATE = 44100
TINY_WHISPER = dict(
    n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
    n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
)  # fmt: skip


def check_rows(rows, section):
    assert rows, f"{section}: no rows"
    for r in rows:
        assert set(bench.ROW_KEYS) <= set(r), r
        assert r["section"] == section and r["kind"] in bench.KINDS
        for key in ("ours", "baseline", "ratio"):
            assert r[key] is None or math.isfinite(r[key]), (r["metric"], key, r[key])
    return {r["metric"]: r for r in rows}


# --------------------------------------------------------------------------- rows and reports


def test_row_ratio_and_kinds():
    assert bench.row("t", "s", 2.0, 10.0)["ratio"] == 5.0  # five times faster
    assert bench.row("r", "clips/s", 8.0, 2.0, higher_is_better=True)["ratio"] == 4.0
    assert bench.row("q", "dB", 9.0, 1.0, kind="quality")["ratio"] is None
    assert bench.row("q", "SC", 0.05, 0.15, kind="quality", with_ratio=True)[
        "ratio"
    ] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="kind"):
        bench.row("x", "s", 1.0, 1.0, kind="vibes")


def test_run_sections_writes_reports_summary_and_figures(tmp_path, monkeypatch):
    def fake(repeats, device, full):
        rows = [
            bench.row("fast thing", "s", 0.5, 5.0),
            bench.row("quality thing", "dB", 12.0, 3.0, kind="quality"),
            bench.row("growth", "s/min", 1.0, None, kind="cost"),
        ]
        rows[2]["data"] = {
            "points": [{"minutes": m, "seconds": 2.0 * m, "peak_rss_mb": 300 + 30 * m,
                        "stages": {"mix": m, "compose": m}} for m in (1, 5, 10)],
            "time_fit": video.linear_fit([1, 5, 10], [2, 10, 20]),
            "memory_fit": video.linear_fit([1, 5, 10], [330, 450, 600]),
            "audio_mb_per_minute": video.AUDIO_MB_PER_MINUTE,
        }  # fmt: skip
        return bench.in_section("fake", rows)

    def broken(repeats, device, full):
        raise RuntimeError("no such thing")

    monkeypatch.setitem(bench.SECTIONS, "fake", fake)
    monkeypatch.setitem(bench.SECTIONS, "broken", broken)
    rows = bench.run_sections(["fake", "broken"], repeats=1, out_dir=tmp_path, echo=False)
    assert rows[-1]["note"].startswith("skipped: failed: RuntimeError: no such thing")
    for name in ("fake", "broken", "summary"):
        with open(tmp_path / f"{name}.csv", newline="") as f:
            assert tuple(csv.DictReader(f).fieldnames) == bench.ROW_KEYS
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        assert {"cpu", "cores", "torch", "gpu"} <= set(doc["machine"])
    assert len(json.loads((tmp_path / "summary.json").read_text())["rows"]) == 4
    for figure in ("speed", "quality", "growth"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 1000
    assert bench.read_rows(tmp_path, ["fake"])[0]["metric"] == "fast thing"


def test_linear_fit():
    fit = video.linear_fit([1, 5, 10], [3.0, 11.0, 21.0])
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- bench profile


def test_bench_profile_resolves_through_locate(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDEOBGM_PROFILE", "bench")
    built = []
    monkeypatch.setattr(bench_models, "build", lambda part: built.append(part) or tmp_path)
    assert models.resolve_profile("bench") is models.BENCH
    assert models.locate(models.BENCH.diffusion) == str(tmp_path)
    assert models.locate(models.BENCH.whisper("cuda")) == str(tmp_path)
    assert built == ["diffusion", "whisper-turbo"]


def test_unknown_bench_part():
    from videobgm.errors import InputError

    with pytest.raises(InputError, match="bench:huge"):
        bench_models.build("huge")


def test_randomise_fills_like_a_checkpoint():
    net = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.LayerNorm(200))
    bench_models.randomise(net)
    assert torch.all(net[1].weight == 1) and torch.all(net[1].bias == 0)
    assert torch.all(net[0].bias == 0)
    weight = net[0].weight
    assert torch.isfinite(weight).all() and abs(weight.std().item() - 0.02) < 0.002
    again = bench_models.randomise(torch.nn.Sequential(torch.nn.Linear(300, 200)))
    assert torch.equal(again[0].weight, weight)  # deterministic


def test_whisper_builder_makes_a_checkpoint_whisper_loads(tmp_path):
    import whisper

    path = bench_models.build_whisper(tmp_path / "w.pt", dims=TINY_WHISPER)
    model = whisper.load_model(str(path), device="cpu")
    assert type(model) is whisper.model.Whisper
    assert model.dims.__dict__ == TINY_WHISPER
    full = bench_models.WHISPER_DIMS["large-v3"]
    assert set(full) == set(TINY_WHISPER) and full["n_text_layer"] == 32
    assert bench_models.WHISPER_DIMS["turbo"]["n_text_layer"] == 4


SCALED_DIFFUSION = bench_models.DiffusionSizes(
    unet={**bench_models.SD15_UNET, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1,
          "cross_attention_dim": 32, "norm_num_groups": 8},
    vae={**bench_models.SD15_VAE, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1,
         "norm_num_groups": 8},
    text={**bench_models.CLIP_L_TEXT, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 32},
)  # fmt: skip


def test_diffusion_builder_saves_what_the_real_loader_reads(tmp_path):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    folder = bench_models.build_diffusion(tmp_path / "sd", SCALED_DIFFUSION)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionImg2ImgPipeline"
    profile = models.ModelProfile(name="scaled", diffusion=str(folder), lora=None)
    pipe = models.load_diffusion(profile, "cpu")
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.text_encoder.config.vocab_size == 49408  # CLIP's, as the real model
    with torch.device("meta"):  # the full-size networks: same classes, same block layout
        full = UNet2DConditionModel(**bench_models.SD15_UNET)
    assert list(full.config.down_block_types) == list(pipe.unet.config.down_block_types)
    assert full.config.block_out_channels == (320, 640, 1280, 1280)
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(859.5e6, rel=1e-3)


def test_emotion_builder_loads_as_a_classifier(tmp_path):
    from transformers import pipeline

    sizes = {**bench_models.DISTILROBERTA, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    folder = bench_models.build_emotion(tmp_path / "emotion", sizes)
    classifier = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    [scores] = classifier("I am so happy today")
    assert {s["label"] for s in scores} == set(models.EMOTION_LABELS)
    assert classifier.model.config.vocab_size == 50265
    assert type(classifier.model).__name__ == "RobertaForSequenceClassification"


def test_fixed_tokens_decode_the_plan_on_every_window():
    import whisper
    from whisper.tokenizer import get_tokenizer

    model = bench_models.whisper_model(dims=TINY_WHISPER)
    audio = np.random.default_rng(0).standard_normal(16000 * 40).astype(np.float32) * 0.1
    tokenizer = get_tokenizer(True, num_languages=model.num_languages, language="en")
    plan = bench_models.fixed_plan(tokenizer)
    with bench_models.fixed_tokens():
        result = baselines.original_transcribe(model, audio)  # Whisper's defaults
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), 80)
        _, probs = model.detect_language(mel)
    assert probs["en"] == 1.0 and sum(probs.values()) == 1.0
    segments = result["segments"]
    assert len(segments) == 2 * bench_models.SEGMENTS_PER_WINDOW  # two windows, four each
    assert all(s["avg_logprob"] == 0.0 and s["temperature"] == 0.0 for s in segments)
    assert all(s["compression_ratio"] < 2.4 for s in segments)
    window = [t for s in segments[:4] for t in s["tokens"]]
    assert window == plan[:-1]  # everything but end-of-text
    text_tokens = sum(t < tokenizer.timestamp_begin for t in window)
    assert text_tokens == bench_models.TOKENS_PER_WINDOW
    assert segments[4]["start"] == pytest.approx(30.0)  # the next window starts 30 s later
    _, probs = model.detect_language(mel)  # restored afterwards
    assert probs["en"] != 1.0


# --------------------------------------------------------------------------- baselines


def test_original_mix_is_3_db_down_at_8_khz_then_22_khz():
    from scipy.signal import resample_poly

    rng = np.random.default_rng(1)
    voice, music = rng.standard_normal((2, RATE)).astype(np.float32) * 0.1
    mixed, rate = baselines.original_mix(voice, music, RATE)
    assert rate == 22050 and len(mixed) == 22050
    silent = np.zeros_like(voice)
    voice_only = baselines.original_mix(voice, silent, RATE)[0]
    music_only = baselines.original_mix(silent, music, RATE)[0]
    np.testing.assert_allclose(mixed, voice_only + music_only, atol=1e-5)  # no ducking
    expected = resample_poly(resample_poly(music, 80, 441), 441, 160) * 10 ** (-3 / 20)
    np.testing.assert_allclose(music_only, expected, atol=1e-4)
    longer = baselines.original_mix(voice, np.tile(music, 2), RATE)[0]
    np.testing.assert_allclose(longer, mixed, atol=1e-6)  # music cut to the voice


def test_original_compose_butts_length_div_10_plus_1_clips():
    spans = [
        {"start": 0.0, "end": 25.0, "emotion": "joy"},  # 3 clips
        {"start": 25.0, "end": 29.0, "emotion": "neutral"},  # 4 s of silence
        {"start": 29.0, "end": 38.0, "emotion": "sadness"},  # 1 clip
    ]
    audio, joins = baselines.original_compose(spans)
    clip = synth.clip_samples()
    assert len(audio) == 4 * clip + 4 * RATE  # not the timeline's 38 s
    assert joins == [clip, 2 * clip, 3 * clip, 3 * clip + 4 * RATE]
    np.testing.assert_array_equal(audio[:clip], synth.clip("joy", 0))
    np.testing.assert_array_equal(audio[clip : 2 * clip], synth.clip("joy", 1))
    assert not np.any(audio[3 * clip : 3 * clip + 4 * RATE])


def test_clicks_counted_at_joins():
    spans = [
        {"start": a, "end": b, "emotion": e}
        for a, b, e in [(0, 15, "joy"), (15, 30, "fear"), (30, 50, "anger"), (50, 70, "sadness")]
    ]
    [track] = compose.compose(spans, 70.0, progress=False)
    assert compose.count_clicks(track.audio, track.plan) == 0
    audio, joins = baselines.original_compose(spans)
    assert sum(compose.is_click(audio, at) for at in joins) >= 1
    step = np.zeros(4000, np.float32)
    step[2000:] = 0.5
    assert compose.is_click(step, 2000) and not compose.is_click(step, 1000)


def test_original_generate_is_diffusers_img2img_with_pndm():
    from videobgm import generate
    from videobgm.bench.generation import clip_requests

    riff = generate.riffusion_from_refs(models.TINY.diffusion, None, "cpu")
    [request] = clip_requests(1)  # alpha 0: the start prompt alone
    [image] = baselines.original_generate(riff.pipe, [request], steps=4)
    direct = riff.pipe(
        prompt=request.start.prompt, negative_prompt=request.start.negative_prompt,
        image=request.image, strength=request.strength, guidance_scale=request.guidance_scale,
        num_inference_steps=4, generator=torch.Generator().manual_seed(request.start.seed),
    ).images[0]  # fmt: skip
    assert image.size == (512, 512)
    diff = np.abs(np.asarray(image, int) - np.asarray(direct, int))
    assert diff.max() <= 1
    assert type(riff.pipe.scheduler).__name__ == "PNDMScheduler"  # restored


def test_reencode_changes_the_video_stream_and_mux_does_not(make_video, tmp_path):
    clip = make_video(2.0)
    wav = media.write_audio(tmp_path / "a.wav", np.zeros(2 * RATE, np.float32), RATE)
    redone = baselines.reencode(clip, wav, tmp_path / "re.mp4")
    copied = media.mux(clip, wav, tmp_path / "mux.mp4")
    assert media.packet_md5s(copied) == media.packet_md5s(clip)
    assert media.packet_md5s(redone) != media.packet_md5s(clip)
    assert media.probe(redone).audio_codec == "mp3"


def test_long_video_has_speech_captions_and_timeline(tmp_path):
    path = sample.long_video(50.0, tmp_path, size=(64, 36), fps=5)
    assert sample.long_video(50.0, tmp_path, size=(64, 36), fps=5) == path  # reused
    info = media.probe(path)
    assert info.duration_s == pytest.approx(50.0, abs=0.1) and info.width == 64
    spans = json.loads(path.with_name(f"{path.stem}.timeline.json").read_text())
    assert spans[0]["start"] == 0 and spans[-1]["end"] == 50.0
    assert all(a["end"] == b["start"] for a, b in zip(spans, spans[1:], strict=False))
    srt = path.with_name(f"{path.stem}.srt").read_text()
    assert srt.count("-->") >= 6  # the story's five lines, and the start of its repetition
    audio = media.decode_audio(path, 16000)
    assert np.sqrt(np.mean(audio[16000 : 5 * 16000] ** 2)) > 0.01  # speech in the first lines


# --------------------------------------------------------------------------- sections, tiny


def test_generation_section_tiny():
    rows = bench.bench_generation(repeats=1, device="cpu", clips=1, steps=2, baseline_steps=3,
                                  full_size=False)  # fmt: skip
    found = check_rows(rows, "generation")
    [speed] = found.values()
    assert speed["ours"] > 0 and speed["baseline"] > 0 and speed["ratio"] > 0


def test_full_size_projection_arithmetic_on_a_scaled_pipeline():
    from videobgm.bench import generation

    rows = generation.full_size_projection(20, 50, full=True, sizes=SCALED_DIFFUSION)
    step1, step4, vae, clip = (r["ours"] for r in rows)
    assert rows[1]["baseline"] == step1 and all(v > 0 for v in (step1, step4, vae))
    best = min(step1, step4)
    assert clip == pytest.approx(15 * best + vae)  # int(20 x 0.75) steps
    assert rows[3]["baseline"] == pytest.approx(37 * step1 + vae)  # int(50 x 0.75)


def test_transcription_section_tiny():
    rows = bench.bench_transcription(device="cpu", seconds=8.0, profile=models.TINY,
                                     baseline_dims=TINY_WHISPER)  # fmt: skip
    found = check_rows(rows, "transcription")
    assert found["transcription speed"]["unit"] == "x real time"
    assert "fixed-token" in next(iter(found.values()))["note"]


def test_separation_section_tiny():
    rows = bench.bench_separation(repeats=1, seconds=6.0, emotions=("joy",), snrs=(0.0,))
    found = check_rows(rows, "separation")
    spectral = found["mean SI-SDR improvement, spectral"]
    assert spectral["bar"] == ">= +6 dB" and spectral["baseline"] == 0.0
    assert "separation speed, demucs" in found


def test_mix_section_tiny():
    found = check_rows(bench.bench_mix(repeats=1, seconds=20.0), "mix")
    loud = found["loudness error, 0.333333-minute mix"]
    assert loud["ours"] <= 0.5 and loud["meets_bar"]
    assert found["true peak, 0.333333-minute mix"]["ours"] <= -1.0


def test_compose_section_tiny():
    rows = bench.bench_compose(repeats=1, device="cpu", minutes=0.25, steps=2, codec_minutes=0.15)
    found = check_rows(rows, "compose")
    clicks = found["clicks at joins, 0.25-minute timeline"]
    assert clicks["ours"] == 0 and clicks["kind"] == "quality"
    assert found["clicks at joins, riffusion-like clips, 0.15-minute timeline"]["ours"] == 0


def test_mux_section_tiny():
    rows = bench.bench_mux(repeats=1, seconds=2.0, size=(64, 36), fps=10, demo=False)
    found = check_rows(rows, "mux")
    identical = next(r for r in found.values() if r["unit"] == "%")
    assert identical["ours"] == 100.0 and identical["baseline"] < 100.0


def test_endtoend_section_tiny():
    rows = bench.bench_endtoend(minutes=(0.1,), size=(64, 36), fps=5, project_to=(64, 36))
    found = check_rows(rows, "endtoend")
    assert found["peak memory, 0.1-minute video"]["ours"] > 50  # MiB: a real measurement
    ours = video.measure("pipeline", 0.1, (64, 36), 5)  # memoised: not run again
    assert {"separate", "compose", "mix", "deliver"} <= set(ours["stages"])
    original = video.measure("original", 0.1, (64, 36), 5)
    assert set(original["stages"]) == {"decode", "separate", "compose", "mix", "re-encode"}
    assert set(original["stage_peak_mb"]) == set(original["stages"])
    assert max(ours["stage_peak_mb"].values()) <= ours["peak_rss_mb"] + 1


def test_growth_section_fits_time_and_memory(monkeypatch):
    def fake(job, minutes, size, fps):
        return {"minutes": minutes, "seconds": 1 + 2 * minutes, "peak_rss_mb": 200 + 40 * minutes,
                "stages": {"mix": minutes}}  # fmt: skip

    monkeypatch.setattr(video, "measure", fake)
    rows = check_rows(bench.bench_growth(minutes=(1, 5, 10)), "growth")
    assert rows["time per minute of video"]["ours"] == pytest.approx(2.0)
    memory = rows["peak memory per minute of video"]
    assert memory["ours"] == pytest.approx(40.0)
    assert memory["baseline"] == pytest.approx(video.AUDIO_MB_PER_MINUTE)
    data = next(iter(rows.values()))["data"]
    assert [p["minutes"] for p in data["points"]] == [1, 5, 10]
    assert data["time_fit"]["r2"] == pytest.approx(1.0)


def test_gpu_section_skips_with_the_reason_and_runs_elsewhere():
    if not torch.cuda.is_available():
        [skip] = bench.bench_gpu()
        assert skip["note"] == f"skipped: {bench.NO_CUDA}" and skip["ours"] is None
    rows = bench.bench_gpu(device="cpu", profile=models.TINY, clips=2, steps=(2,), batches=(1, 2),
                           minutes=0.05, repeats=1, baseline_steps=3)  # fmt: skip
    found = check_rows(rows, "gpu")
    assert "riffusion clips per second, 2 steps, batch 2" in found
    assert any("top operators" in r["note"] for r in rows)
    assert any(r["metric"].startswith("end to end with full-size") for r in rows)
