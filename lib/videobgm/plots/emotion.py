"""Figures of notebook 03 (emotion timeline from speech): the waveform under the transcript,
the emotion probabilities per phrase over time, and timelines one above the other."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from videobgm.transcribe import Transcript
from videobgm.vocab import EMOTION_LABELS, TIMELINE_LABELS, Span

# One colour per timeline label, the same in every figure (silence: white with a grey edge).
EMOTION_COLORS = {
    "anger": "#d62728",
    "disgust": "#8c564b",
    "fear": "#9467bd",
    "joy": "#ffbf00",
    "neutral": "#b0b0b0",
    "sadness": "#1f77b4",
    "surprise": "#2ca02c",
    "silence": "#ffffff",
}
_ENVELOPE_BINS = 2000  # columns of the drawn waveform envelope


def plot_waveform(audio: np.ndarray, sample_rate: int, transcript: Transcript | None = None):
    """The waveform's envelope with each transcript segment shaded and labelled by its text."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 3.2))
    bins = min(_ENVELOPE_BINS, max(1, audio.size))
    usable = audio[: audio.size - audio.size % bins].reshape(bins, -1)
    times = (np.arange(bins) + 0.5) * usable.shape[1] / sample_rate
    ax.fill_between(times, usable.min(axis=1), usable.max(axis=1), color="0.3", lw=0)
    peak = float(np.abs(audio).max()) or 1.0
    for i, seg in enumerate(transcript or ()):
        ax.axvspan(seg.start, seg.end, color="tab:orange", alpha=0.18, lw=0)
        ax.axvline(seg.start, color="tab:orange", lw=0.6, alpha=0.7)
        label = textwrap.shorten(seg.text, width=24, placeholder="...")
        ax.text(seg.start, peak * (1.05 + 0.2 * (i % 3)), label, fontsize=7, va="bottom")
    ax.set_ylim(-peak * 1.1, peak * 1.75)
    ax.set_xlim(0, audio.size / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    ax.set_title("waveform with the transcript's segments (shaded)")
    fig.tight_layout()
    return fig


def plot_scores(
    transcript: Transcript,
    scores: np.ndarray,
    title: str = "probability of each emotion, per phrase",
    step_s: float = 0.05,
):
    """A heat map: each emotion's probability (rows) over time, blank between phrases."""
    import matplotlib.pyplot as plt

    duration = transcript.duration_s
    grid = np.full((len(EMOTION_LABELS), max(1, int(np.ceil(duration / step_s)))), np.nan)
    for seg, row in zip(transcript, scores, strict=True):
        first = int(seg.start / step_s)
        grid[:, first : max(first + 1, int(seg.end / step_s))] = np.asarray(row)[:, None]
    fig, ax = plt.subplots(figsize=(12, 3.2))
    extent = (0, grid.shape[1] * step_s, len(EMOTION_LABELS) - 0.5, -0.5)
    image = ax.imshow(
        grid, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1, extent=extent
    )
    for seg in transcript:  # where one phrase ends and the next begins
        ax.axvline(seg.start, color="white", lw=0.8)
    ax.set_yticks(range(len(EMOTION_LABELS)), EMOTION_LABELS)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, pad=0.01, label="probability")
    fig.tight_layout()
    return fig


def plot_timelines(rows: Mapping[str, Sequence[Span]], title: str = "emotion timelines"):
    """Timelines one above the other (first on top), coloured by emotion, with a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(12, 0.6 + 0.55 * len(rows)))
    used: set[str] = set()
    for y, spans in enumerate(rows.values()):
        bars = [(span.start, span.duration_s) for span in spans]
        colors = [EMOTION_COLORS[span.emotion] for span in spans]
        ax.broken_barh(bars, (y - 0.38, 0.76), facecolors=colors, edgecolors="0.4", lw=0.6)
        used.update(span.emotion for span in spans)
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, max(spans[-1].end for spans in rows.values()))
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    legend = [Patch(facecolor=EMOTION_COLORS[n], edgecolor="0.4", label=n) for n in TIMELINE_LABELS]
    ax.legend(handles=[p for p in legend if p.get_label() in used], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout()
    return fig
