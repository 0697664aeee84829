"""Paired comparisons: the paired test equals scipy's on hand-made numbers; runs pair by seed
and task order; the report carries them in md, csv and json; --baseline picks the column."""

from __future__ import annotations

import csv
import io
import json

import pytest
from scipy import stats

from curlora_bench.analysis.report import build_table, render
from curlora_bench.core.errors import BenchError
from curlora_bench.core.metrics import paired_difference
from tests.test_report import fake

LORA = {"method": "lora", "rank": 8}
CUR = {"method": "curlora", "rank": 8}


def test_paired_difference_equals_scipy():
    a, b = [0.71, 0.64, 0.80, 0.69], [0.60, 0.62, 0.70, 0.61]
    mean, ci, p = paired_difference(a, b)
    d = [x - y for x, y in zip(a, b)]
    assert mean == pytest.approx(sum(d) / 4)
    assert p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    lo, hi = stats.t.interval(0.95, 3, loc=stats.tmean(d), scale=stats.sem(d))
    assert ci == pytest.approx((lo, hi))
    # by hand: d = .11 .02 .10 .08, mean .0775, sd .04031, t = .0775 / (.04031 / 2) = 3.845 -> p = .0310
    assert p == pytest.approx(0.0310, abs=5e-4)
    assert paired_difference([1.0], [0.5]) == (0.5, None, None)  # one pair: no interval, no test
    assert paired_difference([1.0, 2.0], [0.5, 1.5])[2] is None  # constant difference: undefined test
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def _runs(acc_lora, acc_cur, seeds=(0, 1, 2), **kw):
    out = []
    for s, x in zip(seeds, acc_lora):
        r = fake("lora-r8", s, LORA, protocol="standard", **kw)
        r.summary.metrics = {**r.summary.metrics, "average_accuracy": x}
        out.append(r)
    for s, x in zip(seeds, acc_cur):
        r = fake("curlora-r8", s, CUR, protocol="standard", **kw)
        r.summary.metrics = {**r.summary.metrics, "average_accuracy": x, "forgetting": None}
        out.append(r)
    return out


def test_report_pairs_by_seed_in_every_format():
    runs = _runs([0.70, 0.60, 0.80], [0.75, 0.70, 0.81])
    t = build_table(runs)
    assert t.baseline == "lora-r8"
    acc = next(d for d in t.paired if d.quantity == "average_accuracy")
    mean, ci, _ = paired_difference([0.75, 0.70, 0.81], [0.70, 0.60, 0.80])
    p = 0.25  # the exact sign-flip test: all three pairs higher, 2 of 8 sign patterns as extreme
    assert (acc.column, acc.n, acc.mean, acc.p_value, acc.agree) == ("curlora-r8", 3, pytest.approx(mean), p, (3, 0))
    assert acc.ci95 == pytest.approx(ci)
    forgetting = next(d for d in t.paired if d.quantity == "forgetting")
    assert forgetting.n == 0 and forgetting.mean is None  # a quantity a method lacks is not paired
    md = render(runs, "md")
    assert "### Paired differences against lora-r8" in md
    assert f"| curlora-r8 | final average accuracy | 3 | {mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | 3/3 higher | 0.25 |" in md
    rows = [r for r in csv.DictReader(io.StringIO(render(runs, "csv"))) if r["row"].endswith("(paired)")]
    got = next(r for r in rows if r["row"] == "average_accuracy minus lora-r8 (paired)")
    assert float(got["mean"]) == pytest.approx(mean) and float(got["p_value"]) == pytest.approx(p)
    assert got["n"] == "3"
    data = json.loads(render(runs, "json"))["paired"]
    assert data["baseline"] == "lora-r8" and data["differences"][0]["p_value"] == pytest.approx(p)
    # the other way round: --baseline
    t2 = build_table(runs, "curlora-r8")
    acc2 = next(d for d in t2.paired if d.quantity == "average_accuracy")
    assert acc2.column == "lora-r8" and acc2.mean == pytest.approx(-mean)
    with pytest.raises(BenchError, match="--baseline 'nope': no such column"):
        build_table(runs, "nope")


