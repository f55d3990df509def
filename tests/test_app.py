"""The web app in a real Chromium, driven by Playwright as a creator uses it.

One app server (``videobgm app`` on a free port, tiny models) and one browser serve every test
here; each page gets its own kernel and session folder. Waits are on the page's state (the
stage table's ``data-state``, the number of variant cards), never on sleeps. Screenshots of
each step go to ``reports/app/``. The tests skip only when Chromium is absent (Debian package
``chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videobgm import app, media, paths

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium)"
)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
START_LIMIT_S = 60  # s for the server to listen (the bar: 30 s on an idle machine)
RUN_MS = 300_000  # ms for one pipeline run seen from the page (two at once on 2 shared cores)
PAGE_MS = 120_000  # ms for a page's kernel to start and show the app
UPLOAD_LIMIT_MB = 1  # the test server's upload limit, so that "too large" is cheap to test
CLIP_S = 6.0  # s; the short clips the two users pick at once
CORE = ("vad", "transcribe", "separate")  # stages an edited timeline must not run again
REMADE = ("compose", "mix", "deliver")  # stages it must run again


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _clip(source: Path, start_s: float, out: Path) -> Path:
    """``CLIP_S`` seconds of ``source`` from ``start_s``, re-encoded (ffmpeg of imageio-ffmpeg)."""
    import imageio_ffmpeg  # the project's ffmpeg binary

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", str(start_s), "-t",
         str(CLIP_S), "-i", str(source), "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    story = paths.samples() / "story.mp4"
    shutil.copy(story, folder / "story.mp4")
    _clip(story, 0.0, folder / "clip-a.mp4")
    _clip(story, 20.0, folder / "clip-b.mp4")
    return folder


@pytest.fixture(scope="module")
def server(videos, tmp_path_factory):
    """``videobgm app`` on a free port; stopped (with its kernels) and its sessions removed."""
    port = _free_port()
    before = set(app.sessions_dir().glob("*")) if app.sessions_dir().exists() else set()
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    log_path = tmp_path_factory.mktemp("server") / "app.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "videobgm.cli", "app", "--port", str(port), "--videos",
             str(videos), "--max-upload-mb", str(UPLOAD_LIMIT_MB), "--profile", "tiny"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while not _listening(port):
            assert proc.poll() is None, f"the app exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not listening after {START_LIMIT_S} s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # voila and the kernels it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for folder in set(app.sessions_dir().glob("*")) - before:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    return paths.ensure_dir(paths.reports() / "app")


def _open(context, url: str):
    page = context.new_page()
    page.goto(url, timeout=PAGE_MS)
    page.locator(".vbgm-status .vbgm-info").wait_for(timeout=PAGE_MS)
    return page


def _upload(page, path: Path) -> None:
    """Choose ``path`` in the upload button's file dialog (ipywidgets keeps its input
    element out of the page, as browsers' file pickers are opened by a click)."""
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload").click()
    chooser.value.set_files(str(path))


def _states(page) -> dict[str, str]:
    cells = page.locator(".vbgm-stage-table td")
    return {
        cell.get_attribute("class").removeprefix("stage-"): cell.get_attribute("data-state")
        for cell in cells.all()
    }


def _wait_done(page) -> None:
    """Until the run the page started has finished (the last stage has a final state)."""
    page.locator('.stage-report[data-state="ran"], .stage-report[data-state="reused"]').wait_for(
        timeout=RUN_MS
    )
    page.locator(".vbgm-variant").nth(3).wait_for(timeout=RUN_MS)


