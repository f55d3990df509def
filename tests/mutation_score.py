"""Sampled mutation testing with mutmut: generate, draw a sample, score it (``make mutants``).

Usage (``make mutants`` runs the three in order; ``MUTANTS_DIR`` is mutmut's ``mutants/``)::

    python tests/mutation_score.py generate                    # in the mutmut work directory
    python tests/mutation_score.py sample MUTANTS_DIR N SEED [--pending|--unkilled] PATTERN ...
    python tests/mutation_score.py score MUTANTS_DIR N SEED PATTERN ...

``generate`` writes every mutant and mutmut's ``*.py.meta`` files without running a test (mutmut
3 has no command for that; ``mutmut run`` would go on to test them all). ``sample`` prints the
names of a uniform random sample of ``N`` mutants per module (a file; ``N`` = 0: all) among the
names matching the patterns (mutmut's names, e.g. ``videobgm.mix.*``; ``!PATTERN`` leaves the
names it matches out), drawn with ``SEED`` and
the module's name so that one module's sample does not depend on the others (and a smaller
sample is part of a larger one); with ``--pending``, only those mutmut has no result for yet (a
stopped run resumes), with ``--unkilled`` those and the survivors (after new tests). ``score``
prints, per module, the sample's killed (a test failed or errored, or the worker crashed),
timed out and survived (including "no test reaches it") mutants, the score (killed over all
with a verdict: a timeout counts against it) and its 95% Wilson interval: the
score of a uniform sample estimates the score of all the module's mutants (mutant sampling,
Acree 1980; Wong & Mathur 1995). Not a test file (pytest skips it).
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, -11, -9}  # a test failed, pytest errored, the worker crashed
TIMED_OUT = {36, 24, -24, 152, 255}  # mutmut counts these as killed; on a loaded machine a slow
# first test (torch's import in a fresh worker) hits its wall limit too, so they are kept apart
SURVIVED = {0, 5, 33}  # all tests passed; or no test reaches the mutated function
Z_95 = 1.959964  # standard normal quantile for a two-sided 95% interval


def exit_codes(mutants_dir: Path) -> dict[str, int | None]:
    """``{mutant name: mutmut's exit code, or None when not run yet}`` from every ``.meta``."""
    codes: dict[str, int | None] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def module_of(name: str) -> str:
    """The module a mutant name belongs to: ``videobgm.mix.x_f__mutmut_3`` -> ``videobgm.mix``."""
    return name.split(".x_")[0].split(".xǁ")[0]


def draw_sample(
    names: list[str], size: int, seed: int, patterns: list[str]
) -> dict[str, list[str]]:
    """``{module: sorted sample}``: ``size`` names per module (all if ``size`` is 0 or more)."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        if include and not any(fnmatch.fnmatch(name, p) for p in include):
            continue
        if not any(fnmatch.fnmatch(name, p) for p in exclude):
            by_module.setdefault(module_of(name), []).append(name)
    sample = {}
    for module, members in by_module.items():
        k = len(members) if size <= 0 else min(size, len(members))
        sample[module] = sorted(random.Random(f"{seed}:{module}").sample(members, k))
    return sample


def wilson_interval(killed: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for the proportion ``killed / n``."""
    if n == 0:
        return 0.0, 1.0
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def tally(codes: dict[str, int | None], names: list[str]) -> Counter:
    """``Counter(killed=, timeout=, survived=, pending=)`` of the given mutants."""
    kinds: Counter = Counter()
    for name in names:
        code = codes.get(name)
        kind = (
            "killed" if code in KILLED else "timeout" if code in TIMED_OUT
            else "survived" if code in SURVIVED else "pending"
        )  # fmt: skip
        kinds[kind] += 1
    return kinds


def print_scores(
    codes: dict[str, int | None], sample: dict[str, list[str]], total: Counter
) -> None:
    """One line per module: sample size of the matching total, killed, survived, score, CI."""
    header = f"{'module':28} {'sampled':>12} {'killed':>7} {'timeout':>7} {'survived':>9}"
    print(f"{header} {'score':>6}  95% CI    pending")
    for module, names in sorted(sample.items()):
        c = tally(codes, names)
        n = c["killed"] + c["timeout"] + c["survived"]  # a timeout is not counted as a kill
        low, high = wilson_interval(c["killed"], n)
        score = f"{100 * c['killed'] / n:5.1f}%" if n else "    -"
        ci = f"{100 * low:3.0f}-{100 * high:3.0f}%" if n else "   -    "
        sampled = f"{len(names)} of {total[module]}"
        print(
            f"{module:28} {sampled:>12} {c['killed']:7} {c['timeout']:7} {c['survived']:9} "
            f"{score:>6}  {ci}  "
            f"{c['pending']}"
        )
    for module, names in sorted(sample.items()):
        survivors = [m for m in names if codes.get(m) in SURVIVED]
        if survivors:
            print(f"survived in {module}: {' '.join(survivors)}")


def generate() -> None:
    """Write the mutants and their ``.meta`` files (cwd: mutmut's work directory), test none."""
    from mutmut import __main__ as mutmut_main  # deferred: only this subcommand needs mutmut

    Path("mutants").mkdir(exist_ok=True)
    mutmut_main.set_mutant_under_test("mutant_generation")
    mutmut_main.copy_src_dir()
    mutmut_main.copy_also_copy_files()
    mutmut_main.setup_source_paths()
    stats = mutmut_main.create_mutants(1)
    print(f"mutants generated: {stats.mutated} files mutated, {stats.unmodified} unchanged")


def main(argv: list[str]) -> int:
    if argv[:1] == ["generate"]:
        generate()
        return 0
    if len(argv) < 4 or argv[0] not in ("sample", "score"):
        print(__doc__)
        return 2
    command, mutants_dir, size, seed, *patterns = argv
    flags = {p for p in patterns if p.startswith("--")}
    patterns = [p for p in patterns if not p.startswith("--")]
    codes = exit_codes(Path(mutants_dir))
    sample = draw_sample(list(codes), int(size), int(seed), patterns)
    if command == "sample":
        wanted = {None} | (SURVIVED if "--unkilled" in flags else set())
        for names in sample.values():
            print("\n".join(n for n in names if not flags or codes[n] in wanted))
        return 0
    total = Counter({m: len(v) for m, v in draw_sample(list(codes), 0, 0, patterns).items()})
    print_scores(codes, sample, total)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
