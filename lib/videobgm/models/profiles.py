"""Model profiles, the tiny offline models, and the loaders every stage goes through.

A :class:`ModelProfile` names each model the pipeline loads. ``PRETRAINED`` is what users get
(Whisper, j-hartmann's DistilRoBERTa emotion classifier, riffusion + the mood LoRA, demucs);
``TINY`` names models that :func:`build_tiny_models` makes locally, deterministically and in
seconds, in the *same* on-disk formats, so that the real loading code (``whisper.load_model``,
``transformers.pipeline``, diffusers ``from_pretrained``) is what the tests exercise.

A model reference is either a hub id / Whisper model name, a local path, ``tiny:<part>``
(resolved by :func:`locate`, building the tiny models on first use) or ``bench:<part>``: the
pretrained architectures at full size with random weights (:mod:`videobgm.models.full`, the
``bench`` profile), for speed measurements without downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videobgm import paths
from videobgm.errors import InputError, VideobgmError
from videobgm.models import full as bench_models
from videobgm.models import tiny
from videobgm.vocab import EMOTION_LABELS

log = logging.getLogger(__name__)

TINY_VERSION = 3  # bump when the tiny models' recipe changes, so caches are rebuilt
TINY_RESOLUTION = 512  # px; the tiny pipeline works at riffusion's native size
_HUB_TIMEOUT_S = 3.0  # s; each reachability probe (all run at once, in parallel)
DOWNLOAD_STALL_S = 60.0  # s without a byte before a model download is given up
DEMUCS_HF_REPO = "adefossez/HTDemucs"  # demucs 4.1 fetches htdemucs from here first
DEMUCS_HF_FILES = ("htdemucs.yaml", "955717e8.safetensors")  # the bag and its one model
DEMUCS_TORCH_HUB_FILE = "955717e8-8726e21a.th"  # the AWS fallback, in torch.hub's checkpoints
# Pinned hub commits (checked against the hub's commit pages; see the README's model table).
EMOTION_REVISION = "0e1cd914e3d46199ed785853e12b57304e04178b"  # main since 2023-01-02
DIFFUSION_REVISION = "8f2e752c74e8316c6eb4fdaa6598a46ce1d88af5"  # diffusers layout, 2023
PUBLISHED_LORA = "JD97/Riffusion_sentiment_LoRA"  # the seed's: 521 bytes, no tensors
TRAINED_LORA_DIRS = ("lora-moods-pretrained", "lora-moods-auto")  # notebook 02's outputs
TRAINED_LORA_FILE = "pytorch_lora_weights.safetensors"


class ModelUnavailableError(VideobgmError, RuntimeError):
    """A model's weights are neither cached locally nor downloadable."""


@dataclass(frozen=True)
class ModelProfile:
    """Every model the pipeline loads, by reference (hub id, Whisper name, path or ``tiny:``)."""

    name: str
    whisper_cpu: str = "small"  # Whisper on CPU
    whisper_cuda: str = "turbo"  # Whisper on CUDA (turbo does not translate)
    whisper_translate: str = "large-v3"  # Whisper for non-English speech on CUDA
    whisper_translate_cpu: str = "small"  # ... on CPU (large-v3 takes hours there)
    emotion: str = "j-hartmann/emotion-english-distilroberta-base"
    emotion_revision: str | None = EMOTION_REVISION  # hub commit (None: a local path)
    diffusion: str = "riffusion/riffusion-model-v1"
    diffusion_revision: str | None = DIFFUSION_REVISION
    # "auto": notebook 02's trained LoRA under data/models/ when there is one, else none
    # (the published PUBLISHED_LORA holds no weights); a hub id, a folder, or None.
    lora: str | None = "auto"
    separator: str = "demucs"  # "demucs" (htdemucs) or "spectral" (no weights)
    clap: str = "laion/larger_clap_music"  # music-text fit (videobgm.evaluate)
    # The hub commit of laion/larger_clap_music that the evaluation was written against.
    clap_revision: str | None = "a0b4534a14f58e20944452dff00a22a06ce629d1"
    substituted: tuple[str, ...] = ()  # stages that "auto" replaced by their offline model

    def whisper(self, device: str, translate: bool = False) -> str:
        """The Whisper reference for a device and task."""
        cuda = device.startswith("cuda")
        if translate:
            return self.whisper_translate if cuda else self.whisper_translate_cpu
        return self.whisper_cuda if cuda else self.whisper_cpu

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
    whisper_translate_cpu="tiny:whisper",
    emotion="tiny:emotion",
    emotion_revision=None,
    diffusion="tiny:diffusion",
    diffusion_revision=None,
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
    whisper_translate_cpu="bench:whisper-small",
    emotion="bench:emotion",
    emotion_revision=None,
    diffusion="bench:diffusion",
    diffusion_revision=None,
    lora="bench:lora",
    separator="spectral",
    clap="tiny:clap",  # no full-size random CLAP yet: the evaluation is not benchmarked
)
PROFILES = {"pretrained": PRETRAINED, "tiny": TINY, "bench": BENCH}
# Which fields of a profile belong to which stage (for "auto" substitution, one stage at a time).
_STAGE_FIELDS = {
    "speech": ("whisper_cpu", "whisper_cuda", "whisper_translate", "whisper_translate_cpu"),
    "emotion": ("emotion", "emotion_revision"),
    "music": ("diffusion", "diffusion_revision", "lora"),
    "voice": ("separator",),
    "fit": ("clap",),
}
STAGE_NAMES = tuple(_STAGE_FIELDS)  # the model stages "auto" checks, in the banner's order


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


