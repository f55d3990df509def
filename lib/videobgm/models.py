"""Model profiles, the tiny offline models, and the loaders every stage goes through.

A :class:`ModelProfile` names each model the pipeline loads. ``PRETRAINED`` is what users get
(Whisper, j-hartmann's DistilRoBERTa emotion classifier, riffusion + the mood LoRA, demucs);
``TINY`` names models that :func:`build_tiny_models` makes locally, deterministically and in
seconds, in the *same* on-disk formats, so that the real loading code (``whisper.load_model``,
``transformers.pipeline``, diffusers ``from_pretrained``) is what the tests exercise.

A model reference is either a hub id / Whisper model name, a local path, ``tiny:<part>``
(resolved by :func:`locate`, building the tiny models on first use) or ``bench:<part>``: the
pretrained architectures at full size with random weights (:mod:`videobgm.bench_models`, the
``bench`` profile), for speed measurements without downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videobgm import paths
from videobgm.errors import InputError, VideobgmError

log = logging.getLogger(__name__)

EMOTION_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
TINY_VERSION = 3  # bump when the tiny models' recipe changes, so caches are rebuilt
TINY_RESOLUTION = 512  # px; the tiny pipeline works at riffusion's native size
_HUB_TIMEOUT_S = 3.0


class ModelUnavailableError(VideobgmError, RuntimeError):
    """A model's weights are neither cached locally nor downloadable."""


@dataclass(frozen=True)
class ModelProfile:
    """Every model the pipeline loads, by reference (hub id, Whisper name, path or ``tiny:``)."""

    name: str
    whisper_cpu: str = "small"  # Whisper on CPU
    whisper_cuda: str = "turbo"  # Whisper on CUDA (turbo does not translate)
    whisper_translate: str = "large-v3"  # Whisper for non-English speech (task="translate")
    emotion: str = "j-hartmann/emotion-english-distilroberta-base"
    diffusion: str = "riffusion/riffusion-model-v1"
    lora: str | None = "JD97/Riffusion_sentiment_LoRA"
    separator: str = "demucs"  # "demucs" (htdemucs) or "spectral" (no weights)
    clap: str = "laion/larger_clap_music"  # music-text fit (videobgm.evaluate)
    # The hub commit of laion/larger_clap_music that the evaluation was written against.
    clap_revision: str | None = "a0b4534a14f58e20944452dff00a22a06ce629d1"
    substituted: tuple[str, ...] = ()  # stages that "auto" replaced by their offline model

    def whisper(self, device: str, translate: bool = False) -> str:
        """The Whisper reference for a device and task."""
        if translate:
            return self.whisper_translate
        return self.whisper_cuda if device.startswith("cuda") else self.whisper_cpu

    @property
    def offline(self) -> bool:
        """True when every model is a locally built one."""
        refs = (self.whisper_cpu, self.whisper_cuda, self.whisper_translate)
        refs += (self.emotion, self.diffusion)
        return all(ref.startswith("tiny:") for ref in refs)


PRETRAINED = ModelProfile(name="pretrained")
TINY = ModelProfile(
    name="tiny",
    whisper_cpu="tiny:whisper",
    whisper_cuda="tiny:whisper",
    whisper_translate="tiny:whisper",
    emotion="tiny:emotion",
    diffusion="tiny:diffusion",
    lora="tiny:lora",
    separator="spectral",
    clap="tiny:clap",
)
# Full-size architectures, random weights: for timings only (never chosen by "auto").
BENCH = ModelProfile(
    name="bench",
    whisper_cpu="bench:whisper-small",
    whisper_cuda="bench:whisper-turbo",
    whisper_translate="bench:whisper-large-v3",
    emotion="bench:emotion",
    diffusion="bench:diffusion",
    lora="bench:lora",
    separator="spectral",
    clap="tiny:clap",  # no full-size random CLAP yet: the evaluation is not benchmarked
)
PROFILES = {"pretrained": PRETRAINED, "tiny": TINY, "bench": BENCH}
# Which fields of a profile belong to which stage (for "auto" substitution, one stage at a time).
_STAGE_FIELDS = {
    "speech": ("whisper_cpu", "whisper_cuda", "whisper_translate"),
    "emotion": ("emotion",),
    "music": ("diffusion", "lora"),
    "voice": ("separator",),
    "fit": ("clap",),
}


# --------------------------------------------------------------------------- devices


