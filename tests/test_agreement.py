"""`curlora-bench agree`: two ways of running the same methods, paired run by run, with an
equivalence test against stated margins."""

from __future__ import annotations

import math

import pytest

from curlora_bench.analysis.agreement import (
    agreement_markdown,
    agreements,
    parse_margins,
    resolution,
)
from curlora_bench.core.errors import BenchError
from curlora_bench.store.schema import TaskData
from tests.test_report import fake

LORA = {"method": "lora", "rank": 8}


def _runs(drifts, forgettings, seeds=(0, 1, 2)):
    out = []
    for s, d, f in zip(seeds, drifts, forgettings):
        r = fake("lora-r8", s, LORA, protocol="standard")
        r.summary.metrics = {**r.summary.metrics, "perplexity_drift": d, "forgetting": f}
        out.append(r)
    return out


def test_pairs_by_seed_and_tests_equivalence_against_the_margins():
    a = _runs([1.20, 1.30, 1.25], [0.020, 0.030, 0.010])
    b = _runs([1.21, 1.31, 1.26], [0.021, 0.029, 0.060])
    margins = parse_margins(["drift=0.05", "forgetting=0.01"])
    assert margins["perplexity_drift"] == pytest.approx(math.log(1.05)) and margins["forgetting"] == 0.01
    rows = {r.quantity: r for r in agreements(a, b, margins)}
    drift = rows["perplexity_drift"]
    logs = [math.log(1.21 / 1.20), math.log(1.31 / 1.30), math.log(1.26 / 1.25)]
    assert drift.test.mean == pytest.approx(sum(logs) / 3) and drift.test.agree == (3, 0, 3)
    assert drift.equivalent is True  # under 1% apart, every seed: inside +-5%
    forg = rows["forgetting"]  # one seed 0.05 apart: the 90% interval leaves +-0.01
    assert forg.test.mean == pytest.approx((0.001 - 0.001 + 0.05) / 3) and forg.equivalent is False
    assert rows["plasticity"].margin is None and rows["plasticity"].equivalent is None
    text = agreement_markdown(list(rows.values()), "fp32", "bf16")
    assert "| lora-r8 | perplexity drift | 3 |" in text and "equivalent (±5%)" in text and "not shown (±0.01)" in text


def test_only_shared_runs_pair_and_none_is_one_line():
    a, b = _runs([1.2, 1.3], [0.0, 0.0], seeds=(0, 1)), _runs([1.2, 1.3], [0.0, 0.0], seeds=(1, 2))
    assert {r.test.n for r in agreements(a, b, {})} == {1}
    with pytest.raises(BenchError, match="share no run"):
        agreements(a, _runs([1.2], [0.0], seeds=(7,)), {})


@pytest.mark.parametrize("spec, message", [("speed=0.1", "expected one of"), ("drift=x", "is not a number"),
                                           ("drift=2", "between 0 and 1"), ("forgetting=nan", "between 0 and 1")])
def test_bad_margins_are_one_line(spec, message, cli, tmp_path):
    code, _, err = cli("agree", tmp_path, tmp_path, "--margin", spec)
    assert code == 2 and message in err and "Traceback" not in err


def _scored(eval_records, seeds=(0, 1, 2), metric=None):
    """Runs whose score matrices (hence plasticity) are the same on every seed; each task's eval set
    `eval_records` long."""
    out = []
    for s in seeds:
        r = fake("lora-r8", s, LORA, protocol="standard", tasks=["a", "b", "c"])
        r.summary.data = {t: TaskData(1, t, 100, n, "f", "f") for t, n in zip("abc", eval_records)}
        r.summary.metric = metric
        out.append(r)
    return out


def test_a_count_based_score_is_not_known_past_one_example():
    """Identical plasticity on every seed: sd 0. The interval still has the width of one eval
    example's step, so a coarse eval set cannot pass a margin finer than it can resolve."""
    coarse = {r.quantity: r for r in agreements(_scored([50] * 3), _scored([50] * 3), {"plasticity": 0.01})}
    fine = {r.quantity: r for r in agreements(_scored([300] * 3), _scored([300] * 3), {"plasticity": 0.01})}
    assert coarse["plasticity"].test.sd == 0 and fine["plasticity"].test.sd == 0
    lo, hi = coarse["plasticity"].test.ci90  # step 1/150: t(0.95, 2) / sqrt(3) steps either side
    assert hi == pytest.approx(-lo) == pytest.approx(2.919986 / math.sqrt(3) / 150, rel=1e-5)
    assert coarse["plasticity"].equivalent is False and fine["plasticity"].equivalent is True
    bare = {r.quantity: r for r in agreements(_runs([1.2] * 3, [0.0] * 3), _runs([1.2] * 3, [0.0] * 3), {})}
    assert bare["plasticity"].test.ci90 == (0.0, 0.0)  # no eval sizes recorded: nothing to floor at


def test_resolution_is_one_example_over_the_tasks_averaged():
    run = _scored([300, 200, 300], seeds=(0,))[0].summary
    assert resolution(run, "plasticity") == resolution(run, "average_accuracy") == pytest.approx(1 / 900)
    assert resolution(run, "forgetting") == pytest.approx(1 / 600)
    assert resolution(run, "perplexity_drift") is None
    rouge = _scored([300] * 3, seeds=(0,), metric={"b": "rouge_l"})[0].summary
    assert resolution(rouge, "plasticity") is None  # a continuous score: no lattice
    assert resolution(_scored([300] * 3, seeds=(0,), metric={"b": "exact_match"})[0].summary, "forgetting") == \
        pytest.approx(1 / 600)
    assert resolution(_scored([300] * 3, seeds=(0,), metric={"b": "first_char"})[0].summary, "plasticity") == \
        pytest.approx(1 / 900)  # every 0-or-1 metric the project knows (core.metrics.TASK_METRICS' binary)
