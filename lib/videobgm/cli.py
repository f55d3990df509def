"""The ``videobgm`` command: one subcommand per stage, each defined beside its stage.

Every stage module listed in :data:`COMMAND_MODULES` has ``add_cli(subparsers)``, which adds
its subcommand(s) with ``set_defaults(func=handler)``; the handler takes the parsed arguments
and returns an exit status. Errors a user can fix (:class:`videobgm.errors.VideobgmError`)
print one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from videobgm import __version__
from videobgm.errors import VideobgmError

# The stage modules that contribute subcommands, in the order --help lists them.
COMMAND_MODULES = (
    "videobgm.pipeline",
    "videobgm.transcribe",
    "videobgm.emotion",
    "videobgm.synth",
    "videobgm.spectrogram",
    "videobgm.compose",
    "videobgm.evaluate",
    "videobgm.dataset",
    "videobgm.train",
    "videobgm.models",
    "videobgm.app",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videobgm",
        description=(
            "Copyright-free background music that follows what a video says: speech -> emotion "
            "timeline -> riffusion (or procedural) music -> mixed under the voice -> new video."
        ),
        epilog="Run `videobgm COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"videobgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VideobgmError as exc:
        print(f"videobgm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "videobgm: interrupted; finished stages are kept and a re-run resumes", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