def test_only_shared_seeds_pair():
    runs = _runs([0.70, 0.60, 0.80], [0.75, 0.70], seeds=(0, 1, 2))  # curlora lacks seed 2
    acc = next(d for d in build_table(runs).paired if d.quantity == "average_accuracy")
    assert acc.n == 2 and acc.mean == pytest.approx(0.075)


def test_report_cli_baseline_option(tmp_path, cli):
    from curlora_bench.store.schema import dump

    for r in _runs([0.70, 0.60, 0.80], [0.75, 0.70, 0.81]):
        folder = tmp_path / "exp" / r.summary.label / f"seed-{r.summary.seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(dump(r.summary))
    code, out, err = cli("report", tmp_path / "exp", "--baseline", "curlora-r8")
    assert code == 0, err
    assert "### Paired differences against curlora-r8" in out and "| lora-r8 | final average accuracy | 3 |" in out
    code, out, err = cli("report", tmp_path / "exp", "--baseline", "nope")
    assert code == 2 and "--baseline 'nope': no such column" in err


def test_drift_is_paired_as_a_log_ratio_with_holm_and_mde():
    runs = _runs([0.70, 0.60, 0.80], [0.75, 0.70, 0.81])
    for r, drift in zip(runs, [1.2, 1.1, 5.4, 1.0, 1.05, 1.2]):  # lora seeds 0-2, then curlora's
        r.summary.metrics = {**r.summary.metrics, "perplexity_drift": drift}
    t = build_table(runs)
    d = next(d for d in t.paired if d.quantity == "perplexity_drift")
    import math

    logs = [math.log(1.0 / 1.2), math.log(1.05 / 1.1), math.log(1.2 / 5.4)]
    mean, ci, _ = paired_difference([math.log(x) for x in (1.0, 1.05, 1.2)], [math.log(x) for x in (1.2, 1.1, 5.4)])
    assert d.log and d.mean == pytest.approx(sum(logs) / 3) and d.ci95 == pytest.approx(ci) and d.p_value == 0.25
    assert math.exp(d.ci95[0]) > 0  # a ratio's interval: never below 0 once shown
    from curlora_bench.analysis import stats as ours

    assert [x.p_holm for x in t.paired] == ours.holm([x.p_value for x in t.paired])  # over the whole table
    assert math.isinf(d.mde)  # three pairs cannot reach 0.05 / (the table's tests) at all
    md = render(runs, "md")
    assert (f"| curlora-r8 | perplexity drift | 3 | ×{math.exp(d.mean):.3f} [×{math.exp(ci[0]):.3f}, "
            f"×{math.exp(ci[1]):.3f}] | 3/3 lower | 0.25 |") in md
    assert "none at n = 3" in md and "never below 2/2^n" in md


def test_example_by_example_mcnemar_from_kept_predictions(toy_data, write_config, tmp_path):
    """Runs that kept predictions.jsonl are compared example by example on the final stage."""
    from curlora_bench.analysis import stats as ours
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_experiment
    from curlora_bench.store.folders import find_runs
    from curlora_bench.store.schema import read_predictions
    from tests.conftest import tiny_config

    cfg, _ = load_config(write_config(tiny_config(toy_data, perplexity=None, seeds=[0, 1])))
    run_experiment(cfg, tmp_path / "o")
    runs = find_runs([tmp_path / "o"])
    t = build_table(runs)
    assert t.tradeoff.eval_resampled  # every run kept its per-example scores
    pairs = {(e.column, e.task): e for e in t.mcnemar}
    assert set(pairs) == {("curlora-r2", "pairs"), ("curlora-r2", "polarity")}
    e = pairs[("curlora-r2", "polarity")]
    final = {}
    for label in ("lora-r2", "curlora-r2"):
        for seed in (0, 1):
            lines = read_predictions(tmp_path / "o" / label / f"seed-{seed}" / "predictions.jsonl")
            final[label, seed] = next(p.scores for p in lines if p.stage == 2 and p.task == "polarity")
    ours_right = sum(a and not b for s in (0, 1) for a, b in zip(final["curlora-r2", s], final["lora-r2", s]))
    theirs_right = sum(b and not a for s in (0, 1) for a, b in zip(final["curlora-r2", s], final["lora-r2", s]))
    assert (e.runs, e.ours, e.theirs) == (2, ours_right, theirs_right)
    assert e.both + e.ours + e.theirs <= 2 * len(final["lora-r2", 0])
    assert e.p_value == pytest.approx(ours.mcnemar_exact(ours_right, theirs_right))
    assert "### Example by example against lora-r2" in render(runs, "md")
    (tmp_path / "o" / "lora-r2" / "seed-1" / "predictions.jsonl").unlink()  # one run without its scores
    t = build_table(find_runs([tmp_path / "o"]))
    assert not t.tradeoff.eval_resampled
    assert any(n.startswith("eval examples not resampled") and n.endswith("of lora-r2") for n in t.tradeoff.notes)


