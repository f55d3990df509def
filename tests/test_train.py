"""LoRA fine-tuning (videobgm.train): the tiny pipeline on a tiny synthetic dataset, on a CPU."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from videobgm import cli, paths, train
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.plots import train as train_plots
from videobgm.train import model as train_model

RANK, ALPHA = 4, 8.0  # alpha != rank: the saved file must carry alpha for loaders to scale right
# A subprocess with one thread: on a shared 2-core machine, torch's thread pool thrashes.
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(paths.root() / "lib")}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny tensors gain nothing from more and a busy machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """7 clips (one per mood), 128 px high and 200 px wide (the crop moves in time)."""
    return train.make_toy_dataset(tmp_path_factory.mktemp("moods"), 1, height_px=128, width_px=200)


def small_config(dataset, out, **changes) -> train.TrainConfig:
    config = train.TrainConfig(
        dataset=str(dataset),
        output_dir=str(out),
        profile="tiny",
        resolution_px=64,
        rank=RANK,
        alpha=ALPHA,
        learning_rate=1e-2,
        lr_schedule="constant",
        batch_size=2,
        gradient_accumulation=1,
        max_steps=30,
        mixed_precision="no",
        seed=0,
        validation_prompts=("happy", "sad"),
        validation_inference_steps=2,
        validation_interval=None,
        checkpoint_interval=10,
        checkpoint_limit=2,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    config = small_config(dataset, tmp_path_factory.mktemp("lora"))
    return config, train.train_lora(config)


# --------------------------------------------------------------------------- a 30-step run


def test_thirty_steps_write_the_lora_log_checkpoints_and_validation(trained):
    config, result = trained
    assert result.completed and result.steps == result.max_steps == 30
    assert result.lora_path.is_file()
    log = train.load_log(result.log_path)
    assert log["step"].tolist() == list(range(1, 31))
    assert np.isfinite(log["loss"]).all() and (log["loss"] > 0).all()
    assert np.allclose(log["lr"], config.learning_rate)  # the constant schedule
    assert (np.diff(log["time_s"]) >= 0).all()
    assert [p.name for p in result.validation_dirs] == ["step-000000", "step-000030"]
    for folder in result.validation_dirs:
        pngs = sorted(folder.glob("*.png"))
        assert [p.name for p in pngs] == ["00-happy.png", "01-sad.png"]
        for png in pngs:
            # 64 px images scaled back to 512 mel bands: 512 columns of 10 ms, normalised
            audio, rate = soundfile.read(png.with_suffix(".wav"), dtype="float32")
            assert rate == 44100 and audio.shape == (512 * 441,)
            assert 0.9 < np.abs(audio).max() <= 1.0
    assert [p.name for p in result.checkpoints] == ["step-000020", "step-000030"]  # limit 2
    # The LoRA: rank x (in + out) per adapted projection, a tiny share of the UNet.
    assert 0 < result.trainable_parameters < 0.02 * result.total_parameters


def test_training_lowers_the_loss_on_a_fixed_batch(trained):
    """Same clips, noise and timesteps before and after: only the weights differ."""
    config, result = trained
    before = train.evaluate_loss(config)
    assert train.evaluate_loss(config) == before  # the fixed batch is fixed
    after = train.evaluate_loss(config, result.output_dir)
    assert after < 0.95 * before, (before, after)


_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from diffusers import StableDiffusionPipeline

    base, lora = sys.argv[1:3]
    pipe = StableDiffusionPipeline.from_pretrained(
        base, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)

    def render():
        out = pipe("happy, piano", height=64, width=64, num_inference_steps=3,
                   generator=torch.Generator().manual_seed(0), output_type="np")
        return out.images[0]

    plain = render()
    pipe.load_lora_weights(lora, adapter_name="mood")
    with_lora = render()
    pipe.set_adapters(["mood"], adapter_weights=[0.0])
    weight_zero = render()
    config = pipe.unet.peft_config["mood"]
    print(json.dumps({
        "changed": float(abs(with_lora - plain).max()),
        "weight_zero": float(abs(weight_zero - plain).max()),
        "r": config.r, "alpha": config.lora_alpha,
        "modules": sorted(config.target_modules),
    }))
    """
)


