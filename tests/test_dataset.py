"""Data curation (issue 7): catalogue -> riffusion spectrogram images + captions imagefolder.

One small synthetic catalogue (2 tracks per mood, 6-9 s, one 3 s track) is curated once with 2
workers and once with 1; most tests read those two datasets.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from videobgm import cli
from videobgm.dataset import curation as dataset
from videobgm.dataset.catalogue import Track, read_catalogue, synthetic_catalogue
from videobgm.dataset.fetch import FetchError, FetchParams, fetch
from videobgm.errors import InputError
from videobgm.spectrogram.codec import SpectrogramParams, mel_from_image, read_exif
from videobgm.synth import arrange as synth

CLIPS = 2  # clips per track in the shared datasets
PARAMS = dataset.CurateParams(clips_per_track=CLIPS)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalogue")
    return synthetic_catalogue(folder, tracks_per_mood=2, seconds=(6.0, 9.0), seed=3)


@pytest.fixture(scope="module")
def curated(catalogue, tmp_path_factory):
    """The catalogue curated with 2 worker processes."""
    out = tmp_path_factory.mktemp("two") / "ds"
    result = dataset.curate(catalogue, out, PARAMS, workers=2, progress=False)
    return result


@pytest.fixture(scope="module")
def curated_one_worker(catalogue, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "ds"
    return dataset.curate(catalogue, out, PARAMS, workers=1, progress=False)


def metadata(out: Path) -> list[dict]:
    lines = (out / "train" / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- selection


def test_selects_exactly_the_tracks_with_a_wanted_mood(catalogue):
    tracks = read_catalogue(catalogue).tracks
    params = dataset.CurateParams(moods=("happy", "sad"))
    chosen = dataset.select(tracks, params)
    expected = [t.track_id for t in tracks if {"happy", "sad"} & set(t.moods)]
    assert [s.track.track_id for s in chosen] == expected
    assert "syn-calm-01" in expected and "syn-calm-00" not in expected  # calm;sad vs calm
    assert all(s.mood in params.moods for s in chosen)
    everything = dataset.select(tracks, dataset.CurateParams())
    assert {s.mood for s in everything} == set(dataset.CurateParams().moods)
    assert not any(t.track_id == "syn-calm-00" for t in (s.track for s in everything))


def test_mood_rules_for_a_track_with_several_moods():
    tracks = [Track("a", "a.mp3", ("quirky", "happy"))] + [
        Track(f"h{i}", "h.mp3", ("happy",)) for i in range(3)
    ]
    counts = dataset.mood_counts(tracks)
    moods = ("happy", "quirky")

    def rule(name):
        params = dataset.CurateParams(moods=moods, mood_rule=name)
        return dataset.choose_mood(tracks[0].moods, params, counts)

    assert rule("first") == "quirky"  # the track's own order (the original project)
    assert rule("priority") == "happy"  # the order of `moods`
    assert rule("rarest") == "quirky"  # 1 quirky track against 4 happy ones
    assert dataset.choose_mood(("calm",), dataset.CurateParams(), counts) is None


def test_captions_start_with_the_mood_then_clean_tags():
    text = dataset.caption("happy", ["ukulele", "happy", "sunny,  bright", "ukulele", " "])
    assert text == "happy, ukulele, sunny bright"
    assert dataset.caption("sad", ["a", "b", "c"], max_tags=2) == "sad, a, b"
    assert dataset.caption("sad", []) == "sad"


def test_limit_takes_tracks_from_every_mood_in_turn(catalogue):
    tracks = read_catalogue(catalogue).tracks
    few = dataset.select(tracks, dataset.CurateParams(limit=7))
    assert sorted(s.mood for s in few) == sorted(dataset.CurateParams().moods)
    more = dataset.select(tracks, dataset.CurateParams(limit=10))
    assert {s.track.track_id for s in few} <= {s.track.track_id for s in more}


def test_parameters_are_checked():
    assert dataset.CurateParams(window_s=10).window_px == 1000
    assert dataset.CurateParams(window_s=5.12).window_samples == 512 * 441
    for bad in (
        {"clips_per_track": 0},
        {"moods": ()},
        {"mood_rule": "random"},
        {"sample_rate": 1000},
        {"window_s": 0.001},
        {"seed": -1},
        {"limit": 0},
    ):
        with pytest.raises(InputError):
            dataset.CurateParams(**bad)


# --------------------------------------------------------------------------- the dataset


def test_clip_count_is_tracks_times_clips_minus_short_ones(curated, catalogue):
    tracks = read_catalogue(catalogue).tracks
    selected = dataset.select(tracks, PARAMS)
    assert curated.short == 1 and curated.failed == 0  # syn-short-00: 3 s < 5.12 s
    assert curated.selected == len(selected)
    assert curated.clips == (len(selected) - 1) * CLIPS == len(metadata(curated.out))
    manifest = json.loads((curated.out / "manifest.json").read_text())
    assert manifest["short_tracks"] == ["syn-short-00"]
    assert manifest["clips"]["total"] == curated.clips
    card = (curated.out / "README.md").read_text()
    assert "| happy |" in card and "redistribute" in card  # counts per mood, licence caveat


def test_images_are_512_px_high_with_exif_parameters(curated):
    rows = metadata(curated.out)
    pngs = sorted((curated.out / "train").glob("*.png"))
    assert sorted(r["file_name"] for r in rows) == [p.name for p in pngs]
    for png in pngs:
        with Image.open(png) as image:
            assert image.size == (512, 512) and image.mode == "RGB"
            params, peak = read_exif(image)
            assert params == SpectrogramParams() and peak > 0
            assert 11000 in image.getexif()


def test_captions_start_with_the_mood_and_rows_are_complete(curated, catalogue):
    tracks = {t.track_id: t for t in read_catalogue(catalogue).tracks}
    shards = curated.out / "shards"
    for row in metadata(curated.out):
        assert list(row) == ["file_name", "text", "mood", "track_id", "start_s", "duration_s"]
        assert row["text"].split(", ")[0] == row["mood"] in tracks[row["track_id"]].moods
        assert row["duration_s"] == 5.12
        record = json.loads((shards / f"{row['track_id']}.json").read_text())
        assert 0 <= row["start_s"] <= record["track_s"] - 5.12 + 1e-6


def test_load_dataset_gives_image_text_and_source_columns(curated):
    import datasets

    rows = datasets.load_dataset("imagefolder", data_dir=str(curated.out), split="train")
    assert len(rows) == curated.clips
    assert rows.column_names[:2] == ["image", "text"]  # diffusers' defaults: columns 0 and 1
    assert set(rows.column_names) == {"image", "text", "mood", "track_id", "start_s", "duration_s"}
    assert rows[0]["image"].height == 512 and rows[0]["text"].startswith(rows[0]["mood"])
    # train_text_to_image_lora.py --train_data_dir DIR loads it this way:
    again = datasets.load_dataset(
        "imagefolder", data_files={"train": str(curated.out / "**")}, split="train"
    )
    assert len(again) == curated.clips and again.column_names == rows.column_names


def test_the_training_stage_reads_it(curated):
    from videobgm.train.data import check_imagefolder, load_rows

    assert check_imagefolder(curated.out) == curated.clips
    rows = load_rows(str(curated.out), 512)
    assert len(rows) == curated.clips and rows.column_names == ["image", "text"]


def test_same_seed_same_bytes_with_one_or_two_workers(curated, curated_one_worker):
    two, one = tree(curated.out), tree(curated_one_worker.out)
    assert two.keys() == one.keys()
    assert [k for k in two if two[k] != one[k]] == []


def test_rerun_skips_everything_and_resumes_an_interrupted_run(curated, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(curated.out, out)
    before = tree(out)
    again = dataset.curate(curated_source(curated), out, PARAMS, workers=1, progress=False)
    assert again.processed == 0 and again.resumed == curated.selected
    assert again.clips_written == 0 and tree(out) == before
    # An interrupted run: two tracks without a record, one of them without its images.
    for stem in ("syn-happy-00", "syn-sad-01"):
        (out / "shards" / f"{stem}.json").unlink()
    (out / "train" / "syn-sad-01-00.png").unlink()
    (out / "train" / "metadata.jsonl").unlink()
    resumed = dataset.curate(curated_source(curated), out, PARAMS, workers=1, progress=False)
    assert resumed.processed == 2 and resumed.clips_written == 2 * CLIPS
    assert tree(out) == before


def curated_source(result) -> str:
    return json.loads((result.out / "manifest.json").read_text())["source"]["name"]


def test_changed_parameters_redo_tracks_and_drop_stale_images(curated, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(curated.out, out)
    fewer = dataset.CurateParams(clips_per_track=1, limit=3)
    result = dataset.curate(curated_source(curated), out, fewer, workers=1, progress=False)
    assert result.processed == 3 and result.clips == 3
    assert len(list((out / "train").glob("*.png"))) == 3 == len(metadata(out))
    assert len(list((out / "shards").glob("*.json"))) == 3


def test_refuses_a_folder_it_did_not_make(catalogue, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not made by"):
        dataset.curate(catalogue, tmp_path, PARAMS, workers=1, progress=False)
    with pytest.raises(InputError, match="is a file"):
        dataset.curate(catalogue, tmp_path / "notes.txt", PARAMS, workers=1, progress=False)


# --------------------------------------------------------------------------- fetch, failures


class _Handler(http.server.SimpleHTTPRequestHandler):
    flaky_left = 0  # "/flaky/..." answers 503 this many times first

    def do_GET(self):  # noqa: N802 (the base class's name)
        if self.path.startswith("/flaky/"):
            if _Handler.flaky_left > 0:
                _Handler.flaky_left -= 1
                self.send_error(503)
                return
            self.path = self.path[len("/flaky") :]
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(catalogue):
    """An HTTP server on 127.0.0.1 serving the catalogue's folder (404 for anything else)."""
    handler = functools.partial(_Handler, directory=str(catalogue.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_corrupt_file_and_dead_urls_are_logged_not_fatal(catalogue, server, tmp_path):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    good = catalogue.parent / "audio" / "syn-happy-00.flac"
    rows = [
        ("good", str(good)),
        ("downloaded", f"{server}/audio/syn-sad-00.flac"),
        ("corrupt", str(corrupt)),
        ("dead-file-url", (tmp_path / "gone.mp3").as_uri()),
        ("dead-http", f"{server}/audio/missing.mp3"),
    ]
    table = pd.DataFrame(rows, columns=["track_id", "audio"]).assign(moods="happy", tags="x")
    table.to_csv(tmp_path / "cat.csv", index=False)
    fetch_params = FetchParams(cache_dir=str(tmp_path / "cache"), retries=1, backoff_s=0.01)
    result = dataset.curate(
        tmp_path / "cat.csv", tmp_path / "ds", PARAMS, workers=1, fetch=fetch_params,
        progress=False,
    )  # fmt: skip
    assert result.failed == 3 and result.clips == 2 * CLIPS
    failures = {
        f["track_id"]: f["error"] for f in map(json.loads, open(tmp_path / "ds" / "failures.jsonl"))
    }
    assert set(failures) == {"corrupt", "dead-file-url", "dead-http"}
    assert "404" in failures["dead-http"] and "no such file" in failures["dead-file-url"]
    assert "corrupt.mp3" in failures["corrupt"]
    assert len(list((tmp_path / "cache").glob("*.flac"))) == 1  # the download is cached


def test_transient_http_errors_are_retried(catalogue, server, tmp_path):
    url = f"{server}/flaky/audio/syn-sad-00.flac"
    quick = FetchParams(cache_dir=str(tmp_path), retries=2, backoff_s=0.01)
    _Handler.flaky_left = 2
    path = fetch(url, quick)
    assert path.read_bytes() == (catalogue.parent / "audio" / "syn-sad-00.flac").read_bytes()
    assert fetch(url, quick) == path  # cached: no request at all
    _Handler.flaky_left = 5
    with pytest.raises(FetchError, match="503"):
        fetch(url + "?again", FetchParams(cache_dir=str(tmp_path), retries=1, backoff_s=0.01))


# --------------------------------------------------------------------------- sources


def test_epidemic_shaped_parquet_folder(catalogue, tmp_path):
    audio = catalogue.parent / "audio"
    folder = tmp_path / "epidemic"
    folder.mkdir()
    pd.DataFrame(
        {
            "id": ["e1", "e2"],
            "moods": [["Happy", "Quirky"], ["Dreamy"]],
            "metadataTags": [["ukulele", "success", "progress", "bold"], ["pads"]],
            "genres": [["Acoustic"], ["Ambient"]],
            "url": [(audio / "syn-happy-00.flac").as_uri(), (audio / "syn-calm-00.flac").as_uri()],
        }
    ).to_parquet(folder / "Acoustic.parquet")
    pd.DataFrame(
        {"id": ["e1", "e3"], "moods": [["Happy"], ["Sad"]], "metadataTags": [["x"], ["piano"]]}
        | {"url": [(audio / "syn-happy-00.flac").as_uri(), (audio / "syn-sad-00.flac").as_uri()]}
    ).to_parquet(folder / "Children%20%26%20Family.parquet")
    pd.DataFrame(  # no id column: rows are named after the file; the same url is a duplicate
        {"moods": [["sad"], ["fear"]], "metadataTags": [["piano"], ["drone"]]}
        | {"url": [(audio / "syn-sad-00.flac").as_uri(), (audio / "syn-fear-00.flac").as_uri()]}
    ).to_parquet(folder / "Drones.parquet")
    cat = read_catalogue(folder)
    assert [t.track_id for t in cat.tracks] == ["e1", "e2", "e3", "Drones-00001"]
    assert cat.duplicates == 2
    assert cat.tracks[0].moods == ("happy", "quirky")
    assert cat.tracks[2].genres == ("Children & Family",)  # named after its genre file
    result = dataset.curate(folder, tmp_path / "ds", PARAMS, workers=1, progress=False)
    assert result.selected == 3 and result.clips == 3 * CLIPS
    assert metadata(tmp_path / "ds")[0]["text"] == "happy, ukulele, success, progress, bold"


def test_hub_source_without_the_hub_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="could not be downloaded.*folder as the source"):
        read_catalogue("Chr0my/Epidemic_music", hub_cache_dir=tmp_path)
    with pytest.raises(InputError, match="neither"):
        read_catalogue(str(tmp_path / "nothing.csv"))


def test_eight_khz_audio_leaves_the_top_of_the_image_empty():
    audio = synth.track("happy", 5.2, seed=1)[: 512 * 441]
    params = dataset.CurateParams()
    full = dataset.render_clip(audio, params)
    low = dataset.render_clip(dataset.band_limited(audio, 8000), params)
    assert 140 < dataset.rows_above(4000) < 160  # about 30 % of the 512 mel bands
    # Amplitudes (relative to each image's peak) in the rows above 4.4 kHz, top of the image:
    # only the resampler's leakage is left there, more than 40 dB down.
    top = dataset.rows_above(4400)
    level = {k: mel_from_image(im)[0, -top:].mean() / mel_from_image(im).max() for k, im in
             (("full", full), ("low", low))}  # fmt: skip
    assert level["low"] < 0.01 * level["full"]


# --------------------------------------------------------------------------- CLI, Hub


def test_cli_curate_and_its_errors(catalogue, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["curate", "--source", str(catalogue), "--out", str(out), "--clips-per-track", "1"]
    assert cli.main([*args, "--limit", "2", "--workers", "1", "--quiet"]) == 0
    assert "2 clips from 2 tracks" in capsys.readouterr().out
    assert len(metadata(out)) == 2
    assert cli.main(["curate", "--source", "no/such.csv", "--out", str(out), "--quiet"]) == 1
    assert "neither" in capsys.readouterr().err


def test_push_to_hub_takes_the_token_from_the_environment_only(curated, monkeypatch):
    from videobgm.dataset.card import push_to_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(InputError, match="HF_TOKEN"):
        push_to_hub(curated.out, "someone/spectro")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="could not push"):
        push_to_hub(curated.out, "someone/spectro")
