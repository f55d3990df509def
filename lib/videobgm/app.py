"""The creator's web app: the studio served by Voila over ``notebooks/07-serve-web-app.ipynb``.

``videobgm app`` (``make app``) starts Voila on ``http://127.0.0.1:8866``. Each browser page
gets its own kernel, and each kernel its own session folder ``runs/app/<128-bit token>/``
(uploads, run folders, outputs), so two people at once never see or overwrite each other's
files. The page walks a creator through five steps: choose a video (upload it, or pick one
from the server's ``--videos`` folder, for files of hundreds of MB), watch each stage's
progress, edit the emotion timeline, compare four variants, download.

Why Voila (and its limits): one implementation serves notebook and app users (the pipeline,
:func:`videobgm.widgets.variant_label`). A browser upload goes through ipywidgets'
``FileUpload``, which sends the whole file in one websocket message held in memory, so the
server's websocket limit is raised to the upload limit (plus a margin); larger files are for
the server folder. Results are not embedded in the page: players and downloads fetch them from
Voila's file handler (HTTP, range requests), which serves only the session folders' media.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from videobgm import paths
from videobgm.app_widgets import Session

APP_NOTEBOOK = "07-serve-web-app.ipynb"  # in notebooks/: the app's page, code hidden by Voila
DEFAULT_PORT = 8866  # Voila's usual port
DEFAULT_HOST = "127.0.0.1"  # localhost only unless --host says otherwise
DEFAULT_MAX_UPLOAD_MB = 2048  # MB (2 GB) per browser upload
WEBSOCKET_MARGIN_MB = 16  # MB above the upload limit: the message's framing and metadata
ENV_PREFIX = "VIDEOBGM_APP_"  # the server passes its settings to each page's kernel this way
SERVED = r"(mp4|m4v|mov|mkv|webm|wav|flac|srt|json|csv)"  # downloadable suffixes


@dataclasses.dataclass(frozen=True)
class AppParams:
    """The app's settings, from ``videobgm app``'s options (a page's kernel reads them from the
    environment with :meth:`from_env`)."""

    videos_dir: str = ""  # server folder to pick videos from; "" = data/samples/
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB  # MB; larger browser uploads are refused
    variants: int = 4  # soundtracks generated side by side
    profile: str = "auto"  # models: "auto" | "pretrained" | "tiny"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def videos(self) -> Path:
        return Path(self.videos_dir).expanduser().resolve() if self.videos_dir else paths.samples()

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in _FIELDS}

    @classmethod
    def from_env(cls, **overrides: object) -> AppParams:
        """The server's settings, with ``overrides`` (the notebook's parameters) that are set."""
        values = {}
        for f in _FIELDS:
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = type(getattr(cls(), f.name))(raw)
        values.update({k: v for k, v in overrides.items() if v not in ("", 0, None)})
        return cls(**values)


_FIELDS = dataclasses.fields(AppParams)


def sessions_dir() -> Path:
    """Where each page's session folder goes (served read-only by Voila, media files only)."""
    return paths.runs() / "app"


def page(**overrides: object):
    """The app's widget for one page (one kernel, one session); ``overrides`` are
    :class:`AppParams` fields, the rest comes from the server's settings."""
    return Session(AppParams.from_env(**overrides), sessions_dir()).widget


def voila_command(params: AppParams, port: int, host: str) -> list[str]:
    """The Voila command line that serves the app (Voila runs from the repository root)."""
    served = sessions_dir().relative_to(paths.root()).as_posix()
    allow = rf"{re.escape(served)}/[0-9a-f]{{32}}/.*\.{SERVED}"
    limit = (params.max_upload_mb + WEBSOCKET_MARGIN_MB) * 1024 * 1024
    return [
        sys.executable, "-m", "voila", str(paths.notebooks() / APP_NOTEBOOK),
        "--no-browser", f"--port={port}", f"--Voila.ip={host}",
        f"--Voila.root_dir={paths.root()}",
        f"--VoilaConfiguration.file_allowlist=['{allow}']",
        f"--Voila.tornado_settings={{'websocket_max_message_size': {limit}}}",
        "--VoilaConfiguration.show_tracebacks=False",
    ]  # fmt: skip


def serve(params: AppParams, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> int:
    """Serve the app until interrupted; returns Voila's exit status."""
    if not params.videos.is_dir():
        from videobgm.errors import InputError

        raise InputError(f"{params.videos}: the videos folder does not exist")
    if params.max_upload_mb < 1:
        from videobgm.errors import InputError

        raise InputError(f"--max-upload-mb {params.max_upload_mb}: must be at least 1 MB")
    paths.ensure_dir(sessions_dir())
    env = {**os.environ, **params.to_env()}
    # The page's kernel must be this environment's Python ("python3" is looked up in PATH).
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    print(f"videobgm app: http://{host}:{port}/ (videos from {params.videos})", flush=True)
    return subprocess.call(voila_command(params, port, host), cwd=paths.root(), env=env)


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "app",
        help="serve the studio as a web app in the browser (Voila)",
        description=(
            "Serve the creator's web app: choose a video (upload it, or pick one from a folder "
            "on the server), follow each stage's progress, edit the emotion timeline, compare "
            "four soundtracks side by side and download the results. Each browser page works "
            "in its own folder under runs/app/. Stop it with Ctrl-C."
        ),
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8866)")
    parser.add_argument(
        "--host", default=DEFAULT_HOST,
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for everyone)",
    )  # fmt: skip
    parser.add_argument(
        "--videos", default="", metavar="DIR",
        help="server folder whose videos the page offers (default data/samples/); put "
        "files of hundreds of MB here rather than uploading them",
    )  # fmt: skip
    parser.add_argument(
        "--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
        help="largest browser upload in MB (default 2048); larger ones are refused",
    )  # fmt: skip
    parser.add_argument(
        "--variants", type=int, default=4, help="soundtracks generated per video (default 4)"
    )
    parser.add_argument("--profile", default="auto", help="models: auto | pretrained | tiny")
    parser.set_defaults(func=_cli_app)


def _cli_app(args) -> int:
    params = AppParams(args.videos, args.max_upload_mb, args.variants, args.profile)
    if params.variants < 1:
        from videobgm.errors import InputError

        raise InputError(f"--variants {params.variants}: must be at least 1")
    return serve(params, args.port, args.host)
