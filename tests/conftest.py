"""Shared fixtures. Tests always run offline with the tiny models (never the model hub)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["VIDEOBGM_PROFILE"] = "tiny"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# libgomp busy-waits by default; on shared cores that costs a time slice per small operation.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from videobgm import media, models, paths  # noqa: E402

# Test files that run the notebooks' own code paths against the repository's data/ and runs/
# folders (notebook 02's LoRA is what notebook 04's "auto" picks up; notebook 04 and its papermill
# runs share the demo's run folder): under pytest-xdist they go to one worker, in order, with the
# notebooks. (The web app's tests use their own session folders.)
SHARED_STATE_FILES = {"test_notebook_execution.py"}


def pytest_configure(config):
    """Build the tiny models once, before pytest-xdist starts its workers (each worker would
    otherwise build them at the same time on a fresh clone)."""
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        models.build_tiny_models()


def pytest_collection_modifyitems(config, items):
    """Skip ``requires_cuda`` tests on machines without a GPU (the only allowed skip)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)


def worker_scope(nodeid: str) -> str:
    """The pytest-xdist work unit of a test: its file (module fixtures are built once), except
    that the notebooks and :data:`SHARED_STATE_FILES` form one unit, run in order."""
    path = nodeid.split("::", 1)[0]
    shared = path.endswith(".ipynb") or path.rsplit("/", 1)[-1] in SHARED_STATE_FILES
    return "notebooks" if shared else path


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown when xdist is not installed
def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs ``-n auto --dist loadfile``: pytest-xdist's file scheduling, with
    :func:`worker_scope` for the unit. (Its ``xdist_group`` marks would do this, but under pytest
    9.2 ``--dist loadgroup`` silently groups nothing: pytest-xdist issue #1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # deferred: only with pytest-xdist

    class SharedStateScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)

    return SharedStateScheduling(config, log)


@pytest.fixture(scope="session")
def sample_video():
    """The committed demo sample."""
    path = paths.demo_video()
    assert path.exists(), f"{path} is missing; rebuild it with `make sample`"
    return path


def tone(seconds: float, freq: float = 440.0, rate: int = 44100, level: float = 0.3):
    t = np.arange(int(round(seconds * rate))) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def gradient_frames(seconds: float, fps: float = 10, size=(64, 48)):
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    for i in range(int(round(seconds * fps))):
        frame = np.broadcast_to((ramp + 20 * i) % 256, (height, width, 3))
        yield frame.astype(np.uint8)


@pytest.fixture
def make_video(tmp_path):
    """Factory: a small H.264 video of ``seconds`` with (or without) a tone for audio."""

    def _make(seconds: float = 2.0, audio: bool = True, name: str = "clip.mp4", fps: float = 10):
        wav = None
        if audio:
            wav = media.write_audio(tmp_path / f"{name}.wav", tone(seconds), 44100)
        return media.write_video(tmp_path / name, gradient_frames(seconds, fps), fps, wav)

    return _make


def phrases(*items: tuple[float, float, str, float], duration_s: float) -> tuple:
    """A transcript and its scores from ``(start_s, end_s, emotion, top probability)`` items;
    the other six labels share the rest equally (for the emotion tests)."""
    from videobgm.transcribe import Segment, Transcript
    from videobgm.vocab import EMOTION_LABELS

    segments, rows = [], []
    for i, (start, end, name, top) in enumerate(items):
        segments.append(Segment(start, end, f"phrase {i}", id=i))
        row = np.full(len(EMOTION_LABELS), (1 - top) / (len(EMOTION_LABELS) - 1))
        row[EMOTION_LABELS.index(name)] = top
        rows.append(row)
    scores = np.array(rows).reshape(-1, len(EMOTION_LABELS))
    return Transcript(tuple(segments), duration_s, "en", "test"), scores
