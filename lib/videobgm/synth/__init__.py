"""The procedural synthesiser: music by emotion, from numpy/scipy alone.

``arrange`` lays out notes and renders clips and tracks; ``styles`` holds each emotion's
scale, tempo and parts; ``instruments`` the oscillators, drums and effects.
"""

from videobgm.synth import arrange
from videobgm.synth.arrange import *  # noqa: F403 - the API, listed once: arrange.__all__

__all__ = list(arrange.__all__)
