"""The web app's page for one browser session (ipywidgets, served by :mod:`videobgm.app`).

A :class:`Session` owns one folder ``<sessions>/<token>/`` (``uploads/``, ``runs/``, ``out/``)
and the widgets of the five steps. Handlers run in the page's kernel when the browser sends a
click or an upload, so widget state written there reaches the page at once (the stage table
updates while the pipeline runs). Upload names never become paths: the stored name keeps
only letters, digits, ``-`` and ``_`` of the stem, and a known media suffix.
"""

from __future__ import annotations

import functools
import html
import io
import json
import re
import secrets
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from videobgm import models, paths, pipeline
from videobgm.emotion import TIMELINE_LABELS
from videobgm.errors import VideobgmError
from videobgm.plots.emotion import EMOTION_COLORS
from videobgm.widgets import variant_label

STAGES = ("vad", "transcribe", "timeline", "separate", "compose", "rank", "mix", "deliver",
          "report")  # fmt: skip
MIN_EDIT_SPAN_S = 0.5  # s; an edit may not leave a span shorter than this
_STAGE_LINE = re.compile(r"^videobgm: (\w+)\s+(\.\.\.|reused|done in ([\d.]+) s)")


def _safe_name(name: str, n: int) -> str | None:
    """A stored file name for the upload ``name`` (``None`` when its suffix is not media)."""
    suffix = Path(name).suffix.lower()
    if suffix not in pipeline.MEDIA_SUFFIXES:
        return None
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:60].strip("_") or "upload"
    return f"{n:02d}-{stem}{suffix}"


class _StageLog(io.TextIOBase):
    """Stands in for stderr during a run: the pipeline's stage lines update the page."""

    def __init__(self, on_stage):
        self.on_stage, self.pending = on_stage, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = re.split(r"[\r\n]", self.pending)
        for line in lines:
            match = _STAGE_LINE.match(line)
            if match:
                self.on_stage(match.group(1), match.group(2))
        return len(text)


