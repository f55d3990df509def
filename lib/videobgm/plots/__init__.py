"""Figures for the notebooks, one module per stage; :func:`save_figure` writes them as PNG."""

from __future__ import annotations

from pathlib import Path

from videobgm import paths


def save_figure(fig, name: str) -> Path:
    """Save ``fig`` as ``reports/figures/<name>.png`` (atomically) and return the path."""
    target = paths.ensure_dir(paths.figures()) / f"{name}.png"
    with paths.atomic_output(target) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return target
