"""Builders of the tiny offline models, in the same on-disk formats as the real ones.

Each builder is deterministic (fixed seeds, a fixed corpus) and takes seconds on a CPU. They
are called through :func:`videobgm.models.build_tiny_models`; nothing here downloads.

- Whisper: an openai-whisper checkpoint ``{"dims": dict, "model_state_dict": ...}`` with the
  real model's vocabulary size (multilingual), 80 mel bins and 1500 audio positions.
- Emotion: a RoBERTa sequence classifier with j-hartmann's 7 labels in their order, and a
  byte-level BPE tokenizer trained here on a small corpus.
- Diffusion: a Stable Diffusion pipeline (UNet, VAE with the real 8x downsampling, CLIP text
  encoder and tokenizer, riffusion's PNDM scheduler) saved with ``save_pretrained``.
- LoRA: attention-processor LoRA weights for that UNet in the *old* ``save_attn_procs``
  format (``...processor.to_q_lora.down.weight`` in ``pytorch_lora_weights.bin``), the format
  of the original project's published LoRA.
- CLAP: a ``ClapModel`` (RoBERTa text tower, HTSAT audio tower at the real 64 mel bins and
  256 spectrogram size) with a ``ClapProcessor`` (48 kHz feature extractor, RoBERTa tokenizer
  trained here), saved with ``save_pretrained`` like ``laion/larger_clap_music``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

from videobgm.vocab import DATASET_MOODS

SEED = 0
CLIP_MAX_LENGTH = 77  # tokens; Stable Diffusion's text context
TINY_LATENT = 64  # latent px: 512 px images / the VAE's factor 8
OLD_LORA_FILE = "pytorch_lora_weights.bin"  # the old save_attn_procs file name
_MOODS = (*DATASET_MOODS, "calm")  # the catalogue moods plus one no caption uses
_TAGS = (
    "piano", "strings", "ukulele", "drums", "synth", "guitar", "bass", "pads", "plucks",
    "ambient", "cinematic", "electronic", "acoustic", "orchestral", "lofi", "rock", "jazz",
    "dark", "bright", "slow", "fast", "tense", "uplifting", "dreamy", "playful", "epic",
    "success", "progress", "bold", "mysterious", "suspense", "chase", "gentle", "warm",
)  # fmt: skip
_SENTENCES = (
    "I am so happy today, this is wonderful news!",
    "It is so sad that she had to leave us.",
    "I am afraid of what is waiting in the dark.",
    "How dare you break my things, I am furious!",
    "Wow, I did not expect that at all, what a surprise!",
    "That smell is disgusting, I feel sick.",
    "The weather is mild and the train leaves at noon.",
    "We walked along the river and talked about music.",
    "Thank you for watching, see you next time.",
)


def _corpus() -> Iterator[str]:
    """A small fixed corpus: captions in the dataset's style and plain English sentences."""
    yield from _SENTENCES
    for mood, (a, b, c) in zip(
        itertools.cycle(_MOODS), itertools.combinations(_TAGS, 3), strict=False
    ):
        yield f"{mood}, {a}, {b}, {c}"


