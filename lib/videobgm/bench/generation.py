"""Riffusion generation (issue 5): ours (batched, DPM-Solver++ at 20 steps; fp16 and SDPA on
CUDA) against the original project's way (one clip per pipeline call, PNDM at 50 steps).

On a CPU both run with the tiny model (the plumbing's cost: scheduler, batching, text and VAE
passes), and the full-size architecture (SD 1.5 with random weights, built in memory) is timed
per denoising step and per VAE pass on the same device, from which one full-size clip is
projected for both ways:
``denoising steps x step time + VAE encode + VAE decode``, with ``int(steps x strength)``
denoising steps (img2img skips the rest). The GPU section measures full-size clips directly.
"""

from __future__ import annotations

from videobgm import generate, prompts
from videobgm.bench import baselines
from videobgm.bench.core import in_section, median_time, row
from videobgm.models import full as bench_models
from videobgm.models import profiles as models

STRENGTH = 0.75  # img2img strength (the original project's)


def clip_requests(count: int, seed: int = 0) -> list:
    """``count`` clip requests walking from a joy prompt to a sadness prompt (alpha evenly
    spaced), seeded, from each emotion's seed spectrogram, as a composition makes them."""

    table = prompts.load_prompts()
    joy, sad = table["joy"], table["sadness"]
    start = generate.PromptInput(joy.prompts[0], seed, STRENGTH, 7.0, joy.negative_prompt)
    end = generate.PromptInput(sad.prompts[0], seed + 1, STRENGTH, 7.0, sad.negative_prompt)
    image, end_image = generate.seed_image("joy", seed), generate.seed_image("sadness", seed)
    return [
        generate.ClipRequest(start, end, image, k / max(count - 1, 1), end_image)
        for k in range(count)
    ]


def bench_generation(
    repeats: int = 3, device: str | None = None, full: bool = False, clips: int = 2,
    steps: int = 20, baseline_steps: int = 50, full_size: bool = True,
) -> list[dict]:  # fmt: skip
    """Tiny model: seconds per clip, ours against the original way, on ``device``; then, with
    ``full_size``, the SD 1.5 architecture's step and VAE times on the CPU and the projected
    full-size clip (with ``full``: a warm-up and two timed steps, and batch 4 too)."""

    device = device or models.default_device()
    riff = generate.riffusion_from_refs(models.TINY.diffusion, models.TINY.lora, device)
    requests = clip_requests(clips)
    t_ours = median_time(
        lambda: riff.generate(requests, steps=steps, progress=False), max(1, repeats // 2)
    )
    t_base = original_time(riff, requests, baseline_steps, max(1, repeats // 3))
    batch = generate.DEFAULT_BATCH if device.startswith("cuda") else 1
    rows = [
        row(
            f"riffusion generation, tiny model, {clips} clips",
            "s/clip",
            t_ours / clips,
            t_base / clips,
            note=f"ours: DPM-Solver++ {steps} steps, batch {batch}, on {device}; baseline: "
            f"PNDM {baseline_steps} steps, one clip per pipeline call; img2img strength "
            f"{STRENGTH} runs {int(steps * STRENGTH)} vs {int(baseline_steps * STRENGTH)} steps. "
            "A random tiny UNet: overheads, not full-size speed",
        )
    ]
    if full_size:
        rows += full_size_projection(steps, baseline_steps, full, device)
    return in_section("generation", rows)


def original_time(riff, requests, steps: int, repeats: int) -> float:
    """Median seconds of the original way for ``requests`` with ``riff``'s pipeline, on the
    same CPU threads as ours."""

    with models.model_threads(riff.ref, str(riff.device)):  # the same threads as ours
        return median_time(lambda: baselines.original_generate(riff.pipe, requests, steps),
                           repeats, warmup=0)  # fmt: skip


def _synced(fn, device):
    """``fn`` followed by a CUDA synchronisation when ``device`` is a GPU (kernels run
    asynchronously: without it the clock would stop before they finish)."""
    import torch

    if device.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(device)

    return run


def unet_step_time(pipe, batch: int, repeats: int = 1, warmup: int = 0) -> float:
    """Seconds of one UNet forward pass with classifier-free guidance for ``batch`` clips
    (``2 x batch`` latents of 64 x 64, 77 text tokens), median of ``repeats``."""
    import torch

    unet = pipe.unet
    latents = torch.randn(2 * batch, 4, 64, 64, device=unet.device, dtype=unet.dtype)
    width = pipe.text_encoder.config.hidden_size
    context = torch.randn(2 * batch, 77, width, device=unet.device, dtype=unet.dtype)
    step = _synced(lambda: unet(latents, 500, encoder_hidden_states=context), unet.device)
    with torch.inference_mode():
        return median_time(step, repeats, warmup)


def vae_times(pipe) -> tuple[float, float]:
    """Seconds of one VAE encode (a 512 px image) and one decode (64 x 64 latents)."""
    import torch

    vae = pipe.vae
    image = torch.randn(1, 3, 512, 512, device=vae.device, dtype=vae.dtype)
    latents = torch.randn(1, 4, 64, 64, device=vae.device, dtype=vae.dtype)
    with torch.inference_mode():
        encode = median_time(_synced(lambda: vae.encode(image), vae.device), 1, 0)
        decode = median_time(_synced(lambda: vae.decode(latents), vae.device), 1, 0)
    return encode, decode


def full_size_projection(
    steps: int, baseline_steps: int, full: bool = False, device: str = "cpu", sizes=None
) -> list[dict]:
    """SD 1.5 (random weights; float32 on a CPU, fp16 on CUDA): one denoising step at batch 1
    (and 4 with ``full``), VAE encode and decode, and the projected seconds per clip for both
    ways. ``sizes`` (:class:`videobgm.models.full.DiffusionSizes`) replaces SD 1.5's."""
    import torch

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = bench_models.diffusion_pipeline(sizes).to(device, dtype)
    repeats, warmup = (2, 1) if full else (1, 0)
    step = {1: unet_step_time(pipe, 1, repeats, warmup)}
    if full:
        step[4] = unet_step_time(pipe, 4, repeats, warmup) / 4
    encode, decode = vae_times(pipe)
    best = min(step, key=step.get)
    ours = int(steps * STRENGTH) * step[best] + encode + decode
    theirs = int(baseline_steps * STRENGTH) * step[1] + encode + decode
    note = f"SD 1.5 UNet/VAE/CLIP-L sizes, random weights, {dtype} on {device}; {repeats} timed"
    rows = [
        row("full-size UNet step (CFG pair), batch 1", "s", step[1], None, note=note),
        row(
            "full-size VAE encode + decode, one clip",
            "s",
            encode + decode,
            None,
            note=f"encode {encode:.2f} s, decode {decode:.2f} s",
        ),  # fmt: skip
        row(
            f"full-size clip, projected: {steps} vs {baseline_steps} steps",
            "s/clip",
            ours,
            theirs,
            note=f"projected: int(steps x {STRENGTH}) x step time (batch {best} per clip) + "
            "VAE encode + decode, from the times measured above; the scheduler's own cost is "
            "negligible beside a UNet step",
        ),
    ]
    if full:
        rows.insert(1, row("full-size UNet step (CFG pair), batch 4, per clip", "s", step[4],
                           step[1], note=note))  # fmt: skip
    return rows
