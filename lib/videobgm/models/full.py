"""The ``bench`` profile: the pretrained models' *architectures* with random weights, built
locally, so that speed on full-size models is measured without downloading anything.

Sizes are the real ones: Stable Diffusion 1.5 (riffusion-model-v1's UNet, VAE and CLIP ViT-L/14
text encoder), Whisper ``small`` (our CPU model), ``large-v3`` (the original project's ``large``
and our translating model) and ``turbo`` (our CUDA model), and DistilRoBERTa-base with the 7
emotion labels. Random weights say nothing about quality, only about time and memory.

Two ways to get them:

- in memory (:func:`whisper_model`, :func:`diffusion_pipeline`), for timings: built in about a
  second, because the default initialisers are skipped and every tensor is filled from a small
  pool of seeded normal numbers (norm layers get ones and zeros, as real checkpoints have);
- on disk, through the profile's references (``bench:diffusion``, ``bench:whisper-large-v3``
  ...), which :func:`videobgm.models.locate` resolves with :func:`build`: the same formats as the
  real models (an openai-whisper ``.pt``, a diffusers folder, a transformers folder, an old-style
  LoRA), loaded by the same loading code. They are big (Whisper large-v3 is 6 GB in float32), so
  each is built once, on first use, into ``data/models/bench/``.

The tokenizers are the tiny models' locally trained ones (the real vocabularies cannot be
downloaded); the models keep the real vocabulary sizes, so every matrix has its real shape.
Text gets a few more tokens than the real tokenizers would give it (a smaller vocabulary),
which errs on the slow side.

With random weights Whisper would decode hallucinations of random length; :func:`fixed_tokens`
makes every 30 s window decode a fixed, realistic transcript instead (see there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from videobgm import paths
from videobgm.errors import InputError
from videobgm.models import tiny
from videobgm.vocab import EMOTION_LABELS

SEED = 0
POOL_SIZE = 1 << 20  # seeded normal numbers that fill every weight tensor
WEIGHT_STD = 0.02  # of the random weights (GPT-2's initialisation scale)

# --------------------------------------------------------------------------- architectures

WHISPER_DIMS = {  # openai-whisper's ModelDimensions of the released checkpoints
    "small": dict(n_mels=80, n_audio_ctx=1500, n_audio_state=768, n_audio_head=12,
                  n_audio_layer=12, n_vocab=51865, n_text_ctx=448, n_text_state=768,
                  n_text_head=12, n_text_layer=12),
    "large-v3": dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20,
                     n_audio_layer=32, n_vocab=51866, n_text_ctx=448, n_text_state=1280,
                     n_text_head=20, n_text_layer=32),
    "turbo": dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20,
                  n_audio_layer=32, n_vocab=51866, n_text_ctx=448, n_text_state=1280,
                  n_text_head=20, n_text_layer=4),
}  # fmt: skip
SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5 unet/config.json (riffusion-model-v1's)
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)  # fmt: skip
SD15_VAE = dict(  # vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
)  # fmt: skip
CLIP_L_TEXT = dict(  # text_encoder/config.json (CLIP ViT-L/14's text tower)
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    projection_dim=768,
)  # fmt: skip
DISTILROBERTA = dict(  # distilroberta-base (j-hartmann's classifier's encoder)
    vocab_size=50265, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DiffusionSizes:
    """The three networks of a Stable Diffusion pipeline, as constructor arguments."""

    unet: dict = dataclasses.field(default_factory=lambda: dict(SD15_UNET))
    vae: dict = dataclasses.field(default_factory=lambda: dict(SD15_VAE))
    text: dict = dataclasses.field(default_factory=lambda: dict(CLIP_L_TEXT))


PARTS = {  # bench:<part> -> file or folder name under data/models/bench/
    "whisper-small": "whisper-small.pt",
    "whisper-large-v3": "whisper-large-v3.pt",
    "whisper-turbo": "whisper-turbo.pt",
    "emotion": "emotion",
    "diffusion": "diffusion",
    "lora": "lora",
}


# --------------------------------------------------------------------------- fast random weights


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Skip torch's default initialisers while modules are constructed (they cost half a minute
    for Whisper large on two cores; :func:`randomise` fills the tensors afterwards)."""
    import torch

    names = ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "xavier_uniform_",
             "zeros_", "ones_", "constant_")  # fmt: skip
    saved = {name: getattr(torch.nn.init, name) for name in names}
    for name in names:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def randomise(module: Any, seed: int = SEED, std: float = WEIGHT_STD) -> Any:
    """Fill every parameter of ``module`` deterministically: one-dimensional weights (norm
    scales, in all these architectures) with 1, biases with 0, everything else from a cyclic
    pool of N(0, std) numbers. Seconds for a billion parameters; the values only need to be
    finite and ordinary (no NaN, no denormals)."""
    import torch

    pool = torch.randn(POOL_SIZE, generator=torch.Generator().manual_seed(seed)) * std
    with torch.no_grad():
        for offset, (name, param) in enumerate(module.named_parameters()):
            if param.ndim == 1:  # norm scales (1) and biases (0)
                param.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            flat = param.view(-1)
            shift = (offset * 7919) % POOL_SIZE  # tensors do not all start alike
            rolled = torch.roll(pool, shift)
            for start in range(0, flat.numel(), POOL_SIZE):
                piece = flat[start : start + POOL_SIZE]
                piece.copy_(rolled[: piece.numel()])
    return module


