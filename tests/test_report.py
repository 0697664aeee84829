"""The report table (rows, grouping by settings, paper columns, failures, every format), the
results schema's strictness, and the plots — on hand-made typed summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curlora_bench.analysis.report import FORMATS, build_table, render, tex
from curlora_bench.core.errors import BenchError
from curlora_bench.store.folders import Run, find_runs
from curlora_bench.store.schema import SCHEMA_VERSION, RunSummary, dump, load, parse

PAPER_TASKS = ["mrpc", "sst2", "sentiment140"]
A = [[0.8, None, None], [0.7, 0.9, None], [0.6, 0.8, 0.95]]


def summary_dict(label, seed, method, A=A, ppl=(10.0, [11.0, 12.0, 13.0]), drift=None, diagnostics=None,
                 model="gpt2-large", protocol="paper", tasks=PAPER_TASKS, settings=None, settings_hash=None,
                 status="complete", error=None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "label": label, "method": method, "seed": seed,
        "run_key": f"{label}-{seed}", "settings_hash": settings_hash or f"h-{label}",
        "settings": settings or {"model": model, "protocol": protocol}, "status": status, "error": error,
        "model": model, "protocol": protocol, "padding_side": "right", "tasks": tasks, "num_classes": {t: 2 for t in tasks},
        "baseline": {t: 0.5 for t in tasks}, "data": {}, "score_matrix": A,
        "perplexity": {"initial": ppl[0], "after_stage": ppl[1], "final": ppl[1][-1],
                       "protocol": {"corpus": "wikitext2", "window": 256}},
        "metrics": {"average_accuracy": 0.7, "backward_transfer": -0.1, "forgetting": 0.1, "perplexity_drift": 1.3},
        "drift": drift or [], "diagnostics": diagnostics or {}, "trainable_parameters": 100,
        "head_parameters": {t: 10 for t in tasks}, "adapted_modules": 4, "stages": [], "resumed_from_stage": None,
        "wall_seconds": 1.0, "device": "cpu", "threads": 2, "versions": {}, "git_commit": None, "strategy": None,
        "order": None, "regime": "sequential", "execution": None, "perplexities": None, "validation_matrix": None,
        "metric": None, "zero_shot": None, "general": None, "recovery": None,
    }


def fake(*args, **kwargs) -> Run:
    d = summary_dict(*args, **kwargs)
    return Run(Path(f"/x/{d['label']}/seed-{d['seed']}"), parse(RunSummary, d, "fake"))


def cells(table, row_name):
    row = next(r for r in table.rows if r.name == row_name)
    return {c.name: table.values(row, c) for c in table.columns}


def test_paper_columns_beside_ours_for_paper_setting():
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}),
            fake("curlora-r8", 0, {"method": "curlora", "rank": 8})]
    t = build_table(runs)
    assert [c.name for c in t.columns] == ["lora-r8", "curlora-r8", "paper lora-r8", "paper curlora-r8"]
    assert cells(t, "mrpc accuracy (after mrpc)")["paper lora-r8"] == [0.79]
    assert cells(t, "mrpc accuracy (after sentiment140)")["paper curlora-r8"] == [0.70]
    assert cells(t, "Final perplexity")["paper lora-r8"] == [42.96]
    assert cells(t, "Initial perplexity")["paper curlora-r8"] == [28.25]
    assert cells(t, "Forgetting")["paper lora-r8"] == []
    assert "| paper lora-r8 |" in render(runs, "md")


def test_rows_follow_the_papers_order():
    names = [r.name for r in build_table([fake("lora-r8", 0, {"method": "lora", "rank": 8})]).rows]
    assert names[:5] == ["Initial perplexity", "mrpc accuracy (after mrpc)", "sst2 accuracy (after sst2)",
                         "mrpc accuracy (after sst2)", "sentiment140 accuracy (after sentiment140)"]


@pytest.mark.parametrize("change", [{"protocol": "standard"}, {"model": "smollm2-135m"},
                                    {"tasks": ["a", "b", "c"]}])
def test_no_paper_columns_outside_the_paper_setting(change):
    t = build_table([fake("lora-r8", 0, {"method": "lora", "rank": 8}, **change)])
    assert [c.name for c in t.columns] == ["lora-r8"]


def test_no_paper_column_for_ranks_the_paper_lacks():
    t = build_table([fake("lora-r4", 0, {"method": "lora", "rank": 4})])
    assert [c.name for c in t.columns] == ["lora-r4"]


def test_drift_and_method_rows_pool_seeds():
    sampling = {"sampling": {"summary": {
        "columns": {"kl_from_uniform_mean": 0.02, "max_min_ratio_max": 3.0, "duplicates_total": 1},
        "rows": {"kl_from_uniform_mean": 0.01, "max_min_ratio_max": 2.0, "duplicates_total": 2}}}}
    drift = [{"stage": i, "mean": m, "max": x, "modules": 4, "per_module": {}}
             for i, m, x in ((1, 1e-3, 2e-3), (2, 2e-3, 4e-3), (3, 3e-3, 5e-3))]
    drift2 = [dict(d, mean=d["mean"] * 3) for d in drift]
    flat = [{"stage": i, "mean": 0.0, "max": 0.0, "modules": 0, "per_module": {}} for i in (1, 2, 3)]
    runs = [fake("curlora-r8", 0, {"method": "curlora", "rank": 8}, drift=drift, diagnostics=sampling,
                 protocol="standard"),
            fake("curlora-r8", 1, {"method": "curlora", "rank": 8}, drift=drift2, diagnostics=sampling,
                 protocol="standard"),
            fake("head-only", 0, {"method": "head-only"}, drift=flat, protocol="standard")]
    t = build_table(runs)
    r = cells(t, "‖ΔW‖/‖W‖ mean over matrices (after sst2)")
    assert r["curlora-r8"] == [2e-3, 6e-3] and r["head-only"] == []
    assert cells(t, "‖ΔW‖/‖W‖ max over matrices (final)")["curlora-r8"] == [5e-3, 5e-3]
    assert cells(t, "CUR duplicate indices (columns + rows)")["curlora-r8"] == [3, 3]
    md = render(runs, "md")
    assert "4.00e-03 ± 2.83e-03" in md  # mean ± std of 2e-3 and 6e-3
    assert "| CUR columns: KL(q ‖ uniform), mean |  | 0.0200 ± 0.0000 | - |" in md


def test_no_method_rows_without_that_method():
    names = [r.name for r in build_table([fake("lora-r8", 0, {"method": "lora", "rank": 8})]).rows]
    assert not any(n.startswith("CUR ") for n in names)


def test_columns_are_settings_not_labels():
    """The same label with different settings (say a changed alpha) is two columns, never one mean."""
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8, "alpha": 1}, settings_hash="aaaaaa11"),
            fake("lora-r8", 1, {"method": "lora", "rank": 8, "alpha": 1}, settings_hash="aaaaaa11"),
            fake("lora-r8", 0, {"method": "lora", "rank": 8, "alpha": 2}, settings_hash="bbbbbb22",
                 A=[[0.5, None, None], [0.5, 0.5, None], [0.5, 0.5, 0.5]])]
    t = build_table(runs)
    assert [c.name for c in t.columns][:2] == ["lora-r8 [aaaaaa]", "lora-r8 [bbbbbb]"]
    assert cells(t, "mrpc accuracy (after mrpc)")["lora-r8 [aaaaaa]"] == [0.8, 0.8]
    assert cells(t, "mrpc accuracy (after mrpc)")["lora-r8 [bbbbbb]"] == [0.5]


def test_runs_of_different_experiments_are_refused():
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}, settings={"model": "m", "train": {"lr": 1}}),
            fake("lora-r8", 0, {"method": "lora", "rank": 8}, settings={"model": "m", "train": {"lr": 2}})]
    with pytest.raises(BenchError, match=r"settings differ in: train"):
        build_table(runs)


def test_runs_differing_only_in_execution_keys_are_one_experiment():
    """Gradient checkpointing and the log interval change memory, speed and train_log.jsonl, not the
    numbers: runs made with and without them (or before the keys existed) report together."""
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}, settings={"model": "m", "train": {"lr": 1}}),
            fake("lora-r8", 1, {"method": "lora", "rank": 8},
                 settings={"model": "m", "train": {"lr": 1, "gradient_checkpointing": True, "log_every": 5}})]
    assert len(build_table(runs).columns[0].runs) == 2


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_failed_runs_are_flagged_in_every_format(fmt):
    runs = [fake("lora-r8", 0, {"method": "lora", "rank": 8}, protocol="standard"),
            fake("full", 0, {"method": "full"}, protocol="standard", status="failed",
                 error="full seed 0 stage 2 (sst2) step 3: loss is nan")]
    text = render(runs, fmt)
    if fmt == "csv":
        lines = [ln for ln in text.splitlines() if ",full," in ln]
        assert lines and all(ln.endswith(",1") for ln in lines)
    elif fmt == "json":
        data = json.loads(text)
        assert data["failures"] == ["full seed 0 stage 2 (sst2) step 3: loss is nan"]
        assert next(c for c in data["columns"] if c["name"] == "full")["failed"] == ["/x/full/seed-0"]
    else:
        assert "FAILED full seed 0 stage 2" in text.replace(r"\_", "_")


def test_latex_escapes_special_characters():
    assert tex(r"a_b & 50% #1 $x$ {y} ~ ^ \z") == (r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{} "
                                                   r"\textasciicircum{} \textbackslash{}z")
    drift = [{"stage": i, "mean": 1e-3, "max": 2e-3, "modules": 4, "per_module": {}} for i in (1, 2, 3)]
    runs = [fake("lora_r8&x", 0, {"method": "lora", "rank": 8}, protocol="standard", drift=drift)]
    latex = render(runs, "latex")
    assert r"lora\_r8\&x" in latex and "lora_r8&x" not in latex
    assert r"$\|$" in latex and "‖" not in latex


def test_schema_reading_is_strict(tmp_path):
    good = summary_dict("lora-r8", 0, {"method": "lora"})
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(good))
    assert load(RunSummary, path).label == "lora-r8"
    assert json.loads(dump(load(RunSummary, path))) == good  # write(read(x)) == x
    # a summary written before regimes and `execution:` existed reads with their defaults
    older = {k: v for k, v in good.items() if k not in ("regime", "execution", "perplexities")}
    path.write_text(json.dumps(older))
    assert (load(RunSummary, path).regime, load(RunSummary, path).execution) == ("sequential", None)
    for broken, match in (
        ({k: v for k, v in good.items() if k != "metrics"}, "RunSummary.metrics: required key is missing"),
        ({**good, "surprise": 1}, "RunSummary.surprise: unknown key"),
        ({**good, "seed": "zero"}, "RunSummary.seed: expected an integer"),
        ({**good, "metrics": {"average_accuracy": 0.5}}, "RunSummary.metrics: keys"),
        ({**good, "schema_version": 1}, "results schema version 1"),
    ):
        path.write_text(json.dumps(broken))
        with pytest.raises(BenchError, match=match) as err:
            load(RunSummary, path)
        assert str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        find_runs([tmp_path])


def test_plots_are_written(tmp_path):
    from curlora_bench.analysis.plots import write_plots

    drift = [{"stage": i, "mean": 1e-3 * i, "max": 2e-3, "modules": 4, "per_module": {}} for i in (1, 2, 3)]
    runs = [fake("lora-r8", s, {"method": "lora", "rank": 8}, drift=drift) for s in (0, 1)]
    runs.append(fake("curlora-r8", 0, {"method": "curlora", "rank": 8}, drift=drift))
    files = write_plots(runs, tmp_path / "plots")
    names = sorted(p.name for p in files)
    assert names == ["accuracy_matrix.png", "earlier_tasks.png", "perplexity.png", "tradeoff.png", "weight_drift.png"]
    for p in files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_a_joint_summary_of_before_regimes_reads_as_regime_joint():
    """Joint training was the method `joint` wrapping its adapter; such a summary (as published in
    results/published/baselines) reads as the adapter's entry with regime joint, run key kept."""
    inner = {"method": "lora", "label": "lora-r8", "rank": 8, "alpha": 1.0, "dropout": 0.0, "init": "peft"}
    old = summary_dict("joint-lora-r8", 0, {"method": "joint", "label": "joint-lora-r8", "adapter": inner})
    del old["regime"], old["execution"], old["perplexities"]
    s = parse(RunSummary, old, "old")
    assert s.regime == "joint" and s.run_key == "joint-lora-r8-0"
    assert s.method == {"method": "lora", "label": "joint-lora-r8", "rank": 8, "alpha": 1.0, "dropout": 0.0,
                        "init": "peft", "regime": "joint"}
