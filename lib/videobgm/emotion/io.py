"""Emotion timelines on disk: JSON (DESIGN.md's format), CSV and SRT, and hand-edited JSON back.

JSON is a list of ``{start, end, emotion, confidence, segment_ids}`` objects, times in seconds
(rounded to the millisecond), contiguous and covering the whole video; readers need only the
first four keys and may ignore the rest. CSV has the same columns; SRT has one cue per span
(``joy (0.82)``) for video editors. :func:`load_timeline` accepts a timeline that a person
edited, checks it (gaps, overlaps, unknown emotions, coverage of the video) and says in one
sentence what is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from videobgm.errors import InputError
from videobgm.paths import atomic_output
from videobgm.vocab import TIMELINE_LABELS, Span

TOLERANCE_S = 0.1  # s; gaps, overlaps and coverage misses up to this are snapped, not refused
FORMATS = (".json", ".csv", ".srt")


def to_records(spans: Sequence[Span]) -> list[dict]:
    """Plain dicts, times and confidence rounded to 1/1000 (neighbours keep equal times)."""
    return [
        {
            "start": round(span.start, 3),
            "end": round(span.end, 3),
            "emotion": span.emotion,
            "confidence": round(span.confidence, 3),
            "segment_ids": list(span.segment_ids),
        }
        for span in spans
    ]


def to_json(spans: Sequence[Span]) -> str:
    """One span per line, easy to edit by hand."""
    lines = [json.dumps(record) for record in to_records(spans)]
    return "[\n  " + ",\n  ".join(lines) + "\n]\n"


def to_csv(spans: Sequence[Span]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "end", "emotion", "confidence", "segment_ids"])
    for record in to_records(spans):
        ids = " ".join(str(i) for i in record["segment_ids"])
        writer.writerow(
            [record["start"], record["end"], record["emotion"], record["confidence"], ids]
        )
    return out.getvalue()


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm``."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d},{millis % 1000:03d}"


def to_srt(spans: Sequence[Span]) -> str:
    cues = [
        f"{i}\n{srt_time(span.start)} --> {srt_time(span.end)}\n"
        f"{span.emotion} ({span.confidence:.2f})\n"
        for i, span in enumerate(spans, start=1)
    ]
    return "\n".join(cues)


def save_timeline(spans: Sequence[Span], path: str | os.PathLike[str]) -> Path:
    """Write a timeline as JSON, CSV or SRT (chosen by the suffix), atomically."""
    path = Path(path)
    writers = {".json": to_json, ".csv": to_csv, ".srt": to_srt}
    writer = writers.get(path.suffix.lower())
    if writer is None:
        raise InputError(f"{path}: unsupported timeline format; use one of {', '.join(FORMATS)}")
    with atomic_output(path) as tmp:
        tmp.write_text(writer(spans), encoding="utf-8")
    return path


def load_timeline(path: str | os.PathLike[str], duration_s: float | None = None) -> list[Span]:
    """Read a JSON timeline (ours or edited by hand) and validate it.

    With ``duration_s`` it must cover the video up to :data:`TOLERANCE_S`. Raises InputError
    naming the file, the span and the problem.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: timeline file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    return validate_timeline(items, duration_s, source=str(path))


def validate_timeline(
    items: Sequence[dict | Span], duration_s: float | None = None, source: str = "timeline"
) -> list[Span]:
    """Check spans (dicts or :class:`Span`) and return them as Spans, snapped to be exactly
    contiguous from 0 to ``duration_s`` (or to the last end)."""
    if not isinstance(items, list) or not items:
        raise InputError(f"{source}: a timeline must be a non-empty JSON list of spans")
    spans = [_span(item, i, source) for i, item in enumerate(items, start=1)]
    if abs(spans[0].start) > TOLERANCE_S:
        raise InputError(f"{source}: span 1 starts at {spans[0].start:.3f} s, not at 0")
    for i, (prev, span) in enumerate(zip(spans, spans[1:], strict=False), start=2):
        jump = span.start - prev.end
        if abs(jump) > TOLERANCE_S:
            what = f"a gap of {jump:.3f} s" if jump > 0 else f"an overlap of {-jump:.3f} s"
            raise InputError(
                f"{source}: span {i} ({span.start:.3f}-{span.end:.3f} s) leaves {what} after "
                f"span {i - 1} ({prev.start:.3f}-{prev.end:.3f} s); spans must be contiguous"
            )
    end = spans[-1].end if duration_s is None else duration_s
    if abs(spans[-1].end - end) > TOLERANCE_S:
        raise InputError(
            f"{source}: the spans end at {spans[-1].end:.3f} s but the video lasts {end:.3f} s; "
            "the timeline must cover the whole video"
        )
    bounds = [0.0, *(span.end for span in spans[:-1]), end]
    snapped = [
        Span(bounds[i], bounds[i + 1], s.emotion, s.confidence, s.segment_ids)
        for i, s in enumerate(spans)
    ]
    for i, span in enumerate(snapped, start=1):
        if span.end <= span.start:
            raise InputError(f"{source}: span {i} has no length once snapped to its neighbours")
    return snapped


def _span(item: dict | Span, number: int, source: str) -> Span:
    if isinstance(item, Span):
        item = {**to_records([item])[0], "start": item.start, "end": item.end}
    if not isinstance(item, dict):
        raise InputError(f"{source}: span {number} is not an object with start, end and emotion")
    missing = [key for key in ("start", "end", "emotion") if key not in item]
    if missing:
        raise InputError(f"{source}: span {number} lacks {', '.join(missing)}")
    start, end = (
        _number(item["start"], "start", number, source),
        _number(item["end"], "end", number, source),
    )
    if end <= start:
        raise InputError(
            f"{source}: span {number} ends ({end:.3f} s) before it starts ({start:.3f} s)"
        )
    emotion = str(item["emotion"]).strip().lower()
    if emotion not in TIMELINE_LABELS:
        raise InputError(
            f"{source}: span {number} has unknown emotion {item['emotion']!r}; "
            f"use one of {', '.join(TIMELINE_LABELS)}"
        )
    confidence = _number(item.get("confidence", 1.0), "confidence", number, source)
    if not 0.0 <= confidence <= 1.0:
        raise InputError(f"{source}: span {number} has confidence {confidence} outside [0, 1]")
    ids = item.get("segment_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise InputError(f"{source}: span {number} segment_ids must be a list of integers")
    return Span(start, end, emotion, confidence, tuple(ids))


def _number(value, name: str, number: int, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{source}: span {number} {name} must be a number, not {value!r}")
    return float(value)


def format_table(spans: Sequence[Span]) -> str:
    """The timeline as a fixed-width text table (what ``videobgm timeline`` prints)."""
    lines = [f"{'start':>8} {'end':>8} {'length':>7}  {'emotion':<9} {'conf':>5}  segments"]
    for span in spans:
        ids = ",".join(str(i) for i in span.segment_ids) or "-"
        lines.append(
            f"{span.start:8.2f} {span.end:8.2f} {span.duration_s:7.2f}  "
            f"{span.emotion:<9} {span.confidence:5.2f}  {ids}"
        )
    return "\n".join(lines)