def default_device() -> str:
    """``$VIDEOBGM_DEVICE`` if set, else ``cuda`` when a GPU is visible, else ``cpu``."""
    device = os.environ.get("VIDEOBGM_DEVICE")
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def model_threads(ref: str, device: str) -> Iterator[None]:
    """Run a tiny offline model (a ``tiny:`` reference) on one CPU thread.

    Its operations are so small that waking a second thread costs more than it saves, and on a
    busy machine each parallel operation waits for a descheduled thread: measured 10-15x slower
    with 2 threads than with 1 on a loaded 2-core machine (Whisper, a denoising step). Real
    models keep torch's setting.
    """
    if ref.startswith("tiny:") and str(device) == "cpu":
        with torch_threads(1):
            yield
    else:
        yield


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- profiles


def resolve_profile(name: str | ModelProfile = "auto") -> ModelProfile:
    """The profile to use: ``$VIDEOBGM_PROFILE`` wins, then ``name``.

    ``"auto"`` keeps each stage's pretrained model when its weights are in the local caches or
    the hub answers within a few seconds, and substitutes the stage's offline model otherwise;
    one banner on stderr names what was substituted (``profile.substituted`` records it).
    """
    chosen = os.environ.get("VIDEOBGM_PROFILE") or name
    if isinstance(chosen, ModelProfile):
        return chosen
    if chosen in PROFILES:
        return PROFILES[chosen]
    if chosen != "auto":
        known = ", ".join(["auto", *PROFILES])
        raise InputError(f"unknown model profile {chosen!r}; choose one of {known}")
    missing = [stage for stage in _STAGE_FIELDS if not _stage_available(stage)]
    if not missing:
        return dataclasses.replace(PRETRAINED, name="auto")
    swaps = {f: getattr(TINY, f) for stage in missing for f in _STAGE_FIELDS[stage]}
    profile = dataclasses.replace(PRETRAINED, name="auto", substituted=tuple(missing), **swaps)
    _announce(profile)
    return profile


_ANNOUNCED: set[tuple[str, ...]] = set()  # one banner per process for each substitution


def _announce(profile: ModelProfile) -> None:
    if profile.substituted in _ANNOUNCED:
        return
    _ANNOUNCED.add(profile.substituted)
    line = "=" * 78
    print(
        f"{line}\n"
        f"videobgm: OFFLINE MODELS for: {', '.join(profile.substituted)}.\n"
        "Their pretrained weights are not cached and the model hub is unreachable, so these\n"
        "stages use locally built stand-ins (tiny random models; spectral voice separation).\n"
        "Results show the plumbing, not the quality of the real models.\n"
        f"{line}",
        file=sys.stderr,
    )


def _stage_available(stage: str) -> bool:
    if stage == "speech":
        return _whisper_cached(PRETRAINED.whisper_cpu) or _reachable(
            "https://openaipublic.azureedge.net"
        )
    if stage == "voice":
        return _demucs_cached() or _reachable("https://dl.fbaipublicfiles.com")
    repo = {"emotion": PRETRAINED.emotion, "music": PRETRAINED.diffusion}.get(
        stage, PRETRAINED.clap
    )
    return _hf_cached(repo) or _reachable("https://huggingface.co")


def _whisper_cached(name: str) -> bool:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
    return any(cache.glob(f"{name}*.pt"))


def _demucs_cached() -> bool:
    import torch

    return any((Path(torch.hub.get_dir()) / "checkpoints").glob("955717e8-*.th"))


def _hf_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model_index.json", "config.json"):
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return True
    return False