def test_chosen_pairs_only_with_their_match_shown_and_holm_over_them(tmp_path, cli):
    """`report --pair A=B`: only the pairs asked for, A minus B, each with its plasticity difference
    (shown, never tested); Holm runs over the pairs' tested differences alone."""
    from curlora_bench.analysis import stats as ours
    from curlora_bench.analysis.report import Options
    from curlora_bench.store.schema import dump

    runs = _runs([0.70, 0.60, 0.80], [0.75, 0.70, 0.81])
    for s, x in zip((0, 1, 2), [0.72, 0.66, 0.79]):  # a third column, compared with no one
        r = fake("lora-r8-b", s, {**LORA, "alpha": 2}, protocol="standard")
        r.summary.metrics = {**r.summary.metrics, "average_accuracy": x}
        runs.append(r)
    t = build_table(runs, options=Options(pairs=(("curlora-r8", "lora-r8"),)))
    assert t.baseline is None and {(d.column, d.baseline) for d in t.paired} == {("curlora-r8", "lora-r8")}
    match = next(d for d in t.paired if d.quantity == "plasticity")
    assert match.p_value is None and match.p_holm is None and match.n == 3
    assert match.mean == pytest.approx(0.0)  # the fake runs share one score matrix: plasticities alike
    tested = [d for d in t.paired if d.p_value is not None]
    assert [d.quantity for d in tested] == ["average_accuracy", "perplexity_drift"]  # curlora's forgetting is None
    assert [d.p_holm for d in tested] == ours.holm([d.p_value for d in tested])
    md = render(runs, "md", options=Options(pairs=(("curlora-r8", "lora-r8"),)))
    assert "### Paired differences of the chosen pairs" in md and "| curlora-r8 vs lora-r8 | final average accuracy | 3 |" in md
    assert "| curlora-r8 vs lora-r8 | plasticity (the match, not tested) | 3 | +0.000" in md and "lora-r8-b |" not in md.split("### Paired")[1].split("###")[0]
    with pytest.raises(BenchError, match="--pair curlora-r8=nope: no column 'nope'"):
        build_table(runs, options=Options(pairs=(("curlora-r8", "nope"),)))
    for r in runs:
        folder = tmp_path / "exp" / r.summary.label / f"seed-{r.summary.seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(dump(r.summary))
    code, out, err = cli("report", tmp_path / "exp", "--pair", "curlora-r8=lora-r8", "--draws", "0")
    assert code == 0, err
    assert "| curlora-r8 vs lora-r8 | forgetting |" in out
    # --method: the third column leaves every table (and the pair is unchanged)
    code, only, err = cli("report", tmp_path / "exp", "--method", "curlora-r8", "--method", "lora-r8", "--draws", "0")
    assert code == 0 and "lora-r8-b" not in only and "lora-r8-b" in out, err
    for args, message in [(["--pair", "curlora-r8"], "--pair 'curlora-r8': expected COLUMN=COLUMN"),
                          (["--method", "nope"], "--method 'nope': no run of that label here (labels: "),
                          (["--pair", "lora-r8=lora-r8"], "--pair lora-r8=lora-r8: a column against itself"),
                          (["--pair", "curlora-r8=lora-r8", "--baseline", "lora-r8"], "--pair and --baseline: give one")]:
        code, _, err = cli("report", tmp_path / "exp", *args)
        assert code == 2 and message in err and err.strip().count("\n") == 0, err
