"""LoRA fine-tuning of riffusion on the mood dataset (peft + accelerate): stage ``train``.

The original project trained its mood LoRA with diffusers' text-to-image LoRA script (fp16,
batch 4, gradient accumulation 16, gradient checkpointing, cosine with restarts, 3 epochs,
seed 42). :func:`train_lora` is that training as a library function: the text encoder and the
VAE stay frozen, a peft ``LoraConfig`` adds rank-r updates ``(alpha / r) * B @ A`` to the
UNet's attention projections, and the loss is the noise-prediction MSE for the scheduler's
prediction type (optionally Min-SNR weighted). ``accelerate`` runs the same code on a CPU, one
GPU, or several GPUs and nodes (``accelerate launch -m videobgm.train --config cfg.json``);
checkpoints resume exactly.

Modules: :mod:`~videobgm.train.config` (settings, result), :mod:`~videobgm.train.data`
(dataset checks, crops, toy data), :mod:`~videobgm.train.model` (base parts, LoRA file,
loss), :mod:`~videobgm.train.loop` (the accelerate loop), :mod:`~videobgm.train.cli`.
"""

from videobgm.train.cli import add_cli, main
from videobgm.train.config import CONFIG_FILE, LOG_FILE, LORA_FILE, TrainConfig, TrainResult
from videobgm.train.data import (
    MOODS,
    check_imagefolder,
    load_rows,
    make_toy_dataset,
    spectrogram_audio,
)
from videobgm.train.loop import load_log, train_lora
from videobgm.train.model import check_resolution, evaluate_loss, save_lora

__all__ = [
    "CONFIG_FILE", "LOG_FILE", "LORA_FILE", "MOODS", "TrainConfig", "TrainResult", "add_cli",
    "check_imagefolder", "check_resolution", "evaluate_loss", "load_log", "load_rows", "main",
    "make_toy_dataset", "save_lora", "spectrogram_audio", "train_lora",
]  # fmt: skip
