"""``videobgm evaluate MUSIC --timeline T``: how well a music track fits its emotion timeline."""

from __future__ import annotations

import json

from videobgm import paths
from videobgm.emotion import io as timeline_io
from videobgm.evaluate.alignment import align_file
from videobgm.evaluate.clap import load_clap


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score how well a music track fits its emotion timeline (CLAP)",
        description="Embed the music under each span of the timeline with CLAP and rank the "
        "seven emotions' prompts against it (zero-shot): a span is aligned when its intended "
        "emotion ranks first. Prints top-1 accuracy, mean rank, cosine margin and fit (the "
        "duration-weighted probability of the intended emotion), and one line per span.",
    )  # fmt: skip
    parser.add_argument("music", help="the music track (any audio or video file)")
    parser.add_argument("--timeline", required=True, help="the emotion timeline (JSON)")
    parser.add_argument("-o", "--output", help="write the scores as JSON here")
    parser.add_argument("--profile", default="auto", help="auto | pretrained | tiny")
    parser.add_argument("--device", help="cpu | cuda (default: CUDA when visible)")
    parser.set_defaults(func=_cli_evaluate)


def _cli_evaluate(args) -> int:
    spans = timeline_io.load_timeline(args.timeline)
    result = align_file(args.music, spans, load_clap(args.profile, args.device))
    summary = result.summary()
    print(
        f"{summary['spans']} spans: top-1 {summary['accuracy']:.0%}, mean rank "
        f"{summary['mean_rank']:.2f} of 7, margin {summary['mean_margin']:+.3f}, "
        f"fit {summary['fit']:.3f}"
    )
    for span in result.spans:
        print(
            f"  {span.start_s:7.2f}-{span.end_s:7.2f} s  {span.intended:9} heard as "
            f"{span.recognised:9} rank {span.rank}  p {span.probability:.3f}"
        )
    if args.output:
        record = {**summary, "spans": [vars(s) for s in result.spans]}
        with paths.atomic_output(args.output) as tmp:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0