def build_whisper(path: Path) -> Path:
    """A random tiny Whisper with the real vocabulary, saved as whisper.load_model reads it."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
        n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = Whisper(dims)
    # whisper leaves the decoder's positional embedding uninitialised (torch.empty).
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    # weights_only loading needs plain containers: dims as a dict (see CONVENTIONS.md).
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


def train_bpe(vocab_size: int, suffix: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a byte-level BPE on the corpus; return its vocabulary and merges.

    Written out (rather than ``tokenizers``' trainer) because that trainer breaks ties between
    equally frequent pairs differently from run to run; here ties go to the smallest pair, so
    the tokenizer files are byte-identical on every build. ``suffix`` marks word ends (CLIP's
    ``</w>``); RoBERTa marks word starts with the byte-level space instead.
    """
    from collections import Counter

    from tokenizers import pre_tokenizers

    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words: Counter[tuple[str, ...]] = Counter()
    for line in _corpus():
        for word, _ in splitter.pre_tokenize_str(line.lower() if suffix else line):
            if suffix:
                word = word.lstrip("Ġ")  # CLIP drops the spaces between words
            if word:
                words[(*word[:-1], word[-1] + suffix)] += 1
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = sorted(alphabet) + (sorted(c + suffix for c in alphabet) if suffix else [])
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        vocab.append(best[0] + best[1])
        words = Counter({_merge(word, best): n for word, n in words.items()})
    return {token: i for i, token in enumerate(vocab)}, merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def with_specials(vocab: dict[str, int], specials: Sequence[str]) -> dict[str, int]:
    """The vocabulary renumbered with ``specials`` first (ids 0, 1, ...), duplicates dropped."""
    ordered = list(specials) + [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return {token: i for i, token in enumerate(dict.fromkeys(ordered))}


def build_emotion(directory: Path, labels: Sequence[str]) -> Path:
    """A random tiny RoBERTa classifier with ``labels`` and a locally trained BPE tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    vocab, merges = train_bpe(vocab_size=800, suffix="")
    vocab = with_specials(vocab, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = RobertaForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _tiny_clip(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )  # fmt: skip
    return tokenizer, CLIPTextModel(config)


def build_diffusion(directory: Path) -> Path:
    """A random tiny Stable Diffusion pipeline, saved with ``save_pretrained``.

    The VAE keeps the real 8x downsampling and 4 latent channels, so a 512 x 512 image maps to
    64 x 64 latents exactly as in riffusion; attention runs only at the 32 x 32 level, which
    keeps a denoising step cheap on a CPU.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    vocab, merges = train_bpe(vocab_size=600, suffix="</w>")
    vocab = with_specials(vocab, ["<|startoftext|>", "<|endoftext|>"])
    torch.manual_seed(SEED)
    tokenizer, text_encoder = _tiny_clip(vocab, merges)
    unet = UNet2DConditionModel(
        sample_size=TINY_LATENT, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, sample_size=512,
        mid_block_add_attention=False,
    )  # fmt: skip
    # riffusion-model-v1's scheduler settings (those of Stable Diffusion v1).
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        steps_offset=1, set_alpha_to_one=False, num_train_timesteps=1000,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(directory)
    return directory


def build_old_format_lora(directory: Path, diffusion_dir: Path, rank: int = 4) -> Path:
    """LoRA weights for the tiny UNet in the old ``save_attn_procs`` layout.

    Keys ``<attention path>.processor.to_{q,k,v,out}_lora.{down,up}.weight``, shapes
    ``down: (rank, in)``, ``up: (out, rank)``; the up weights are non-zero so the LoRA changes
    the output (a freshly initialised LoRA would not).
    """
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(diffusion_dir, subfolder="unet")
    generator = torch.Generator().manual_seed(SEED + 1)
    state: dict[str, torch.Tensor] = {}
    for name in unet.attn_processors:  # "...transformer_blocks.0.attn1.processor"
        attn = unet.get_submodule(name.removesuffix(".processor"))
        layers = {"to_q": attn.to_q, "to_k": attn.to_k, "to_v": attn.to_v, "to_out": attn.to_out[0]}
        for short, linear in layers.items():
            down = torch.randn(rank, linear.in_features, generator=generator) / rank
            up = torch.randn(linear.out_features, rank, generator=generator) * 0.5
            state[f"{name}.{short}_lora.down.weight"] = down
            state[f"{name}.{short}_lora.up.weight"] = up
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / OLD_LORA_FILE)
    return directory


