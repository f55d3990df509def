"""Speech activity: where someone speaks, from Silero VAD (its weights ship in the wheel).

The detector runs on the original audio at 16 kHz mono, a piece at a time: the model keeps
its own state from one 512-sample window (32 ms) to the next, so the windows' speech
probabilities, and the spans made from them by Silero's own rules
(``get_speech_timestamps_from_probs``), are identical whether the audio comes in one piece or
streamed. Memory holds one piece and one probability per window (31 values a second).

Spans are ``(start_s, end_s)`` tuples; :func:`save_spans` / :func:`load_spans` keep them in a
run folder as JSON, the stage's output, reused by the mix and by the report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from videobgm import media, paths
from videobgm.errors import InputError

VAD_RATE = 16000  # Hz; the rate Silero VAD is run at
WINDOW = 512  # samples per speech probability at 16 kHz (32 ms), fixed by the model
PIECE_S = 30.0  # s of audio decoded and analysed at a time

Span = tuple[float, float]  # (start_s, end_s) of one stretch of speech


@dataclass(frozen=True)
class VadParams:
    """Silero's rules for turning window probabilities into spans of speech.

    ``min_silence_ms`` is longer than Silero's 100 ms default so that breaths and commas
    inside a sentence do not release the duck, yet a pause of 0.8 s between sentences does;
    ``speech_pad_ms`` widens each span a little to cover soft word onsets and endings.
    """

    threshold: float = 0.5  # speech probability that starts a span
    min_speech_ms: int = 250  # shorter bursts are dropped (clicks, coughs)
    min_silence_ms: int = 300  # a span ends only after this much silence
    speech_pad_ms: int = 30  # added to both ends of every span (Silero's default)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"VAD threshold {self.threshold} must be between 0 and 1")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise InputError(f"VAD {name} {getattr(self, name)} must not be negative")


def load_model():
    """Silero VAD's TorchScript model, from the weights inside the ``silero-vad`` wheel."""
    import torch  # deferred: heavy, and only the VAD stage needs it here

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # its import sets torch to one thread globally

    model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def probabilities(pieces: Iterable[np.ndarray], model=None, progress=None) -> np.ndarray:
    """Speech probability of every :data:`WINDOW` of 16 kHz mono audio given in pieces of
    any length (the last window zero-padded, as Silero pads it). ``progress``: an optional
    callable given the number of samples done after each piece."""
    import torch  # deferred: heavy

    model = model if model is not None else load_model()
    model.reset_states()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32 ms window is too small to share between threads
    try:
        out = [_window_probabilities(model, windows) for windows in _windows(pieces, progress)]
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _windows(pieces: Iterable[np.ndarray], progress=None) -> Iterator[np.ndarray]:
    """``(n, WINDOW)`` float32 blocks of consecutive windows; the tail zero-padded."""
    carry = np.zeros(0, np.float32)
    done = 0
    for piece in pieces:
        piece = np.asarray(piece, dtype=np.float32)
        if piece.ndim != 1:
            raise InputError(f"speech activity needs mono audio, not shape {piece.shape}")
        joined = np.concatenate([carry, piece])
        whole = len(joined) - len(joined) % WINDOW
        carry = joined[whole:]
        done += len(piece)
        if whole:
            yield joined[:whole].reshape(-1, WINDOW)
        if progress is not None:
            progress(done)
    if len(carry):
        yield np.pad(carry, (0, WINDOW - len(carry)))[None]


def _window_probabilities(model, windows: np.ndarray) -> np.ndarray:
    import torch  # deferred: heavy

    tensor = torch.from_numpy(np.ascontiguousarray(windows))
    with torch.inference_mode():
        return np.array([model(row, VAD_RATE).item() for row in tensor], np.float32)


def spans_from_probabilities(
    probs: np.ndarray, n_samples: int, params: VadParams | None = None
) -> list[Span]:
    """Silero's own rules (``get_speech_timestamps_from_probs``) applied to window
    probabilities of ``n_samples`` of 16 kHz audio; spans in seconds."""
    from silero_vad import get_speech_timestamps_from_probs

    params = params or VadParams()
    found = get_speech_timestamps_from_probs(
        [float(p) for p in probs], sampling_rate=VAD_RATE, threshold=params.threshold,
        min_speech_duration_ms=params.min_speech_ms,
        min_silence_duration_ms=params.min_silence_ms, speech_pad_ms=params.speech_pad_ms,
        audio_length_samples=n_samples,
    )  # fmt: skip
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in found]


