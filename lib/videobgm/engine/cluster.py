"""A Ray cluster for videobgm: connecting to it, and what each stage asks of it.

A batch run splits a video's stages into five steps, each a contiguous stretch of
:data:`videobgm.pipeline.STAGES`. The four model steps run in actor pools (each actor loads its
models once and keeps them for every video it is given); ``finish`` (mix, mux, report) runs as
plain CPU tasks. GPU shares are Ray scheduling shares, not memory limits: the defaults for the
real models add up to one GPU, so one GPU holds one actor of each step at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from videobgm import models
from videobgm.errors import InputError

# step -> the pipeline stages it runs, in the pipeline's order
STEPS: dict[str, tuple[str, ...]] = {
    "transcribe": ("vad", "transcribe"),
    "classify": ("timeline",),
    "separate": ("separate",),
    "generate": ("compose", "rank"),
    "finish": ("mix", "deliver", "report"),
}
MODEL_STEPS = ("transcribe", "classify", "separate", "generate")  # actor pools
# GPU share of one actor when the step loads a real model (Whisper turbo ~6 GiB, distilroberta
# ~0.5 GiB, htdemucs ~3 GiB, riffusion fp16 + LoRA ~6-8 GiB): together one GPU.
REAL_GPUS = {"transcribe": 0.3, "classify": 0.1, "separate": 0.2, "generate": 0.4}
TINY_GPUS = 0.05  # GPU share of an actor whose models are the tiny offline ones
ACTOR_CPUS = 0.25  # CPUs reserved per model actor: its work is on the GPU when there is one
FINISH_CPUS = 1.0  # CPUs per finish task (mix, mux: numpy and ffmpeg)
# Driver variables the workers of an existing cluster (`ray start`) must see as well.
FORWARDED_ENV = (
    "VIDEOBGM_PROFILE", "VIDEOBGM_HOME", "VIDEOBGM_DEVICE", "VIDEOBGM_SHARED",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "OMP_WAIT_POLICY",
)  # fmt: skip
# Tries at starting a local Ray: on an overloaded machine its raylet can crash while it waits
# for its agent, or miss Ray's fixed 30 s registration wait; a second try usually starts.
START_TRIES = 3


@dataclass(frozen=True)
class StepPlan:
    """How one step runs on the cluster: its stages and the resources of one actor (task)."""

    name: str
    stages: tuple[str, ...]
    gpus: float  # GPU share per actor (0 on a CPU-only cluster)
    cpus: float  # CPUs reserved per actor or task
    actors: int  # largest actor pool (0: plain tasks)


def parse_gpus(text: str | None) -> dict[str, float]:
    """``"transcribe=0.5,generate=1"`` -> ``{"transcribe": 0.5, "generate": 1.0}``; one
    InputError sentence for an unknown step or a share outside (0, 8]."""
    shares: dict[str, float] = {}
    for part in filter(None, (text or "").replace(" ", "").split(",")):
        name, _, value = part.partition("=")
        if name not in MODEL_STEPS:
            raise InputError(
                f"--gpus-per-stage: unknown stage {name!r}; the model stages are "
                f"{', '.join(MODEL_STEPS)} (e.g. generate=0.5)"
            )
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not 0 < share <= 8:
            raise InputError(f"--gpus-per-stage: {part!r} needs a GPU share in (0, 8], e.g. 0.5")
        shares[name] = share
    return shares


def _stage_refs(profile: models.ModelProfile, step: str) -> tuple[str, ...]:
    """The model references a step loads (what decides its GPU share)."""
    return {
        "transcribe": (profile.whisper_cuda, profile.whisper_translate),
        "classify": (profile.emotion,),
        "separate": (profile.separator if profile.separator != "spectral" else "tiny:",),
        "generate": (profile.diffusion,),
    }[step]


def default_gpus(profile: models.ModelProfile) -> dict[str, float]:
    """Each model step's GPU share for ``profile``: :data:`REAL_GPUS` for a real model,
    :data:`TINY_GPUS` when all it loads is a tiny model (or none)."""
    return {
        step: TINY_GPUS
        if all(ref.startswith("tiny:") for ref in _stage_refs(profile, step))
        else REAL_GPUS[step]
        for step in MODEL_STEPS
    }


def plan(
    profile: models.ModelProfile,
    videos: int,
    cluster: dict[str, float],
    overrides: dict[str, float] | None = None,
) -> list[StepPlan]:
    """The steps' resources on a cluster with ``cluster`` resources (Ray's ``{"CPU": n,
    "GPU": m}``) for ``videos`` videos. Without GPUs every share is 0 and the models run on
    the CPU. An actor pool grows to what the cluster holds, at most one actor per video."""
    gpus_total = float(cluster.get("GPU", 0))
    cpus_total = float(cluster.get("CPU", 1))
    shares = default_gpus(profile) | (overrides or {})
    if overrides and not gpus_total:
        raise InputError("--gpus-per-stage was given, but the Ray cluster has no GPU")
    steps = []
    for step in MODEL_STEPS:
        gpus = shares[step] if gpus_total else 0.0
        room = gpus_total / gpus if gpus else cpus_total / ACTOR_CPUS / len(MODEL_STEPS)
        actors = max(1, min(videos, int(room + 1e-9)))  # 1e-9: 4 / 0.4 is 10 actors, not 9
        steps.append(StepPlan(step, STEPS[step], gpus, ACTOR_CPUS, actors))
    steps.append(StepPlan("finish", STEPS["finish"], 0.0, FINISH_CPUS, 0))
    return steps


def connect(address: str | None = None) -> dict[str, float]:
    """Join the Ray cluster at ``address`` (``auto``: the one ``ray start`` made on this
    machine's network; ``ray://host:10001``: a remote one; None: ``$RAY_ADDRESS``, else a new
    local one on this machine). Reuses a connection this process already has. Returns the
    cluster's resources (``{"CPU": ..., "GPU": ...}``)."""
    import ray  # deferred: an optional extra, and slow to import

    if not ray.is_initialized():
        remote = bool(address or os.environ.get("RAY_ADDRESS"))
        if not remote:
            start_local()
            return dict(ray.cluster_resources())
        # Workers of a cluster started elsewhere do not inherit this shell's variables.
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=True, logging_level="WARNING")  # fmt: skip
        except ConnectionError as exc:
            raise InputError(f"cannot reach a Ray cluster at {address!r}: {exc}") from exc
    return dict(ray.cluster_resources())


