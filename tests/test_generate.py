"""Riffusion generation with the tiny pipeline: batches, seeds, interpolation ends, the LoRA.

Few denoising steps keep these cheap: at ``STEPS = 2`` and strength 0.75 img2img runs one
denoising step (plus the VAE), about a second per clip on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from videobgm import generate
from videobgm.generate import ClipRequest, PromptInput
from videobgm.models import profiles as models
from videobgm.models import tiny

STEPS = 2
HAPPY = PromptInput("happy, ukulele, success, progress, bold", seed=1)
SAD = PromptInput("sad, piano, melancholic, reflective, slow", seed=2, strength=0.9)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def riff():
    """The tiny pipeline without a LoRA."""
    return generate.load_riffusion("tiny", "cpu", lora=None)


@pytest.fixture(scope="module")
def init_images():
    """Two 512 px grey spectrogram-like images (horizontal bands, vertical beats)."""
    y, x = np.mgrid[0:512, 0:512]
    first = 127 + 60 * np.sin(y / 9.0) * (np.sin(x / 20.0) > 0)
    second = 127 + 80 * np.cos(y / 23.0) * (np.cos(x / 7.0) > 0.3)
    return [Image.fromarray(a.astype(np.uint8)).convert("RGB") for a in (first, second)]


def one(riff, request: ClipRequest) -> np.ndarray:
    return pixels(riff.generate([request], steps=STEPS, progress=False)[0])


def test_batch_of_three_gives_three_512px_images(riff, init_images):
    image = init_images[0]
    requests = [ClipRequest(HAPPY, SAD, image, alpha) for alpha in (0.0, 0.5, 1.0)]
    images = riff.generate(requests, steps=STEPS, batch_size=3, progress=False)
    assert len(images) == 3
    assert all(im.size == (512, 512) and im.mode == "RGB" for im in images)
    arrays = [pixels(im) for im in images]
    assert np.abs(arrays[0] - arrays[2]).mean() > 1  # the prompts matter
    # Batched and one-at-a-time agree up to rounding (BLAS kernels vary with the batch size).
    alone = one(riff, requests[1])
    assert np.abs(alone - arrays[1]).max() <= 2


def test_same_seed_same_image_other_seed_other_image(riff, init_images):
    request = ClipRequest(HAPPY, HAPPY, init_images[0])
    first, again = one(riff, request), one(riff, request)
    assert np.array_equal(first, again)
    reseeded = PromptInput(HAPPY.prompt, seed=7)
    other = one(riff, ClipRequest(reseeded, reseeded, init_images[0]))
    assert np.abs(first - other).mean() > 1


def test_alpha_ends_reproduce_the_start_and_end_prompts(riff, init_images):
    image, end_image = init_images
    ask = [
        ClipRequest(HAPPY, SAD, image, 0.0, end_image),
        ClipRequest(HAPPY, SAD, image, 1.0, end_image),
        ClipRequest(HAPPY, SAD, image, 0.5, end_image),
        ClipRequest(HAPPY, HAPPY, image),
        ClipRequest(SAD, SAD, end_image),
    ]
    at_0, at_1, middle, start, end = (pixels(i) for i in riff.generate(ask, steps=STEPS))
    assert np.array_equal(at_0, start)
    assert np.array_equal(at_1, end)
    assert np.abs(middle - start).mean() > 1 and np.abs(middle - end).mean() > 1


def test_interpolated_settings(init_images):
    request = ClipRequest(HAPPY, SAD, init_images[0], 0.25)
    assert request.strength == pytest.approx(0.75 + 0.25 * 0.15)
    assert request.guidance_scale == 7.0
    with pytest.raises(ValueError):
        ClipRequest(HAPPY, SAD, init_images[0], 1.5)


def test_slerp_ends_are_exact_and_middle_keeps_the_norm():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, 8, generator=gen), torch.randn(4, 8, 8, generator=gen)
    assert generate.slerp(0.0, a, b) is a and generate.slerp(1.0, a, b) is b
    middle = generate.slerp(0.5, a, b)
    # Gaussian noise vectors are nearly orthogonal and equally long: slerp keeps their length
    # (a plain average would shrink it by about 1/sqrt(2)).
    assert float(middle.norm()) == pytest.approx(float(a.norm() + b.norm()) / 2, rel=0.05)


def test_profile_lora_changes_the_output_and_scale_zero_does_not(riff, init_images):
    request = ClipRequest(HAPPY, HAPPY, init_images[0])
    base = one(riff, request)
    with_lora = generate.load_riffusion("tiny", "cpu", lora_scale=1.0)  # tiny:lora, old format
    assert with_lora.lora_layers == 32
    assert np.abs(one(with_lora, request) - base).mean() > 1
    with_lora.set_lora_scale(0.0)
    assert np.array_equal(one(with_lora, request), base)


def _random_lora(rank: int = 4) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """(attention module, projection) -> (down, up) weights for every tiny-UNet attention."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models.locate("tiny:diffusion"), subfolder="unet")
    gen = torch.Generator().manual_seed(11)
    weights = {}
    for name in unet.attn_processors:
        module = name.removesuffix(".processor")
        attn = unet.get_submodule(module)
        for proj, linear in (("to_q", attn.to_q), ("to_v", attn.to_v), ("to_out", attn.to_out[0])):
            down = torch.randn(rank, linear.in_features, generator=gen) / rank
            up = torch.randn(linear.out_features, rank, generator=gen) * 0.5
            weights[(module, proj)] = (down, up)
    return weights