def detect(
    pieces: Iterable[np.ndarray], params: VadParams | None = None, model=None, progress=None
) -> list[Span]:
    """Spans of speech in 16 kHz mono audio given as an iterable of pieces (or one array in
    a list)."""
    counted = _Counted(pieces)
    probs = probabilities(counted, model, progress)
    return spans_from_probabilities(probs, counted.n, params)


class _Counted:
    """An iterable of pieces that counts the samples it passes on."""

    def __init__(self, pieces: Iterable[np.ndarray]) -> None:
        self.pieces, self.n = pieces, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for piece in self.pieces:
            self.n += len(piece)
            yield piece


def detect_array(
    audio: np.ndarray, sample_rate: int, params: VadParams | None = None, model=None
) -> list[Span]:
    """Spans of speech in a mono array at any rate (resampled to 16 kHz, a piece at a time)."""
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate == VAD_RATE:
        return detect([audio], params, model)
    g = np.gcd(int(sample_rate), VAD_RATE)
    return detect(
        [resample_poly(audio, VAD_RATE // g, sample_rate // g).astype(np.float32)], params
    )


def detect_file(
    path: str | os.PathLike[str], params: VadParams | None = None, progress: bool = False
) -> list[Span]:
    """Spans of speech in a media file's first audio stream, decoded by :mod:`media` to
    16 kHz mono and analysed :data:`PIECE_S` at a time (memory stays flat)."""
    info = media.probe(path)
    if not info.has_audio:
        return []
    bar = _progress_bar(info.duration_s, progress)
    try:
        pieces = media.iter_audio(path, VAD_RATE, mono=True, chunk_s=PIECE_S)
        return detect(pieces, params, progress=lambda done: bar.update(done / VAD_RATE - bar.n))
    finally:
        bar.close()


def _progress_bar(seconds: float, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=round(seconds, 1), unit="s", desc="speech activity", disable=not show)


def save_spans(
    spans: Sequence[Span], path: str | os.PathLike[str], params: VadParams | None = None
) -> Path:
    """Write spans as JSON (``{"params": ..., "spans": [{"start", "end"}, ...]}``), atomically."""
    record = {
        "detector": "silero-vad", "params": asdict(params or VadParams()),
        "spans": [{"start": round(a, 4), "end": round(b, 4)} for a, b in spans],
    }  # fmt: skip
    with paths.atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return Path(path)


def load_spans(path: str | os.PathLike[str]) -> list[Span]:
    """Spans written by :func:`save_spans`."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        return [(float(s["start"]), float(s["end"])) for s in record["spans"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: is not a speech-activity file ({exc})") from None


SNAP_REACH_S = 0.5  # s; a transcript boundary further than this from a VAD edge stays put


def snap(times: Sequence[float], edges: Sequence[float], reach_s: float = SNAP_REACH_S):
    """Each time moved to the nearest of ``edges`` within ``reach_s`` (unchanged when none
    is that close)."""
    edges = np.array(sorted(edges), dtype=np.float64)
    if not len(edges):
        return [float(t) for t in times]
    out = []
    for t in times:
        nearest = edges[np.argmin(np.abs(edges - t))]
        out.append(float(nearest) if abs(nearest - t) <= reach_s else float(t))
    return out


def snap_segments(
    segments: Sequence[Span], spans: Sequence[Span], reach_s: float = SNAP_REACH_S
) -> list[Span]:
    """Transcript segments with each start moved to the nearest speech start and each end to
    the nearest speech end of ``spans`` (within ``reach_s``), so that emotion spans begin
    where the detector heard speech begin; a segment that would collapse keeps its times."""
    starts = snap([a for a, _ in segments], [a for a, _ in spans], reach_s)
    ends = snap([b for _, b in segments], [b for _, b in spans], reach_s)
    return [
        (a, b) if a < b else (float(a0), float(b0))
        for (a, b), (a0, b0) in zip(zip(starts, ends, strict=True), segments, strict=True)
    ]


def edge_errors(found: Sequence[Span], truth: Sequence[Span]) -> tuple[np.ndarray, np.ndarray]:
    """For every span of ``truth``: the nearest start of ``found`` minus its start, and the
    nearest end minus its end (s); NaN when ``found`` is empty."""
    if not found:
        return np.full(len(truth), np.nan), np.full(len(truth), np.nan)
    starts, ends = np.array([a for a, _ in found]), np.array([b for _, b in found])
    start_err = [starts[np.argmin(np.abs(starts - a))] - a for a, _ in truth]
    end_err = [ends[np.argmin(np.abs(ends - b))] - b for _, b in truth]
    return np.array(start_err), np.array(end_err)