def start_local(num_cpus: int | None = None, tries: int = START_TRIES) -> int:
    """Start a new Ray on this machine (``num_cpus``: None for all of them), up to ``tries``
    times; its workers inherit this process's environment. Returns the tries it took; the
    last try's error is raised when none started. Tests and benchmarks start theirs here."""
    import ray  # deferred: an optional extra, and slow to import

    for attempt in range(1, tries + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                     logging_level="WARNING")  # fmt: skip
            return attempt
        except Exception:  # noqa: BLE001 - Ray's start-up errors have no common type
            ray.shutdown()  # what the failed try started, before the next
            if attempt == tries:
                raise
    raise ValueError(f"tries must be at least 1, not {tries}")


def map_unordered(
    function: Callable[[Any], Any], items: Iterable[Any], cpus: float = 1.0, window: int = 0
) -> Iterator[Any]:
    """``function`` over ``items`` as Ray tasks (on the connected cluster), results as they
    finish; at most ``window`` tasks in flight (default: twice the cluster's CPUs). A task's
    exception is raised here, after the tasks in flight are cancelled."""
    import ray  # deferred: an optional extra

    remote = ray.remote(num_cpus=cpus, max_retries=2)(_on_one_thread)
    window = window or max(2, int(2 * ray.cluster_resources().get("CPU", 1)))
    queue, pending = iter(items), []
    try:
        while True:
            while len(pending) < window and (item := next(queue, None)) is not None:
                pending.append(remote.remote(function, item))
            if not pending:
                return
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise


def _on_one_thread(function: Callable[[Any], Any], item: Any) -> Any:
    """``function(item)`` on one torch thread, as the local curation's workers run it (the same
    numbers, byte for byte, whatever a node's core count)."""
    with models.torch_threads(1):
        return function(item)
