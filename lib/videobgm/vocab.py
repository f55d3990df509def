"""The shared words: labels, moods, the working sample rate, clip size, and the timeline span.

Named once here and imported everywhere else (as openai/whisper's ``audio.py`` names its fixed
audio settings), so a label or a rate can never disagree between two stages. This module
imports nothing of the package: every other module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The emotion classifier's labels, in its output order (j-hartmann's distilroberta).
EMOTION_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
NEUTRAL = "neutral"
SILENCE = "silence"  # a timeline label, not a classifier label: no music in this span
TIMELINE_LABELS = (*EMOTION_LABELS, SILENCE)
DATASET_MOODS = ("angry", "fear", "funny", "happy", "quirky", "sad", "weird")  # LoRA captions

SAMPLE_RATE = 44100  # Hz; the pipeline's working rate (riffusion's)
CLIP_SECONDS = 5.12  # s; one 512 px riffusion image (10 ms per pixel column)
IMAGE_PX = 512  # px; spectrogram images are 512 x 512: 512 mel bands x 5.12 s


@dataclass(frozen=True)
class Span:
    """A stretch of the video with one emotion.

    ``confidence`` is the classifier's mean probability of ``emotion`` over the time its own
    phrases cover (weighted by duration; 0 when no phrase supports it, e.g. a video without
    speech); ``segment_ids`` are the transcript segments inside the span.
    """

    start: float  # s
    end: float  # s
    emotion: str
    confidence: float = 0.0
    segment_ids: tuple[int, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.end - self.start
