"""Riffusion img2img with the mood LoRA: prompt interpolation, batched, decoded through the codec.

A clip is asked for as riffusion asks for one (its ``InferenceInput``): a start and an end
:class:`PromptInput` (prompt, noise seed, strength, guidance) and an ``alpha`` in [0, 1]. For
that alpha the text embeddings are interpolated linearly, the initial noise spherically (slerp)
between the two seeds' noise, and strength and guidance linearly; img2img then starts from the
seed image's latents. Riffusion keeps one seed image for both ends; a :class:`ClipRequest` may
name a second one (``end_image``), whose latents are blended in linearly by ``alpha``, so that
a transition between two emotions can also move from one emotion's seed spectrogram to the
other's. With ``alpha`` 0 (or 1) the result is exactly the start (or end) prompt's image.

Differences from riffusion's pipeline, on purpose: a fast multistep scheduler
(DPM-Solver++, the step count a parameter) instead of PNDM at 50 steps; the init latents are
the VAE posterior's mean rather than a sample (riffusion's own comment: the sample's seed adds
no variety), so a clip depends on its two noise seeds only; noise is drawn on the CPU, so a
seed means the same noise on every device; many clips run as one batch (each with its own
alpha, prompts, guidance and seeds), grouped by their number of denoising steps.

The LoRA: new-format files (``pytorch_lora_weights.safetensors``, diffusers/peft keys) and the
old ``save_attn_procs`` files (``...processor.to_q_lora.down.weight`` in
``pytorch_lora_weights.bin``, the original project's published LoRA) are both read here; old
keys are converted, then loaded with ``load_lora_weights``, and the number of LoRA layers that
became active is checked, so a LoRA is never silently ignored.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videobgm.errors import InputError, VideobgmError
from videobgm.models import profiles as models
from videobgm.spectrogram import codec as spectrogram
from videobgm.synth import arrange as synth
from videobgm.vocab import IMAGE_PX

DEFAULT_STEPS = 20  # DPM-Solver++ steps (riffusion and the original project: 50 PNDM steps)
DEFAULT_BATCH = 4  # clips per denoising batch (CUDA; 1 on the CPU)
LORA_ADAPTER = "mood"  # the adapter name the mood LoRA is loaded under
NEW_LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers/peft format
OLD_LORA_FILE = "pytorch_lora_weights.bin"  # the old save_attn_procs format
_OLD_KEY = re.compile(
    r"^(?:unet\.)?(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$"
)


class LoraError(VideobgmError, RuntimeError):
    """A LoRA file could not be read, or it loaded as nothing."""


@dataclass(frozen=True)
class PromptInput:
    """One end of an interpolation (riffusion's ``PromptInput``)."""

    prompt: str
    seed: int = 0  # noise seed
    strength: float = 0.75  # img2img strength in (0, 1] (riffusion's "denoising")
    guidance_scale: float = 7.0  # classifier-free guidance
    negative_prompt: str = ""


@dataclass(frozen=True, eq=False)
class ClipRequest:
    """One clip: img2img from ``image`` (blended towards ``end_image`` by ``alpha`` when given)
    with everything else interpolated from ``start`` to ``end`` by ``alpha`` in [0, 1]."""

    start: PromptInput
    end: PromptInput
    image: Any  # PIL.Image.Image, the init (seed) spectrogram
    alpha: float = 0.0
    end_image: Any = None  # PIL.Image.Image or None (= ``image``)

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, int | float) and 0.0 <= self.alpha <= 1.0):
            raise InputError(f"alpha must be a number in [0, 1], not {self.alpha!r}")
        for end in (self.start, self.end):
            if not 0.0 < end.strength <= 1.0:
                raise InputError(f"strength must be in (0, 1], not {end.strength!r}")

    @property
    def strength(self) -> float:
        return _lerp(self.start.strength, self.end.strength, self.alpha)

    @property
    def guidance_scale(self) -> float:
        return _lerp(self.start.guidance_scale, self.end.guidance_scale, self.alpha)


def _lerp(a: Any, b: Any, t: float) -> Any:
    if t == 0:
        return a
    if t == 1:
        return b
    return a + t * (b - a)


