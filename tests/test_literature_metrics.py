"""The continual-learning metrics the literature reports, on hand-computed matrices."""

from __future__ import annotations

import pytest

from curlora_bench.core.metrics import (
    average_accuracy,
    average_incremental,
    backward_transfer,
    backward_transfer_over_tasks,
    forgetting,
    forward_transfer,
)

# A[i][j]: task j after stage i; above the diagonal: task j scored before it is learned
A = [[0.80, 0.40, 0.30],
     [0.70, 0.90, 0.35],
     [0.60, 0.85, 0.95]]
BASE = [0.50, 0.30, 0.20]  # the base model, before any stage


def test_last_and_average_incremental():
    assert average_accuracy(A) == pytest.approx((0.60 + 0.85 + 0.95) / 3)  # Last, AP
    # Avg: (0.80 + (0.70 + 0.90) / 2 + 0.80) / 3
    assert average_incremental(A) == pytest.approx((0.80 + 0.80 + 0.80) / 3)


def test_backward_transfer_by_t_minus_one_and_by_t():
    # (0.60 - 0.80) + (0.85 - 0.90) = -0.25
    assert backward_transfer(A) == pytest.approx(-0.25 / 2)
    assert backward_transfer_over_tasks(A) == pytest.approx(-0.25 / 3)
    assert backward_transfer_over_tasks(A[:1]) is None


def test_forgetting_takes_the_best_earlier_score():
    # task 0: best of 0.80, 0.70 -> 0.80 - 0.60; task 1: 0.90 - 0.85
    assert forgetting(A) == pytest.approx((0.20 + 0.05) / 2)


def test_forward_transfer_needs_scores_before_learning():
    # (A[0][1] - 0.30) + (A[1][2] - 0.20) = 0.10 + 0.15
    assert forward_transfer(A, BASE) == pytest.approx(0.25 / 2)
    lower = [[0.80, None, None], [0.70, 0.90, None], [0.60, 0.85, 0.95]]
    assert forward_transfer(lower, BASE) is None  # not scored before learning
    assert forward_transfer(A, [0.5, None, 0.2]) is None  # no base score
    assert forward_transfer(A[:1], BASE) is None


def test_the_report_gives_them_from_each_runs_matrix(tmp_path):
    from types import SimpleNamespace

    from curlora_bench.analysis.rows import literature_rows

    def summary(status, matrix):
        return SimpleNamespace(status=status, score_matrix=matrix, tasks=["a", "b", "c"][: len(matrix[0])],
                               zero_shot={t: {"accuracy": b} for t, b in zip("abc", BASE)}, primary=lambda t: "accuracy")

    run = summary("complete", A)
    joint = summary("complete", [[0.8, 0.9, 0.7]])
    failed = summary("failed", A[:2])
    values = {row.name.split(":")[0]: row.read(run) for row in literature_rows()}
    assert values == pytest.approx({
        "AP / Last": average_accuracy(A), "Avg": average_incremental(A), "BWT over T-1 tasks": backward_transfer(A),
        "BWT over T tasks": backward_transfer_over_tasks(A), "Forgetting rate": forgetting(A),
        "FWT": forward_transfer(A, BASE)})
    gap = summary("complete", [[0.8, None], [None, 0.9]])
    assert all(row.read(r) is None for r in (joint, failed, gap) for row in literature_rows())


def test_lookahead_scores_prompted_tasks_before_their_stage_for_fwt(tmp_path, cli):
    import json

    import make_toy_data

    from tests.conftest import run_in
    from tests.test_prompted import prompted_config

    data = tmp_path / "toy"
    make_toy_data.main(data, n_train=16, n_eval=8)
    cfg = prompted_config(data, methods=[{"method": "lora", "rank": 2}])
    cfg["eval"]["lookahead"] = True
    out = run_in(tmp_path, cfg)
    run = out / "lora-r2" / "seed-0"
    s = json.loads((run / "summary.json").read_text())
    A = s["score_matrix"]
    assert A[0][1] is not None  # the second task, scored after the first stage
    ahead = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    ahead = [r for r in ahead if r["stage"] == 1 and r["task"] == "rewrite" and r["metric"] == "rouge_l"]
    assert [r["value"] for r in ahead] == [A[0][1]]
    base = [s["zero_shot"][t][s["metric"].get(t, "accuracy") if s["metric"] else "accuracy"] for t in s["tasks"]]
    expected = forward_transfer(A, base)
    code, stdout, err = cli("report", out, "--format", "json")
    assert code == 0, err
    rows = {r["row"].split(":")[0]: r["cells"]["lora-r2"]["mean"] for r in json.loads(stdout)["literature"]}
    assert rows["FWT"] == pytest.approx(expected)
    # without lookahead nothing above the diagonal is scored, and FWT has no row
    del cfg["eval"]["lookahead"]
    (tmp_path / "plain").mkdir()
    plain = run_in(tmp_path / "plain", cfg)
    A = json.loads((plain / "lora-r2" / "seed-0" / "summary.json").read_text())["score_matrix"]
    assert A[0][1] is None
