"""``make mutants``' sampling and scoring (tests/mutation_score.py): the figures in the README."""

import json

import pytest
from scipy.stats import binomtest

import mutation_score  # tests/ is on sys.path: pytest's default (prepend) import mode puts it there


@pytest.mark.parametrize(("killed", "n"), [(0, 5), (5, 5), (34, 40), (81, 263), (1, 1)])
def test_wilson_interval_matches_scipy(killed, n):
    expected = binomtest(killed, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = mutation_score.wilson_interval(killed, n)
    assert low == pytest.approx(expected.low, abs=1e-6)
    assert high == pytest.approx(expected.high, abs=1e-6)


def _names(module, count):
    return [f"videobgm.{module}.x_f__mutmut_{i}" for i in range(1, count + 1)]


def test_sample_is_seeded_per_module_and_within_patterns():
    names = _names("mix", 300) + _names("separate", 20) + ["videobgm.media.x_probe__mutmut_1"]
    sample = mutation_score.draw_sample(names, 40, 19, ["videobgm.mix.*", "videobgm.separate.*"])
    assert set(sample) == {"videobgm.mix", "videobgm.separate"}  # media matches no pattern
    assert len(sample["videobgm.mix"]) == 40 and len(set(sample["videobgm.mix"])) == 40
    assert sample["videobgm.separate"] == sorted(_names("separate", 20))  # fewer than 40: all
    alone = mutation_score.draw_sample(_names("mix", 300), 40, 19, ["videobgm.mix.*"])
    assert alone["videobgm.mix"] == sample["videobgm.mix"]  # other modules do not shift the draw
    without = mutation_score.draw_sample(names, 40, 19, ["videobgm.separate.*", "!*mutmut_1?"])
    assert without["videobgm.separate"] == sorted(
        _names("separate", 9) + ["videobgm.separate.x_f__mutmut_20"]
    )
    other_seed = mutation_score.draw_sample(names, 40, 20, ["videobgm.mix.*"])
    assert other_seed["videobgm.mix"] != sample["videobgm.mix"]


def test_sample_is_uniform():
    names = _names("mix", 10)
    hits = dict.fromkeys(names, 0)
    draws = 2000
    for seed in range(draws):
        for name in mutation_score.draw_sample(names, 3, seed, [])["videobgm.mix"]:
            hits[name] += 1
    # each name is drawn with probability 3/10; binomial sd over 2000 draws is about 20.5
    assert all(abs(count - 0.3 * draws) < 5 * 20.5 for count in hits.values())


def test_score_counts_sample_only(tmp_path, capsys):
    codes = {name: 1 for name in _names("mix", 30)}  # killed
    codes.update({f"videobgm.mix.x_g__mutmut_{i}": 0 for i in range(1, 11)})  # survived
    meta = tmp_path / "videobgm" / "mix.py.meta"
    meta.parent.mkdir()
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    assert mutation_score.main(["score", str(tmp_path), "0", "1", "videobgm.mix.*"]) == 0
    row = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("videobgm.mix")
    )
    assert row.split()[1:8] == ["40", "of", "40", "30", "0", "10", "75.0%"]
    assert mutation_score.main(["sample", str(tmp_path), "5", "1", "--pending"]) == 0
    assert capsys.readouterr().out.strip() == ""  # every mutant has a result: nothing to run
    assert mutation_score.main(["sample", str(tmp_path), "0", "1", "--unkilled"]) == 0
    survivors = sorted(f"videobgm.mix.x_g__mutmut_{i}" for i in range(1, 11))
    assert capsys.readouterr().out.split() == survivors  # after new tests: retry the survivors
