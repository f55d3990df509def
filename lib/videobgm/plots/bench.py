"""Figures of the benchmarks (notebook 05 and ``make bench``): speed ratios against the
baselines, quality figures beside them, and cost growth with the video's length."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from videobgm import paths

OURS, BASELINE = "tab:blue", "0.6"


def _label(r: dict, width: int = 64) -> str:
    return textwrap.shorten(f"{r.get('section', '')}: {r['metric']}", width, placeholder="...")


def speed_rows(rows: list[dict]) -> list[dict]:
    """Rows with a speed ratio (ours against the baseline)."""
    return [r for r in rows if r.get("kind") == "speed" and r.get("ratio")]


def plot_speed(rows: list[dict]):
    """Horizontal bars: how many times faster (or better) ours is than each baseline, on a
    log scale, with 1x marked; None when no row has a ratio."""
    import matplotlib.pyplot as plt

    found = speed_rows(rows)
    if not found:
        return None
    ratios = np.array([r["ratio"] for r in found], dtype=float)
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(found) + 1.2))
    y = np.arange(len(found))[::-1]
    ax.barh(y, ratios, color=np.where(ratios >= 1, "tab:green", "tab:red"), height=0.6)
    for yi, ratio in zip(y, ratios, strict=True):
        ax.text(ratio * 1.08, yi, f"{ratio:.3g}x", va="center", fontsize=7)
    ax.axvline(1.0, color="0.3", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, [_label(r) for r in found], fontsize=7)
    ax.set_xlim(min(0.5, ratios.min() / 2), ratios.max() * 4)
    ax.set_xlabel("ours vs baseline, measured in the same run (x, log scale; > 1 is better)")
    ax.set_title("speed against the baselines")
    fig.tight_layout()
    return fig


def quality_rows(rows: list[dict]) -> list[dict]:
    """Quality rows with both numbers."""
    return [
        r for r in rows
        if r.get("kind") == "quality" and r.get("ours") is not None
        and r.get("baseline") is not None
    ]  # fmt: skip


def plot_quality(rows: list[dict]):
    """Ours beside the baseline for every quality figure, one panel per unit; None when
    there are none."""
    import matplotlib.pyplot as plt

    found = quality_rows(rows)
    if not found:
        return None
    units = list(dict.fromkeys(r["unit"] for r in found))
    heights = [sum(r["unit"] == u for r in found) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(9, 0.42 * sum(heights) + 0.9 * len(units)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)  # fmt: skip
    for ax, unit in zip(axes[:, 0], units, strict=True):
        group = [r for r in found if r["unit"] == unit]
        y = np.arange(len(group))[::-1]
        ax.barh(y + 0.18, [r["ours"] for r in group], 0.36, color=OURS, label="ours")
        ax.barh(y - 0.18, [r["baseline"] for r in group], 0.36, color=BASELINE,
                label="baseline")  # fmt: skip
        ax.axvline(0, color="0.3", lw=0.6)
        ax.set_yticks(y, [_label(r, 70) for r in group], fontsize=7)
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower right", frameon=False)
    axes[0, 0].set_title("quality beside speed: ours and the baseline")
    fig.tight_layout()
    return fig


def growth_data(rows: list[dict]) -> dict | None:
    """The cost-growth measurements (points and fits) carried by the growth section's rows."""
    return next((r["data"] for r in rows if r.get("data") and "points" in r["data"]), None)


def plot_growth(rows: list[dict]):
    """Time (stacked by stage) and peak memory against the video's length, with the linear
    fits and the decoded audio's own size; None without growth data."""
    import matplotlib.pyplot as plt

    data = growth_data(rows)
    if data is None:
        return None
    points = sorted(data["points"], key=lambda p: p["minutes"])
    x = np.array([p["minutes"] for p in points], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    stages = list(dict.fromkeys(s for p in points for s in p["stages"]))
    bottom = np.zeros(len(points))
    width = 0.06 * max(x.max(), 1)
    for stage in stages:
        values = np.array([p["stages"].get(stage, 0.0) for p in points])
        left.bar(x, values, width, bottom=bottom, label=stage)
        bottom += values
    grid = np.linspace(0, x.max() * 1.05, 50)
    fit = data["time_fit"]
    left.plot(grid, fit["intercept"] + fit["slope"] * grid, "k--", lw=0.8,
              label=f"fit {fit['slope']:.2f} s/min, R² {fit['r2']:.3f}")  # fmt: skip
    left.plot(x, [p["seconds"] for p in points], "ko", ms=3)
    left.set(xlabel="video length (min)", ylabel="seconds", title="pipeline.run time by stage")
    left.legend(fontsize=7, frameon=False)
    memory = data["memory_fit"]
    right.plot(x, [p["peak_rss_mb"] for p in points], "o-", color=OURS, label="peak memory")
    right.plot(grid, memory["intercept"] + memory["slope"] * grid, "--", color=OURS, lw=0.8,
               label=f"fit {memory['slope']:.1f} MiB/min")  # fmt: skip
    right.plot(grid, data["audio_mb_per_minute"] * grid, ":", color="0.3",
               label="the decoded audio (mono float32)")  # fmt: skip
    right.axhline(2048, color="tab:red", lw=0.8, label="2 GiB bar")
    right.set(xlabel="video length (min)", ylabel="MiB", title="peak memory (Python process)")
    right.set_ylim(0, None)
    right.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def engine_data(rows: list[dict]) -> dict | None:
    """The engine section's measurements (local and Ray stage times, projection)."""
    return next((r["data"]["engine"] for r in rows if "engine" in (r.get("data") or {})), None)


def plot_engine(rows: list[dict]):
    """Seconds per video of each stage, local sequential beside Ray (measured), and the
    projected videos per minute against the GPU count (labelled as a projection); None
    without engine data."""
    import matplotlib.pyplot as plt

    data = engine_data(rows)
    if data is None:
        return None
    local, on_ray = data["local"]["stages"], data["ray"]["stages"]
    stages = list(local)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    y = np.arange(len(stages))[::-1]
    left.barh(y + 0.18, [on_ray.get(s, 0.0) for s in stages], 0.36, color=OURS, label="Ray")
    left.barh(y - 0.18, [local[s] for s in stages], 0.36, color=BASELINE,
              label="local sequential")  # fmt: skip
    labels = data.get("labels", {})
    left.set_yticks(y, [labels.get(s, s) for s in stages], fontsize=8)
    left.set(xlabel="seconds per video (median of rounds)",
             title=f"measured: {data['videos']} x {data['clip_s']:g} s videos, "
             f"{data['device']}, {data['profile']} models")  # fmt: skip
    left.legend(fontsize=7, frameon=False)
    gpus = [p["gpus"] for p in data["projection"]]
    rates = [p["videos_per_min"] for p in data["projection"]]
    right.plot(gpus, rates, "o--", color=OURS, label="projection, not measured")
    for n, rate, p in zip(gpus, rates, data["projection"], strict=True):
        right.annotate(p["bottleneck"], (n, rate), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")  # fmt: skip
    for name, color in (("ray", OURS), ("local", BASELINE)):
        rate = data[name]["videos_per_min"]
        right.axhline(rate, color=color, lw=0.8, label=f"{name} here, measured ({rate:.2g})")
    right.set_xticks(gpus, [str(n) for n in gpus])
    right.set(xlabel="GPUs", ylabel="videos per minute",
              title="throughput on N GPUs: projection (bottleneck step marked)")  # fmt: skip
    right.set_ylim(0, None)
    right.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG at ``path``, atomically."""
    paths.ensure_dir(Path(path).parent)
    with paths.atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return Path(path)