class Session:
    """One browser page: its folder, its widgets, its latest result."""

    def __init__(self, params, sessions_root: Path):
        import ipywidgets as w  # the app's widgets, only built in a kernel

        self.params, self.result, self.spans, self.picked = params, None, [], 0
        self.folder = Path(sessions_root) / secrets.token_hex(16)  # made on first use
        self.uploads = 0
        videos = sorted(p.name for p in params.videos.iterdir()
                        if p.suffix.lower() in pipeline.MEDIA_SUFFIXES)  # fmt: skip
        self.picker = w.Dropdown(options=videos, description="on server")
        self.use = w.Button(description="use this video", button_style="primary")
        self.use.on_click(lambda _: self._use_server_video())
        self.upload = w.FileUpload(accept="video/*,audio/*", multiple=False, description="upload")
        self.upload.observe(self._on_upload, names="value")
        self.status = w.HTML()
        self.stages = w.HTML()
        self.transcript, self.bar, self.rows = w.HTML(), w.HTML(), w.VBox()
        self.regenerate = w.Button(description="regenerate music", disabled=True)
        self.regenerate.on_click(lambda _: self._regenerate())
        self.variants, self.downloads = w.HBox(), w.HTML()
        self.state = {s: "" for s in STAGES}
        named = ("picker", "status", "stages", "transcript", "bar", "rows", "variants", "downloads")
        for name in named:
            getattr(self, name).add_class(f"vbgm-{name}")
        self.widget = w.VBox([
            w.HTML(_banner(params.profile)),
            w.HTML("<h3>1. Choose a video</h3>"), w.HBox([self.picker, self.use]), self.upload,
            self.status,
            w.HTML("<h3>2. Progress</h3>"), self.stages,
            w.HTML("<h3>3. Transcript and emotion timeline</h3>"), self.transcript, self.bar,
            self.rows, self.regenerate,
            w.HTML(f"<h3>4. {params.variants} variants: pick one</h3>"), self.variants,
            w.HTML("<h3>5. Downloads</h3>"), self.downloads,
        ])  # fmt: skip
        self._say(f"Upload a video (up to {params.max_upload_mb} MB) or pick one on the server.")
        self._show_stages()

    # -- step 1: a video -----------------------------------------------------------------

    def _use_server_video(self) -> None:
        if self.picker.value:
            name = Path(self.picker.value).name  # an entry of the listing, never a typed path
            self._run(self.params.videos / name, name)

    def _on_upload(self, change: dict) -> None:
        if not change["new"]:
            return
        item = change["new"][0]
        name, size = str(item["name"]), int(item["size"])
        self.upload.value = ()  # the bytes leave memory; the same file can be chosen again
        if size > self.params.max_upload_bytes:
            return self._error(f"{name}: is {size / 2**20:.0f} MB, over the app's "
                               f"{self.params.max_upload_mb} MB upload limit.")  # fmt: skip
        self.uploads += 1
        stored = _safe_name(name, self.uploads)
        if stored is None:
            return self._error(f"{name}: is not a video or audio file name (.mp4, .mov, .wav...).")
        target = paths.ensure_dir(self.folder / "uploads") / stored
        with paths.atomic_output(target) as tmp:
            tmp.write_bytes(bytes(item["content"]))
        self._run(target, name)

    # -- step 2: the run -----------------------------------------------------------------

    def _run(self, video: Path, shown: str, **changes: Any) -> None:
        self._busy(True, f"Working on {shown}...")
        self.state = {s: "waiting" for s in STAGES}
        self._show_stages()
        saved, sys.stderr = sys.stderr, _StageLog(self._on_stage)
        try:
            out = pipeline.output_in(paths.ensure_dir(self.folder / "out"), video)
            run_dir = self.folder / "runs" / f"{video.stem}-{pipeline.file_hash(video)[:8]}"
            result = pipeline.run(video, out, run_dir, variants=self.params.variants,
                                  profile=self.params.profile, **changes)  # fmt: skip
        except VideobgmError as exc:
            return self._error(str(exc).replace(str(video), shown))
        finally:
            sys.stderr = saved
            self._busy(False)
        self.state = {s: result.stages.get(s, "skipped") for s in STAGES}
        self._show_stages()
        self._say(f"Done: {shown}.")
        self._load(result)

    def _on_stage(self, stage: str, what: str) -> None:
        self.state[stage] = {"...": "running"}.get(what, "reused" if what == "reused" else "ran")
        self._show_stages()

    def _show_stages(self) -> None:
        cells = "".join(f'<td class="stage-{s}" data-state="{self.state[s]}">'
                        f"<b>{s}</b><br>{self.state[s] or '-'}</td>" for s in STAGES)  # fmt: skip
        self.stages.value = f'<table class="vbgm-stage-table"><tr>{cells}</tr></table>'

    def _busy(self, busy: bool, line: str = "") -> None:
        for button in (self.use, self.upload):
            button.disabled = busy
        self.regenerate.disabled = busy or self.result is None
        if line:
            self._say(line)

    def _say(self, line: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        kind = "error" if error else "info"
        self.status.value = (f'<p class="vbgm-{kind}" style="color:{colour}">'
                             f"{html.escape(line)}</p>")  # fmt: skip

    def _error(self, sentence: str) -> None:
        self._say(sentence, error=True)
        self.state = {s: "" for s in STAGES}
        self._show_stages()

    # -- step 3: transcript and timeline ---------------------------------------------------

    def _load(self, result: pipeline.Result) -> None:
        self.result = result
        self.regenerate.disabled = False
        self.spans = json.loads(result.timeline["json"].read_text(encoding="utf-8"))
        self.transcript.value = _transcript_html(result.transcript)
        self._show_timeline()
        self.picked = min(self.picked, len(result.outputs) - 1)
        self._show_variants()

    def _show_timeline(self) -> None:
        import ipywidgets as w  # built with the page

        self.bar.value = _bar_html(self.spans)
        rows = []
        for i, span in enumerate(self.spans):
            last = i == len(self.spans) - 1
            end = w.FloatText(value=span["end"], description="to (s)", disabled=last,
                              layout={"width": "170px"})  # fmt: skip
            emotion = w.Dropdown(options=TIMELINE_LABELS, value=span["emotion"],
                                 layout={"width": "130px"})  # fmt: skip
            split, merge = w.Button(description="split"), w.Button(description="merge with next")
            merge.disabled = last
            note = w.HTML()
            end.observe(functools.partial(self._on_end, i, note), names="value")
            emotion.observe(functools.partial(self._on_emotion, i), names="value")
            split.on_click(functools.partial(self._split, i, note))
            merge.on_click(functools.partial(self._merge, i))
            start = w.HTML(f"from {span['start']:.2f} s", layout={"width": "110px"})
            for widget, cls in ((end, "end"), (emotion, "emotion"), (note, "note")):
                widget.add_class(f"vbgm-{cls}")
            rows.append(w.HBox([start, end, emotion, split, merge, note]))
        self.rows.children = rows

    def _on_end(self, i: int, note, change: dict) -> None:
        lo = self.spans[i]["start"] + MIN_EDIT_SPAN_S
        hi = self.spans[i + 1]["end"] - MIN_EDIT_SPAN_S
        if not lo <= change["new"] <= hi:
            note.value = (f'<span class="vbgm-refused" style="color:#b00020">The end must lie '
                          f"between {lo:.2f} s and {hi:.2f} s.</span>")  # fmt: skip
            return
        self.spans[i]["end"] = self.spans[i + 1]["start"] = float(change["new"])
        self._show_timeline()

    def _on_emotion(self, i: int, change: dict) -> None:
        self.spans[i]["emotion"] = change["new"]
        self.bar.value = _bar_html(self.spans)

    def _split(self, i: int, note, _button=None) -> None:
        span = self.spans[i]
        if span["end"] - span["start"] < 2 * MIN_EDIT_SPAN_S:
            shortest = 2 * MIN_EDIT_SPAN_S
            note.value = ('<span class="vbgm-refused" style="color:#b00020">This span is too '
                          f"short to split (under {shortest:.1f} s).</span>")  # fmt: skip
            return
        middle = round((span["start"] + span["end"]) / 2, 2)
        self.spans[i : i + 1] = [{**span, "end": middle}, {**span, "start": middle}]
        self._show_timeline()

    def _merge(self, i: int, _button=None) -> None:
        self.spans[i]["end"] = self.spans[i + 1]["end"]
        del self.spans[i + 1]
        self._show_timeline()

    def _regenerate(self) -> None:
        target = self.result.run_dir / "edited-timeline.json"
        spans = [{**s, "confidence": 1.0} for s in self.spans]
        with paths.atomic_output(target) as tmp:
            tmp.write_text(json.dumps(spans, indent=1), encoding="utf-8")
        self._run(self.result.input, _shown_name(self.result.input), timeline=str(target))

    # -- steps 4 and 5: variants and downloads ---------------------------------------------

    def _show_variants(self) -> None:
        import ipywidgets as w  # built with the page

        cards = []
        for k, output in enumerate(self.result.outputs):
            picked = k == self.picked
            pick = w.Button(description="picked" if picked else "pick this one",
                            button_style="success" if picked else "")  # fmt: skip
            pick.add_class("vbgm-pick")
            pick.on_click(functools.partial(self._pick, k))
            player = "audio" if output.suffix.lower() in pipeline.AUDIO_OUTPUTS else "video"
            card = w.VBox([
                w.HTML(f"<b>{html.escape(variant_label(self.result, k))}</b><br>music:"),
                w.HTML(f'<audio controls preload="none" src="{self._url(self.result.bgm[k])}">'
                       "</audio>"),
                w.HTML(f'final {player}:<br><{player} class="vbgm-output" controls '
                       f'preload="metadata" width="260" src="{self._url(output)}"></{player}>'),
                pick,
            ], layout={"border": "2px solid #2e7d32" if picked else "1px solid #ccc",
                       "padding": "6px", "margin": "4px"})  # fmt: skip
            card.add_class("vbgm-variant")
            cards.append(card)
        self.variants.children = cards
        self._show_downloads()

    def _pick(self, k: int, _button=None) -> None:
        self.picked = k
        self._show_variants()

    def _show_downloads(self) -> None:
        r, k = self.result, self.picked
        items = [("video", f"final video (variant {k + 1})", r.outputs[k]),
                 ("music", "music stem", r.bgm[k]), ("voice", "voice stem", r.voice),
                 ("mix", "mix", r.mix[k]), ("srt", "timeline (SRT)", r.timeline["srt"]),
                 ("json", "timeline (JSON)", r.timeline["json"])]  # fmt: skip
        links = "".join(f'<li><a class="vbgm-dl-{cls}" href="{self._url(path)}" '
                        f'download="{html.escape(path.name)}">{label}</a> '
                        f"<small>{path.stat().st_size / 2**20:.1f} MB</small></li>"
                        for cls, label, path in items)  # fmt: skip
        self.downloads.value = f"<ul>{links}</ul>"

    def _url(self, path: Path) -> str:
        """The page-relative URL of a session file (Voila's file handler), with its modification
        time so that a regenerated file is not taken from the browser's cache."""
        relative = Path(path).resolve().relative_to(paths.root()).as_posix()
        return f"voila/files/{urllib.parse.quote(relative)}?v={Path(path).stat().st_mtime_ns}"


def _shown_name(path: Path) -> str:
    """An upload's name as shown (its stored name without the ``NN-`` counter)."""
    return re.sub(r"^\d\d-", "", path.name) if path.parent.name == "uploads" else path.name


def _banner(profile: str) -> str:
    """The page's header, with the offline-models banner the command line prints."""
    resolved = models.resolve_profile(profile)
    title = "<h2>videobgm: new background music that follows what your video says</h2>"
    stand_ins = resolved.substituted or (("every stage",) if resolved.name == "tiny" else ())
    if not stand_ins:
        return title
    return title + (
        '<div class="vbgm-banner" style="border:2px solid #e65100;padding:6px">'
        f"<b>OFFLINE MODELS</b> for: {', '.join(stand_ins)}. These stages use locally built "
        "stand-ins (tiny random models; spectral voice separation): results show the plumbing, "
        "not the quality of the real models.</div>"
    )


def _transcript_html(path: Path) -> str:
    from videobgm.transcribe import load_transcript

    rows = "".join(f"<tr><td>{s.start:.1f}-{s.end:.1f} s</td><td>{html.escape(s.text)}</td></tr>"
                   for s in load_transcript(path))  # fmt: skip
    return f"<table>{rows}</table>" if rows else "<p><i>no speech was transcribed</i></p>"


def _bar_html(spans: list[dict]) -> str:
    """The timeline as one coloured bar: a block per span, as wide as it is long."""
    total = max(spans[-1]["end"], 1e-9) if spans else 1.0
    blocks = "".join(
        f'<div title="{s["emotion"]} {s["start"]:.1f}-{s["end"]:.1f} s" '
        f'data-emotion="{s["emotion"]}" style="width:{100 * (s["end"] - s["start"]) / total:.3f}%;'
        f"background:{EMOTION_COLORS.get(s['emotion'], '#888')};text-align:center;"
        f'font-size:11px;overflow:hidden">{s["emotion"]}</div>'
        for s in spans
    )
    return f'<div class="vbgm-bar" style="display:flex;width:720px;height:28px">{blocks}</div>'