# --------------------------------------------------------------------------- Whisper


def whisper_model(name: str = "large-v3", dims: dict | None = None) -> Any:
    """An openai-whisper ``Whisper`` with the released model ``name``'s dimensions (or
    ``dims``) and random weights, in memory on the CPU."""
    from whisper.model import ModelDimensions, Whisper

    with _no_init():
        model = Whisper(ModelDimensions(**(dims or WHISPER_DIMS[name])))
    return randomise(model).eval()


def build_whisper(path: Path, name: str = "large-v3", dims: dict | None = None) -> Path:
    """Save :func:`whisper_model` as ``whisper.load_model`` reads it (dims as a plain dict)."""
    import torch

    model = whisper_model(name, dims)
    torch.save({"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()},
               path)  # fmt: skip
    return path


# The transcript a fixed-token window decodes: ordinary English, so that its gzip compression
# ratio (about 1.6) stays below Whisper's 2.4 hallucination threshold.
_TEXT = (
    " This morning I got wonderful news. I passed my exam, and I was so happy that I called my"
    " sister, who laughed and said she had known all along. Then we walked down to the river,"
    " where the old boats are kept, and talked about the summer, the garden, the neighbours and"
    " the little dog that follows everyone home. By the evening the rain had started again, so"
    " we stayed inside, cooked soup with the last of the carrots, and listened to the radio."
)
TOKENS_PER_WINDOW = 100  # text tokens per 30 s window: about 150 words a minute of speech
SEGMENTS_PER_WINDOW = 4  # timestamped segments per window


def fixed_plan(tokenizer: Any, n_tokens: int = TOKENS_PER_WINDOW,
               segments: int = SEGMENTS_PER_WINDOW) -> list[int]:  # fmt: skip
    """The tokens one 30 s window decodes: ``segments`` timestamped segments sharing
    ``n_tokens`` text tokens (``<|t0|> text <|t1|><|t1'|> text ...``), ending on a single
    timestamp (so the next window starts 30 s later), then end-of-text."""
    text = tokenizer.encode(_TEXT)
    text = (text * (n_tokens // len(text) + 1))[:n_tokens]
    plan: list[int] = []
    per = -(-n_tokens // segments)
    span = 30.0 / segments
    for k in range(segments):
        start, end = k * span, (k + 1) * span - 0.5
        plan.append(tokenizer.timestamp_begin + round(start / 0.02))
        plan.extend(text[k * per : (k + 1) * per])
        plan.append(tokenizer.timestamp_begin + round(end / 0.02))
    return [*plan, tokenizer.eot]


@contextlib.contextmanager
def fixed_tokens(n_tokens: int = TOKENS_PER_WINDOW, segments: int = SEGMENTS_PER_WINDOW):
    """Make every Whisper decoding in this block emit :func:`fixed_plan`'s tokens, and every
    language detection find English.

    How: a logit filter, appended after Whisper's own, sets every logit to -inf except the
    planned token's, which it sets to 0. The model still runs its full forward pass for every
    token (so the time is a real decoding's), greedy and sampled decoding both pick the
    planned token, its log probability is exactly 0 (average log probability 0 > -1) and the
    text is ordinary English (compression ratio < 2.4): the temperature fallback never fires,
    as on clean speech. With ``condition_on_previous_text`` the previous windows' tokens
    become the prompt, exactly as in a real run. Language detection runs in full, then its
    probabilities are replaced by English = 1 (random weights would pick a random language
    and send the pipeline down its translation path).
    """
    from whisper import decoding
    from whisper.model import Whisper

    original_detect = Whisper.detect_language

    def detect(model, mel, tokenizer=None):
        tokens, probs = original_detect(model, mel, tokenizer)
        english = [{code: float(code == "en") for code in p} for p in _as_list(probs)]
        return tokens, english if isinstance(probs, list) else english[0]

    original_init = decoding.DecodingTask.__init__

    class _Fixed(decoding.LogitFilter):
        def __init__(self, plan: list[int], sample_begin: int) -> None:
            self.plan, self.sample_begin = plan, sample_begin

        def apply(self, logits, tokens) -> None:
            step = min(tokens.shape[1] - self.sample_begin, len(self.plan) - 1)
            logits[:] = float("-inf")
            logits[:, self.plan[step]] = 0.0

    def init(task, model, options) -> None:
        original_init(task, model, options)
        if options.task != "lang_id":
            plan = fixed_plan(task.tokenizer, n_tokens, segments)
            task.logit_filters.append(_Fixed(plan, task.sample_begin))

    decoding.DecodingTask.__init__ = init
    Whisper.detect_language = detect
    try:
        yield
    finally:
        decoding.DecodingTask.__init__ = original_init
        Whisper.detect_language = original_detect


def _as_list(probs: Any) -> list:
    return probs if isinstance(probs, list) else [probs]


# --------------------------------------------------------------------------- Stable Diffusion


def diffusion_pipeline(sizes: DiffusionSizes | None = None) -> Any:
    """A Stable Diffusion img2img pipeline with ``sizes`` (default SD 1.5's), random weights,
    the tiny models' CLIP tokenizer and riffusion's PNDM scheduler, in memory on the CPU."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sizes = sizes or DiffusionSizes()
    vocab, merges = tiny.train_bpe(vocab_size=600, suffix="</w>")
    vocab = tiny.with_specials(vocab, ["<|startoftext|>", "<|endoftext|>"])
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=tiny.CLIP_MAX_LENGTH)
    ids = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
           "pad_token_id": vocab["<|endoftext|>"]}  # fmt: skip
    with _no_init():
        text = CLIPTextModel(CLIPTextConfig(**sizes.text, **ids))
        unet = UNet2DConditionModel(**sizes.unet)
        vae = AutoencoderKL(**sizes.vae)
    for seed, net in enumerate((text, unet, vae)):
        randomise(net, SEED + seed)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        steps_offset=1, set_alpha_to_one=False, num_train_timesteps=1000,
    )  # fmt: skip
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae.eval(), text_encoder=text.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_diffusion(directory: Path, sizes: DiffusionSizes | None = None) -> Path:
    """Save :func:`diffusion_pipeline` with ``save_pretrained`` (what ``from_pretrained``
    and :func:`videobgm.models.load_diffusion` read)."""
    diffusion_pipeline(sizes).save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- emotion


def build_emotion(directory: Path, sizes: dict | None = None) -> Path:
    """A DistilRoBERTa-base-sized sequence classifier with the 7 emotion labels and random
    weights, and the tiny models' BPE tokenizer, saved with ``save_pretrained``."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        tiny.build_emotion(Path(tmp), EMOTION_LABELS)  # for its tokenizer and label maps
        config = RobertaConfig.from_pretrained(tmp)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    for key, value in (sizes or DISTILROBERTA).items():
        setattr(config, key, value)
    with _no_init():
        model = RobertaForSequenceClassification(config)
    randomise(model).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- on disk


def build(part: str, directory: Path | None = None) -> Path:
    """Build one ``bench:<part>`` model into ``directory`` (default ``data/models/bench``)
    unless it is there already; return its path. Appears atomically."""

    if part not in PARTS:
        raise InputError(f"unknown bench model 'bench:{part}'; known: {', '.join(PARTS)}")
    folder = paths.ensure_dir(Path(directory) if directory else paths.bench_models())
    target = folder / PARTS[part]
    if target.exists():
        return target
    if part == "lora":
        diffusion = build("diffusion", folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{part}-", dir=folder))
    try:
        out = staging / PARTS[part]
        if part.startswith("whisper-"):
            build_whisper(out, part.removeprefix("whisper-"))
        elif part == "emotion":
            build_emotion(out)
        elif part == "diffusion":
            build_diffusion(out)
        else:  # an old save_attn_procs LoRA of rank 4 for the full-size UNet
            tiny.build_old_format_lora(out, diffusion)
        (staging / "manifest.json").write_text(json.dumps({"part": part}))
        with contextlib.suppress(OSError):  # another process may have finished first
            os.replace(out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
