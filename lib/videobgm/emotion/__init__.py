"""Speech emotion: per-segment scores, the smoothed timeline, its files, and its evaluation.

``classifier`` scores segments and smooths them into spans; ``io`` reads and writes
timelines (JSON, CSV, SRT); ``eval`` measures agreement and recovery.
"""

from videobgm.emotion.classifier import (
    METHODS,
    NEUTRAL_POLICIES,
    TimelineParams,
    add_cli,
    analyze,
    classify,
    postprocess,
    segment_labels,
    timeline,
    viterbi_path,
)
from videobgm.emotion.eval import (
    agreement,
    labels_at,
    recovery,
    sensitivity,
    simulate_scores,
)
from videobgm.emotion.io import (
    FORMATS,
    TOLERANCE_S,
    format_table,
    load_timeline,
    save_timeline,
    srt_time,
    to_csv,
    to_json,
    to_records,
    to_srt,
    validate_timeline,
)
from videobgm.vocab import EMOTION_LABELS, NEUTRAL, SILENCE, TIMELINE_LABELS, Span

__all__ = [
    "EMOTION_LABELS",
    "NEUTRAL",
    "SILENCE",
    "TIMELINE_LABELS",
    "Span",
    "FORMATS",
    "METHODS",
    "NEUTRAL_POLICIES",
    "TOLERANCE_S",
    "TimelineParams",
    "add_cli",
    "agreement",
    "analyze",
    "classify",
    "format_table",
    "labels_at",
    "load_timeline",
    "postprocess",
    "recovery",
    "save_timeline",
    "segment_labels",
    "sensitivity",
    "simulate_scores",
    "srt_time",
    "timeline",
    "to_csv",
    "to_json",
    "to_records",
    "to_srt",
    "validate_timeline",
    "viterbi_path",
]
