"""Curate a mood-captioned spectrogram dataset (a Hugging Face imagefolder).

``catalogue`` reads track tables (or makes the synthetic one); ``fetch`` downloads audio;
``clips`` cuts tracks into spectrogram images; ``curation`` selects and captions; ``card``
writes the dataset card and pushes it.
"""

from videobgm.dataset import curation
from videobgm.dataset.curation import *  # noqa: F403 - the API, listed once: curation.__all__

__all__ = list(curation.__all__)
