"""`curlora-bench plan` and the power it rests on (`analysis/power.py`)."""

from __future__ import annotations

import math

import pytest

from curlora_bench.analysis import power, stats
from curlora_bench.analysis.points import SeedTest
from tests.conftest import one_line
from tests.test_sweep import _summaries


def test_design_splits_the_seed_and_the_eval_example_parts():
    test = SeedTest.of([0.10, 0.12, 0.08, 0.11, 0.09])  # sd 0.0158
    d = power.design(test, 0.05, family=1)
    assert d.alpha == 0.05 and d.seeds_here == stats.seeds_for(test.sd, 0.05) and math.isinf(d.mde_seeds)
    assert d.with_examples == {}  # no eval-example standard error: nothing to scale
    # an eval-example standard error that alone hides the effect at 300 examples, not at 5,000
    z = power.z_sum(0.05, 0.8)
    noisy = power.design(test, 0.05, family=1, eval_se=0.05 / z * 1.2, examples=300)
    assert noisy.with_examples[300] is None and noisy.eval_floor > 0.05
    assert noisy.with_examples[5000] is not None and noisy.with_examples[5000] >= noisy.seeds_here
    # Holm's family: a stricter level needs more seeds (never fewer than the exact test's floor allows)
    four = power.design(test, 0.05, family=4)
    assert four.alpha == 0.0125 and four.seeds_here >= stats.fewest_for(0.0125) > d.seeds_here - 1
    assert power.design(SeedTest.of([0.1]), 0.05, family=1) is None  # one seed: no spread


def _write(folder, spec, seeds=tuple(range(6))):
    from curlora_bench.store.schema import dump

    (folder / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    for k, (name, method, diag, drift, forg) in enumerate(spec):
        for s in _summaries(name, method, diag, drift, forg, seeds, 0.01, k):
            run = folder / name / f"seed-{s.seed}"
            run.mkdir(parents=True)
            (run / "summary.json").write_text(dump(s))


def test_plan_command_prints_the_seeds_a_stated_effect_needs(tmp_path, cli):
    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    _write(tmp_path / "exp", (("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04),
                              ("cur-a", cur, 0.7, 1.2, 0.0)))
    code, out, err = cli("plan", tmp_path / "exp", "--effect", "0.1")
    assert code == 0, err
    assert "| cur-a vs lora at 0.700 | perplexity drift | 6 |" in out and "seeds for it" in out
    assert "Holm's first step: 2 matched rows" in out
    code, out4, _ = cli("plan", tmp_path / "exp", "--effect", "0.1", "--tests", "4")
    assert code == 0 and "over 4 tests, as asked" in out4 and out4 != out
    # --method: only the named labels' runs (a second CURLoRA point left out: one matched row, not two)
    _write(tmp_path / "more", (("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04),
                               ("cur-a", cur, 0.7, 1.2, 0.0), ("cur-b", cur, 0.75, 1.3, 0.01)))
    code, both, _ = cli("plan", tmp_path / "more", "--effect", "0.1")
    assert code == 0 and "| cur-b vs lora at 0.750 |" in both
    code, some, err = cli("plan", tmp_path / "more", "--effect", "0.1", "--method", "lora-a", "--method", "lora-b",
                          "--method", "cur-a")
    assert code == 0, err
    assert "| cur-a vs lora at 0.700 | perplexity drift | 6 |" in some and "cur-b" not in some
    code, _, err = cli("plan", tmp_path / "more", "--method", "cur-c")
    assert code == 2 and one_line(err) == \
        "error: --method 'cur-c': no run of that label here (labels: cur-a, cur-b, lora-a, lora-b)"
    # --pair: the chosen pairs' paired-by-seed differences, their own Holm family (three tests a pair)
    code, paired, err = cli("plan", tmp_path / "more", "--pair", "cur-a=lora-a", "--pair", "cur-b=lora-b")
    assert code == 0, err
    rows = [line for line in paired.splitlines() if "(paired by seed)" in line]
    assert [line.split(" | ")[:2] for line in rows] == [
        [f"| {a} vs {b} (paired by seed)", q] for a, b in (("cur-a", "lora-a"), ("cur-b", "lora-b"))
        for q in ("final average accuracy", "forgetting", "perplexity drift")]
    assert "Holm's first step: 6 paired differences" in paired and "cur-a vs lora at" not in paired
    from curlora_bench.analysis.report import Options, build_table
    from curlora_bench.store.folders import find_runs

    t = build_table(find_runs([tmp_path / "more"]), options=Options(pairs=(("cur-a", "lora-a"), ("cur-b", "lora-b"))))
    drift = next(d for d in t.paired if d.column == "cur-b" and d.quantity == "perplexity_drift")
    assert rows[5].split(" | ")[6] == str(stats.seeds_for(drift.sd, abs(drift.mean), 0.05 / 6))
    code, _, err = cli("plan", tmp_path / "more", "--pair", "cur-a")
    assert code == 2 and one_line(err).startswith("error: --pair 'cur-a': expected COLUMN=COLUMN")
    _write(tmp_path / "one", (("lora-a", lora, 0.6, 1.1, 0.02),))
    code, _, err = cli("plan", tmp_path / "one")
    assert code == 2 and "no two families" in err and "Traceback" not in err


@pytest.mark.parametrize("args, field", [(["--power", "2"], "--power"), (["--effect", "-1"], "--effect")])
def test_plan_refuses_bad_options_in_one_line(tmp_path, cli, args, field):
    code, _, err = cli("plan", tmp_path, *args)
    assert code == 2 and field in err and "Traceback" not in err
