"""Batch engines (issue 16): a folder of short videos, local sequential against Ray.

The folder holds :data:`VIDEOS` clips of :data:`CLIP_S` cut from the demo story (speech over
music, no captions beside them, so every stage runs). Both engines run it the way
``videobgm run DIR`` does: :func:`videobgm.pipeline.run_folder` (one video after another in
this process) and :func:`videobgm.engine.run_files` (``--engine ray``) on a new local Ray on
this machine, started once (its start-up is reported apart from the steady state). The runs
alternate, local, Ray, local, Ray, each into fresh run folders, and the medians are reported:
the machine is shared, and both sides of the ratio meet the same load that way.

Per-stage seconds per video come from each run folder's ``stages.json`` (what the pipeline
records for every stage it runs). The projection to N GPUs is arithmetic on them, not a
measurement (:func:`project`). With a CUDA device both engines run on it (Ray's actor pools
take GPU shares); without one the GPU figure says it was not measured.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from videobgm import engine, media, models, paths, pipeline
from videobgm.bench.core import in_section, profile_env, row, skipped
from videobgm.engine import cluster

VIDEOS = 4  # videos in the bench folder
CLIP_S = 10.0  # s per video, cut from the demo story
ROUNDS = 2  # interleaved local/Ray pairs (--full: 3); medians over them
PROFILE = "tiny"  # the models measured: the real ones cannot be downloaded here
GPU_COUNTS = (1, 2, 4, 8)  # GPUs of the projection
CPUS_PER_GPU = 8  # CPUs per GPU of a projected node (cloud GPU machines have 8-16)
FOREVER = 10**6  # videos in the projected queue: actor pools grow to what the cluster holds
# The pipeline's stages, named as the issue names them (the Ray step each belongs to).
STAGE_LABELS = {
    "vad": "vad", "transcribe": "transcribe", "timeline": "classify", "separate": "separate",
    "compose": "generate", "rank": "rank", "mix": "mix", "deliver": "mux", "report": "report",
}  # fmt: skip
PROJECTION = (
    "projection, not measured: each Ray step's per-video seconds (the sum of its stages', "
    "measured by the local run, which loads each stage's models for every video where an "
    "actor loads them once: an overstatement for model steps) divided among its actors (GPU "
    "shares {shares}: actors = floor(GPUs / share)), the finish step (mix, mux, report) among "
    "the CPUs the actors leave free ({cpus} CPUs per GPU, 1 per task); throughput = the "
    "slowest step's. Assumes a stage takes on a GPU actor what it took here and ignores "
    "start-up and transfers"
)


def clip_folder(videos: int = VIDEOS, seconds: float = CLIP_S, out_dir: Path | None = None) -> Path:
    """A folder of ``videos`` clips of ``seconds`` each, cut from ``data/samples/story.mp4``
    at successive offsets (wrapping round the story), re-encoded so each is exactly that long.
    Built once into ``data/interim/engine-videos/`` and reused. Returns the folder."""
    source = paths.samples() / "story.mp4"
    story_s = media.probe(source).duration_s
    if seconds > story_s:
        raise ValueError(f"clips of {seconds:g} s do not fit the {story_s:.1f} s story")
    base = Path(out_dir) if out_dir else paths.interim() / "engine-videos"
    folder = paths.ensure_dir(base / f"{videos}x{seconds:g}s")
    for k in range(videos):
        clip = folder / f"clip{k:02d}.mp4"
        if clip.exists():
            continue
        start_s = (k * seconds) % (story_s - seconds + 1e-9)
        with paths.atomic_output(clip) as tmp:
            media.run_ffmpeg(
                ["-y", "-loglevel", "error", "-ss", f"{start_s:.3f}", "-t", f"{seconds:.3f}",
                 "-i", str(source), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                 "-f", "mp4", str(tmp)], clip, "cutting a bench clip",
            )  # fmt: skip
    return folder


def stage_seconds(runs_dir: Path) -> dict[str, float]:
    """Mean seconds per video of each stage over the run folders in ``runs_dir``, read from
    their ``stages.json`` (stages in pipeline order; a stage no folder ran is left out)."""
    logs = [json.loads(p.read_text()) for p in sorted(Path(runs_dir).glob("*/" + paths.RUN_STAGES))]
    if not logs:
        raise ValueError(f"{runs_dir}: no run folder with a {paths.RUN_STAGES}")
    return {
        stage: sum(log[stage]["seconds"] for log in logs if stage in log) / len(logs)
        for stage in pipeline.STAGES
        if any(stage in log for log in logs)
    }


def step_seconds(stages: dict[str, float]) -> dict[str, float]:
    """Per-video seconds of each Ray step (:data:`videobgm.engine.STEPS`): its stages' sum."""
    return {
        step: sum(stages.get(stage, 0.0) for stage in names)
        for step, names in cluster.STEPS.items()
    }


