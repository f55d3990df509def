"""Figures of notebook 02 (LoRA training): dataset sample, loss and learning rate, validation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def ema(values: Sequence[float], weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing), so the
    first points are not pulled towards zero. ``weight`` 0 returns the values unchanged."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    mean = 0.0
    for i, value in enumerate(values):
        mean = weight * mean + (1.0 - weight) * value
        out[i] = mean / (1.0 - weight ** (i + 1))
    return out


def plot_dataset_sample(directory: str | Path, clips: int = 4):
    """The first ``clips`` spectrograms of an imagefolder dataset, one per mood where possible,
    titled with their captions."""
    import matplotlib.pyplot as plt
    from PIL import Image

    train = Path(directory) / "train"
    rows = [json.loads(line) for line in (train / "metadata.jsonl").read_text().splitlines()]
    by_mood = {row.get("mood", row["text"].split(",")[0]): row for row in reversed(rows)}
    chosen = (list(reversed(by_mood.values())) + rows)[:clips]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.4), squeeze=False)
    for ax, row in zip(axes[0], chosen, strict=True):
        ax.imshow(np.asarray(Image.open(train / row["file_name"]).convert("L")), cmap="gray")
        ax.set_title(row["text"], fontsize=9)
        ax.set_xlabel("time (px = 10 ms)")
        ax.set_yticks([])
    axes[0][0].set_ylabel("mel frequency (low at the bottom)")
    fig.tight_layout()
    return fig


def plot_loss(log: Mapping[str, np.ndarray], smoothing: float = 0.9):
    """Training loss per optimizer step (raw and smoothed) above the learning rate."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(2, 1))
    top.plot(log["step"], log["loss"], color="tab:blue", alpha=0.35, lw=1, label="loss")
    top.plot(log["step"], ema(log["loss"], smoothing), color="tab:blue", lw=2,
             label=f"smoothed (EMA {smoothing})")  # fmt: skip
    top.set_ylabel("denoising MSE")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(log["step"], log["lr"], color="tab:orange")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("optimizer step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_spectrograms(images: Mapping[str, Any], title: str | None = None):
    """Spectrogram images side by side, titled with their keys (e.g. one per mood)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(images), 1), figsize=(2.2 * max(len(images), 1), 2.8),
                             squeeze=False)  # fmt: skip
    for ax, (name, image) in zip(axes[0], images.items(), strict=False):
        ax.imshow(np.asarray(image.convert("L")), cmap="gray")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_validation(
    before: str | Path, after: str | Path, labels: tuple[str, str] = ("before", "after")
):
    """Validation spectrograms of two steps side by side: one column per prompt."""
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = [sorted(Path(folder).glob("*.png")) for folder in (before, after)]
    columns = max(len(rows[0]), len(rows[1]), 1)
    fig, axes = plt.subplots(2, columns, figsize=(2.2 * columns, 4.8), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(np.asarray(Image.open(images[c]).convert("L")), cmap="gray")
                ax.set_title(images[c].stem.split("-", 1)[-1], fontsize=9)
        axes[r][0].set_ylabel(label)
    fig.tight_layout()
    return fig