def resolve_profile(
    name: str | ModelProfile = "auto",
    device: str | None = None,
    stages: Iterable[str] | None = None,
) -> ModelProfile:
    """The profile to use: ``$VIDEOBGM_PROFILE`` wins, then ``name``.

    ``"auto"`` keeps each stage's pretrained model when its weights are in the local caches
    (every Whisper file ``device`` will load, the emotion and riffusion repos at their pinned
    commits, demucs in the Hugging Face cache or torch.hub's) or the hosts answer (probed once,
    together, within a few seconds), and substitutes the stage's offline model otherwise
    (``profile.substituted`` records it). One banner on stderr names the substituted stages
    among ``stages``, the ones the caller will run (``STAGE_NAMES``; None: all of them), so a
    run that never scores its music does not warn about the scoring model.
    """
    chosen = os.environ.get("VIDEOBGM_PROFILE") or name
    if isinstance(chosen, ModelProfile):
        return chosen
    if chosen in PROFILES:
        return PROFILES[chosen]
    if chosen != "auto":
        known = ", ".join(["auto", *PROFILES])
        raise InputError(f"unknown model profile {chosen!r}; choose one of {known}")
    missing = missing_stages(PRETRAINED, device or default_device())
    if not missing:
        return dataclasses.replace(PRETRAINED, name="auto")
    swaps = {f: getattr(TINY, f) for stage in missing for f in _STAGE_FIELDS[stage]}
    profile = dataclasses.replace(PRETRAINED, name="auto", substituted=tuple(missing), **swaps)
    used = set(STAGE_NAMES if stages is None else _known_stages(stages))
    _announce(tuple(stage for stage in missing if stage in used))
    return profile


_ANNOUNCED: set[tuple[str, ...]] = set()  # one banner per process for each substitution


