"""Notebooks are committed clean: no outputs, one typed `parameters` cell, no functions.

(nbval itself executes every notebook: `make test` runs pytest over notebooks/ too.)
"""

from __future__ import annotations

import ast
import json

import pytest

from videobgm import paths

NOTEBOOKS = sorted(paths.notebooks().glob("*.ipynb"))


def _code_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell) -> str:
    return "".join(cell["source"])


def test_notebooks_exist_and_are_named_in_run_order():
    names = [p.name for p in NOTEBOOKS]
    assert names, "notebooks/ has no notebook"
    assert all(name[:2].isdigit() and name[2] == "-" for name in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for cell in _code_cells(path):
        assert not cell.get("outputs"), f"{path.name}: a cell has outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_typed_parameters_cell(path):
    cells = [c for c in _code_cells(path) if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    tree = ast.parse(_source(cells[0]))
    assert tree.body, f"{path.name}: the parameters cell is empty"
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), (
            f"{path.name}: line {node.lineno} of the parameters cell is not a typed assignment"
        )
    for line in _source(cells[0]).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{path.name}: parameter without a comment: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_functions_or_classes_in_notebooks(path):
    for cell in _code_cells(path):
        source = "\n".join(
            line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef), (
                f"{path.name}: defines {node.name}; move it into lib/videobgm and test it"
            )
            assert not isinstance(node, ast.Lambda), f"{path.name}: defines a lambda"
