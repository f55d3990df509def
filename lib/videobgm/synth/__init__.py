"""The procedural synthesiser: music by emotion, from numpy/scipy alone.

``arrange`` lays out notes and renders clips and tracks; ``styles`` holds each emotion's
scale, tempo and parts; ``instruments`` the oscillators, drums and effects.
"""

from videobgm.synth.arrange import (
    CLIP_SECONDS,
    DEFAULT_VARIATIONS,
    EMOTIONS,
    EXTRA_STYLES,
    SAMPLE_RATE,
    STEPS_PER_BEAT,
    STYLES,
    Part,
    Style,
    add_cli,
    bar_times,
    beat_times,
    chord_notes,
    clear_caches,
    clip,
    clip_samples,
    render,
    style_for,
    track,
)

__all__ = [
    "CLIP_SECONDS",
    "DEFAULT_VARIATIONS",
    "EMOTIONS",
    "EXTRA_STYLES",
    "Part",
    "SAMPLE_RATE",
    "STEPS_PER_BEAT",
    "STYLES",
    "Style",
    "add_cli",
    "bar_times",
    "beat_times",
    "chord_notes",
    "clear_caches",
    "clip",
    "clip_samples",
    "render",
    "style_for",
    "track",
]