# --------------------------------------------------------------------------- hub rehearsal
# A local Hugging Face / Whisper / torch cache laid out like the real repositories (their file
# names, model_index entries, .bin weights, old tokenizer files, the empty published LoRA, the
# demucs hub repo), filled with the tiny models, so that the real loading path can be rehearsed
# offline. File lists checked against the hub's listings (see the README's model table).

EMPTY_LORA_FILES = ("pytorch_lora_weights.bin", "model.bin")  # JD97's: pickles, no tensors
SAFETY_CHECKER = ["stable_diffusion", "StableDiffusionSafetyChecker"]
FEATURE_EXTRACTOR = ["transformers", "CLIPImageProcessor"]


def build_hub_rehearsal(
    hf_home: Path, whisper_dir: Path, tiny: dict[str, Path], repos: dict[str, tuple[str, str]]
) -> dict[str, Path]:
    """Lay out a Hugging Face cache under ``hf_home/hub`` and a Whisper cache in
    ``whisper_dir`` from the tiny models ``tiny`` (:func:`videobgm.models.build_tiny_models`
    plus ``"demucs"``: a tiny HTDemucs bag folder). ``repos`` maps each part (``emotion``,
    ``diffusion``, ``lora``, ``demucs``, ``clap``) to ``(repo id, commit)``; ``whisper`` maps to
    ``(model name, file name)``. Returns each part's snapshot folder (or file)."""
    builders = {
        "emotion": _rehearse_emotion,
        "diffusion": _rehearse_diffusion,
        "lora": _rehearse_empty_lora,
        "demucs": _rehearse_demucs,
        "clap": _rehearse_clap,
    }
    out: dict[str, Path] = {}
    for part, build in builders.items():
        if part in repos:
            repo_id, commit = repos[part]
            out[part] = _snapshot(hf_home / "hub", repo_id, commit)
            build(out[part], tiny)
    if "whisper" in repos:
        whisper_dir.mkdir(parents=True, exist_ok=True)
        out["whisper"] = whisper_dir / repos["whisper"][1]
        out["whisper"].write_bytes(Path(tiny["whisper"]).read_bytes())
    return out


