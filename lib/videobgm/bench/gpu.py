"""On a GPU: full-size riffusion clips per second (50 and 20 steps, batch 1 and 8, fp16, SDPA)
against the original project's way, what dominates a batch (torch profiler), and a 10-minute
video end to end with the full-size architectures (the ``bench`` profile). Without a CUDA
device the section returns one row saying so. (The codec and transcription sections measure
on CUDA by themselves when it is the default device.)

The GPU machine has torch, transformers, peft and accelerate, but not diffusers,
openai-whisper or imageio-ffmpeg (nor, possibly, librosa, pyloudnorm, soundfile): carry them
as wheels. Here: ``pip download --no-deps -d wheels diffusers==<pinned> imageio-ffmpeg
tiktoken`` and ``pip wheel --no-deps -w wheels openai-whisper`` (an sdist; it also imports
numba, large: check ``pip list`` there first), then on the GPU machine ``pip install --no-deps
wheels/*.whl`` and ``python -m videobgm.bench --only gpu --only codec --only transcription``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from videobgm import generate, paths, pipeline, sample
from videobgm.bench.core import NO_CUDA, in_section, median_time, profile_env, row, skipped
from videobgm.bench.generation import clip_requests, original_time
from videobgm.models import full as bench_models
from videobgm.models import profiles as models

GOAL_CLIPS_PER_S = 8.0  # at 20 steps with batching, H200-class (issue 9)
GOAL_E2E_S = 30.0  # a 10-minute video end to end


def cuda_missing(device: str) -> str | None:
    """The reason a CUDA measurement cannot run on ``device``, or None when it can."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return NO_CUDA
    return None


def bench_gpu(
    repeats: int = 3, device: str | None = None, full: bool = False, profile=None,
    clips: int = 16, steps: tuple[int, ...] = (50, 20), batches: tuple[int, ...] = (1, 8),
    minutes: float | None = 10.0, baseline_steps: int = 50,
) -> list[dict]:  # fmt: skip
    """Clips per second for every (steps, batch) against the original way (``baseline_steps``
    PNDM steps, one clip per call), the top kernels of one batch, and (``minutes``) a whole
    video at the fewest ``steps`` with ``profile`` (default ``bench``) on ``device`` (default
    ``cuda``; the tiny profile on a CPU exercises the code in tests)."""

    device = device or "cuda"
    reason = cuda_missing(device)
    if reason:
        return [skipped("gpu", "GPU benchmarks (generation, profile, end to end)", reason)]
    profile = profile or models.BENCH
    riff = generate.riffusion_from_refs(profile.diffusion, profile.lora, device)
    requests = clip_requests(clips)
    base_n = max(1, min(clips, 4))
    t_base = original_time(riff, requests[:base_n], baseline_steps, 1) / base_n
    rows = []
    for n_steps in steps:
        for batch in batches:
            t = median_time(lambda s=n_steps, b=batch: riff.generate(
                requests, steps=s, batch_size=b, progress=False), repeats)  # fmt: skip
            goal = n_steps == 20 and batch > 1
            rows.append(row(
                f"riffusion clips per second, {n_steps} steps, batch {batch}", "clips/s",
                clips / t, 1 / t_base, higher_is_better=True,
                bar=f">= {GOAL_CLIPS_PER_S:g} clips/s" if goal else "",
                meets_bar=clips / t >= GOAL_CLIPS_PER_S if goal else None,
                note=f"{profile.diffusion}, {riff.dtype}, {device}; baseline: PNDM "
                f"{baseline_steps} steps, one clip per pipeline call",
            ))  # fmt: skip
    rows.append(_profile_batch(riff, requests[: max(batches)], min(steps)))
    riff = None  # with the loaders cleared below, nothing holds the pipeline any more
    models.release_models()  # the end-to-end run's peak must be its own
    if minutes:
        rows += _end_to_end(profile, device, minutes, min(steps))
    return in_section("gpu", rows)


def _profile_batch(riff, requests, steps: int) -> dict:
    """The five operators with the most device time in one batch (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cuda = str(riff.device).startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        riff.generate(requests, steps=steps, batch_size=len(requests), progress=False)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:5]
    total = sum(getattr(e, key, 0) for e in prof.key_averages()) or 1
    top = "; ".join(f"{e.key} {100 * getattr(e, key, 0) / total:.0f} %" for e in events)
    return row(
        f"what dominates a batch of {len(requests)} at {steps} steps",
        "",
        None,
        None,
        note=f"top operators by self {'device' if cuda else 'CPU'} time: {top}",
    )


GPU_BUDGET_GB = 8.0  # peak GPU memory of a whole run (issue 12): one stage's models at a time


def _end_to_end(profile, device: str, minutes: float, steps: int) -> list[dict]:
    """``pipeline.run`` on a generated video with the timeline given (as the goal counts it:
    117 clips, decode, mix, mux), Whisper decoding fixed tokens if it runs; and the run's
    peak GPU memory (models released between stages)."""
    import json
    import time

    import torch

    video = sample.long_video(60 * minutes, size=(320, 180), fps=15)
    timeline = video.with_name(f"{video.stem}.timeline.json")
    with (
        tempfile.TemporaryDirectory() as tmp,
        bench_models.fixed_tokens(),
        profile_env(profile.name),
    ):
        run_dir = Path(tmp) / "run"
        cuda = device.startswith("cuda")  # (the tests run this on a CPU with tiny models)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        pipeline.run(video, Path(tmp) / "out.mp4", run_dir, progress=False, profile=profile,
                     music="riffusion", separator="spectral", timeline=str(timeline),
                     device=device, steps=steps)  # fmt: skip
        seconds = time.perf_counter() - started
        peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        stages = json.loads((run_dir / paths.RUN_STAGES).read_text())
    by_stage = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in stages.items())
    ten = minutes == 10
    rows = [row(
        f"end to end with full-size models, {minutes:g}-minute video", "s", seconds, None,
        bar=f"< {GOAL_E2E_S:g} s" if ten else "", meets_bar=seconds < GOAL_E2E_S if ten else None,
        note=f"{profile.name} profile on {device}, riffusion at {steps} steps, timeline given; "
        f"stages: {by_stage} s",
    )]  # fmt: skip
    if peak_gb is not None:
        rows.append(row(
            "peak GPU memory of that run", "GB", peak_gb, None, bar=f"< {GPU_BUDGET_GB:g} GB",
            meets_bar=peak_gb < GPU_BUDGET_GB, kind="cost",
            note="torch.cuda.max_memory_allocated over the whole run; each stage's models are "
            "released when it ends (Whisper does not run: the timeline is given)",
        ))  # fmt: skip
    return rows
