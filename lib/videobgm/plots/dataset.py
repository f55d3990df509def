"""Figures of notebook 01 (curating the spectrogram dataset): moods of the catalogue and of the
selection, the most common tags per mood, example images, 44.1 kHz against a lower sample
rate, and clip and caption statistics."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from videobgm.dataset.curation import band_centres_hz, rows_above
from videobgm.spectrogram.codec import SpectrogramParams, mel_from_image
from videobgm.vocab import SAMPLE_RATE

# One colour per dataset mood, the same in every figure.
MOOD_COLORS = {
    "angry": "#d62728",
    "fear": "#9467bd",
    "funny": "#ff7f0e",
    "happy": "#ffbf00",
    "quirky": "#2ca02c",
    "sad": "#1f77b4",
    "weird": "#8c564b",
}


def _color(mood: str) -> str:
    return MOOD_COLORS.get(mood, "0.5")


def plot_mood_distribution(
    catalogue: Mapping[str, int], selection: Mapping[str, int], moods: Sequence[str]
):
    """Per mood: tracks of the catalogue tagged with it (a track counts for each of its
    moods) beside the tracks the selection gave it (one mood per track)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    x = np.arange(len(moods))
    tagged = [catalogue.get(m, 0) for m in moods]
    chosen = [selection.get(m, 0) for m in moods]
    ax.bar(x - 0.2, tagged, 0.4, color="0.8", edgecolor="0.4", label="catalogue: tagged")
    ax.bar(x + 0.2, chosen, 0.4, color=[_color(m) for m in moods], label="selection: assigned")
    for xi, value in zip(x + 0.2, chosen, strict=True):
        ax.annotate(str(value), (xi, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, moods)
    ax.set_ylabel("tracks")
    ax.set_title("Moods: the catalogue's tags and the one mood each selected track gets")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_top_tags(counts: Mapping[str, Counter], moods: Sequence[str], top: int = 6):
    """The ``top`` most common caption tags of each mood, one small bar chart per mood."""
    import matplotlib.pyplot as plt

    shown = [m for m in moods if counts.get(m)]
    cols = min(4, max(1, len(shown)))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, mood in zip(axes.flat, shown, strict=False):
        common = counts[mood].most_common(top)[::-1]
        ax.barh([t for t, _ in common], [n for _, n in common], color=_color(mood))
        ax.set_title(mood, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"Most common tags per mood (top {top})")
    fig.tight_layout()
    return fig


def plot_examples(images: Sequence, captions: Sequence[str], moods: Sequence[str]):
    """Spectrogram images side by side, titled with their captions (low notes at the bottom,
    time to the right, dark is loud)."""
    import matplotlib.pyplot as plt

    cols = min(4, max(1, len(images)))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.9 * rows), squeeze=False)
    for ax, image, text, mood in zip(axes.flat, images, captions, moods, strict=False):
        ax.imshow(np.asarray(image), aspect="auto")
        ax.set_title("\n".join(textwrap.wrap(text, 34)[:3]), fontsize=8, color=_color(mood))
        ax.set_xticks([0, image.width - 1], ["0 s", f"{image.width / 100:.2f} s"], fontsize=7)
        ax.set_yticks([])
    for ax in axes.flat[len(images) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def band_profile_db(image, params: SpectrogramParams | None = None) -> np.ndarray:
    """Mean mel amplitude of each band of an image, dB relative to the image's peak, lowest
    band first (amplitudes recovered from the pixels, so what the model sees)."""
    mel = mel_from_image(image, params)[0].astype(np.float64)
    return 20 * np.log10(np.maximum(mel.mean(axis=1) / max(mel.max(), 1e-12), 1e-8))


def plot_rate_comparison(full, low, low_rate: int, full_rate: int = SAMPLE_RATE):
    """The same clip's image from audio at ``full_rate`` and at ``low_rate``, and their mean
    level per band with ``low_rate``'s Nyquist frequency marked."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    for ax, image, rate in ((axes[0], full, full_rate), (axes[1], low, low_rate)):
        ax.imshow(np.asarray(image), aspect="auto")
        ax.set_title(f"audio at {rate / 1000:g} kHz")
        ax.set_xticks([])
        ax.set_yticks([])
    nyquist = low_rate / 2
    row = rows_above(nyquist)  # image rows above the Nyquist frequency, counted from the top
    axes[1].axhline(row, color="tab:red", lw=1, ls="--")
    axes[1].annotate(f"{nyquist / 1000:g} kHz", (5, row - 6), color="tab:red", fontsize=8)
    freqs = band_centres_hz()
    for image, rate, style in ((full, full_rate, "-"), (low, low_rate, "--")):
        axes[2].plot(freqs, band_profile_db(image), style, label=f"{rate / 1000:g} kHz audio")
    axes[2].axvline(nyquist, color="tab:red", lw=1, ls=":")
    axes[2].set_xscale("log")
    axes[2].set_xlim(50, freqs[-1])
    axes[2].set_xlabel("mel band centre (Hz)")
    axes[2].set_ylabel("mean level (dB re peak)")
    axes[2].legend(frameon=False)
    axes[2].set_title("level per image row")
    fig.tight_layout()
    return fig


def plot_clip_stats(rows, tracks):
    """Clips per mood, tags per caption, and where the windows start in their tracks.

    ``rows``: the metadata as a DataFrame (``mood``, ``text``, ``track_id``, ``start_s``,
    ``duration_s``); ``tracks``: a DataFrame with ``track_id`` and ``track_s``.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    per_mood = rows["mood"].value_counts().sort_index()
    axes[0].bar(per_mood.index, per_mood.values, color=[_color(m) for m in per_mood.index])
    axes[0].set_title("clips per mood")
    axes[0].tick_params(axis="x", labelsize=8, rotation=30)
    tags = rows["text"].str.count(", ")
    axes[1].hist(tags, bins=np.arange(tags.max() + 2) - 0.5, color="0.5")
    axes[1].set_title("tags per caption (after the mood)")
    axes[1].set_xlabel("tags")
    length = rows.merge(tracks[["track_id", "track_s"]], on="track_id", how="left")
    slack = (length["track_s"] - length["duration_s"]).clip(lower=1e-9)
    axes[2].hist(length["start_s"] / slack, bins=np.linspace(0, 1, 11), color="0.5")
    axes[2].set_title("window start / (track length - window)")
    axes[2].set_xlabel("0: track start, 1: last possible start")
    fig.tight_layout()
    return fig
