"""The training loop under ``accelerate``: steps, log, validation, checkpoints, resume.

An optimizer step consumes ``gradient_accumulation`` micro-batches from an endless stream
(epoch after epoch, each a permutation that depends only on (seed, epoch)); micro-batch ``m``
of process ``p`` draws its noise and timesteps from a generator seeded by (seed, m, p). So
the step count alone says where the data stream stands, and a checkpoint (LoRA, optimizer,
LR scheduler, RNG states, step) resumes into the very numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobgm import media, paths
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.train import model
from videobgm.train.config import (
    CONFIG_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    LORA_FILE,
    STATE_FILE,
    TrainConfig,
    TrainResult,
)
from videobgm.train.data import SpectrogramClips, load_rows, spectrogram_audio


def train_lora(config: TrainConfig, *, stop_after_steps: int | None = None) -> TrainResult:
    """Train a LoRA on ``config.dataset`` and write it to ``config.output_dir``.

    Writes ``pytorch_lora_weights.safetensors`` (diffusers format), ``train_log.csv`` (step,
    loss, lr, time_s), ``validation/step-NNNNNN/*.png`` and ``*.wav`` (before training, every
    ``validation_interval`` steps, at the end), ``checkpoints/step-NNNNNN/`` and
    ``train_config.json`` (the config, its model reference resolved). Without
    ``resume_from``, a previous run's outputs in that folder are replaced. ``stop_after_steps``
    ends the call early, as an interruption would, after saving a checkpoint; a later call with
    ``resume_from="latest"`` continues exactly. Raises :class:`InputError` for an unusable
    dataset, resolution or config.
    """
    started = time.perf_counter()
    config.check()
    # Resolve the profile once: checkpoints record the model actually used.
    config = dataclasses.replace(config, base_model=config.base_ref)
    model.check_resolution(config.base_model, config.resolution_px)
    checkpoint = find_checkpoint(config)
    rows = load_rows(config.dataset, config.resolution_px)
    run = None
    try:
        run = _setup(config, rows)
        if checkpoint is None:
            _clear_outputs(run)
            _validate(run)
        else:
            _restore(run, checkpoint)
        if run.is_main:
            with paths.atomic_output(run.out / CONFIG_FILE) as tmp:
                tmp.write_text(json.dumps(config.to_dict(), indent=2))
        loss = _loop(run, stop_after_steps)
        interval = config.checkpoint_interval
        if run.step >= run.max_steps:
            _finish(run)
        elif not interval or run.step % interval:
            _save_checkpoint(run)  # stopped between checkpoints: keep what was done
        params = list(run.parts.unet.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
    finally:
        _release(run)
    return TrainResult(
        output_dir=run.out,
        steps=run.step,
        max_steps=run.max_steps,
        final_loss=loss,
        log_path=run.out / LOG_FILE,
        validation_dirs=step_dirs(run.out / "validation"),
        checkpoints=step_dirs(run.out / "checkpoints", STATE_FILE),
        trainable_parameters=trainable,
        total_parameters=sum(p.numel() for p in params),
        seconds=time.perf_counter() - started,
    )


def load_log(path: str | Path) -> dict[str, np.ndarray]:
    """A training log as ``{"step", "loss", "lr", "time_s"}`` float arrays."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(row[name]) for row in rows]) for name in LOG_COLUMNS}


def step_dirs(directory: Path, marker: str | None = None) -> tuple[Path, ...]:
    """The ``step-NNNNNN`` folders in ``directory`` (those holding ``marker``), oldest first."""
    found = sorted(directory.glob("step-*")) if directory.is_dir() else []
    return tuple(p for p in found if marker is None or (p / marker).exists())


def find_checkpoint(config: TrainConfig) -> Path | None:
    """The checkpoint ``config.resume_from`` names (None: start afresh). Raises
    :class:`InputError` when it is incomplete or was made with a different training setup."""
    if not config.resume_from:
        return None
    if config.resume_from == "latest":
        found = step_dirs(Path(config.output_dir) / "checkpoints", STATE_FILE)
        if not found:
            note = f"videobgm: no checkpoint in {config.output_dir}; starting at step 0"
            print(note, file=sys.stderr)
            return None
        directory = found[-1]
    else:
        directory = Path(config.resume_from)
        if not (directory / STATE_FILE).exists():
            raise InputError(f"{directory} is not a complete training checkpoint")
    saved = TrainConfig.from_dict(json.loads((directory / STATE_FILE).read_text())["config"])
    changed = config.changes_from(saved)
    if changed:
        raise InputError(f"checkpoint {directory} was made with other {', '.join(changed)}")
    return directory


def render_validation(pipe: Any, config: TrainConfig, directory: Path) -> list[Path]:
    """One spectrogram per validation prompt (seed ``config.seed + i`` for prompt ``i``) as
    ``NN-prompt.png``, and its audio as ``NN-prompt.wav`` when ``config.validation_audio``.
    Returns the images' paths."""
    import torch

    paths.ensure_dir(directory)
    written, images = [], []
    for i, prompt in enumerate(config.validation_prompts):
        image = pipe(
            prompt,
            height=config.resolution_px,
            width=config.resolution_px,
            num_inference_steps=config.validation_inference_steps,
            guidance_scale=config.validation_guidance,
            generator=torch.Generator(device=pipe.device).manual_seed(config.seed + i),
        ).images[0]
        slug = "".join(c if c.isalnum() else "-" for c in prompt)[:40].strip("-")
        target = directory / f"{i:02d}-{slug}.png"
        with paths.atomic_output(target) as tmp:
            image.save(tmp)
        written.append(target)
        images.append(image)
    if config.validation_audio and images:
        clips, rate = spectrogram_audio(images)
        for target, audio in zip(written, clips, strict=True):
            media.write_audio(target.with_suffix(".wav"), audio, rate)
    return written


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """The live objects of one training call."""

    config: TrainConfig
    accelerator: Any
    parts: model.Parts
    unet: Any  # as prepared by accelerate (DDP-wrapped on several GPUs)
    optimizer: Any
    lr_scheduler: Any
    loader: Any
    weight_dtype: Any  # of the frozen weights; the LoRA trains in float32
    max_steps: int
    step: int = 0
    elapsed_s: float = 0.0  # training time, including before a resume

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def _setup(config: TrainConfig, rows: Any) -> _Run:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params

    device = models.default_device()
    precision = config.precision_on(device)
    accelerator = Accelerator(mixed_precision=precision, cpu=device == "cpu")
    set_seed(config.seed)  # the LoRA's initial weights
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    parts = model.load_parts(config.base_model)
    for part in (parts.unet, parts.vae, parts.text_encoder):
        # (a dtype argument, even float32's, makes diffusers warn about upcast modules)
        part.to(accelerator.device, **({} if dtype == torch.float32 else {"dtype": dtype}))
    model.add_lora(parts.unet, config)
    cast_training_params(parts.unet, dtype=torch.float32)
    if config.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(
        [p for p in parts.unet.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    clips = SpectrogramClips(rows, parts.tokenizer, config.resolution_px, config.seed)
    loader = torch.utils.data.DataLoader(
        clips,
        batch_size=config.batch_size,
        sampler=clips.sampler(),
        drop_last=True,
        collate_fn=clips.collate,
        num_workers=config.dataloader_workers,
    )
    unet, optimizer, loader = accelerator.prepare(parts.unet, optimizer, loader)
    if len(loader) == 0:
        need = config.batch_size * accelerator.num_processes
        raise InputError(
            f"dataset {config.dataset} has {len(clips)} clips, fewer than one batch ({need})"
        )
    max_steps = config.max_steps or math.ceil(
        config.epochs * len(loader) / config.gradient_accumulation
    )
    # Not prepared: accelerate would step it once per process and step; here once per step.
    lr_scheduler = get_scheduler(
        config.lr_schedule,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=max_steps,
        num_cycles=config.lr_cycles,
    )
    accelerator.register_for_checkpointing(lr_scheduler)
    run = _Run(config, accelerator, parts, unet, optimizer, lr_scheduler, loader, dtype, max_steps)
    _register_hooks(run)
    return run


def _register_hooks(run: _Run) -> None:
    """Checkpoints hold the LoRA file, not the frozen UNet (3.4 GB for riffusion)."""

    def save_hook(models_, weights, directory):
        if run.is_main:
            for unet in models_:
                model.save_lora(run.accelerator.unwrap_model(unet), directory)
        weights.clear()

    def load_hook(models_, directory):
        while models_:
            model.restore_lora(run.accelerator.unwrap_model(models_.pop()), directory)

    run.accelerator.register_save_state_pre_hook(save_hook)
    run.accelerator.register_load_state_pre_hook(load_hook)


def _restore(run: _Run, checkpoint: Path) -> None:
    run.accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    run.step, run.elapsed_s = int(state["step"]), float(state["elapsed_s"])
    if run.is_main:
        _rewrite_log(run.out / LOG_FILE, run.step)


def _micro_batches(run: _Run, start: int) -> Iterator[dict]:
    """Micro-batches from number ``start`` on, endlessly."""
    epoch, offset = divmod(start, len(run.loader))
    while True:
        source = run.accelerator.skip_first_batches(run.loader, offset) if offset else run.loader
        # accelerate's loaders hand their epoch to the sampler at each pass: set theirs.
        source.set_epoch(epoch)
        yield from source
        epoch, offset = epoch + 1, 0


def _optimizer_step(run: _Run, batches: Iterator[dict]) -> float:
    """One optimizer step over ``gradient_accumulation`` micro-batches; returns the loss
    averaged over micro-batches and processes."""
    accelerator, config = run.accelerator, run.config
    num_timesteps = run.parts.noise_scheduler.config.num_train_timesteps
    run.unet.train()
    total = 0.0
    for i in range(config.gradient_accumulation):
        micro = run.step * config.gradient_accumulation + i
        generator = model.seeded_generator(
            accelerator.device, config.seed, micro, accelerator.process_index
        )
        last = i == config.gradient_accumulation - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(run.unet):
            latents, hidden = model.encode(run.parts, next(batches), generator, run.weight_dtype)
            noise, timesteps = model.draw_noise(latents, generator, num_timesteps)
            loss = model.diffusion_loss(
                run.unet,
                run.parts.noise_scheduler,
                latents,
                noise,
                timesteps,
                hidden,
                config.snr_gamma,
            )
            accelerator.backward(loss / config.gradient_accumulation)
        total = total + loss.detach()
    trainable = [p for p in run.unet.parameters() if p.requires_grad]
    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
    run.optimizer.step()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(total / config.gradient_accumulation, reduction="mean"))


def _loop(run: _Run, stop_after_steps: int | None) -> float:
    from tqdm.auto import tqdm

    config = run.config
    batches = _micro_batches(run, run.step * config.gradient_accumulation)
    stop = min(run.max_steps, run.max_steps if stop_after_steps is None else stop_after_steps)
    clock, loss = time.perf_counter() - run.elapsed_s, math.nan
    with tqdm(
        total=run.max_steps, initial=run.step, desc="LoRA steps", disable=not run.is_main
    ) as progress:
        while run.step < stop:
            lr = run.lr_scheduler.get_last_lr()[0]
            loss = _optimizer_step(run, batches)
            run.step += 1
            run.elapsed_s = time.perf_counter() - clock
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if run.is_main:
                with open(run.out / LOG_FILE, "a", newline="") as handle:
                    csv.writer(handle).writerow((run.step, loss, lr, f"{run.elapsed_s:.3f}"))
            if config.checkpoint_interval and run.step % config.checkpoint_interval == 0:
                _save_checkpoint(run)
            if config.validation_interval and run.step % config.validation_interval == 0:
                _validate(run)
    return loss


def _validate(run: _Run) -> None:
    if run.config.validation_prompts and run.is_main:
        run.unet.eval()
        directory = run.out / "validation" / f"step-{run.step:06d}"
        with run.accelerator.autocast():
            render_validation(run.parts.pipe, run.config, directory)
    run.accelerator.wait_for_everyone()


def _save_checkpoint(run: _Run) -> None:
    directory = run.out / "checkpoints" / f"step-{run.step:06d}"
    run.accelerator.save_state(str(directory))
    if run.is_main:
        state = {"step": run.step, "elapsed_s": run.elapsed_s, "config": run.config.to_dict()}
        with paths.atomic_output(directory / STATE_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=2))
        limit = run.config.checkpoint_limit
        for old in step_dirs(directory.parent)[: -limit if limit else 0]:
            _remove_tree(old)
    run.accelerator.wait_for_everyone()


def _finish(run: _Run) -> None:
    """Save the final LoRA (atomically) and render the last validation."""
    if run.is_main:
        with paths.atomic_output(run.out / LORA_FILE) as tmp:
            model.save_lora(run.accelerator.unwrap_model(run.unet), tmp.parent, tmp.name)
    interval = run.config.validation_interval
    if not interval or run.step % interval:
        _validate(run)
    run.accelerator.wait_for_everyone()


def _clear_outputs(run: _Run) -> None:
    """A fresh run replaces a previous run's outputs in its folder."""
    if run.is_main:
        for folder in ("checkpoints", "validation"):
            for old in step_dirs(run.out / folder):
                _remove_tree(old)
        (run.out / LORA_FILE).unlink(missing_ok=True)
        _rewrite_log(run.out / LOG_FILE, 0)
    run.accelerator.wait_for_everyone()


def _rewrite_log(path: Path, keep_up_to_step: int) -> None:
    """Start the log afresh, keeping the rows up to a resumed step (a resume never
    duplicates rows)."""
    rows = []
    if keep_up_to_step > 0 and path.exists():
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_up_to_step]
    with paths.atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _remove_tree(path: Path) -> None:
    (path / STATE_FILE).unlink(missing_ok=True)  # first, so that it never looks complete
    shutil.rmtree(path, ignore_errors=True)


def _release(run: _Run | None) -> None:
    """End the run (also one that failed in setup), so that a later call in this process may
    choose another mixed precision (accelerate keeps its state in a process-wide singleton)."""
    from accelerate.state import AcceleratorState

    if run is not None:
        run.accelerator.end_training()
        run.accelerator.free_memory()
    AcceleratorState._reset_state()
