"""The training run's settings (:class:`TrainConfig`) and outcome (:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.train.data import MOODS

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name load_lora_weights(dir) looks for
LOG_FILE = "train_log.csv"
CONFIG_FILE = "train_config.json"  # the resolved config of the run that wrote the folder
STATE_FILE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
LOG_COLUMNS = ("step", "loss", "lr", "time_s")
PRECISIONS = ("auto", "no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts")
# Fields that may differ between a checkpoint and its resumed run without changing the maths.
RESUMABLE_CHANGES = frozenset(
    {
        "output_dir", "resume_from", "checkpoint_interval", "checkpoint_limit", "profile",
        "validation_prompts", "validation_interval", "validation_inference_steps",
        "validation_guidance", "validation_audio", "dataloader_workers", "dataset",
    }
)  # fmt: skip


def _opt(default: Any, doc: str) -> Any:
    """A config field with its CLI help (one source for the dataclass and ``--help``)."""
    return field(default=default, metadata={"help": doc})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a LoRA training run. Defaults follow the original recipe
    (batch 4 x accumulation 16, gradient checkpointing, cosine with restarts, 3 epochs, seed
    42, fp16 on a GPU); ``dataset`` and ``output_dir`` must be set."""

    dataset: str = _opt("", "imagefolder dir written by the curation stage, or a Hub dataset id")
    output_dir: str = _opt("", "where the LoRA, log, checkpoints and validation outputs go")
    profile: str = _opt("auto", "model profile whose diffusion model is the base")
    base_model: str | None = _opt(None, "explicit base: hub id, local dir or tiny:diffusion")
    resolution_px: int = _opt(512, "square training crop, px (riffusion: 512; tiny runs: 64)")
    rank: int = _opt(4, "LoRA rank r")
    alpha: float = _opt(4.0, "LoRA alpha: the update B @ A is scaled by alpha / rank")
    target_modules: tuple[str, ...] = _opt(
        ("to_q", "to_k", "to_v", "to_out.0"), "UNet modules that get a LoRA"
    )
    lora_dropout: float = _opt(0.0, "dropout on the LoRA branch")
    learning_rate: float = _opt(1e-4, "AdamW learning rate")
    lr_schedule: str = _opt("cosine_with_restarts", "one of: " + ", ".join(LR_SCHEDULES))
    lr_warmup_steps: int = _opt(0, "linear warm-up, optimizer steps")
    lr_cycles: int = _opt(1, "cosine_with_restarts: number of cosine cycles")
    weight_decay: float = _opt(1e-2, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm")
    batch_size: int = _opt(4, "clips per micro-batch per process")
    gradient_accumulation: int = _opt(16, "micro-batches per optimizer step")
    max_steps: int | None = _opt(None, "optimizer steps; when unset, derived from epochs")
    epochs: float = _opt(3.0, "passes over the dataset (used when max_steps is unset)")
    mixed_precision: str = _opt("auto", "auto (fp16 on CUDA, no on CPU) | no | fp16 | bf16")
    gradient_checkpointing: bool = _opt(True, "recompute UNet activations to save memory")
    snr_gamma: float | None = _opt(None, "Min-SNR loss weighting gamma (5.0 is usual)")
    seed: int = _opt(42, "seed of every random draw")
    validation_prompts: tuple[str, ...] = _opt(MOODS, "prompts rendered before, during, after")
    validation_interval: int | None = _opt(500, "render validation every N steps")
    validation_inference_steps: int = _opt(25, "denoising steps per validation image")
    validation_guidance: float = _opt(7.0, "classifier-free guidance of validation images")
    validation_audio: bool = _opt(True, "also decode each validation image to a WAV")
    checkpoint_interval: int | None = _opt(500, "save a resumable checkpoint every N steps")
    checkpoint_limit: int | None = _opt(3, "keep only the newest N checkpoints")
    resume_from: str | None = _opt(None, "'latest' or a checkpoint directory")
    dataloader_workers: int = _opt(0, "DataLoader worker processes")

    @property
    def base_ref(self) -> str:
        """The base model reference: ``base_model``, else the profile's diffusion model."""
        return self.base_model or models.resolve_profile(self.profile).diffusion

    @property
    def effective_batch_size(self) -> int:
        """Clips per optimizer step on one process (times the number of processes)."""
        return self.batch_size * self.gradient_accumulation

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from plain values (JSON); unknown keys are an error."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read training config {path}: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`InputError` for values no run can use (model-independent checks)."""
        if not self.dataset or not self.output_dir:
            raise InputError("a training config needs both a dataset and an output_dir")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule {self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if self.mixed_precision not in PRECISIONS:
            raise InputError(f"mixed_precision {self.mixed_precision!r} is not one of {PRECISIONS}")
        for name in ("rank", "batch_size", "gradient_accumulation"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_steps is None and self.epochs <= 0:
            raise InputError("set max_steps or a positive number of epochs")

    def precision_on(self, device: str) -> str:
        """The accelerate mixed-precision mode on ``device`` ("auto": fp16 on CUDA, else no)."""
        if self.mixed_precision == "auto":
            return "fp16" if device.startswith("cuda") else "no"
        if self.mixed_precision == "fp16" and not device.startswith("cuda"):
            raise InputError("mixed_precision fp16 needs a CUDA GPU; use bf16 or no on a CPU")
        return self.mixed_precision

    def changes_from(self, other: TrainConfig) -> list[str]:
        """Names of the fields that differ from ``other`` and would change the training."""
        return sorted(
            f.name
            for f in dataclasses.fields(self)
            if f.name not in RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)
        )


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced (paths as the main process sees them)."""

    output_dir: Path
    steps: int  # optimizer steps done, including those before a resume
    max_steps: int
    final_loss: float  # the last step's loss (nan when this call ran no step)
    log_path: Path  # CSV: step, loss, lr, time_s
    validation_dirs: tuple[Path, ...]  # validation/step-NNNNNN folders, oldest first
    checkpoints: tuple[Path, ...]  # complete checkpoints, oldest first
    trainable_parameters: int  # the LoRA's parameters
    total_parameters: int  # the UNet's parameters, LoRA included
    seconds: float  # wall time of this call

    @property
    def completed(self) -> bool:
        return self.steps >= self.max_steps

    @property
    def lora_path(self) -> Path:
        """The final LoRA file (present when :attr:`completed`)."""
        return self.output_dir / LORA_FILE
