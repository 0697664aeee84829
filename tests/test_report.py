"""Report rows (metrics, drift, CUR sampling), the paper's columns, and the plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from curlora_bench.results.report import build_rows, render
from curlora_bench.results.store import RunResult

PAPER_TASKS = ["mrpc", "sst2", "sentiment140"]


def fake(label, seed, method, A, ppl=(10.0, [11.0, 12.0, 13.0]), drift=None, sampling=None,
         model="gpt2-large", protocol="paper", tasks=PAPER_TASKS):
    summary = {
        "label": label, "seed": seed, "method": method, "model": model, "protocol": protocol,
        "tasks": tasks, "majority_baseline": {t: 0.5 for t in tasks}, "status": "complete",
        "accuracy_matrix": A, "trainable_parameters": 100,
        "perplexity": {"initial": ppl[0], "after_stage": ppl[1], "final": ppl[1][-1],
                       "protocol": {"corpus": "wikitext2", "window": 256}},
        "metrics": {"average_accuracy": 0.7, "backward_transfer": -0.1, "forgetting": 0.1, "perplexity_drift": 1.3},
        "drift": drift or [], "sampling": sampling or {},
    }
    return RunResult(Path(f"/x/{label}/seed-{seed}"), summary)


A = [[0.8, None, None], [0.7, 0.9, None], [0.6, 0.8, 0.95]]


def row(rows, name):
    return next(r for r in rows if r.name == name)


def test_paper_columns_beside_ours_for_paper_setting():
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}, A),
            fake("curlora-r8", 0, {"method": "curlora", "rank": 8}, A)]
    labels, rows = build_rows(runs)
    assert labels == ["lora-r8", "curlora-r8", "paper lora-r8", "paper curlora-r8"]
    assert row(rows, "mrpc accuracy (after mrpc)").cells["paper lora-r8"] == [0.79]
    assert row(rows, "mrpc accuracy (after sentiment140)").cells["paper curlora-r8"] == [0.70]
    assert row(rows, "Final perplexity").cells["paper lora-r8"] == [42.96]
    assert row(rows, "Initial perplexity").cells["paper curlora-r8"] == [28.25]
    assert row(rows, "Forgetting").cells["paper lora-r8"] == []
    assert "| paper lora-r8 |" in render(runs, "md")


@pytest.mark.parametrize("change", [{"protocol": "standard"}, {"model": "smollm2-135m"},
                                    {"tasks": ["a", "b", "c"]}])
def test_no_paper_columns_outside_the_paper_setting(change):
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}, A, **change)]
    labels, _ = build_rows(runs)
    assert labels == ["lora-r8"]


def test_no_paper_column_for_ranks_the_paper_lacks():
    labels, _ = build_rows([fake("lora-r4", 0, {"method": "lora", "rank": 4}, A)])
    assert labels == ["lora-r4"]


def test_drift_and_sampling_rows_pool_seeds():
    sampling = {"summary": {"columns": {"kl_from_uniform_mean": 0.02, "max_min_ratio_max": 3.0, "duplicates_total": 1},
                            "rows": {"kl_from_uniform_mean": 0.01, "max_min_ratio_max": 2.0, "duplicates_total": 2}}}
    drift = [{"stage": 1, "mean": 1e-3, "max": 2e-3, "modules": 4}, {"stage": 2, "mean": 2e-3, "max": 4e-3, "modules": 4},
             {"stage": 3, "mean": 3e-3, "max": 5e-3, "modules": 4}]
    drift2 = [dict(d, mean=d["mean"] * 3) for d in drift]
    runs = [fake("curlora-r8", 0, {"method": "curlora", "rank": 8}, A, drift=drift, sampling=sampling, protocol="standard"),
            fake("curlora-r8", 1, {"method": "curlora", "rank": 8}, A, drift=drift2, sampling=sampling, protocol="standard"),
            fake("head-only", 0, {"method": "head-only"}, A, drift=[{"stage": i, "mean": 0.0, "max": 0.0, "modules": 0}
                                                                   for i in (1, 2, 3)], protocol="standard")]
    _, rows = build_rows(runs)
    r = row(rows, "‖ΔW‖/‖W‖ mean over matrices (after sst2)")
    assert r.cells["curlora-r8"] == [2e-3, 6e-3] and r.cells["head-only"] == []
    assert row(rows, "‖ΔW‖/‖W‖ max over matrices (final)").cells["curlora-r8"] == [5e-3, 5e-3]
    assert row(rows, "CUR duplicate indices (columns + rows)").cells["curlora-r8"] == [3, 3]
    md = render(runs, "md")
    assert "4.00e-03 ± 2.83e-03" in md  # mean ± std of 2e-3 and 6e-3
    assert "| CUR columns: KL(q ‖ uniform), mean |  | 0.0200 ± 0.0000 | - |" in md


def test_plots_are_written(tmp_path):
    from curlora_bench.results.plots import write_plots

    drift = [{"stage": i, "mean": 1e-3 * i, "max": 2e-3, "modules": 4} for i in (1, 2, 3)]
    runs = [fake("lora-r8", s, {"method": "lora", "rank": 8}, A, drift=drift) for s in (0, 1)]
    runs.append(fake("curlora-r8", 0, {"method": "curlora", "rank": 8}, A, drift=drift))
    files = write_plots(runs, tmp_path / "plots")
    names = sorted(p.name for p in files)
    assert names == ["accuracy_matrix.png", "earlier_tasks.png", "perplexity.png", "weight_drift.png"]
    for p in files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
