"""`videobgm run --variants 4 --rank` on the demo sample: outputs ordered by their fit."""

from __future__ import annotations

import json
import shutil

import pytest

from videobgm import cli, evaluate, media, pipeline
from videobgm.emotion import io as timeline_io

VARIANTS = 4


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    base = tmp_path_factory.mktemp("ranked")
    for name in ("story.mp4", "story.srt", "story.timeline.json"):
        shutil.copy(pipeline.paths.samples() / name, base / name)
    argv = [
        "run", str(base / "story.mp4"), "-o", str(base / "out" / "story.mp4"),
        "--run-dir", str(base / "run"), "--variants", str(VARIANTS), "--rank",
        "--music", "procedural", "-q",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    return base, argv


def _ranking(base):
    return json.loads((base / "run" / pipeline.RANKING_FILE).read_text())


def _outputs(base):
    out = base / "out" / "story.mp4"
    return [out] + [out.with_name(f"story-{k}.mp4") for k in range(2, VARIANTS + 1)]


def test_every_variant_is_scored_and_the_ranking_is_best_first(ranked):
    base, _ = ranked
    records = _ranking(base)
    assert sorted(r["variant"] for r in records) == list(range(1, VARIANTS + 1))
    fits = [r["fit"] for r in records]
    assert fits == sorted(fits, reverse=True)
    assert all(0.0 <= r["accuracy"] <= 1.0 and 1.0 <= r["mean_rank"] <= 7.0 for r in records)
    report = (base / "run" / "report.md").read_text()
    assert "Variants ranked by fit" in report and records[0]["file"] in report


def test_outputs_carry_the_variants_in_ranked_order(ranked):
    base, _ = ranked
    for out, record in zip(_outputs(base), _ranking(base), strict=True):
        delivered = out.with_name(f"{out.stem}.bgm.wav")
        composed = base / "run" / record["file"]
        assert pipeline.file_hash(delivered) == pipeline.file_hash(composed), out.name
        assert media.probe(out).has_video
    # Scored afresh from the delivered files, the outputs come out best first.
    spans = timeline_io.load_timeline(base / "run" / "timeline.json")
    clap = evaluate.load_clap("tiny", device="cpu")
    beside = [o.with_name(f"{o.stem}.bgm.wav") for o in _outputs(base)]
    rescored = evaluate.rank_variants(beside, spans, clap)
    assert [r["variant"] for r in rescored] == list(range(1, VARIANTS + 1))


def test_the_ranking_is_reproducible(ranked):
    base, argv = ranked
    before = _ranking(base)
    (base / "run" / pipeline.RANKING_FILE).unlink()  # the rank stage runs again, alone
    settings = dict(variants=VARIANTS, rank=True, music="procedural")
    result = pipeline.run(
        base / "story.mp4", _outputs(base)[0], run_dir=base / "run", progress=False, **settings
    )
    assert result.stages["rank"] == "ran" and result.stages["compose"] == "reused"
    assert _ranking(base) == before and result.scores == before
    assert [p.name for p in result.bgm] == [r["file"] for r in before]


def test_the_studio_shows_each_variants_score(ranked):
    from videobgm import widgets

    base, _ = ranked
    result = pipeline.run(
        base / "story.mp4", _outputs(base)[0], run_dir=base / "run", progress=False,
        variants=VARIANTS, rank=True, music="procedural",
    )  # fmt: skip
    assert set(result.stages.values()) == {"reused"}
    studio = widgets.Studio(result, base / "out", variants=VARIANTS, rank=True)
    labels = [label for label, _ in studio.variant.options]
    records = _ranking(base)
    assert labels == [f"variant {k} (fit {r['fit']:.3f}, top-1 {r['accuracy']:.0%})"
                      for k, r in enumerate(records, start=1)]  # fmt: skip
