"""``videobgm train-lora`` and ``python -m videobgm.train``: one flag per config field.

Several GPUs or nodes: `accelerate launch -m videobgm.train --config cfg.json` (each process
runs this same entry point; accelerate tells each one its rank). A flag not given keeps the
config file's value, or the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from videobgm.errors import VideobgmError
from videobgm.train.config import TrainConfig
from videobgm.train.loop import train_lora

# Flags whose names differ from the field names (the spelling first), and metavars.
_FLAGS = {
    "dataset": ("--dataset",),
    "output_dir": ("--out", "--output-dir"),
    "resolution_px": ("--resolution", "--resolution-px"),
}
_METAVARS = {"dataset": "DIR|HUB_ID", "output_dir": "DIR", "resolution_px": "PX", "rank": "R"}
_TYPE_METAVARS = {int: "N", float: "X"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, ``--stop-after-steps N`` and one flag per :class:`TrainConfig` field;
    a flag not given keeps the config file's (or the default) value."""
    parser.add_argument("--config", metavar="FILE", help="JSON file of config values")
    parser.add_argument(
        "--stop-after-steps", type=int, metavar="N", help="stop after step N, keeping a checkpoint"
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kind = _argparse_kind(hints[f.name])
        if "action" not in kind:
            default_metavar = _TYPE_METAVARS.get(kind.get("type"), "STR")
            kind.setdefault("metavar", _METAVARS.get(f.name, default_metavar))
        parser.add_argument(
            *_FLAGS.get(f.name, (f"--{f.name.replace('_', '-')}",)),
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{f.metadata['help']} ({_default_text(f.default)})",
            **kind,
        )


def _default_text(default: Any) -> str:
    if default == "":
        return "required"
    return f"default: {' '.join(default) if isinstance(default, tuple) else default}"


def _argparse_kind(hint: Any) -> dict[str, Any]:
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return {"nargs": "*", "metavar": "STR"}
    inner = [a for a in typing.get_args(hint) if a is not type(None)]  # X | None -> X
    kind = inner[0] if inner else hint
    return {"type": kind} if kind in (int, float) else {}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config file's values (if any), overridden by the flags that were given."""
    values = TrainConfig.from_json(args.config).to_dict() if args.config else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)


def _run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    result = train_lora(config_from_args(args), stop_after_steps=args.stop_after_steps)
    if not PartialState().is_main_process:  # under accelerate launch, one summary
        return 0
    if result.completed:
        print(f"finished {result.steps} steps, last loss {result.final_loss:.4f}")
        print(f"LoRA: {result.lora_path}")
    else:
        print(f"stopped at step {result.steps} of {result.max_steps}; resume: --resume-from latest")
    print(f"log:  {result.log_path}")
    return 0


def add_cli(subparsers) -> None:
    """``videobgm train-lora``: the function the notebook calls, from the shell."""
    parser = subparsers.add_parser(
        "train-lora",
        help="fine-tune a riffusion LoRA on a spectrogram-caption dataset",
        description=__doc__.split("\n\n", 1)[1].strip(),
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """``python -m videobgm.train [flags]``; errors a user can fix print one line."""
    parser = argparse.ArgumentParser(
        prog="python -m videobgm.train", description="Fine-tune a riffusion LoRA."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except VideobgmError as exc:
        print(f"videobgm: error: {exc}", file=sys.stderr)
        return 1