def _known_stages(stages: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(stages)
    unknown = set(chosen) - set(STAGE_NAMES)
    if unknown:
        raise InputError(f"unknown model stage {sorted(unknown)[0]!r}; known: {STAGE_NAMES}")
    return chosen


def _announce(substituted: tuple[str, ...]) -> None:
    if not substituted or substituted in _ANNOUNCED:
        return
    _ANNOUNCED.add(substituted)
    line = "=" * 78
    print(
        f"{line}\n"
        f"videobgm: OFFLINE MODELS for: {', '.join(substituted)}.\n"
        "Their pretrained weights are not cached and the model hub is unreachable, so these\n"
        "stages use locally built stand-ins (tiny random models; spectral voice separation).\n"
        "Results show the plumbing, not the quality of the real models.\n"
        f"{line}",
        file=sys.stderr,
    )


def missing_stages(profile: ModelProfile, device: str) -> list[str]:
    """The stages whose pretrained weights are neither cached nor downloadable, in order."""
    cached = {
        "speech": all(whisper_cached(ref) for ref in _whisper_refs(profile, device)),
        "emotion": hf_cached(profile.emotion, profile.emotion_revision, ("config.json",)),
        "music": _music_cached(profile),
        "voice": profile.separator != "demucs" or demucs_cached(),
        "fit": hf_cached(profile.clap, profile.clap_revision, ("config.json",)),
    }
    hosts = {stage: _HOSTS[stage]() for stage, ok in cached.items() if not ok}
    answers = reachable_all(set(hosts.values()))
    return [stage for stage, host in hosts.items() if not answers[host]]


def _whisper_refs(profile: ModelProfile, device: str) -> set[str]:
    """Every Whisper reference ``device`` loads: for transcription and for translation."""
    return {profile.whisper(device), profile.whisper(device, translate=True)}


def _music_cached(profile: ModelProfile) -> bool:
    files = ("model_index.json", "unet/config.json")
    if not hf_cached(profile.diffusion, profile.diffusion_revision, files):
        return False
    lora = profile.lora
    if not lora or lora == "auto" or Path(lora).exists() or "/" not in lora:
        return True
    return any(hf_cached(lora, None, (name,)) for name in _LORA_FILES)


_LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")


def hub_endpoint() -> str:
    """The Hugging Face endpoint, ``$HF_ENDPOINT`` as huggingface_hub reads it."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    """``$HF_HUB_OFFLINE`` as huggingface_hub reads it (1, ON, YES, TRUE in any case)."""
    from huggingface_hub.constants import ENV_VARS_TRUE_VALUES

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ENV_VARS_TRUE_VALUES


def _whisper_host() -> str:
    import whisper

    return _host(next(iter(whisper._MODELS.values())))


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_HOSTS: dict[str, Callable[[], str]] = {
    "speech": _whisper_host,
    "emotion": hub_endpoint,
    "music": hub_endpoint,
    "voice": hub_endpoint,  # demucs 4.1 asks the hub first (AWS only as its fallback)
    "fit": hub_endpoint,
}


def whisper_cache() -> Path:
    """The folder openai-whisper downloads to (``$XDG_CACHE_HOME/whisper``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def whisper_file(name: str) -> Path | None:
    """The cache file openai-whisper keeps ``name`` in (the basename of its URL: ``turbo`` is
    ``large-v3-turbo.pt``); None for a reference that is not a Whisper model name."""
    import whisper

    url = whisper._MODELS.get(name)
    return whisper_cache() / os.path.basename(url) if url else None


def whisper_cached(ref: str) -> bool:
    """Whether a Whisper reference loads without a download (local files always do)."""
    if ref.startswith(("tiny:", "bench:")) or Path(ref).is_file():
        return True
    path = whisper_file(ref)
    return path is not None and path.is_file()


def demucs_cached() -> bool:
    """htdemucs in the Hugging Face cache (where demucs 4.1 looks first) or torch.hub's."""
    import torch

    if hf_cached(DEMUCS_HF_REPO, None, DEMUCS_HF_FILES):
        return True
    return (Path(torch.hub.get_dir()) / "checkpoints" / DEMUCS_TORCH_HUB_FILE).is_file()


def hf_cached(repo_id: str, revision: str | None, filenames: tuple[str, ...]) -> bool:
    """Whether every one of ``filenames`` of ``repo_id`` at ``revision`` is in the local
    Hugging Face cache (a local folder counts as cached)."""
    from huggingface_hub import try_to_load_from_cache

    if repo_id.startswith(("tiny:", "bench:")) or Path(repo_id).exists():
        return True
    return all(
        isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str)
        for name in filenames
    )


def reachable_all(urls: set[str]) -> dict[str, bool]:
    """Whether each URL answers, probed once per process, all at the same time, each within
    :data:`_HUB_TIMEOUT_S` (never when ``HF_HUB_OFFLINE`` is set)."""
    from concurrent.futures import ThreadPoolExecutor

    urls = sorted(urls)
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return dict(zip(urls, pool.map(_reachable, urls), strict=True))


@functools.lru_cache(maxsize=8)
def _probe(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_HUB_TIMEOUT_S)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        # An HTTP error status still proves the host answered.
        return hasattr(exc, "code")


def _reachable(url: str) -> bool:
    """Whether ``url`` answers within a few seconds (never when HF_HUB_OFFLINE is set)."""
    return False if hub_offline() else _probe(url)


@contextlib.contextmanager
def download_stall_timeout(seconds: float = DOWNLOAD_STALL_S) -> Iterator[None]:
    """Downloads made with urllib inside the block (Whisper's) give up after ``seconds``
    without data, instead of hanging a run forever; huggingface_hub has its own
    (``HF_HUB_DOWNLOAD_TIMEOUT``, set to the same when unset)."""
    import socket

    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(DOWNLOAD_STALL_S)))


