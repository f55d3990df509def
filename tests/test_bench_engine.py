"""The engine benchmark's pure parts (no Ray is started here): the projection to N GPUs
against hand-worked cases, per-stage seconds read from run folders, the rows and the figure,
and the bench folder's clips."""

from __future__ import annotations

import json
import math

import pytest

from videobgm import bench, media
from videobgm.bench import engine as engine_bench
from videobgm.engine import cluster

# Per-video seconds of each pipeline stage (the hand-worked case below uses these).
STAGES_S = {"vad": 1.0, "transcribe": 5.0, "timeline": 1.0, "separate": 4.0, "compose": 10.0,
            "mix": 2.0, "deliver": 1.0, "report": 1.0}  # fmt: skip


def test_projection_on_one_gpu_worked_by_hand():
    # Shares 0.3/0.1/0.2/0.4 on 1 GPU: 3, 10, 5 and 2 actors (0.25 CPU each: 5 of 8 CPUs),
    # 3 CPUs left for finish tasks. Steps: transcribe 6 s -> 3 * 60 / 6 = 30 videos/min,
    # classify 1 s -> 600, separate 4 s -> 75, generate 10 s -> 12, finish 4 s -> 45.
    p = engine_bench.project(STAGES_S, 1, cluster.REAL_GPUS, cpus_per_gpu=8)
    actors = {step: found["actors"] for step, found in p["steps"].items()}
    assert actors == {"transcribe": 3, "classify": 10, "separate": 5, "generate": 2, "finish": 3}
    rates = {step: found["videos_per_min"] for step, found in p["steps"].items()}
    assert rates == pytest.approx(
        {"transcribe": 30, "classify": 600, "separate": 75, "generate": 12, "finish": 45}
    )
    assert p["bottleneck"] == "generate" and p["videos_per_min"] == pytest.approx(12)


def test_projection_on_four_gpus_worked_by_hand():
    # 4 GPUs, 32 CPUs: actors 13 (4 / 0.3 = 13.3), 40, 20, 10; they hold 83 * 0.25 = 20.75
    # CPUs, so 11 finish tasks. generate: 10 * 60 / 10 = 60 videos/min, the slowest step.
    p = engine_bench.project(STAGES_S, 4, cluster.REAL_GPUS, cpus_per_gpu=8)
    assert p["steps"]["transcribe"]["actors"] == 13 and p["steps"]["finish"]["actors"] == 11
    assert p["steps"]["finish"]["videos_per_min"] == pytest.approx(11 * 60 / 4)
    assert p["bottleneck"] == "generate" and p["videos_per_min"] == pytest.approx(60)


def test_projection_bound_by_the_cpu_step():
    # One actor per model step (share 1 on 1 GPU) holds 1 of 2 CPUs: one finish task at a
    # time, 30 s of mixing per video -> 2 videos/min, below every model step's 60.
    stages = {"vad": 0.5, "transcribe": 0.5, "timeline": 1.0, "separate": 1.0, "compose": 1.0,
              "mix": 25.0, "deliver": 4.0, "report": 1.0}  # fmt: skip
    p = engine_bench.project(stages, 1, dict.fromkeys(cluster.MODEL_STEPS, 1.0), cpus_per_gpu=2)
    assert p["bottleneck"] == "finish" and p["videos_per_min"] == pytest.approx(2.0)
    assert p["steps"]["generate"]["videos_per_min"] == pytest.approx(60.0)


def test_stage_seconds_is_the_mean_over_run_folders(tmp_path):
    for name, seconds in (("a", 1.0), ("b", 3.0)):
        folder = tmp_path / name
        folder.mkdir()
        log = {"vad": {"seconds": seconds}, "mix": {"seconds": 10 * seconds}}
        (folder / "stages.json").write_text(json.dumps(log))
    found = engine_bench.stage_seconds(tmp_path)
    assert list(found) == ["vad", "mix"]  # the pipeline's order; stages no folder ran left out
    assert found == pytest.approx({"vad": 2.0, "mix": 20.0})
    with pytest.raises(ValueError, match="no run folder"):
        engine_bench.stage_seconds(tmp_path / "a")


def _run(seconds: float, scale: float) -> dict:
    return {"seconds": seconds, "videos": 4, "stages": {k: scale * v for k, v in STAGES_S.items()}}


def test_rows_report_and_figure(tmp_path):
    local = engine_bench.medians([_run(60.0, 1.0), _run(40.0, 1.0), _run(50.0, 1.0)])
    on_ray = engine_bench.medians([_run(120.0, 2.0), _run(100.0, 2.0)])
    assert local["videos_per_min"] == pytest.approx(4 * 60 / 50)  # median 50 s for 4 videos
    assert on_ray["videos_per_min"] == pytest.approx(4 * 60 / 110)
    data = {
        "videos": 4, "clip_s": 10.0, "rounds": 2, "device": "cpu", "profile": "tiny",
        "local": local, "ray": on_ray, "startup": {"seconds": 7.5, "tries": 1, "resources": {}},
        "projection": [engine_bench.project(local["stages"], n) for n in (1, 2, 4, 8)],
        "cpus_per_gpu": 8, "shares": cluster.REAL_GPUS,
    }  # fmt: skip
    rows = bench.in_section(
        "engine",
        engine_bench.throughput_rows(data)
        + engine_bench.stage_rows(data)
        + engine_bench.projection_rows(data),
    )
    rows[0]["data"] = {"engine": data}
    for r in rows:
        assert set(bench.ROW_KEYS) <= set(r) and r["kind"] in bench.KINDS
        assert r["ours"] is None or math.isfinite(r["ours"])
    assert rows[0]["ratio"] == pytest.approx(50 / 110)  # Ray / local videos per minute
    assert rows[1]["ours"] == 7.5 and rows[1]["ratio"] is None  # start-up, reported apart
    projected = [r for r in rows if "projection, not measured" in r["metric"]]
    assert [r["ours"] for r in projected] == [p["videos_per_min"] for p in data["projection"]]
    per_stage = {r["metric"]: r for r in rows if r["unit"] == "s/video"}
    assert per_stage["seconds per video: generate (compose)"]["baseline"] == 10.0
    assert per_stage["seconds per video: generate (compose)"]["ours"] == 20.0
    written = bench.write_summary(rows, tmp_path)
    assert written["engine"].stat().st_size > 1000  # engine.png beside the JSON
    doc = json.loads(bench.write_report("engine", rows, tmp_path).read_text())
    assert doc["rows"][0]["data"]["engine"]["local"]["stages"]["compose"] == 10.0


def test_clip_folder_cuts_distinct_clips_of_the_asked_length(tmp_path):
    folder = engine_bench.clip_folder(videos=2, seconds=3.0, out_dir=tmp_path)
    clips = sorted(folder.glob("*.mp4"))
    assert len(clips) == 2
    for clip in clips:
        info = media.probe(clip)
        assert info.has_video and info.has_audio
        assert info.duration_s == pytest.approx(3.0, abs=0.1)
    first, second = (media.decode_audio(c, 44100) for c in clips)
    assert abs(first[: len(second)] - second[: len(first)]).max() > 0.01  # different parts