def test_old_format_lora_loads_like_the_same_weights_in_the_new_format(tmp_path, init_images):
    from diffusers import StableDiffusionPipeline

    weights = _random_lora()
    old = {}
    new = {}
    for (module, proj), (down, up) in weights.items():
        old[f"{module}.processor.{proj}_lora.down.weight"] = down
        old[f"{module}.processor.{proj}_lora.up.weight"] = up
        peft_proj = "to_out.0" if proj == "to_out" else proj
        new[f"{module}.{peft_proj}.lora_A.weight"] = down
        new[f"{module}.{peft_proj}.lora_B.weight"] = up
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / tiny.OLD_LORA_FILE)
    StableDiffusionPipeline.save_lora_weights(tmp_path / "new", unet_lora_layers=new)
    assert (tmp_path / "new" / generate.NEW_LORA_FILE).is_file()

    request = ClipRequest(SAD, SAD, init_images[1])
    outputs = []
    for folder in ("old", "new"):
        riff = generate.riffusion_from_refs("tiny:diffusion", str(tmp_path / folder), "cpu")
        assert riff.lora_layers == len(weights)
        outputs.append(one(riff, request))
    assert np.array_equal(*outputs)
    base = generate.load_riffusion("tiny", "cpu", lora=None)
    assert np.abs(outputs[0] - one(base, request)).mean() > 1


def test_a_lora_that_does_not_fit_is_an_error_not_ignored(tmp_path):
    stray = {
        "mid_block.nowhere.attn1.processor.to_q_lora.down.weight": torch.zeros(4, 32),
        "mid_block.nowhere.attn1.processor.to_q_lora.up.weight": torch.zeros(32, 4),
    }
    good = torch.load(f"{models.locate('tiny:lora')}/{tiny.OLD_LORA_FILE}", weights_only=True)
    pipe = models.load_diffusion(models.TINY, "cpu")
    for name, state in (("none", stray), ("some", {**good, **stray})):
        (tmp_path / name).mkdir()
        torch.save(state, tmp_path / name / tiny.OLD_LORA_FILE)
        with pytest.raises(generate.LoraError):
            generate.load_lora(pipe, tmp_path / name)
        assert generate.active_lora_layers(pipe) == 0


def test_old_keys_convert_to_diffusers_keys():
    down, up = torch.zeros(2, 3), torch.zeros(3, 2)
    attn = "up_blocks.0.attentions.0.transformer_blocks.0.attn2"
    old = {
        f"{attn}.processor.to_out_lora.down.weight": down,
        f"{attn}.processor.to_out_lora.up.weight": up,
    }
    assert generate.is_old_lora(old)
    assert sorted(generate.convert_old_lora(old)) == [
        f"unet.{attn}.to_out.0.lora_A.weight",
        f"unet.{attn}.to_out.0.lora_B.weight",
    ]


def test_seed_images_are_the_codecs_images_of_the_synth_clips_cached():
    """The codec (checked against librosa in test_references) of the synthesiser's clip for
    that emotion, seed and variation: its first 512 columns, pixel for pixel."""
    from videobgm import spectrogram
    from videobgm.synth import arrange as synth

    image = generate.seed_image("sadness", seed=1, variation=2)
    assert image.size == (512, 512)
    full = spectrogram.image_from_audio(synth.clip("sadness", 1, 2))
    assert full.size == (513, 512)  # 1 + samples // hop columns
    assert np.array_equal(pixels(image), pixels(full)[:, :512])
    assert not np.array_equal(pixels(image), pixels(generate.seed_image("sadness", 1, 3)))
    assert generate.seed_image("sadness", seed=1, variation=2) is image
    assert generate.seed_image("joy", seed=1, variation=2) is not image


@pytest.mark.requires_cuda
def test_cuda_half_precision_batch(init_images):
    riff = generate.load_riffusion("tiny", "cuda", lora_scale=1.0)
    assert riff.dtype == torch.float16
    requests = [ClipRequest(HAPPY, SAD, init_images[0], a, init_images[1]) for a in (0, 0.5, 1)]
    images = riff.generate(requests, steps=4, batch_size=3, progress=False)
    arrays = [pixels(im) for im in images]
    assert all(a.shape == (512, 512, 3) and a.std() > 1 for a in arrays)
    assert np.array_equal(arrays[0], pixels(riff.generate(requests[:1], steps=4, batch_size=3)[0]))


def test_a_trained_lora_keeps_its_alpha(tmp_path):
    """alpha != rank: the adapter's scaling must be alpha / rank, as stock loading gives."""
    from diffusers import UNet2DConditionModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    from videobgm.train import TrainConfig, model

    unet = UNet2DConditionModel.from_pretrained(models.locate("tiny:diffusion"), subfolder="unet")
    model.add_lora(unet, TrainConfig(dataset="unused", output_dir="unused", rank=4, alpha=8.0))
    model.save_lora(unet, tmp_path)
    riff = generate.riffusion_from_refs("tiny:diffusion", str(tmp_path), "cpu")
    scalings = {
        layer.scaling[generate.LORA_ADAPTER]
        for layer in riff.pipe.unet.modules()
        if isinstance(layer, BaseTunerLayer)
    }
    assert scalings == {2.0}
