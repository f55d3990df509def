"""The model side of LoRA training: the frozen base parts, the peft adapter and its file, the
denoising loss, and a fixed-batch loss for before/after comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.train.config import LORA_FILE, TrainConfig
from videobgm.train.data import SpectrogramClips, load_rows


def check_resolution(base_ref: str, resolution_px: int) -> None:
    """Raise :class:`InputError` unless the base model can take ``resolution_px``.

    The VAE divides by ``2 ** (VAE levels - 1)`` (8) and the UNet halves the latents at each
    down level but the last, so the side must be a multiple of ``8 * 2 ** (UNet levels - 1)``
    (64 for riffusion, 16 for the tiny model). Reads only the models' configs.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = models.locate(base_ref)
    try:
        unet = UNet2DConditionModel.load_config(path, subfolder="unet")
        vae = AutoencoderKL.load_config(path, subfolder="vae")
    except OSError as exc:
        raise models.ModelUnavailableError(
            f"diffusion model {base_ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc
    multiple = 2 ** (len(vae["block_out_channels"]) - 1 + len(unet["block_out_channels"]) - 1)
    if resolution_px <= 0 or resolution_px % multiple:
        raise InputError(
            f"resolution {resolution_px} px does not fit the model {base_ref}: "
            f"it must be a positive multiple of {multiple} px"
        )


@dataclass
class Parts:
    """The base model's parts, frozen; ``pipe`` holds them all (for validation images)."""

    pipe: Any  # StableDiffusionPipeline
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any  # DDPM with the base model's training noise schedule


def load_parts(base_ref: str) -> Parts:
    """Load the base pipeline (no safety checker) with every weight frozen."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            models.locate(base_ref), safety_checker=None, requires_safety_checker=False
        )
    except OSError as exc:
        raise models.ModelUnavailableError(
            f"diffusion model {base_ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return Parts(pipe, pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, noise_scheduler)


def add_lora(unet: Any, config: TrainConfig) -> None:
    """Give ``unet`` a trainable peft LoRA adapter ("default") as the config describes."""
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.lora_dropout,
            init_lora_weights="gaussian",  # B = 0: the untrained LoRA leaves the model unchanged
            target_modules=list(config.target_modules),
        )
    )


def save_lora(unet: Any, directory: str | Path, weight_name: str = LORA_FILE) -> Path:
    """Write a peft-adapted UNet's LoRA in diffusers format, with its ``LoraConfig`` as
    metadata (so that a loader gets alpha right when alpha != rank). Returns the file."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(
        str(directory),
        unet_lora_layers=state,
        weight_name=weight_name,
        safe_serialization=True,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
    )
    return Path(directory) / weight_name


def restore_lora(unet: Any, directory: str | Path) -> None:
    """Load a checkpoint's LoRA file back into the training adapter, bit for bit."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(Path(directory) / LORA_FILE)
    state = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in state.items()})
    result = set_peft_model_state_dict(unet, state, "default")
    if getattr(result, "unexpected_keys", None):
        raise InputError(f"checkpoint {directory} does not match the model's LoRA layers")


def diffusion_loss(unet, noise_scheduler, latents, noise, timesteps, hidden, snr_gamma=None):
    """The denoising loss of ``unet`` on clean (scaled) ``latents``: a float scalar tensor.

    The target is the noise (``epsilon``) or the velocity (``v_prediction``), as the
    scheduler's config says; with a positive ``snr_gamma``, each sample is weighted by Min-SNR
    (min(SNR, gamma) / SNR, or / (SNR + 1) for v-prediction).
    """
    import torch.nn.functional as F
    from diffusers.training_utils import compute_snr

    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise InputError(f"cannot train a model with prediction type {kind!r}")
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps, hidden).sample
    if not snr_gamma:  # None or 0: plain MSE
        return F.mse_loss(pred.float(), target.float())
    snr = compute_snr(noise_scheduler, timesteps)
    weight = snr.clamp(max=snr_gamma) / (snr + 1 if kind == "v_prediction" else snr)
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight).mean()


def encode(parts: Parts, batch: dict, generator, dtype, sample: bool = True):
    """Scaled VAE latents (a sample, or the mean) and text embeddings; no gradients."""
    import torch

    with torch.no_grad():
        dist = parts.vae.encode(batch["pixel_values"].to(dtype)).latent_dist
        latents = dist.sample(generator) if sample else dist.mean
        shift = getattr(parts.vae.config, "shift_factor", None) or 0.0
        latents = (latents - shift) * parts.vae.config.scaling_factor
        hidden = parts.text_encoder(batch["input_ids"])[0]
    return latents, hidden


def draw_noise(latents, generator, num_train_timesteps: int):
    """Gaussian noise like ``latents`` and one uniform training timestep per sample."""
    import torch

    noise = torch.randn(
        latents.shape, generator=generator, device=latents.device, dtype=latents.dtype
    )
    timesteps = torch.randint(
        0, num_train_timesteps, (latents.shape[0],), generator=generator, device=latents.device
    )
    return noise, timesteps


def seeded_generator(device, *words: int):
    """A torch generator whose seed mixes ``words`` (seed, micro-batch, process, ...)."""
    import torch

    state = int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


def evaluate_loss(
    config: TrainConfig, lora_dir: str | Path | None = None, *, clips: int = 8, seed: int = 0
) -> float:
    """The denoising loss on one fixed batch, for before/after comparisons.

    The batch is the dataset's first ``clips`` clips (centre crops, VAE means) with noise and
    timesteps drawn from ``seed``, so two calls differ only by the model. The model is the
    base, or the base with the LoRA in ``lora_dir`` attached by stock ``load_lora_weights``.
    Runs in float32 on the CPU; returns the loss as a float.
    """
    import torch

    config.check()
    rows = load_rows(config.dataset, config.resolution_px)
    parts = load_parts(config.base_ref)
    if lora_dir is not None:
        parts.pipe.load_lora_weights(str(lora_dir))
    data = SpectrogramClips(rows, parts.tokenizer, config.resolution_px, seed, random_crop=False)
    batch = data.collate([data[(0, i)] for i in range(min(clips, len(data)))])
    generator = torch.Generator().manual_seed(seed)
    latents, hidden = encode(parts, batch, generator, torch.float32, sample=False)
    noise, timesteps = draw_noise(
        latents, generator, parts.noise_scheduler.config.num_train_timesteps
    )
    with torch.no_grad():
        loss = diffusion_loss(
            parts.unet, parts.noise_scheduler, latents, noise, timesteps, hidden, config.snr_gamma
        )
    return float(loss)
