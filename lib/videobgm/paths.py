"""Every project path, built in one place from the repository root.

The root is the directory that holds ``lib/videobgm`` (the editable install's checkout), or
``$VIDEOBGM_HOME`` when that is set. Functions rather than constants, so that a change of
``VIDEOBGM_HOME`` (tests do this) takes effect without re-importing.

Also here: :func:`atomic_output`, the one way the package writes a file, so that a reader never
sees a half-written output and an interrupted run leaves the previous good file in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # lib/videobgm/paths.py -> repository root


def root() -> Path:
    """The project root: ``$VIDEOBGM_HOME`` if set, else the repository checkout."""
    home = os.environ.get("VIDEOBGM_HOME")
    return Path(home).expanduser().resolve() if home else _PACKAGE_ROOT


def data() -> Path:
    return root() / "data"


def raw() -> Path:
    """Immutable downloads (catalogue audio, cached files)."""
    return data() / "raw"


def interim() -> Path:
    return data() / "interim"


def processed() -> Path:
    """Finished datasets (spectrogram image folders)."""
    return data() / "processed"


def models() -> Path:
    """Locally built models and trained LoRAs."""
    return data() / "models"


def tiny_models() -> Path:
    """The tiny offline models that :func:`videobgm.models.build_tiny_models` writes."""
    return models() / "tiny"


def bench_models() -> Path:
    """Full-size architectures with random weights, for speed measurements."""
    return models() / "bench"


def samples() -> Path:
    """The small committed demo video and its sidecars."""
    return data() / "samples"


def demo_video() -> Path:
    return samples() / "story.mp4"


def notebooks() -> Path:
    return root() / "notebooks"


def reports() -> Path:
    """Executed notebooks, HTML and figures (generated)."""
    return root() / "reports"


def figures() -> Path:
    return reports() / "figures"


def bench_reports() -> Path:
    return reports() / "bench"


def runs() -> Path:
    """Pipeline run folders, one per (input video, parameters)."""
    return root() / "runs"


# The files of a run folder, named once: the pipeline writes them; plots, benchmarks and the
# studio read them.
RUN_STAGES = "stages.json"  # each stage's key, seconds and outputs (what makes a re-run resume)
RUN_SPEECH = "speech.json"  # speech spans from the VAD
RUN_TRANSCRIPT = "transcript.json"  # Whisper's segments (or the sidecar captions')
RUN_TIMELINE = "timeline.json"  # the emotion timeline (also .csv and .srt beside it)
RUN_SCORES = "scores.npy"  # per-segment emotion probabilities
RUN_VOICE = "voice.wav"  # the separated voice stem


def shared() -> Path:
    """The steering repository's ``shared/`` folder (reference data such as the riffusion
    conformance clip): ``$VIDEOBGM_SHARED`` if set, else ``../shared`` beside the checkout.
    It is not part of the project; checks that use it skip when it is absent."""
    override = os.environ.get("VIDEOBGM_SHARED")
    return Path(override).expanduser().resolve() if override else root().parent / "shared"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file keeps ``path``'s suffix (ffmpeg and soundfile pick the format from
    it). On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    ensure_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
