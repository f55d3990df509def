"""Does the music fit the emotion? CLAP alignment per span, Fréchet Audio Distance, ranking.

The field measures music against text with audio-text embedding models. Here that model is
CLAP (``ClapModel`` + ``ClapProcessor`` from transformers; the profile's ``clap``, by default
``laion/larger_clap_music``, a random tiny CLAP under the ``tiny`` profile):

- :class:`Clap` embeds audio (at CLAP's 48 kHz, in 10 s windows averaged per clip) and text,
  batched, on CPU or CUDA; every embedding has unit length.
- :func:`align` scores each span of a timeline zero-shot against the seven emotions' prompts
  (the prompt table of :mod:`videobgm.prompts`): a span is aligned when its intended emotion
  ranks first. :class:`Alignment` reports top-1 accuracy, mean rank, cosine margin and the
  confusion matrix.
- :func:`frechet_distance` is the Fréchet distance between two Gaussians (pure numpy/scipy);
  :func:`fad` applies it to two sets of embeddings; :func:`embed_files` caches them per file.
- :func:`rank_variants` orders a run's variants by their fit to the timeline, best first.

Anything with ``embed_audio(clips, sample_rate)``, ``embed_text(texts)`` and ``logit_scale``
can stand in for :class:`Clap` (the scoring functions only need that).
"""

from videobgm.evaluate.alignment import (
    EMOTIONS,
    Alignment,
    SpanScore,
    align,
    align_file,
    confusion_matrix,
    emotion_embeddings,
    emotion_texts,
    rank_variants,
    ranking_markdown,
    score_embeddings,
    zero_shot,
)
from videobgm.evaluate.clap import (
    CLAP_RATE,
    RATE_44K,
    Clap,
    Embedder,
    audio_windows,
    embed_files,
    load_clap,
    unit,
)
from videobgm.evaluate.command import add_cli
from videobgm.evaluate.fad import fad, frechet_distance, gaussian
from videobgm.evaluate.study import (
    STUDY_BACKENDS,
    Arm,
    backend_clips,
    reference_embeddings,
    study_arm,
    study_table,
)

__all__ = [
    "CLAP_RATE", "EMOTIONS", "RATE_44K", "STUDY_BACKENDS", "Alignment", "Arm", "Clap", "Embedder",
    "SpanScore", "add_cli", "align", "align_file", "audio_windows", "backend_clips",
    "confusion_matrix", "embed_files", "emotion_embeddings", "emotion_texts", "fad",
    "frechet_distance", "gaussian", "load_clap", "rank_variants", "ranking_markdown",
    "reference_embeddings", "score_embeddings", "study_arm", "study_table", "unit", "zero_shot",
]  # fmt: skip