def project(
    stages: dict[str, float],
    gpus: int,
    shares: dict[str, float] | None = None,
    cpus_per_gpu: float = CPUS_PER_GPU,
) -> dict:
    """Videos per minute on ``gpus`` GPUs with ``cpus_per_gpu`` CPUs each, from per-video
    stage seconds (see :data:`PROJECTION`): the actor pools are what
    :func:`videobgm.engine.plan` gives a long queue with GPU ``shares`` (default: the real
    models' :data:`videobgm.engine.cluster.REAL_GPUS`). Returns ``videos_per_min``, the
    ``bottleneck`` step and, per step, its ``actors``, ``seconds`` and ``videos_per_min``."""
    shares = dict(shares or cluster.REAL_GPUS)
    cpus = gpus * cpus_per_gpu
    plans = cluster.plan(models.TINY, FOREVER, {"GPU": gpus, "CPU": cpus}, shares)
    reserved = sum(p.actors * p.cpus for p in plans if p.actors)
    seconds = step_seconds(stages)
    steps = {}
    for p in plans:
        workers = p.actors or max(1, int((cpus - reserved) // p.cpus))
        rate = 60.0 * workers / seconds[p.name] if seconds[p.name] > 0 else float("inf")
        steps[p.name] = {"actors": workers, "seconds": seconds[p.name], "videos_per_min": rate}
    bottleneck = min(steps, key=lambda name: steps[name]["videos_per_min"])
    return {
        "gpus": gpus,
        "videos_per_min": steps[bottleneck]["videos_per_min"],
        "bottleneck": bottleneck,
        "steps": steps,
    }


# --------------------------------------------------------------------------- measuring


def _say(line: str) -> None:
    print(f"bench engine: {line}", file=sys.stderr, flush=True)


def run_local(folder: Path, work: Path, params: dict) -> dict:
    """``videobgm run FOLDER`` (local sequential) into ``work``: wall seconds, videos done,
    per-stage seconds per video. Raises when a video fails (the figure would be wrong)."""
    started = time.perf_counter()
    results, failures = pipeline.run_folder(
        folder, work / "out", work / "runs", progress=False, **params
    )
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"local run failed: {next(iter(failures.values()))}")
    return {"seconds": seconds, "videos": len(results), "stages": stage_seconds(work / "runs")}


def run_ray(folder: Path, work: Path, params: dict) -> dict:
    """``videobgm run FOLDER --engine ray`` on the connected cluster into ``work``: as
    :func:`run_local`, plus each Ray step's mean seconds per video (model loads included)."""
    started = time.perf_counter()
    items = engine.run_files(
        engine.media_files(folder), work / "out", work / "runs", progress=False, **params
    )
    seconds = time.perf_counter() - started
    failed = [item for item in items if not item.ok]
    if failed:
        raise RuntimeError(f"Ray run failed: {failed[0].input.name}: {failed[0].error}")
    steps = {
        step: statistics.fmean(item.seconds.get(step, 0.0) for item in items)
        for step in cluster.STEPS
    }
    return {
        "seconds": seconds, "videos": len(items), "stages": stage_seconds(work / "runs"),
        "steps": steps,
    }  # fmt: skip


def start_ray() -> dict:
    """A new local Ray on all of this machine's CPUs (three tries: :func:`engine.start_local`),
    or the one this process is already connected to. Seconds it took, tries, resources."""
    import ray  # deferred: an optional extra, slow to import

    if ray.is_initialized():
        return {"seconds": None, "tries": 0, "resources": dict(ray.cluster_resources())}
    started = time.perf_counter()
    tries = engine.start_local()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tries": tries, "resources": dict(ray.cluster_resources())}


def measure(folder: Path, rounds: int, params: dict) -> dict:
    """Local and Ray runs of ``folder``, alternating, ``rounds`` of each, after one untimed
    local run of one clip (imports and the tiny models' first build)."""
    import ray  # deferred: an optional extra

    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="videobgm-bench-engine-") as tmp:
        work = Path(tmp)
        warm = paths.ensure_dir(work / "warm-in")
        shutil.copy(sorted(folder.glob("*.mp4"))[0], warm / "clip.mp4")
        run_local(warm, work / "warm", params)
        started_here = not ray.is_initialized()
        startup = start_ray()
        try:
            for k in range(rounds):
                for name, run in (("local", run_local), ("ray", run_ray)):
                    found = run(folder, work / f"{name}-{k}", params)
                    runs[name].append(found)
                    _say(f"round {k + 1}/{rounds} {name:5} {found['seconds']:.1f} s")
        finally:
            if started_here:
                ray.shutdown()
    return {"runs": runs, "startup": startup}


def medians(runs: list[dict]) -> dict:
    """Median wall seconds, videos per minute and per-stage seconds per video of ``runs``."""
    seconds = statistics.median(r["seconds"] for r in runs)
    stages = {
        stage: statistics.median(r["stages"].get(stage, 0.0) for r in runs)
        for stage in runs[0]["stages"]
    }
    return {
        "seconds": seconds,
        "videos_per_min": 60.0 * runs[0]["videos"] / seconds,
        "per_round_s": [round(r["seconds"], 2) for r in runs],
        "stages": stages,
    }


# --------------------------------------------------------------------------- rows