def _download(page, selector: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.locator(selector).click()
    download = info.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return target


def test_upload_edit_regenerate_download(server, browser, shots, tmp_path):
    story = paths.samples() / "story.mp4"
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = _open(context, server)
    assert "OFFLINE MODELS" in page.locator(".vbgm-banner").inner_text()
    page.screenshot(path=shots / "1-choose.png", full_page=True)

    _upload(page, story)
    page.locator('.vbgm-stage-table td[data-state="running"]').wait_for(timeout=RUN_MS)
    page.screenshot(path=shots / "2-progress.png", full_page=True)
    _wait_done(page)
    assert page.locator(".vbgm-variant").count() == 4
    assert all(_states(page)[s] == "ran" for s in (*CORE, *REMADE))
    page.screenshot(path=shots / "3-variants.png", full_page=True)

    # Edit the first span's emotion, and refuse a boundary past the video's end.
    first = page.locator(".vbgm-emotion select").first
    before = first.input_value()
    new = "fear" if before != "fear" else "joy"
    first.select_option(new)
    page.locator(f'.vbgm-bar div[data-emotion="{new}"]').first.wait_for()
    rows = page.locator(".vbgm-end input")
    count = rows.count()
    page.get_by_role("button", name="split").first.click()  # the first span in two
    expect_rows = count + 1
    page.locator(".vbgm-end input").nth(expect_rows - 1).wait_for()
    assert page.locator(".vbgm-end input").count() == expect_rows
    boundary = page.locator(".vbgm-end input").first
    boundary.fill("1000")  # past the video's end
    boundary.press("Enter")
    note = page.locator(".vbgm-refused").first
    note.wait_for()
    assert note.inner_text().startswith("The end must lie between")
    page.screenshot(path=shots / "4-edit.png", full_page=True)

    page.get_by_role("button", name="regenerate music").click()
    page.locator('.stage-transcribe[data-state="reused"]').wait_for(timeout=RUN_MS)
    _wait_done(page)
    states = _states(page)
    assert all(states[s] == "reused" for s in CORE), states
    assert all(states[s] == "ran" for s in REMADE), states
    page.screenshot(path=shots / "5-regenerated.png", full_page=True)

    video = _download(page, "a.vbgm-dl-video", tmp_path)
    got, want = media.probe(video), media.probe(story)
    assert got.has_video and abs(got.duration_s - want.duration_s) < 0.1
    spans = json.loads(_download(page, "a.vbgm-dl-json", tmp_path).read_text())
    assert spans[0]["emotion"] == new  # the edit reached the delivered timeline
    assert spans[-1]["end"] == pytest.approx(want.duration_s, abs=0.1)
    context.close()


def test_bad_uploads_get_one_sentence_and_the_app_keeps_working(server, browser, shots, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = _open(context, server)
    page.locator(".vbgm-picker select").select_option("clip-a.mp4")
    page.get_by_role("button", name="use this video").click()
    _wait_done(page)

    text = tmp_path / "notes.mp4"  # a text file renamed .mp4
    text.write_text("not a video at all\n" * 50)
    _upload(page, text)
    error = page.locator(".vbgm-status .vbgm-error")
    error.wait_for(timeout=RUN_MS)
    sentence = error.inner_text()
    assert sentence.startswith("notes.mp4:") and sentence.count(". ") == 0, sentence
    assert str(paths.root()) not in sentence  # no server path shown
    page.screenshot(path=shots / "6-bad-upload.png", full_page=True)

    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (UPLOAD_LIMIT_MB * 2**20 + 1))
    _upload(page, big)
    page.get_by_text(f"over the app's {UPLOAD_LIMIT_MB} MB upload limit").wait_for()

    # Still working: the last good result is still shown, and picking another variant works.
    assert page.locator(".vbgm-variant").count() == 4
    page.locator(".vbgm-pick").nth(1).click()
    page.locator(".vbgm-pick").nth(1).get_by_text("picked").wait_for()
    video = _download(page, "a.vbgm-dl-video", tmp_path)
    assert video.name == "clip-a.videobgm-2.mp4"
    assert abs(media.probe(video).duration_s - CLIP_S) < 0.2
    context.close()


def test_two_users_at_once_never_share_files(server, browser, videos, shots, tmp_path):
    contexts = [browser.new_context(accept_downloads=True) for _ in range(2)]
    pages = [_open(c, server) for c in contexts]
    for page, name in zip(pages, ("clip-a.mp4", "clip-b.mp4"), strict=True):
        page.locator(".vbgm-picker select").select_option(name)
        page.get_by_role("button", name="use this video").click()
    for page in pages:
        _wait_done(page)
    pages[1].screenshot(path=shots / "7-second-user.png", full_page=True)

    links = [p.locator("a.vbgm-dl-video").get_attribute("href") for p in pages]
    sessions = [href.split("/")[4] for href in links]  # voila/files/runs/app/<token>/...
    assert sessions[0] != sessions[1] and len(sessions[0]) == 32
    for page, name, folder in zip(pages, "ab", ("a", "b"), strict=True):
        video = _download(page, "a.vbgm-dl-video", paths.ensure_dir(tmp_path / folder))
        assert video.name == f"clip-{name}.videobgm.mp4"
        original = media.probe(videos / f"clip-{name}.mp4").duration_s
        assert abs(media.probe(video).duration_s - original) < 0.2
    for context in contexts:
        context.close()