def slerp(t: float, v0: Any, v1: Any, dot_threshold: float = 0.9995) -> Any:
    """Spherical interpolation between two tensors (flattened directions), exact at 0 and 1;
    linear when they are nearly parallel."""
    import torch

    if t == 0:
        return v0
    if t == 1:
        return v1
    a, b = v0.double().flatten(), v1.double().flatten()
    cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
    if abs(cos) > dot_threshold:
        return _lerp(v0, v1, t)
    theta = math.acos(cos)
    w0, w1 = math.sin((1 - t) * theta), math.sin(t * theta)
    return ((w0 * v0.double() + w1 * v1.double()) / math.sin(theta)).to(v0.dtype)


# --------------------------------------------------------------------------- LoRA


def is_old_lora(state_dict: dict[str, Any]) -> bool:
    """Whether a state dict has the old ``save_attn_procs`` keys."""
    return any(_OLD_KEY.match(key) for key in state_dict)


def convert_old_lora(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Old ``save_attn_procs`` keys to the diffusers/peft keys ``load_lora_weights`` reads:
    ``X.processor.to_q_lora.down.weight`` -> ``unet.X.to_q.lora_A.weight`` (``up`` -> ``lora_B``,
    ``to_out`` -> ``to_out.0``). The old layers had no alpha: scale 1, as peft's default."""
    converted = {}
    for key, value in state_dict.items():
        match = _OLD_KEY.match(key)
        if not match:
            raise LoraError(f"LoRA key {key!r} is not in the old save_attn_procs format")
        module, proj, which = match.groups()
        proj = "to_out.0" if proj == "to_out" else proj
        converted[f"unet.{module}.{proj}.lora_{'A' if which == 'down' else 'B'}.weight"] = value
    return converted


def _lora_file(ref: str) -> Path:
    """The weights file of a LoRA reference: a file, a folder, a hub id or ``tiny:lora``."""
    path = Path(models.locate(ref)).expanduser()
    if not path.exists() and not ref.startswith(("/", ".", "~")) and ref.count("/") == 1:
        path = _hub_lora(ref)
    if path.is_file():
        return path
    for name in (NEW_LORA_FILE, OLD_LORA_FILE):
        if (path / name).is_file():
            return path / name
    raise LoraError(f"{ref}: no {NEW_LORA_FILE} or {OLD_LORA_FILE} found there")


def _hub_lora(repo_id: str) -> Path:
    from huggingface_hub import hf_hub_download

    for name in (NEW_LORA_FILE, OLD_LORA_FILE):
        try:
            return Path(hf_hub_download(repo_id, name))
        except Exception:  # noqa: BLE001 - missing file, offline, unknown repo: try the next
            continue
    raise models.ModelUnavailableError(
        f"LoRA {repo_id!r} is not cached and the hub is unreachable (or it has no LoRA file)"
    )


def lora_weights_file(ref: str | os.PathLike[str]) -> Path | None:
    """The weights file of a local LoRA (a folder or the file); None for a hub id."""
    path = Path(str(ref))
    if not path.exists():
        return None
    return _lora_file(str(ref))


def read_lora(ref: str | os.PathLike[str]) -> dict[str, Any]:
    """A LoRA's state dict in the diffusers/peft format, whichever format the file has."""
    import torch
    from safetensors.torch import load_file

    path = _lora_file(str(ref))
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise LoraError(f"{path}: cannot read the LoRA weights ({exc})") from exc
    tensors = (
        isinstance(state, dict)
        and state
        and all(isinstance(v, torch.Tensor) for v in state.values())
    )
    if not tensors:
        raise LoraError(f"{path}: the file holds no LoRA weights")
    return convert_old_lora(state) if is_old_lora(state) else state


def active_lora_layers(pipe: Any, adapter: str = LORA_ADAPTER) -> int:
    """How many of the UNet's layers carry ``adapter`` and have it active."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(
        1
        for module in pipe.unet.modules()
        if isinstance(module, BaseTunerLayer)
        and adapter in module.scaling
        and adapter in module.active_adapters
    )


def load_lora(pipe: Any, ref: str | os.PathLike[str], scale: float = 1.0) -> int:
    """Load a LoRA (either format) into ``pipe`` as the ``mood`` adapter at ``scale``.

    Returns the number of LoRA layers now active in the UNet; raises :class:`LoraError` when
    none are (a file whose keys match no layer), instead of going on without the LoRA.
    """
    state = read_lora(ref)
    path = _lora_file(str(ref))
    # A new-format file is loaded by path so diffusers reads its metadata (the LoRA alpha);
    # an old-format one only exists converted, in memory (its alpha was always the rank).
    by_path = path.suffix == ".safetensors" and path.name == NEW_LORA_FILE
    source = (str(path.parent),) if by_path else (state,)
    if LORA_ADAPTER in pipe.get_list_adapters().get("unet", []):
        pipe.delete_adapters(LORA_ADAPTER)
    try:
        kwargs = {"weight_name": path.name} if by_path else {}
        pipe.load_lora_weights(*source, adapter_name=LORA_ADAPTER, **kwargs)
    except (ValueError, RuntimeError, KeyError) as exc:  # peft: no module matches, bad shapes
        raise LoraError(f"{ref}: the LoRA does not fit this model ({exc})") from exc
    layers = active_lora_layers(pipe)
    pairs = sum(1 for key in state if ".lora_A." in key and key.startswith("unet."))
    if layers == 0 or layers < pairs:
        if LORA_ADAPTER in pipe.get_list_adapters().get("unet", []):
            pipe.delete_adapters(LORA_ADAPTER)  # leave the pipeline as it was
        raise LoraError(f"{ref}: only {layers} of {pairs} LoRA layers loaded into the UNet")
    set_lora_scale(pipe, scale)
    return layers


def set_lora_scale(pipe: Any, scale: float) -> None:
    """The mood LoRA's weight (0 = the base model's output exactly)."""
    if not math.isfinite(scale):
        raise InputError(f"LoRA scale must be a finite number, not {scale!r}")
    pipe.set_adapters([LORA_ADAPTER], adapter_weights=[float(scale)])


# --------------------------------------------------------------------------- the generator


class Riffusion:
    """A loaded riffusion pipeline (with or without the mood LoRA) that turns
    :class:`ClipRequest` s into 512 px spectrogram images."""

    def __init__(self, pipe: Any, lora_layers: int = 0, ref: str = "") -> None:
        self.pipe = pipe
        self.lora_layers = lora_layers  # active LoRA layers (0: no LoRA)
        self.ref = ref  # the model reference it was loaded from
        self._embeddings: dict[str, Any] = {}

    @property
    def device(self) -> Any:
        return self.pipe.unet.device

    @property
    def dtype(self) -> Any:
        return self.pipe.unet.dtype

    def set_lora_scale(self, scale: float) -> None:
        if not self.lora_layers:
            raise LoraError("this pipeline was loaded without a LoRA")
        set_lora_scale(self.pipe, scale)

    def embed(self, text: str) -> Any:
        """CLIP text embeddings of ``text`` (1, tokens, width), cached."""
        import torch

        if text not in self._embeddings:
            tokens = self.pipe.tokenizer(
                text,
                padding="max_length",
                max_length=self.pipe.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            with torch.no_grad():
                out = self.pipe.text_encoder(tokens.input_ids.to(self.device))[0]
            self._embeddings[text] = out.to(self.dtype)
        return self._embeddings[text]

    def generate(
        self,
        requests: Sequence[ClipRequest],
        *,
        steps: int = DEFAULT_STEPS,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> list[Any]:
        """One PIL image per request, in order. Requests run ``batch_size`` at a time; those
        that share a number of denoising steps (``int(steps * strength)``) share a batch.

        ``batch_size`` defaults to :data:`DEFAULT_BATCH` on CUDA and 1 on the CPU, where
        batching is no faster and one at a time makes each image independent of its
        batch-mates bit for bit (batched results differ by rounding: kernels vary with the
        batch size)."""
        from tqdm.auto import tqdm

        if batch_size is None:
            batch_size = DEFAULT_BATCH if str(self.device).startswith("cuda") else 1
        if steps < 1 or batch_size < 1:
            raise InputError(f"steps and batch_size must be at least 1, not {steps}, {batch_size}")
        groups: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(_denoising_steps(steps, request.strength), []).append(i)
        images: list[Any] = [None] * len(requests)
        latents = _LatentCache(self)
        bar = tqdm(total=len(requests), desc="riffusion", unit="clip", disable=not progress)
        with bar, models.model_threads(self.ref, str(self.device)):
            for _, members in sorted(groups.items()):
                for start in range(0, len(members), batch_size):
                    batch = members[start : start + batch_size]
                    outs = self._run([requests[i] for i in batch], steps, latents)
                    for i, image in zip(batch, outs, strict=True):
                        images[i] = image
                    bar.update(len(batch))
        return images

    def _run(self, batch: list[ClipRequest], steps: int, latents: _LatentCache) -> list[Any]:
        import torch
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler.from_config(self.pipe.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        t_start = steps - _denoising_steps(steps, batch[0].strength)
        timesteps = scheduler.timesteps[t_start * scheduler.order :]
        scheduler.set_begin_index(t_start * scheduler.order)
        with torch.no_grad():
            cond, uncond = self._conditioning(batch)
            init = torch.cat([latents.blend(r) for r in batch])
            noise = torch.cat([self._noise(r, init.shape[1:]) for r in batch])
            x = scheduler.add_noise(init, noise, timesteps[:1].repeat(len(batch)))
            guidance = torch.tensor([r.guidance_scale for r in batch], device=self.device)
            guidance = guidance.to(self.dtype).view(-1, 1, 1, 1)
            context = torch.cat([uncond, cond])
            for t in timesteps:
                model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
                eps = self.pipe.unet(model_in, t, encoder_hidden_states=context).sample
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
                x = scheduler.step(eps, t, x).prev_sample
            pixels = self.pipe.vae.decode(x / self.pipe.vae.config.scaling_factor).sample
        return _to_pil(pixels)

    def _conditioning(self, batch: list[ClipRequest]) -> tuple[Any, Any]:
        import torch

        def mix(text0: str, text1: str, alpha: float) -> Any:
            return _lerp(self.embed(text0), self.embed(text1), alpha)

        cond = [mix(r.start.prompt, r.end.prompt, r.alpha) for r in batch]
        uncond = [mix(r.start.negative_prompt, r.end.negative_prompt, r.alpha) for r in batch]
        return torch.cat(cond), torch.cat(uncond)

    def _noise(self, request: ClipRequest, shape: Any) -> Any:
        import torch

        def draw(seed: int) -> Any:
            generator = torch.Generator("cpu").manual_seed(int(seed))
            return torch.randn((1, *shape), generator=generator, dtype=torch.float32)

        noise = slerp(request.alpha, draw(request.start.seed), draw(request.end.seed))
        return noise.to(self.device, self.dtype)


def _denoising_steps(steps: int, strength: float) -> int:
    """Denoising steps img2img runs at ``strength`` (as diffusers counts them; at least 1)."""
    return min(max(int(steps * strength), 1), steps)


class _LatentCache:
    """VAE latents (posterior mean, scaled) of the init images of one generate() call."""

    def __init__(self, riff: Riffusion) -> None:
        self.riff = riff
        self.cache: dict[int, Any] = {}
        self.keep: list[Any] = []  # holds the images so that their ids stay unique

    def encode(self, image: Any) -> Any:
        import torch

        key = id(image)
        if key not in self.cache:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
            pixels = torch.from_numpy(array).permute(2, 0, 1)[None]
            vae = self.riff.pipe.vae
            posterior = vae.encode(pixels.to(self.riff.device, self.riff.dtype)).latent_dist
            self.cache[key] = posterior.mean * vae.config.scaling_factor
            self.keep.append(image)
        return self.cache[key]

    def blend(self, request: ClipRequest) -> Any:
        start = self.encode(request.image)
        if request.end_image is None or request.end_image is request.image:
            return start
        return _lerp(start, self.encode(request.end_image), request.alpha)


def _to_pil(pixels: Any) -> list[Any]:
    import torch
    from PIL import Image

    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a, mode="RGB") for a in array.permute(0, 2, 3, 1).cpu().numpy()]


# --------------------------------------------------------------------------- loading


def load_riffusion(
    profile: str | models.ModelProfile = "auto",
    device: str | None = None,
    dtype: Any = None,
    *,
    lora: str | None = "profile",
    lora_scale: float = 1.0,
) -> Riffusion:
    """The profile's riffusion model with a LoRA: the profile's (``"profile"``), ``"auto"``
    (see :func:`resolve_lora`), a path or hub id, or none (``None`` or ``"none"``), at
    ``lora_scale``. fp16 and SDPA attention on CUDA, float32 on CPU."""
    resolved = models.resolve_profile(profile)
    ref, required = resolve_lora(resolved.lora if lora == "profile" else lora)
    return riffusion_from_refs(
        resolved.diffusion, ref, device, dtype, lora_scale=lora_scale,
        revision=resolved.diffusion_revision, lora_required=required,
    )  # fmt: skip


_NO_LORA = ("", "none")
_LORA_SAID: set[str] = set()  # one line per process about each LoRA choice


def resolve_lora(ref: str | None) -> tuple[str | None, bool]:
    """A LoRA reference made concrete: ``(reference or None, required)``.

    ``None``/``"none"``: no LoRA. ``"auto"``: the LoRA that notebook 02 / ``videobgm
    train-lora`` wrote under ``data/models/`` when there is one (not required: if it cannot be
    loaded the run goes on without it, saying so), else none, announced in one line (the
    published one holds no weights). Anything else (a folder, a file, a hub id) was asked for
    explicitly, so it is required: a LoRA that cannot be loaded stops the run.
    """
    if ref is None or str(ref).lower() in _NO_LORA:
        return None, False
    if ref != "auto":
        return str(ref), True
    found = models.trained_lora()
    if found is not None:
        _say_once(f"videobgm: mood LoRA: {found} (trained by notebook 02)")
        return str(found), False
    _say_once(
        f"videobgm: no mood LoRA: the published {models.PUBLISHED_LORA} holds no weights; "
        "train one with notebooks 01-02 (or `videobgm train-lora`) and it is used by default"
    )
    return None, False


def _say_once(line: str) -> None:
    import sys

    if line not in _LORA_SAID:
        _LORA_SAID.add(line)
        print(line, file=sys.stderr, flush=True)


def riffusion_from_refs(
    diffusion: str,
    lora: str | None,
    device: str | None = None,
    dtype: Any = None,
    *,
    lora_scale: float = 1.0,
    revision: str | None = None,
    lora_required: bool = True,
) -> Riffusion:
    """A model and LoRA named by reference (hub id, path or ``tiny:``; the model at hub commit
    ``revision``), as a plan records them. Loaded once per process per (model, LoRA, device,
    dtype) until :func:`videobgm.models.release_models`; the scale is set on every call. A
    LoRA that cannot be loaded raises :class:`LoraError` when ``lora_required``; otherwise the
    model runs without it and one line says why."""
    device = device or models.default_device()
    dtype_name = str(dtype) if dtype is not None else None
    riff = _load(diffusion, revision, lora, device, dtype_name, lora_required)
    if riff.lora_layers:
        riff.set_lora_scale(lora_scale)
    return riff


@models.cached_loader(maxsize=2)
def _load(
    diffusion_ref: str, revision: str | None, lora_ref: str | None, device: str,
    dtype_name: str | None, lora_required: bool,
) -> Riffusion:  # fmt: skip
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    dtype = getattr(torch, dtype_name.removeprefix("torch.")) if dtype_name else None
    profile = models.ModelProfile(
        name="generate", diffusion=diffusion_ref, diffusion_revision=revision, lora=lora_ref
    )
    pipe = models.load_diffusion(profile, device, dtype)
    if device.startswith("cuda"):
        pipe.unet.set_attn_processor(AttnProcessor2_0())  # PyTorch SDPA kernels
    layers = 0
    if lora_ref:
        try:
            layers = load_lora(pipe, lora_ref)
        except LoraError as exc:
            if lora_required:
                raise
            _say_once(f"videobgm: going on without the mood LoRA: {exc}")
    return Riffusion(pipe, layers, diffusion_ref)


# --------------------------------------------------------------------------- seeds and decoding


def seed_image(emotion: str, seed: int = 0, variation: int = 0) -> Any:
    """The emotion's seed spectrogram for img2img: the codec's image of the procedural
    synthesiser's 5.12 s clip (cached; the same object for the same arguments)."""
    return _seed_image(synth.style_for(emotion).name, int(seed), int(variation))


