"""The notebook studio: editing the timeline regenerates only the music, the mix and the video."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from videobgm import paths, pipeline, widgets


@pytest.fixture
def story(tmp_path):
    for name in ("story.mp4", "story.srt", "story.timeline.json"):
        shutil.copy(paths.samples() / name, tmp_path / name)
    video = tmp_path / "story.mp4"
    out_dir = tmp_path / "out"
    run_dir = tmp_path / "run"
    result = pipeline.run(video, pipeline.output_in(out_dir, video), run_dir, progress=False)
    return result, out_dir, {"run_dir": run_dir, "progress": False}


def test_studio_edit_and_regenerate(story):
    result, out_dir, params = story
    studio = widgets.Studio(result, out_dir, **params)
    assert [row.emotion.value for row in studio.rows][:2] == ["joy", "sadness"]
    studio.rows[0].emotion.value = "fear"
    studio.rows[0].end.value = studio.rows[1].start.value = 9.0
    studio.regenerate.click()
    new = studio.result
    assert new.stages["separate"] == "reused" and new.stages["transcribe"] == "reused"
    assert new.stages["compose"] == "ran" and new.stages["deliver"] == "ran"
    spans = json.loads(new.timeline["json"].read_text())
    assert spans[0]["emotion"] == "fear" and spans[0]["end"] == pytest.approx(9.0)
    assert new.outputs == result.outputs  # the same output file, remade


def test_studio_shows_an_error_in_one_sentence(story, capsys):
    result, out_dir, params = story
    studio = widgets.Studio(result, out_dir, **params)
    studio.rows[0].end.value = 1000.0  # past the end of the video
    studio.regenerate.click()
    assert studio.result is result  # nothing replaced
    errors = [line for line in capsys.readouterr().out.splitlines() if "error:" in line]
    assert len(errors) == 1 and "overlap" in errors[0]


def test_studio_player_embeds_the_chosen_variant(story, tmp_path):
    _, out_dir, params = story
    video = tmp_path / "story.mp4"
    result = pipeline.run(video, pipeline.output_in(out_dir, video), variants=2, **params)
    studio = widgets.Studio(result, out_dir, **params)

    def shows(path) -> bool:
        (output,) = studio.player.outputs  # written as state, never captured (issue 17)
        return base64.b64encode(path.read_bytes()).decode("ascii") in output["data"]["text/html"]

    first, second = result.outputs
    assert shows(first) and not shows(second)
    studio.variant.value = 1
    assert shows(second) and not shows(first)