@functools.lru_cache(maxsize=8)
def _reachable(url: str) -> bool:
    """Whether ``url`` answers within a few seconds (never when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_HUB_TIMEOUT_S)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        # An HTTP error status still proves the host answered.
        return hasattr(exc, "code")


# --------------------------------------------------------------------------- tiny models

_TINY_PARTS = {
    "whisper": "whisper.pt",
    "emotion": "emotion",
    "diffusion": "diffusion",
    "lora": "lora",
    "clap": "clap",
}


def locate(ref: str) -> str:
    """Resolve a model reference: ``tiny:<part>`` and ``bench:<part>`` to their local paths
    (building them if needed); anything else is returned as it is."""
    if ref.startswith("bench:"):
        from videobgm import bench_models

        return str(bench_models.build(ref.split(":", 1)[1]))
    if ref.startswith("tiny:"):
        part = ref.split(":", 1)[1]
        if part not in _TINY_PARTS:
            raise InputError(f"unknown tiny model {ref!r}; known: {', '.join(_TINY_PARTS)}")
        return str(build_tiny_models()[part])
    return ref


def build_tiny_models(directory: str | os.PathLike[str] | None = None, force: bool = False):
    """Build the tiny offline models (deterministic, no network) and return their paths.

    Written to ``data/models/tiny/`` by default and reused while its manifest matches
    :data:`TINY_VERSION`. The directory appears atomically, so concurrent builders are safe.
    Returns ``{"whisper": .pt file, "emotion": dir, "diffusion": dir, "lora": dir, "clap": dir}``.
    """
    target = Path(directory) if directory else paths.tiny_models()
    built = {part: target / name for part, name in _TINY_PARTS.items()}
    manifest = target / "manifest.json"
    if not force and manifest.exists():
        if json.loads(manifest.read_text()).get("version") == TINY_VERSION:
            return built
    from videobgm import tiny

    paths.ensure_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        tiny.build_whisper(staging / _TINY_PARTS["whisper"])
        tiny.build_emotion(staging / _TINY_PARTS["emotion"], EMOTION_LABELS)
        tiny.build_diffusion(staging / _TINY_PARTS["diffusion"])
        tiny.build_old_format_lora(staging / _TINY_PARTS["lora"], staging / "diffusion")
        tiny.build_clap(staging / _TINY_PARTS["clap"])
        (staging / "manifest.json").write_text(json.dumps({"version": TINY_VERSION}, indent=2))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            pass  # another process finished first; its models are identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return built


# --------------------------------------------------------------------------- loaders
# Public loaders take a profile; the cached private ones take a resolved reference, so a
# model is loaded once per process whichever profile object names it.


def load_whisper(profile: ModelProfile, device: str | None = None, translate: bool = False):
    """The profile's Whisper for ``device`` (``turbo`` on CUDA, ``small`` on CPU,
    ``large-v3`` when ``translate``), through ``whisper.load_model``."""
    device = device or default_device()
    return _whisper(profile.whisper(device, translate), device)


def load_emotion_classifier(profile: ModelProfile, device: str | None = None):
    """The profile's emotion classifier: a ``transformers`` text-classification pipeline that
    returns all 7 scores (``top_k=None``)."""
    return _classifier(profile.emotion, device or default_device())


def load_diffusion(profile: ModelProfile, device: str | None = None, dtype: Any = None):
    """The profile's riffusion model as a diffusers ``StableDiffusionImg2ImgPipeline``.

    No safety checker (it misfires on spectrogram images). ``dtype`` defaults to float16 on
    CUDA and float32 on CPU. The LoRA is attached by :mod:`videobgm.generate`.
    """
    return _diffusion(profile.diffusion, device or default_device(), dtype)


@functools.lru_cache(maxsize=4)
def _whisper(ref: str, device: str) -> Any:
    import whisper

    try:
        return whisper.load_model(locate(ref), device=device)
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) or "download" in str(exc).lower():
            raise ModelUnavailableError(
                f"Whisper model {ref!r} is not cached and could not be downloaded ({exc})"
            ) from exc
        raise


@functools.lru_cache(maxsize=4)
def _classifier(ref: str, device: str) -> Any:
    from transformers import pipeline

    try:
        return pipeline("text-classification", model=locate(ref), top_k=None, device=device)
    except OSError as exc:
        raise ModelUnavailableError(
            f"emotion classifier {ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc


def _diffusion(ref: str, device: str, dtype: Any) -> Any:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    if dtype is None:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            locate(ref), dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    except OSError as exc:
        raise ModelUnavailableError(
            f"diffusion model {ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    """``videobgm models profile|build-tiny``."""
    parser = subparsers.add_parser("models", help="show the model profile; build the tiny models")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    show = sub.add_parser("profile", help="print which model each stage would load")
    show.add_argument("--profile", default="auto", help="auto | pretrained | tiny (default auto)")
    show.set_defaults(func=_cli_profile)
    build = sub.add_parser("build-tiny", help="build the tiny offline models (seconds, no network)")
    build.add_argument("--dir", default=None, help="output directory (default data/models/tiny)")
    build.add_argument("--force", action="store_true", help="rebuild even if present")
    build.set_defaults(func=_cli_build)


def _cli_profile(args) -> int:
    profile = resolve_profile(args.profile)
    for field in dataclasses.fields(profile):
        print(f"{field.name:18} {getattr(profile, field.name)}")
    return 0


def _cli_build(args) -> int:
    for part, path in build_tiny_models(args.dir, force=args.force).items():
        print(f"{part:10} {path}")
    return 0