@functools.lru_cache(maxsize=64)
def _seed_image(emotion: str, seed: int, variation: int) -> Any:
    image = spectrogram.image_from_audio(synth.clip(emotion, seed, variation))
    # The codec makes 1 + samples // hop columns (513 for a whole clip); the model works on
    # 512 x 512 (latents divisible by the UNet's downsampling): keep the first 512.
    return image.crop((0, 0, IMAGE_PX, IMAGE_PX)) if image.size != (IMAGE_PX,) * 2 else image


def images_to_audio(
    images: Sequence[Any],
    device: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Spectrogram images to mono float32 audio at 44.1 kHz through the codec, ``batch_size``
    images per batched pass (default: :data:`DEFAULT_BATCH` on CUDA, 1 on the CPU, where one
    at a time was the fastest and memory stays bounded for any number of clips)."""
    from tqdm.auto import tqdm

    device = device or models.default_device()
    if batch_size is None:
        batch_size = DEFAULT_BATCH if device.startswith("cuda") else 1
    out: list[np.ndarray] = []
    with tqdm(total=len(images), desc="decode", unit="clip", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            audio = spectrogram.audio_from_images(chunk, device=device)
            out.extend(np.asarray(a, dtype=np.float32) for a in audio)
            bar.update(len(chunk))
    return out