def test_lora_loads_with_stock_diffusers_in_a_fresh_process(trained):
    config, result = trained
    base = models.locate("tiny:diffusion")
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, base, str(result.output_dir)],
        capture_output=True, text=True, env=_ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["changed"] > 1e-3, report  # the LoRA changes the output
    assert report["weight_zero"] < 1e-6, report  # adapter weight 0 is the base model
    assert (report["r"], report["alpha"]) == (RANK, ALPHA)
    assert report["modules"] == sorted(config.target_modules)


def test_a_rank_4_lora_of_the_riffusion_unet_is_about_3_mb():
    """Stable Diffusion 1.x's UNet (riffusion's) on the meta device: shapes, no weights."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8,
        )  # fmt: skip
    unet.requires_grad_(False)
    train_model.add_lora(unet, train.TrainConfig(rank=4))
    lora = [p for p in unet.parameters() if p.requires_grad]
    assert {p.dtype for p in lora} == {torch.float32}
    # 16 transformer blocks x 2 attentions x 4 projections; the saved file adds a small header
    # (measured: 3,227,672 bytes for these 797,184 float32 values).
    assert len(lora) == 16 * 2 * 4 * 2
    assert 2.9e6 < 4 * sum(p.numel() for p in lora) < 3.3e6


# --------------------------------------------------------------------------- resume


def test_resume_from_a_checkpoint_matches_the_uninterrupted_run(dataset, tmp_path):
    """Accumulation 2 over 3 batches per epoch: the stop falls mid-epoch, the steps span
    epochs; the resumed weights and log equal the uninterrupted run's bit for bit."""
    from safetensors.torch import load_file

    base = small_config(
        dataset, tmp_path / "whole", gradient_accumulation=2, max_steps=4,
        lr_schedule="cosine_with_restarts", checkpoint_interval=None, validation_prompts=(),
    )  # fmt: skip
    whole = train.train_lora(base)
    split = dataclasses.replace(base, output_dir=str(tmp_path / "split"))
    first = train.train_lora(split, stop_after_steps=2)
    assert not first.completed and [p.name for p in first.checkpoints] == ["step-000002"]
    assert not first.lora_path.exists()
    second = train.train_lora(dataclasses.replace(split, resume_from="latest"))
    assert second.completed
    expected, got = load_file(whole.lora_path), load_file(second.lora_path)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # The log tells a real resume (rows 1-2 kept, 3-4 appended) from a silent restart at 0.
    whole_log, resumed_log = train.load_log(whole.log_path), train.load_log(second.log_path)
    for column in ("step", "loss", "lr"):
        assert (whole_log[column] == resumed_log[column]).all()
    with pytest.raises(InputError, match="other rank"):
        train.train_lora(dataclasses.replace(split, resume_from="latest", rank=8))


# --------------------------------------------------------------------------- clear errors