def bench_engine(
    repeats: int = ROUNDS, device: str | None = None, full: bool = False,
    videos: int = VIDEOS, seconds: float = CLIP_S, rounds: int | None = None,
    music: str = "auto", profile: str = PROFILE,
) -> list[dict]:  # fmt: skip
    """Videos per minute of ``videos`` clips of ``seconds``: local sequential against Ray on
    this machine (medians of ``rounds`` alternating runs; default 2, 3 with ``full``), Ray's
    start-up, per-stage seconds per video, and the projection to :data:`GPU_COUNTS` GPUs.
    ``repeats`` (the cheap figures' count) is not used: a round is a whole batch."""
    try:
        import ray  # noqa: F401 - only whether the extra is installed
    except ImportError:
        return [skipped("engine", "videos per minute, local vs Ray", "the [ray] extra is not "
                        "installed (pip install 'videobgm[ray]')")]  # fmt: skip
    import torch  # deferred: heavy

    gpu = torch.cuda.is_available()
    device = device or ("cuda" if gpu else "cpu")
    rounds = rounds or (3 if full else ROUNDS)  # whole batches: not the cheap figures' repeats
    params = {"profile": profile, "music": music, "sidecar": "", "device": device}
    folder = clip_folder(videos, seconds)
    with profile_env(profile):
        found = measure(folder, rounds, params)
    local, on_ray = medians(found["runs"]["local"]), medians(found["runs"]["ray"])
    projection = [project(local["stages"], n) for n in GPU_COUNTS]
    data = {
        "videos": videos, "clip_s": seconds, "rounds": rounds, "device": device,
        "profile": profile, "music": music, "local": local, "ray": on_ray,
        "ray_steps": [r["steps"] for r in found["runs"]["ray"]], "startup": found["startup"],
        "projection": projection, "cpus_per_gpu": CPUS_PER_GPU, "shares": cluster.REAL_GPUS,
        "labels": STAGE_LABELS,
    }  # fmt: skip
    rows = throughput_rows(data) + stage_rows(data) + projection_rows(data)
    if not device.startswith("cuda"):
        why = f"--device {device}: not measured on the GPU" if gpu else "no GPU: not measured"
        rows.append(skipped("engine", "videos per minute with actor pools on a GPU", why))
    rows[0]["data"] = {"engine": data}
    return in_section("engine", rows)


def throughput_rows(data: dict) -> list[dict]:
    """Videos per minute (Ray against local; ratio Ray / local) and Ray's start-up."""
    local, on_ray, startup = data["local"], data["ray"], data["startup"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    what = f"{data['videos']} x {data['clip_s']:g} s videos, {data['profile']} models"
    return [
        row(f"videos per minute, {what}, Ray vs local sequential ({data['device']})",
            "videos/min", on_ray["videos_per_min"], local["videos_per_min"],
            higher_is_better=True,
            note=f"medians of {data['rounds']} alternating runs each (local, Ray, ...); "
            f"batch seconds per round: local {local['per_round_s']}, Ray "
            f"{on_ray['per_round_s']}; load average {load:.1f} after the runs. Expected on "
            "2 cores: about equal at best, as Ray has no idle hardware to use here and adds "
            "worker processes, their imports and model loads, and stages of several videos "
            "sharing the cores"),
        row("Ray local cluster start-up", "s", startup["seconds"], None, kind="cost",
            note=(f"ray.init of a new local cluster ({startup['tries']} tries; up to "
                  f"{engine.START_TRIES})" if startup["tries"] else "a cluster this process "
                  "had already joined: not measured") + ", not in the videos per minute "
            f"above; resources {startup['resources']}"),
    ]  # fmt: skip


def stage_rows(data: dict) -> list[dict]:
    """Seconds per video of each stage that ran: Ray (ours column) beside local."""
    local, on_ray = data["local"]["stages"], data["ray"]["stages"]
    rows = [
        row(f"seconds per video: {STAGE_LABELS[stage]}"
            + (f" ({stage})" if STAGE_LABELS[stage] != stage else ""),
            "s/video", on_ray.get(stage), local[stage], kind="cost")
        for stage in local
    ]  # fmt: skip
    rows[0]["note"] = (
        "each run folder's stages.json, mean over the videos, median over the rounds; ours "
        "column: Ray, baseline column: local. Under Ray the stages of several videos overlap "
        "on the same cores, so each takes longer than alone"
    )
    return rows


def projection_rows(data: dict) -> list[dict]:
    """Projected videos per minute on each GPU count (labelled: projection, not measured)."""
    shares = ", ".join(f"{k} {v:g}" for k, v in data["shares"].items())
    note = PROJECTION.format(shares=shares, cpus=data["cpus_per_gpu"])
    rows = []
    for p in data["projection"]:
        actors = ", ".join(f"{k} {v['actors']}" for k, v in p["steps"].items())
        rows.append(
            row(f"videos per minute on {p['gpus']} GPU(s) (projection, not measured)",
                "videos/min", p["videos_per_min"], None, kind="cost",
                note=f"bottleneck: {p['bottleneck']}; actors/tasks: {actors}")
        )  # fmt: skip
    rows[0]["note"] = f"{note}; " + rows[0]["note"]
    return rows
