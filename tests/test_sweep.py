"""Grids, per-method train settings, executors (local and Ray give the same records), and the
learning-forgetting trade-off on hand-made summaries."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from curlora_bench.analysis.report import Column
from curlora_bench.analysis.tradeoff import Stat, frontier, interpolate, point_of, tradeoff
from curlora_bench.config.loading import load_config
from curlora_bench.core.errors import BenchError
from curlora_bench.core.parse import short_value
from curlora_bench.store.folders import Run
from curlora_bench.store.schema import parse
from tests.conftest import ROOT, tiny_config
from tests.test_report import summary_dict


def _cfg(toy_data, write_config, methods, **extra):
    return load_config(write_config(tiny_config(toy_data, methods=methods, **extra)))[0]


def test_grid_expands_to_the_cartesian_product_with_labels_that_show_the_point(toy_data, write_config):
    cfg = _cfg(toy_data, write_config, [
        {"method": "lora", "rank": 8, "grid": {"rank": [1, 8], "train.lr": [1.0e-4, 3.0e-4, 1.0e-3]}},
        {"method": "curlora", "rank": 2, "grid": {"alpha": [1, 2]}},
        {"method": "curlora", "rank": 2, "label": "mine", "grid": {"train.epochs": [1, 2]}},
    ])
    labels = [m.display_label for m in cfg.methods]
    assert labels == ["lora-r1-lr1e-4", "lora-r1-lr3e-4", "lora-r1-lr1e-3", "lora-r8-lr1e-4", "lora-r8-lr3e-4",
                      "lora-r8-lr1e-3", "curlora-r2-alpha1", "curlora-r2-alpha2", "mine-ep1", "mine-ep2"]
    assert [cfg.train_for(m).lr for m in cfg.methods[:3]] == [1e-4, 3e-4, 1e-3]
    assert [cfg.train_for(m).epochs for m in cfg.methods[-2:]] == [1, 2]
    assert [m.options.alpha for m in cfg.methods[6:8]] == [1.0, 2.0]
    assert len({cfg.identity(m, 0).run_key for m in cfg.methods}) == len(cfg.methods)  # every point its own run


def test_per_method_train_overrides_only_that_method(toy_data, write_config):
    cfg = _cfg(toy_data, write_config, [{"method": "curlora", "rank": 2, "train": {"lr": 1.0e-2}},
                                        {"method": "lora", "rank": 2}])
    assert [cfg.train_for(m).lr for m in cfg.methods] == [1e-2, 1e-3]
    assert cfg.methods[0].display_label == "curlora-r2-lr0.01"
    assert cfg.train.lr == 1e-3


@pytest.mark.parametrize("methods, message", [
    ([{"method": "lora", "grid": {"rank": [1, 0]}}], r"methods\[0\].grid.rank\[1\]: 0: must be > 0"),
    ([{"method": "lora", "grid": {"train.lr": [1e-3, "x"]}}], r"methods\[0\].grid.train.lr\[1\]: 'x': expected a number"),
    ([{"method": "lora", "grid": {"train.lr": [-1]}}], r"methods\[0\].grid.train.lr\[0\]: -1: must be > 0"),
    ([{"method": "curlora", "grid": {"sampling": ["inverse", "nope"]}}], r"methods\[0\].grid.sampling\[1\]"),
    ([{"method": "lora", "grid": {"nope": [1]}}], r"methods\[0\].grid.nope\[0\]: 1: unknown key"),
    ([{"method": "lora", "grid": {"rank": []}}], r"methods\[0\].grid.rank: expected a non-empty list"),
    ([{"method": "lora", "grid": []}], r"methods\[0\].grid: expected a mapping"),
    ([{"method": "lora", "train": {"lr": "fast"}}], r"methods\[0\].train.lr: expected a number"),
    ([{"method": "lora", "train": {"limit": 5}}], r"methods\[0\].train.limit: set per experiment"),
    ([{"method": "lora", "train": {"nope": 5}}], r"methods\[0\].train.nope: unknown key"),
    ([{"method": "lora", "rank": 2, "grid": {"train.lr": [1e-3]}}, {"method": "lora", "rank": 2, "train": {"lr": 1e-3}}],
     "used twice"),
])
def test_bad_grid_and_train_values_are_named(toy_data, write_config, methods, message):
    with pytest.raises(BenchError, match=message):
        _cfg(toy_data, write_config, methods)


def test_short_values_in_labels():
    assert [short_value(v) for v in (3e-4, 1.5e-3, 0.01, 0.1, 2, 1.0, True)] == \
        ["3e-4", "1.5e-3", "0.01", "0.1", "2", "1", "true"]


def _records(folder):
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.glob("*/seed-*/records.jsonl"))}


@pytest.mark.slow
def test_ray_sweep_killed_and_rerun_equals_the_local_executor(toy_data, write_config, tmp_path, cli):
    """The same records from `--executor local` and from a Ray sweep whose driver was SIGKILLed
    after its first finished run and then rerun with the same command."""
    pytest.importorskip("ray")
    trackers = ["tensorboard", "mlflow"] if importlib.util.find_spec("mlflow") and \
        importlib.util.find_spec("tensorboard") else []
    cfg = tiny_config(toy_data, seeds=[0, 1], perplexity=None, log=trackers, methods=[
        {"method": "curlora", "rank": 2, "grid": {"train.lr": [1e-3, 1e-2]}}])
    path = write_config(cfg)
    code, _, err = cli("run", path, "-o", tmp_path / "local", "--cpus-per-run", "1")
    assert code == 0, err
    out = tmp_path / "ray"
    args = [sys.executable, "-m", "curlora_bench", "run", str(path), "-o", str(out), "--executor", "ray",
            "--workers", "2"]
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list(out.glob("*/seed-*/summary.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
    proc.wait()
    finished = len(list(out.glob("*/seed-*/summary.json")))
    assert 1 <= finished < 4, finished
    code, stdout, err = cli("run", path, "-o", out, "--executor", "ray", "--workers", "2")
    assert code == 0, err
    assert "sweep" in stdout and "done" in stdout
    local, ray = _records(tmp_path / "local"), _records(out)
    assert len(local) == 4 and local == ray
    if trackers:  # the trackers run in the Ray workers; interrupted runs logged each step once
        from tests.test_observability import (
            mlflow_runs,
            same_points,
            scalars,
            train_log,
            without_timing,
        )

        client, runs = mlflow_runs(out)
        assert len(runs) == 4
        for summary in out.glob("*/seed-*/summary.json"):
            run, label = summary.parent, f"{summary.parent.parent.name} seed {summary.parent.name[5:]}"
            lines = train_log(run)
            assert without_timing(lines) == without_timing(train_log(tmp_path / "local" / run.relative_to(out)))
            points = [(x["global_step"], x["loss"]) for x in lines]
            assert same_points(scalars(run)["train/loss"], points)
            history = client.get_metric_history(runs[label].info.run_id, "train/loss")
            assert sorted((m.step, m.value) for m in history) == points


def test_ray_gets_the_runs_seed_major(toy_data, write_config, tmp_path):
    from curlora_bench.experiment.executors import seed_major
    from curlora_bench.run.spec import RunSpec

    cfg, _ = load_config(write_config(tiny_config(toy_data, seeds=[7, 3, 5])))
    specs = [RunSpec.of(cfg, i, seed, tmp_path) for i in range(len(cfg.methods)) for seed in cfg.seeds]
    order = [(specs[i].seed, specs[i].method_index) for i in seed_major(specs)]
    methods = range(len(cfg.methods))
    assert order == [(seed, m) for seed in (7, 3, 5) for m in methods]
    assert sorted(seed_major(specs)) == list(range(len(specs)))


def test_executor_options_are_checked(toy_data, write_config, tmp_path, cli):
    path = write_config(tiny_config(toy_data))
    for args, message in ((["--workers", "2"], "need --executor ray"),
                          (["--executor", "ray", "--workers", "0"], "--workers: must be >= 1"),
                          (["--executor", "ray", "--workers", "2", "--address", "auto"], "--workers sizes")):
        code, _, err = cli("run", path, "-o", tmp_path / "o", *args)
        assert code == 2 and message in err, err
        assert not (tmp_path / "o").exists()


# ---- the trade-off on hand-made summaries ------------------------------------------------------

def _point(column, method, diag, drift, forgetting=0.0):
    return point_of(column, _summaries(column, method, diag, drift, forgetting))


def test_stat_is_mean_se_and_t_interval():
    s = Stat.of([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.se == pytest.approx(1 / math.sqrt(3)) and s.n == 3
    assert s.ci95 == pytest.approx((2 - 4.302653 * 1 / math.sqrt(3), 2 + 4.302653 * 1 / math.sqrt(3)), rel=1e-5)
    ratio = Stat.of([1.1, 1.21, 1.331], log=True)  # a ratio: on the log scale, shown back-transformed
    assert ratio.mean == pytest.approx(math.log(1.21)) and ratio.shown == pytest.approx(1.21)
    lo, hi = ratio.shown_ci
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n), the sd of the logs being log(1.1)
    assert lo == pytest.approx(1.21 / 1.1 ** half, rel=1e-5) and hi == pytest.approx(1.21 * 1.1 ** half, rel=1e-5)
    assert Stat.of([0.9, 5.38, 1.18], log=True).shown_ci[0] > 0  # never an impossible ratio below 0


def test_frontier_keeps_the_undominated_points():
    lora = {"method": "lora", "rank": 8}
    pts = [_point("a", lora, 0.6, 1.1), _point("b", lora, 0.7, 1.3), _point("c", lora, 0.65, 1.4),
           _point("d", lora, 0.8, 2.0)]
    assert [p.column for p in frontier(pts)] == ["a", "b", "d"]  # c: b learns more and drifts less


def test_interpolation_along_a_frontier_is_on_log_drift():
    lora = {"method": "lora", "rank": 8}
    front = frontier([_point("a", lora, 0.6, 1.1), _point("b", lora, 0.8, 1.5)])
    value = interpolate(front, 0.7, "perplexity_drift")
    assert math.exp(value) == pytest.approx(math.sqrt(1.1 * 1.5))  # halfway in log drift: the geometric mean
    assert interpolate(front, 0.9, "perplexity_drift") is None and interpolate(front, 0.5, "perplexity_drift") is None


def _columns(spec, seeds=(0, 1, 2), jitter=0.01):
    """One column per (name, method, plasticity, drift, forgetting), each point's seeds jittered in
    its own order, so that the paired differences between points vary from seed to seed."""
    return [Column(name, runs=[Run(None, s) for s in _summaries(name, method, diag, drift, forg, seeds, jitter, k)])
            for k, (name, method, diag, drift, forg) in enumerate(spec)]


def test_matched_plasticity_verdict_on_a_case_with_a_known_answer():
    """CURLoRA's cur-a drifts x1.0 where LoRA's frontier drifts x1.28: the resampled verdict is sure
    it drifts less; cur-mid sits on LoRA's frontier by construction: no difference to find."""
    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    assert tradeoff([Column("x", runs=[])]) is None  # no runs: nothing to compare
    mid = math.sqrt(1.1 * 1.5)
    to = tradeoff(_columns((("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04),
                            ("cur-a", cur, 0.7, 1.0, 0.0), ("cur-b", cur, 0.9, 1.05, 0.01))), draws=2000)
    assert to.frontiers == {"lora": ["lora-a", "lora-b"], "curlora": ["cur-a", "cur-b"]}
    m = next(x for x in to.matched if x.column == "cur-a" and x.other == "lora")
    assert m.in_range and m.plasticity == pytest.approx(0.7) and m.n == 3
    assert math.exp(m.values["perplexity_drift"]) == pytest.approx(mid)
    assert m.differences["perplexity_drift"] == pytest.approx(math.log(1.0) - math.log(mid))
    test, r = m.tests["perplexity_drift"], m.resampled["perplexity_drift"]
    assert test.ci95[0] < test.mean < test.ci95[1] < 0 and test.agree == (0, 3, 3)
    assert test.p_value == pytest.approx(0.25)  # all three seeds agree: the exact test's floor at n = 3
    assert r.p_better > 0.99 and m.p_in_range > 0.95 and r.draws > 1900  # the bootstrap: descriptive only
    assert m.differences["forgetting"] == pytest.approx(0.0 - 0.03)
    out = next(x for x in to.matched if x.column == "cur-b" and x.other == "lora")
    assert not out.in_range and out.seeds_in_range == 0 and out.p_in_range < 0.05  # 0.9 is beyond LoRA's reach
    # a point on LoRA's frontier: its difference straddles 0, neither side more likely
    even = tradeoff(_columns((("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04),
                              ("cur-mid", cur, 0.7, mid, 0.03))), draws=2000)
    m = next(x for x in even.matched if x.column == "cur-mid")
    test, r = m.tests["perplexity_drift"], m.resampled["perplexity_drift"]
    assert abs(m.differences["perplexity_drift"]) < 1e-9 and test.ci95[0] < 0 < test.ci95[1]
    assert 0.2 < r.p_better < 0.8 and test.p_value == 1.0


def test_a_point_outside_the_frontier_in_one_seed_is_not_matched():
    """Matched only where every seed lies within its seed's frontier: with the jitter rotated per
    point, cur-edge's seeds sit at 0.61, 0.59, 0.60 against lora-a's 0.59, 0.60, 0.61, so only
    seed 0 is in range and the row says 'not matched' with the seeds in range."""
    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    to = tradeoff(_columns((("lora-a", lora, 0.6, 1.1, 0.0), ("lora-b", lora, 0.8, 1.5, 0.0),
                            ("cur-edge", cur, 0.6, 1.0, 0.0)), jitter=0.01), draws=200)
    m = next(x for x in to.matched if x.column == "cur-edge")
    assert not m.in_range and m.seeds_in_range == 1 and m.n == 3 and not m.tests
    from curlora_bench.analysis.markdown import tradeoff_markdown

    assert "cur-edge (0.600) vs lora (in range in 1 of 3 seeds" in tradeoff_markdown(to)


def test_resampling_is_seeded_and_widens_with_fewer_seeds():
    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    spec = (("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04), ("cur-a", cur, 0.7, 1.2, 0.0))
    a, b = (tradeoff(_columns(spec, jitter=0.03), draws=500) for _ in range(2))
    ma, mb = (next(m for m in t.matched if m.column == "cur-a") for t in (a, b))
    assert ma.resampled == mb.resampled and ma.tests == mb.tests  # the same report twice: the same numbers
    many = tradeoff(_columns(spec, seeds=tuple(range(8)), jitter=0.03), draws=500)
    mm = next(m for m in many.matched if m.column == "cur-a")
    ta, tm = ma.tests["perplexity_drift"], mm.tests["perplexity_drift"]
    assert math.isinf(ta.mde) and math.isfinite(tm.mde) and tm.p_value < ta.p_value


def test_a_point_of_one_seed_stays_off_the_frontiers_so_the_rest_keep_their_intervals():
    """A point still running its other seeds (one finished) would sit on LoRA's frontier with no
    spread and leave every row matched against that frontier without an interval or p; it is kept
    off the frontiers (and named in a note), and is matched itself, without an interval."""
    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    spec = (("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04), ("cur-a", cur, 0.7, 1.0, 0.0),
            ("cur-b", cur, 0.8, 1.1, 0.0))
    thin = _columns((("lora-c", {**lora, "train": {"lr": 1e-2}}, 0.75, 1.05, 0.0),), seeds=(0,))
    full = tradeoff(_columns(spec), draws=200)
    to = tradeoff(_columns(spec) + thin, draws=200)
    assert to.frontiers["lora"] == ["lora-a", "lora-b"] and "lora-c" in to.notes[-1]
    m, ref = (next(x for x in t.matched if x.column == "cur-a") for t in (to, full))
    assert m.n == 3 and m.resampled["perplexity_drift"].ci95 == ref.resampled["perplexity_drift"].ci95
    c = next(x for x in to.matched if x.column == "lora-c")
    assert c.in_range and c.n == 1 and c.resampled["perplexity_drift"].ci95 is None
    assert c.tests["perplexity_drift"].p_value is None and c.tests["perplexity_drift"].ci95 is None  # one seed: no test
    alone = tradeoff(thin + _columns((("cur-b", cur, 0.75, 1.0, 0.0),), seeds=(0,)), draws=0)
    assert alone.frontiers["lora"] == ["lora-c"] and not alone.notes  # every point one seed: as before


def test_strategies_are_families_and_joint_is_never_matched():
    """lora+ewc points form their own frontier (a grid over lambda traces it), so naive LoRA is
    matched against EWC at its plasticity; joint training has no plasticity, so it is a point of
    the table but no family anyone is matched against."""
    lora, joint = {"method": "lora", "rank": 8}, {"method": "lora", "rank": 8, "regime": "joint"}
    ewc = {**lora, "strategy": {"name": "ewc", "lambda": 1000.0, "decay": 1.0}}
    cols = _columns((("lora-r8", lora, 0.8, 2.0, 0.07), ("ewc-a", ewc, 0.7, 1.1, 0.0), ("ewc-b", ewc, 0.9, 1.3, 0.0)))
    joint_runs = _summaries("joint-lora-r8", joint, 0.9, 1.3, 0.0)
    for s in joint_runs:
        s.score_matrix, s.regime = [[None, None], [0.9, 0.9]], "joint"
    cols.append(Column("joint-lora-r8", runs=[Run(None, s) for s in joint_runs]))
    to = tradeoff(cols, draws=0)
    assert {p.column: p.family for p in to.points} == {
        "lora-r8": "lora", "ewc-a": "lora+ewc", "ewc-b": "lora+ewc", "joint-lora-r8": "joint"}
    assert to.frontiers["lora+ewc"] == ["ewc-a", "ewc-b"] and to.frontiers["joint"] == []
    assert all(m.other != "joint" and m.column != "joint-lora-r8" for m in to.matched)
    m = next(x for x in to.matched if x.column == "lora-r8" and x.other == "lora+ewc")
    assert m.in_range and math.exp(m.values["perplexity_drift"]) == pytest.approx(math.sqrt(1.1 * 1.3))
    assert m.differences["forgetting"] == pytest.approx(0.07)


def test_random_cr_is_a_family_of_its_own():
    from curlora_bench.analysis.tradeoff import family

    assert family({"method": "curlora", "rank": 8, "cr": "random"}) == "curlora+randcr"
    assert family({"method": "curlora", "rank": 8}) == "curlora"


def test_points_differing_only_in_epochs_make_a_duration_path(tmp_path, monkeypatch):
    """The same entry at 1, 2 and 4 epochs is one path, listed and drawn in order of epochs; an
    entry at another learning rate is not on it, and a family at one duration has no path."""
    from curlora_bench.analysis import tradeoff_plot
    from curlora_bench.analysis.markdown import tradeoff_markdown
    from curlora_bench.analysis.tradeoff import duration_paths

    lora, cur = {"method": "lora", "rank": 8, "train": {"lr": 1e-3, "epochs": 1}}, {"method": "curlora", "rank": 8}
    spec = (("lora-ep4", {**lora, "train": {"lr": 1e-3, "epochs": 4}}, 0.9, 2.0, 0.10),
            ("lora", lora, 0.7, 1.2, 0.02), ("lora-ep2", {**lora, "train": {"lr": 1e-3, "epochs": 2}}, 0.8, 1.5, 0.05),
            ("lora-lr3e-4", {**lora, "train": {"lr": 3e-4, "epochs": 1}}, 0.6, 1.05, 0.0), ("cur", cur, 0.75, 1.1, 0.0))
    to = tradeoff(_columns(spec), draws=0)
    text = tradeoff_markdown(to)
    table = text.split("### Over training duration")[1].split("\n\n")[1].splitlines()
    assert [row.split(" | ")[1:3] for row in table[2:]] == [["lora", "1"], ["lora-ep2", "2"], ["lora-ep4", "4"]]
    assert "0.050" in table[3] and "×1.500" in table[3]
    figures = []
    monkeypatch.setattr(tradeoff_plot.plt.Figure, "savefig", lambda fig, path, **k: figures.append(fig))
    from curlora_bench.analysis.plots import tradeoff_plot as plot

    plot([r for c in _columns(spec) for r in c.runs], tmp_path / "t.png")
    left, right = figures[0].axes
    dashed = [line for line in right.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == pytest.approx([0.02, 0.05, 0.10])
    assert sorted(t.get_text() for t in right.texts if t.get_text().endswith("×")) == ["1×", "2×", "4×"]
    broken = (spec[0][:3] + (9.0,) + spec[0][4:],) + spec[1:]  # 4 epochs past the drift panel's zoom
    plot([r for c in _columns(broken) for r in c.runs], tmp_path / "t.png")
    left, right = figures[1].axes
    dashed = {ax: [line for line in ax.get_lines() if line.get_linestyle() == "--"] for ax in (left, right)}
    assert [len(d[0].get_xdata()) for d in dashed.values()] == [2, 3]  # listed in the left panel, drawn right
    one = tradeoff(_columns(spec[1:2] + spec[3:]), draws=0)
    assert "Over training duration" not in tradeoff_markdown(one)
    unrecorded = spec[:1] + (("lora", {**lora, "train": {"lr": 1e-3}}) + spec[1][2:],) + spec[2:]
    paths = duration_paths(tradeoff(_columns(unrecorded), draws=0))  # the 1-epoch runs do not record epochs
    assert [[p.column for p in pts] for pts in paths] == [["lora-ep2", "lora-ep4"]]


def test_gain_over_head_only_subtracts_the_heads_learning_at_the_same_head_rate():
    lora, head = {"method": "lora", "rank": 8}, {"method": "head-only"}
    cols = _columns((("head-only", head, 0.6, 1.0, 0.0), ("lora-a", lora, 0.7, 1.1, 0.0), ("lora-b", lora, 0.9, 1.3, 0.0)))
    other = _columns((("lora-c", {**lora, "train": {"lr": 1e-2}}, 0.8, 1.2, 0.0),))  # heads at another rate
    to = tradeoff(cols + other, plasticity="gain", draws=0)
    assert to.axis == "gain over head-only"
    gains = {p.column: p.stats["plasticity"].mean for p in to.points}
    assert gains == pytest.approx({"lora-a": 0.1, "lora-b": 0.3})  # seed by seed minus head-only's
    assert "head-only" not in gains and "lora-c" in to.notes[0]


def test_matched_markdown_lists_unmatched_points_in_one_line():
    from curlora_bench.analysis.markdown import tradeoff_markdown

    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    spec = (("lora-a", lora, 0.6, 1.1, 0.0), ("lora-b", lora, 0.8, 1.5, 0.0), ("cur-a", cur, 0.7, 1.0, 0.0),
            ("cur-b", cur, 0.9, 1.05, 0.0))
    text = tradeoff_markdown(tradeoff(_columns(spec), draws=200))
    assert "| cur-a | lora | perplexity drift | 0.700 | ×1.285 | ×0.778 [×0.763, ×0.794] | 3/3 less | 0.25 | 1 |" in text
    assert "| cur-a | lora | forgetting | 0.700 | 0.000 | +0.000 [+0.000, +0.000] | 3/3 tied | 1 |" in text
    assert "| cur-b | lora |" not in text
    assert "range: lora-a (0.600) vs curlora; cur-b (0.900) vs lora." in text
    # in brief: what the point learns, forgets and drifts, and the verdict in words
    assert ("| cur-a | 0.700 | 0.000 | ×1.000 | lora | drifts less in 3/3 seeds (p 0.25); forgets the same in "
            "every seed: no difference significant after Holm |") in text
    single = [c for c in _columns(spec) if c.name in ("lora-b", "cur-a")]  # one point per family: no range
    text = tradeoff_markdown(tradeoff(single, draws=200))
    assert "No point lies within another family's plasticity range" in text and "| point | vs |" not in text


def test_tradeoff_plot_draws_joint_as_a_level(tmp_path, monkeypatch):
    """Joint training has a drift but no plasticity: a dotted level (a ratio) in the legend, no
    'frontier' of a single point; unstable points are listed, not drawn."""
    from curlora_bench.analysis import tradeoff_plot

    lora, joint = {"method": "lora", "rank": 8}, {"method": "lora", "rank": 8, "regime": "joint"}
    runs = [Run(None, s) for s in _summaries("lora-r8", lora, 0.8, 1.2, 0.07)]
    runs += [Run(None, s) for s in _summaries("lora-r4", lora, 0.7, 1.1, 0.03)]
    runs += [Run(None, s) for s in _summaries("lora-r2", lora, 0.9, 9.0, 0.03)]
    for s in _summaries("joint-lora-r8", joint, 0.9, 1.3, 0.0):
        s.score_matrix, s.regime = [[None, None], [0.9, 0.9]], "joint"
        runs.append(Run(None, s))
    figures = []
    monkeypatch.setattr(tradeoff_plot.plt.Figure, "savefig", lambda fig, path, **k: figures.append(fig))
    from curlora_bench.analysis.plots import tradeoff_plot as plot

    assert plot(runs, tmp_path / "t.png") == tmp_path / "t.png"
    left, right = figures[0].axes
    assert sorted(t.get_text() for t in left.get_legend().get_texts()) == [
        "joint-lora-r8 (drift only: no plasticity)", "lora (frontier)"]
    level = next(line for line in left.get_lines() if line.get_linestyle() == ":")
    assert level.get_ydata()[0] == pytest.approx(1.3)
    assert left.get_yscale() == "log" and left.get_ylim()[0] < 1.1 < 1.3 < left.get_ylim()[1] < 3
    assert any("lora-r2 ×9" in t.get_text() for t in left.texts)  # past x3: listed
    assert right.get_ylabel() == "forgetting of earlier tasks (accuracy)"
    assert "mean accuracy of each task" in left.get_xlabel()
    for r in runs:  # a prompted experiment's numbers are scores (ROUGE-L among them)
        r.summary.metric = {"a": "accuracy", "b": "rouge_l"}
    plot(runs, tmp_path / "t.png")
    left, right = figures[1].axes
    assert "mean score of each task" in left.get_xlabel() and right.get_ylabel().endswith("(score)")


def _summaries(column, method, diag, drift, forgetting, seeds=(0, 1, 2), jitter=0.01, shift=0):
    from curlora_bench.store.schema import RunSummary

    out = []
    for i, seed in enumerate(seeds):
        half = (len(seeds) - 1) / 2 or 1
        k = ((i + shift) % len(seeds) - half) / half  # in [-1, 1], rotated per point (shift 0: as listed)
        d = diag + jitter * k
        s = summary_dict(column, seed, method, A=[[d, None], [d - forgetting, d]], tasks=["a", "b"],
                         ppl=(10.0, [10.0, 10.0 * drift]), protocol="standard", settings_hash=column)
        s["metrics"] = {"average_accuracy": d - forgetting / 2, "backward_transfer": -forgetting,
                        "forgetting": forgetting, "perplexity_drift": drift * math.exp(jitter * k)}
        out.append(parse(RunSummary, s, "x"))
    return out


def test_in_brief_says_significant_only_after_holm():
    """Eight seeds that all agree reach 2/2^8 = 0.0078, under 0.05 after Holm over the table's rows."""
    from curlora_bench.analysis.markdown import brief_lines

    lora, cur = {"method": "lora", "rank": 8}, {"method": "curlora", "rank": 8}
    spec = (("lora-a", lora, 0.6, 1.1, 0.02), ("lora-b", lora, 0.8, 1.5, 0.04), ("cur-a", cur, 0.7, 1.0, 0.0))
    to = tradeoff(_columns(spec, seeds=tuple(range(8)), jitter=0.01), draws=0)
    row = next(line for line in brief_lines(to) if line.startswith("| cur-a |"))
    assert "drifts less in 8/8 seeds (p 0.00781)" in row and "significant after Holm for drifts, forgets" in row
