"""Mutation score per module from mutmut's results (``make mutants`` calls this).

Usage: ``python tests/mutation_score.py MUTANTS_DIR [PATTERN ...]``. Reads mutmut's
``*.py.meta`` files under ``MUTANTS_DIR`` and prints, per module, the mutants checked, killed
(a test failed, or the run timed out or crashed) and survived, for the mutant names matching
the patterns (mutmut's own names, e.g. ``videobgm.mix.*``; all when none is given). Mutants not
checked yet, or reached by no test, are counted apart. Not a test file (pytest skips it).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9}  # test failure, pytest error, timeout, crash
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_scores(mutants_dir: Path, patterns: list[str]) -> dict[str, Counter]:
    """``{module: Counter(killed=, survived=, no_tests=, unchecked=)}``."""
    scores: dict[str, Counter] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            module = name.split(".x_")[0].split(".xǁ")[0]
            kind = (
                "killed" if code in KILLED else "survived" if code in SURVIVED
                else "no_tests" if code in NO_TESTS else "unchecked"
            )  # fmt: skip
            scores.setdefault(module, Counter())[kind] += 1
    return scores


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    scores = module_scores(Path(argv[0]), argv[1:])
    print(f"{'module':28} {'checked':>8} {'killed':>7} {'survived':>9} {'score':>6}  unchecked")
    for module, c in sorted(scores.items()):
        checked = c["killed"] + c["survived"] + c["no_tests"]
        score = f"{100 * c['killed'] / checked:5.1f}%" if checked else "    -"
        print(
            f"{module:28} {checked:8} {c['killed']:7} {c['survived'] + c['no_tests']:9} "
            f"{score:>6}  {c['unchecked']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