# --------------------------------------------------------------------------- releasing models

_LOADERS: list[Any] = []  # every cached loader, cleared by release_models()


def cached_loader(maxsize: int = 2) -> Callable[[Callable[..., Any]], Any]:
    """``functools.lru_cache`` for a model loader, registered so that
    :func:`release_models` can drop what it holds."""

    def wrap(function: Callable[..., Any]) -> Any:
        cached = functools.lru_cache(maxsize=maxsize)(function)
        _LOADERS.append(cached)
        return cached

    return wrap


def release_models() -> None:
    """Drop every loaded model (the pipeline calls this between stages, so that GPU memory
    holds one stage's models at a time) and return CUDA's cached blocks to the driver."""
    for loader in _LOADERS:
        loader.cache_clear()
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- trained LoRA


def trained_lora() -> Path | None:
    """The newest LoRA notebook 02 / ``videobgm train-lora`` wrote for the real model under
    ``data/models/`` (its folder), or None."""
    found = [paths.models() / d for d in TRAINED_LORA_DIRS]
    found = [d for d in found if (d / TRAINED_LORA_FILE).is_file()]
    return max(found, key=lambda d: (d / TRAINED_LORA_FILE).stat().st_mtime, default=None)


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
    if not force and _tiny_manifest_current(manifest):
        return built

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
            if _tiny_manifest_current(manifest):
                return built  # another builder finished first; its models are identical
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            pass  # another process finished first; its models are identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return built


def _tiny_manifest_current(manifest: Path) -> bool:
    """Whether ``manifest`` exists and names this library's :data:`TINY_VERSION`."""
    return manifest.exists() and json.loads(manifest.read_text()).get("version") == TINY_VERSION


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
    return _classifier(profile.emotion, profile.emotion_revision, device or default_device())


def load_diffusion(profile: ModelProfile, device: str | None = None, dtype: Any = None):
    """The profile's riffusion model as a diffusers ``StableDiffusionImg2ImgPipeline``.

    No safety checker (it misfires on spectrogram images). ``dtype`` defaults to float16 on
    CUDA and float32 on CPU. The LoRA is attached by :mod:`videobgm.generate`.
    """
    device = device or default_device()
    return _diffusion(profile.diffusion, profile.diffusion_revision, device, dtype)


@cached_loader(maxsize=2)
def _whisper(ref: str, device: str) -> Any:
    import whisper

    try:
        with download_stall_timeout():
            return whisper.load_model(locate(ref), device=device, download_root=whisper_cache())
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) or "download" in str(exc).lower():
            raise ModelUnavailableError(
                f"Whisper model {ref!r} is not cached and could not be downloaded ({exc})"
            ) from exc
        raise


@cached_loader(maxsize=2)
def _classifier(ref: str, revision: str | None, device: str) -> Any:
    from transformers import pipeline

    try:
        return pipeline(
            "text-classification", model=locate(ref), revision=revision, top_k=None, device=device
        )
    except OSError as exc:
        raise ModelUnavailableError(
            f"emotion classifier {ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc


def _diffusion(ref: str, revision: str | None, device: str, dtype: Any) -> Any:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    if dtype is None:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        # The repo's model_index names a safety checker and its image processor: neither is
        # loaded (the checker misfires on spectrograms and would cost 1.2 GB).
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            locate(ref), revision=revision, dtype=dtype, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
    except OSError as exc:
        raise ModelUnavailableError(
            f"diffusion model {ref!r} is not cached and the hub is unreachable ({exc})"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_slicing()  # a batch is decoded one image at a time: bounded GPU memory
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
