"""``make reports``: execute every notebook with papermill into ``reports/``, plus HTML.

Each notebook ``notebooks/NN-name.ipynb`` becomes ``reports/NN-name.ipynb`` (executed, with the
injected parameters) and ``reports/NN-name.html`` (without the code of the parameter cells);
figures that notebooks save go to ``reports/figures/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from videobgm import paths

_HIDDEN_INPUT_TAGS = ("parameters", "injected-parameters")


def execute(
    notebook: Path,
    profile: str = "auto",
    extra: dict | None = None,
    cell_timeout_s: int | None = None,
) -> Path:
    """Run one notebook with papermill into reports/ (the notebook's own defaults but for
    ``profile`` and ``extra``; a cell running past ``cell_timeout_s`` fails the run, ``None``:
    no limit); return the executed notebook's path."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    parameters = {"profile": profile, **(extra or {})}
    parameters = {k: v for k, v in parameters.items() if k in declared}
    out = paths.ensure_dir(paths.reports()) / notebook.name
    # The kernel must be this environment's Python (papermill resolves "python3" via PATH).
    env_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    papermill.execute_notebook(
        str(notebook), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(paths.root()), progress_bar=True, execution_timeout=cell_timeout_s,
    )  # fmt: skip
    return out


def to_html(executed: Path) -> Path:
    """HTML of an executed notebook, without the parameter cells' code."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter()
    remover = TagRemovePreprocessor(remove_input_tags=set(_HIDDEN_INPUT_TAGS), enabled=True)
    exporter.register_preprocessor(remover, enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html = executed.with_suffix(".html")
    with paths.atomic_output(html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m videobgm.reports",
        description="Execute the notebooks with papermill into reports/ (notebook + HTML).",
    )
    parser.add_argument("--profile", default="auto", choices=("auto", "pretrained", "tiny"))
    parser.add_argument(
        "--only", nargs="*", default=None, help="notebook name prefixes to run (e.g. 03 04)"
    )
    parser.add_argument(
        "--cell-timeout", type=int, default=None, metavar="SECONDS",
        help="fail a notebook whose cell runs longer than this (default: no limit; the "
        "pretrained models can take long on a CPU)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    notebooks = sorted(paths.notebooks().glob("[0-9][0-9]-*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.only))]
    if not notebooks:
        print("no notebooks to run", file=sys.stderr)
        return 1
    for notebook in notebooks:
        print(f"--> {notebook.name} (profile {args.profile})")
        executed = execute(notebook, args.profile, cell_timeout_s=args.cell_timeout)
        print(f"    {executed}\n    {to_html(executed)}")
    print(f"figures: {paths.figures()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