def _write_folder(root, lines, images=("a.png",)):
    from PIL import Image

    train_dir = paths.ensure_dir(root / "train")
    for name in images:
        Image.new("RGB", (200, 128), "white").save(train_dir / name)
    (train_dir / "metadata.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return root


GOOD = json.dumps({"file_name": "a.png", "text": "happy, piano", "mood": "happy"})


@pytest.mark.parametrize(
    ("lines", "images", "message"),
    [
        ([], ("a.png",), "is empty"),
        (["{not json"], ("a.png",), "not valid JSON"),
        (["[1, 2]"], ("a.png",), "not a JSON object"),
        ([json.dumps({"file_name": "a.png"})], ("a.png",), "no 'text'"),
        ([GOOD.replace("a.png", "b.png")], ("a.png",), "b.png, which is not in"),
        ([GOOD], ("a.png", "c.png"), "without a metadata line"),
    ],
)
def test_a_malformed_dataset_is_refused_in_one_sentence(tmp_path, lines, images, message):
    folder = _write_folder(tmp_path / "ds", lines, images)
    with pytest.raises(InputError, match=message):
        train.train_lora(small_config(folder, tmp_path / "out"))


def test_missing_datasets_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train.load_rows(str(tmp_path / "nowhere"), 64)
    paths.ensure_dir(tmp_path / "flat")
    with pytest.raises(InputError, match="no train/metadata.jsonl"):
        train.load_rows(str(tmp_path / "flat"), 64)


def test_resolutions_the_model_cannot_take_are_refused(dataset, tmp_path):
    with pytest.raises(InputError, match="multiple of 16 px"):  # 8 (VAE) * 2 (tiny UNet)
        train.train_lora(small_config(dataset, tmp_path, resolution_px=72))
    with pytest.raises(InputError, match=r"larger than the dataset's images \(128 px high\)"):
        train.train_lora(small_config(dataset, tmp_path, resolution_px=256))


def test_riffusion_sized_unets_need_multiples_of_64_px(tmp_path):
    """Stable Diffusion 1.x's configs (no weights): 4 VAE levels, 4 UNet levels."""
    for part, channels in (("unet", [320, 640, 1280, 1280]), ("vae", [128, 256, 512, 512])):
        paths.ensure_dir(tmp_path / part)
        (tmp_path / part / "config.json").write_text(json.dumps({"block_out_channels": channels}))
    train.check_resolution(str(tmp_path), 512)
    with pytest.raises(InputError, match="multiple of 64 px"):
        train.check_resolution(str(tmp_path), 480)


def test_a_dataset_smaller_than_a_batch_is_refused(dataset, tmp_path):
    with pytest.raises(InputError, match="fewer than one batch"):
        train.train_lora(small_config(dataset, tmp_path, batch_size=8))


def test_bf16_and_epochs(dataset, tmp_path):
    """bf16 autocast (on a CPU too) keeps the LoRA in float32; without max_steps, epochs
    decide: 7 clips in batches of 2 are 3 batches, so one epoch is 3 steps."""
    from safetensors.torch import load_file

    config = small_config(
        dataset, tmp_path, mixed_precision="bf16", max_steps=None, epochs=1.0,
        validation_prompts=(), checkpoint_interval=None,
    )  # fmt: skip
    result = train.train_lora(config)
    assert result.completed and result.steps == 3
    assert {t.dtype for t in load_file(result.lora_path).values()} == {torch.float32}


def test_fp16_on_a_cpu_is_refused(dataset, tmp_path):
    config = small_config(dataset, tmp_path, mixed_precision="fp16")
    with pytest.raises(InputError, match="needs a CUDA GPU"):
        config.precision_on("cpu")
    assert dataclasses.replace(config, mixed_precision="auto").precision_on("cpu") == "no"
    assert dataclasses.replace(config, mixed_precision="auto").precision_on("cuda:0") == "fp16"


# --------------------------------------------------------------------------- loss


def _fake_unet(prediction):
    return lambda noisy, timesteps, hidden: SimpleNamespace(sample=prediction)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_the_loss_target_follows_the_prediction_type(kind):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(prediction_type=kind, beta_schedule="scaled_linear")
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 2, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([10, 900])
    target = noise if kind == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    loss = train_model.diffusion_loss(
        _fake_unet(target), scheduler, latents, noise, timesteps, None
    )
    assert float(loss) == 0.0
    wrong = train_model.diffusion_loss(
        _fake_unet(latents), scheduler, latents, noise, timesteps, None
    )
    assert float(wrong) > 0.1


def test_min_snr_weights_each_sample_by_min_snr_gamma_over_snr():
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    scheduler = DDPMScheduler(beta_schedule="scaled_linear")
    latents = torch.zeros(2, 4, 8, 8)
    noise = torch.ones(2, 4, 8, 8)  # a zero prediction costs exactly 1 per sample
    timesteps = torch.tensor([5, 800])
    snr = compute_snr(scheduler, timesteps)
    assert snr[0] > 5.0 > snr[1]  # one sample on each side of gamma
    loss = train_model.diffusion_loss(
        _fake_unet(torch.zeros_like(noise)), scheduler, latents, noise, timesteps, None, 5.0
    )
    expected = ((5.0 / snr[0]) + 1.0) / 2  # min(snr, 5) / snr per sample, then the mean
    assert torch.isclose(loss, expected)


# --------------------------------------------------------------------------- entry points


def test_the_cli_mirrors_the_config(tmp_path):
    parser = cli.build_parser()
    file = tmp_path / "cfg.json"
    file.write_text(json.dumps({"dataset": "d", "output_dir": "o", "rank": 16, "seed": 1}))
    args = parser.parse_args(
        ["train-lora", "--config", str(file), "--out", "elsewhere", "--rank", "8",
         "--resolution", "64", "--max-steps", "3", "--no-gradient-checkpointing",
         "--validation-prompts", "happy", "sad", "--snr-gamma", "5"]
    )  # fmt: skip
    config = train.cli.config_from_args(args)
    assert config == train.TrainConfig(
        dataset="d", output_dir="elsewhere", rank=8, seed=1, resolution_px=64, max_steps=3,
        gradient_checkpointing=False, validation_prompts=("happy", "sad"), snr_gamma=5.0,
    )  # fmt: skip
    assert train.TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="unknown training config keys: rnak"):
        train.TrainConfig.from_dict({"rnak": 4})