def _snapshot(hub: Path, repo_id: str, commit: str) -> Path:
    """``models--org--name/snapshots/<commit>/`` with ``refs/main`` naming that commit."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _copy_as_bin(source: Path, target: Path, weights: str) -> None:
    """Copy a saved model folder, its safetensors weights re-saved as the ``.bin`` pickle
    ``weights`` (the real repos' format), and its tokenizer also as vocab.json + merges.txt."""
    import shutil

    import torch
    from safetensors.torch import load_file

    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.suffix == ".safetensors":
            torch.save(load_file(item), target / weights)
        elif item.is_file():
            shutil.copyfile(item, target / item.name)
    if (source / "tokenizer.json").exists():
        _old_tokenizer_files(source / "tokenizer.json", target)


def _old_tokenizer_files(tokenizer_json: Path, target: Path) -> None:
    """``vocab.json`` and ``merges.txt`` (the slow tokenizers' files) from a tokenizer.json."""
    import json

    model = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (target / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    lines = "\n".join(["#version: 0.2", *merges]) + "\n"
    (target / "merges.txt").write_text(lines, encoding="utf-8")


def _rehearse_emotion(snapshot: Path, tiny: dict[str, Path]) -> None:
    _copy_as_bin(Path(tiny["emotion"]), snapshot, "pytorch_model.bin")


def _rehearse_clap(snapshot: Path, tiny: dict[str, Path]) -> None:
    """laion/larger_clap_music's layout: ``pytorch_model.bin``, no safetensors."""
    _copy_as_bin(Path(tiny["clap"]), snapshot, "pytorch_model.bin")


def _rehearse_diffusion(snapshot: Path, tiny: dict[str, Path]) -> None:
    """riffusion-model-v1's layout: ``.bin`` weights, a CLIP tokenizer as vocab.json +
    merges.txt only, and a model_index that names a safety checker and its image processor."""
    import json

    source = Path(tiny["diffusion"])
    weights = {"unet": "diffusion_pytorch_model.bin", "vae": "diffusion_pytorch_model.bin",
               "text_encoder": "pytorch_model.bin", "tokenizer": "", "scheduler": ""}  # fmt: skip
    for part, name in weights.items():
        _copy_as_bin(source / part, snapshot / part, name)
    (snapshot / "tokenizer" / "tokenizer.json").unlink()  # the real repo has none
    index = json.loads((source / "model_index.json").read_text())
    index.pop("image_encoder", None)
    index.update(safety_checker=SAFETY_CHECKER, feature_extractor=FEATURE_EXTRACTOR,
                 requires_safety_checker=True)  # fmt: skip
    (snapshot / "model_index.json").write_text(json.dumps(index, indent=2))
    (snapshot / "feature_extractor").mkdir(exist_ok=True)
    processor = {"crop_size": 224, "do_center_crop": True, "do_normalize": True,
                 "do_resize": True, "image_processor_type": "CLIPImageProcessor", "size": 224,
                 "image_mean": [0.4815, 0.4578, 0.4082], "image_std": [0.2686, 0.2613, 0.2758],
                 "resample": 3}  # fmt: skip
    (snapshot / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(processor))
    (snapshot / "safety_checker").mkdir(exist_ok=True)
    checker = {"architectures": ["StableDiffusionSafetyChecker"], "model_type": "clip"}
    (snapshot / "safety_checker" / "config.json").write_text(json.dumps(checker))


def _rehearse_empty_lora(snapshot: Path, tiny: dict[str, Path]) -> None:
    """The published mood LoRA as it is: two small pickles that hold no tensor."""
    import torch

    for name in EMPTY_LORA_FILES:
        torch.save({}, snapshot / name)


def _rehearse_demucs(snapshot: Path, tiny: dict[str, Path]) -> None:
    """adefossez/HTDemucs' layout (demucs 4.1's hub format): ``htdemucs.yaml`` naming the bag's
    models and ``<signature>.safetensors`` with the class and init arguments as JSON metadata."""
    import json

    import torch
    from safetensors.torch import save_file

    package = torch.load(Path(tiny["demucs"]) / "0badc0de.th", weights_only=False)
    klass = package["klass"]
    metadata = {"klass": f"{klass.__module__}.{klass.__name__}",
                "args": json.dumps(list(package["args"])),
                "kwargs": json.dumps(package["kwargs"])}  # fmt: skip
    state = {k: v.contiguous() for k, v in package["state"].items()}
    save_file(state, snapshot / "955717e8.safetensors", metadata=metadata)
    (snapshot / "htdemucs.yaml").write_text("models: ['955717e8']\n")


CLAP_MAX_LENGTH = 77  # tokens; enough for the prompt table's captions


def build_clap(directory: Path) -> Path:
    """A random tiny CLAP with its processor, saved with ``save_pretrained``.

    The audio tower keeps HTSAT's input (64 mel bins folded into a 256 x 256 spectrogram, 4 px
    patches, 8 px windows) with two small stages instead of four, so it reads exactly what the
    real feature extractor writes; the projection is 32-dimensional instead of 512.
    """
    import torch
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )

    vocab, merges = train_bpe(vocab_size=800, suffix="")
    vocab = with_specials(vocab, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=CLAP_MAX_LENGTH)
    text = dict(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=CLAP_MAX_LENGTH + 3, projection_dim=32,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
    )  # fmt: skip
    audio = dict(
        depths=[1, 1], num_attention_heads=[2, 4], patch_embeds_hidden_size=16, hidden_size=32,
        projection_dim=32, window_size=8, spec_size=256, num_mel_bins=64, enable_fusion=False,
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=32))
    # Not a fusion model, so the features are one 10 s view (HTSAT without fusion).
    extractor = ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
    model.save_pretrained(directory)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
