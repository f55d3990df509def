"""Interactive pieces for notebook 04: audio players, and a small studio (ipywidgets) in which a
user uploads a video, edits the emotion timeline, regenerates only what changed, and picks a
variant.

The studio never captures output into an ``Output`` widget while a notebook cell runs (no
``with output:``, no ``output.clear_output()`` there): it writes the widgets' ``outputs`` state
instead. A capture during a cell makes nbclient (papermill, nbconvert, Voila) act as the
widget's front end and echo every captured output back to the kernel on the shell socket,
through a blocking shadow of the very socket on which it awaits the cell's reply; that send can
swallow the reply's wake-up, and the run then waits forever (issue 17). Capturing stays for
the studio's buttons, whose messages come from a real front end."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

from videobgm import media, paths, pipeline
from videobgm.vocab import TIMELINE_LABELS

PLAYER_RATE = 22050  # Hz; embedded players are downsampled mono, to keep notebooks small


def audio_player(path: str | Path, seconds: float | None = None) -> Any:
    """An ``IPython.display.Audio`` of a file, embedded at 22.05 kHz mono."""
    from IPython.display import Audio

    audio = media.decode_audio(path, PLAYER_RATE, duration_s=seconds)
    return Audio(audio, rate=PLAYER_RATE, normalize=False)


def video_player(path: str | Path, width: int = 480) -> Any:
    """An embedded ``IPython.display.Video``."""
    from IPython.display import Video

    return Video(str(path), embed=True, width=width, mimetype="video/mp4")


@dataclasses.dataclass
class _Row:
    start: Any
    end: Any
    emotion: Any


class Studio:
    """Upload, timeline editor, regenerate, variant picker; holds the latest run's result."""

    def __init__(self, result: pipeline.Result, out_dir: str | Path, **params: Any):
        import ipywidgets as w

        self.result, self.out_dir, self.params = result, Path(out_dir), params
        self.upload = w.FileUpload(accept="video/*,audio/*", multiple=False, description="video")
        self.upload.observe(self._on_upload, names="value")
        self.rows_box = w.VBox()
        self.variant = w.Dropdown(description="variant")
        self.variant.observe(lambda _: self._show_variant(), names="value")
        self.regenerate = w.Button(description="regenerate music", button_style="primary")
        self.regenerate.on_click(lambda _: self._regenerate())
        self.log = w.Output()
        self.player = w.Output()
        self.widget = w.VBox([
            w.HTML("<b>1. video</b> (upload another one, or keep the current)"), self.upload,
            w.HTML("<b>2. emotion timeline</b>: change an emotion or a boundary"),
            self.rows_box, self.regenerate,
            w.HTML("<b>3. result</b>"), self.variant, self.player, self.log,
        ])  # fmt: skip
        self._load(result)

    def _load(self, result: pipeline.Result) -> None:
        import ipywidgets as w

        self.result = result
        narrow, wide = {"width": "150px"}, {"width": "170px"}
        self.rows = [
            _Row(
                w.FloatText(value=span["start"], description="from", layout=wide),
                w.FloatText(value=span["end"], description="to", layout=wide),
                w.Dropdown(options=TIMELINE_LABELS, value=span["emotion"], layout=narrow),
            )
            for span in json.loads(result.timeline["json"].read_text())
        ]
        rows = self.rows
        self.rows_box.children = [w.HBox([r.start, r.end, r.emotion]) for r in rows]
        self.variant.options = [(variant_label(result, k), k) for k in range(len(result.outputs))]
        self.variant.value = 0
        self._show_variant()

    def edited_timeline(self) -> list[dict]:
        """The spans as the editor shows them (checked when the run reads them)."""
        return [
            {"start": r.start.value, "end": r.end.value, "emotion": r.emotion.value,
             "confidence": 1.0}
            for r in self.rows
        ]  # fmt: skip

    def _regenerate(self) -> None:
        target = self.result.run_dir / "edited-timeline.json"
        with paths.atomic_output(target) as tmp:
            tmp.write_text(json.dumps(self.edited_timeline(), indent=1), encoding="utf-8")
        self._rerun(self.result.input, timeline=str(target))

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        folder = paths.ensure_dir(paths.interim() / "uploads")
        target = folder / Path(item["name"]).name
        with paths.atomic_output(target) as tmp:
            tmp.write_bytes(bytes(item["content"]))
        self._rerun(target, timeline=None)

    def _rerun(self, video: Path, **changes: Any) -> None:
        from videobgm.errors import VideobgmError

        params = {**self.params, **changes}
        self.log.outputs = ()
        # The pipeline's progress bars go to the log when a front end clicked, else to the cell.
        with self.log if _in_front_end_callback() else contextlib.nullcontext():
            try:
                result = pipeline.run(video, pipeline.output_in(self.out_dir, video), **params)
            except VideobgmError as exc:
                print(f"error: {exc}")
                return
            print(", ".join(f"{stage}: {state}" for stage, state in result.stages.items()))
        self._load(result)

    def _show_variant(self) -> None:
        output = self.result.outputs[self.variant.value or 0]
        if output.suffix.lower() in pipeline.AUDIO_OUTPUTS:
            player = audio_player(output)
        else:
            player = video_player(output)
        # State, not ``with self.player: display(...)``: see the module's docstring.
        self.player.outputs = (_display_data(player),)


def _display_data(obj: Any) -> dict:
    """``obj`` as one ``display_data`` output (nbformat's dict), formatted as IPython shows it."""
    from IPython import get_ipython  # IPython's formatters, only needed for a player
    from IPython.core.formatters import DisplayFormatter

    shell = get_ipython()
    formatter = shell.display_formatter if shell is not None else DisplayFormatter()
    data, metadata = formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def _in_front_end_callback() -> bool:
    """True while the kernel handles a front end's widget message (a click, an upload): output
    captured by an ``Output`` widget then is the front end's to show, and no cell is running."""
    from IPython import get_ipython  # IPython is only there to ask inside a kernel

    shell = get_ipython()
    parent = shell.get_parent() if shell is not None and hasattr(shell, "get_parent") else None
    return (parent or {}).get("header", {}).get("msg_type") == "comm_msg"


def variant_label(result: pipeline.Result, k: int) -> str:
    """The picker's name for output ``k``: with its fit score when the run was ranked."""
    if k < len(result.scores):
        score = result.scores[k]
        return f"variant {k + 1} (fit {score['fit']:.3f}, top-1 {score['accuracy']:.0%})"
    return f"variant {k + 1}"


def studio(result: pipeline.Result, out_dir: str | Path, **params: Any) -> Any:
    """The interactive studio for a run (display the returned widget); new outputs go to
    ``out_dir``, ``params`` are :func:`videobgm.pipeline.run`'s."""
    return Studio(result, out_dir, **params).widget