def test_the_module_entry_point_trains_from_a_config_file(dataset, tmp_path):
    """``python -m videobgm.train --config cfg.json``: what ``accelerate launch`` runs."""
    config = small_config(dataset, tmp_path / "out", max_steps=2, validation_prompts=())
    file = tmp_path / "cfg.json"
    file.write_text(json.dumps(config.to_dict()))
    done = subprocess.run(
        [sys.executable, "-m", "videobgm.train", "--config", str(file), "--rank", "2"],
        capture_output=True, text=True, env=_ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished 2 steps" in done.stdout
    assert (tmp_path / "out" / train.LORA_FILE).is_file()
    saved = json.loads((tmp_path / "out" / train.CONFIG_FILE).read_text())
    assert saved["rank"] == 2 and saved["base_model"] == "tiny:diffusion"


@pytest.mark.slow
def test_accelerate_launch_trains_on_two_processes(dataset, tmp_path):
    """Two CPU processes (gloo DDP) run the same entry point; the main one alone writes the
    log, the LoRA and the summary."""
    config = small_config(
        dataset, tmp_path / "out", batch_size=1, gradient_accumulation=2, max_steps=2,
        validation_prompts=(), checkpoint_interval=None,
    )  # fmt: skip
    file = tmp_path / "cfg.json"
    file.write_text(json.dumps(config.to_dict()))
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--cpu"]  # fmt: skip
    done = subprocess.run(
        [*launcher, "-m", "videobgm.train", "--config", str(file)],
        capture_output=True, text=True, env=_ENV, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished 2 steps") == 1
    assert train.load_log(tmp_path / "out" / train.LOG_FILE)["step"].tolist() == [1, 2]
    assert (tmp_path / "out" / train.LORA_FILE).is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    status = train.main(["--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("videobgm: error: dataset directory") and "\n" not in err


# --------------------------------------------------------------------------- data and plots


def test_toy_dataset_has_the_curation_format(dataset):
    import datasets

    rows = datasets.load_dataset("imagefolder", data_dir=str(dataset), split="train")
    assert len(rows) == len(train.MOODS)
    for name in ("image", "text", "mood", "track_id", "start_s", "duration_s"):
        assert name in rows.column_names
    assert {row["text"].split(",")[0] for row in rows} == set(train.MOODS)
    assert rows[0]["image"].size == (200, 128) and rows[0]["image"].mode == "RGB"


def test_random_crops_move_in_time_only_and_depend_on_the_epoch(dataset):
    from PIL import Image

    from videobgm.train.data import crop_clip

    image = Image.open(next((dataset / "train").glob("*.png")))
    crops = [crop_clip(image, 64, np.random.default_rng(s)) for s in range(8)]
    assert all(c.shape == (3, 64, 64) and -1 <= c.min() <= c.max() <= 1 for c in crops)
    assert len({c.tobytes() for c in crops}) > 1  # the window moves
    scaled = np.asarray(image.convert("RGB").resize((100, 64), Image.Resampling.BILINEAR))
    centre = crop_clip(image, 64)
    expected = scaled[:, 18:82].transpose(2, 0, 1) / 127.5 - 1  # the full height, centred
    assert np.allclose(centre, expected, atol=1e-6)


def test_ema_smoothing():
    values = np.array([1.0, 3.0, 2.0, 5.0])
    assert np.allclose(train_plots.ema(values, 0.0), values)
    assert np.allclose(train_plots.ema(np.full(5, 2.0), 0.9), 2.0)  # bias-corrected
    assert train_plots.ema(values, 0.9)[-1] < values.max()


def test_training_figures(trained):
    config, result = trained
    fig = train_plots.plot_loss(train.load_log(result.log_path))
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2  # raw + smoothed, lr below
    fig = train_plots.plot_validation(result.validation_dirs[0], result.validation_dirs[-1])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["happy", "sad"]
    fig = train_plots.plot_dataset_sample(config.dataset, clips=3)
    assert len(fig.axes) == 3 and all("," in ax.get_title() for ax in fig.axes)


def test_command_is_registered():
    assert "videobgm.train" in cli.COMMAND_MODULES
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "train-lora" in sub.choices
