"""Figures of notebook 06 (does the music fit the emotion?): confusion matrices side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from videobgm.evaluate import EMOTIONS, Arm


def plot_confusions(arms: Sequence[Arm]):
    """One confusion matrix per backend (rows: intended emotion, columns: what CLAP heard),
    each row as shares of its clips; the count is written in every non-empty cell."""
    import matplotlib.pyplot as plt  # deferred: heavy import

    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.4), squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=True):
        counts = arm.alignment.confusion()
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
        for (row, col), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[row, col] > 0.6 else "black"
                ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=60, fontsize=8)
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=8)
        ax.set_title(f"{arm.backend}: top-1 {arm.alignment.accuracy:.0%}", fontsize=10)
        ax.set_xlabel("recognised by CLAP")
    axes[0][0].set_ylabel("intended")
    fig.tight_layout()
    return fig
