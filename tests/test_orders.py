"""Task orders: seeded and distinct permutations, checked lists, runs in every order, per-task
rows pooled by name, and the order-vs-seed spread."""

from __future__ import annotations

import pytest

from curlora_bench.analysis.paired import order_spread
from curlora_bench.analysis.report import Column, build_table
from curlora_bench.analysis.rows import summary_rows
from curlora_bench.config.experiment import task_orders
from curlora_bench.config.loading import load_config
from curlora_bench.core.errors import BenchError
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.spec import RunSpec
from tests.conftest import tiny_config
from tests.test_report import fake

NAMES = ["a", "b", "c", "d"]


def test_orders_are_seeded_distinct_and_start_with_the_listed_one():
    orders = task_orders(5, NAMES, seed=0)
    assert orders[0] == NAMES and len(orders) == 5
    assert len({tuple(o) for o in orders}) == 5  # distinct
    assert all(sorted(o) == NAMES for o in orders)  # permutations
    assert task_orders(5, NAMES, seed=0) == orders  # seeded
    assert task_orders(5, NAMES, seed=1) != orders
    assert task_orders(24, NAMES, seed=0)[-1] in [list(o) for o in __import__("itertools").permutations(NAMES)]
    with pytest.raises(BenchError, match="orders: 25 distinct orders of 4 tasks do not exist"):
        task_orders(25, NAMES, 0)
    with pytest.raises(BenchError, match=r"orders\[1\]: \['a', 'b'\] is not a permutation"):
        task_orders([NAMES, ["a", "b"]], NAMES, 0)
    with pytest.raises(BenchError, match=r"orders\[1\]: .* is listed twice"):
        task_orders([NAMES, NAMES], NAMES, 0)
    with pytest.raises(BenchError, match="orders: must be > 0"):
        task_orders(0, NAMES, 0)


def test_orders_run_everywhere_and_the_listed_order_keeps_its_runs(toy_data, write_config, tmp_path):
    plain, _ = load_config(write_config(tiny_config(toy_data, perplexity=None, methods=[{"method": "lora", "rank": 2}])))
    cfg, _ = load_config(write_config(tiny_config(toy_data, perplexity=None, orders=2,
                                                  methods=[{"method": "lora", "rank": 2}]), "o.yaml"))
    assert cfg.orders == [["pairs", "polarity"], ["polarity", "pairs"]]
    # the listed order is the run without orders: same key, same folder
    assert RunSpec.of(cfg, 0, 0, tmp_path, 0).identity.run_key == \
        plain.identity(plain.methods[0], 0).run_key
    out = tmp_path / "out"
    [first] = run_experiment(plain, out)
    listed, swapped = run_experiment(cfg, out)
    assert listed.run_key == first.run_key and listed.order is None  # kept, not rerun
    assert swapped.order == 1 and swapped.tasks == ["polarity", "pairs"]
    assert (out / "lora-r2" / "seed-0-order-1" / "summary.json").is_file()
    t = build_table([r for r in _runs(out)])
    row = {r.name: r for r in t.rows}
    vals = t.values(row["pairs accuracy (after polarity)"], t.columns[0])
    # pooled by name: the listed run's final pairs accuracy only (the swapped run learned pairs last)
    assert vals == [listed.score_matrix[1][0]]
    assert sorted(t.values(row["pairs accuracy (after pairs)"], t.columns[0])) == sorted(
        [listed.score_matrix[0][0], swapped.score_matrix[1][1]])


def _runs(out):
    from curlora_bench.store.folders import find_runs

    return find_runs([out])


def test_rows_read_accuracy_by_task_name():
    A = [[0.8, None, None], [0.7, 0.9, None], [0.6, 0.5, 0.95]]
    run = fake("lora-r8", 0, {"method": "lora"}, A=A, tasks=["y", "x", "z"], protocol="standard")
    rows = {r.name: r for r in summary_rows(["x", "y", "z"], {})}  # the report's order, not the run's
    assert rows["x accuracy (after x)"].read(run.summary) == 0.9
    assert rows["x accuracy (after z)"].read(run.summary) == 0.5
    assert rows["y accuracy (after z)"].read(run.summary) == 0.6
    assert rows["x accuracy (after y)"].read(run.summary) is None  # this run had not learned x yet


def test_order_spread_separates_order_from_seed():
    col = Column("m")
    for order, tasks in enumerate((["x", "y"], ["y", "x"])):
        for seed, acc in enumerate(([0.6, 0.7], [0.8, 0.9])[order]):
            r = fake("m", seed, {"method": "lora"}, A=[[0.5, None], [0.5, 0.5]], tasks=tasks, protocol="standard")
            r.summary.metrics = {**r.summary.metrics, "average_accuracy": acc}
            col.runs.append(r)
    [acc] = [o for o in order_spread([col]) if o.quantity == "average_accuracy"]
    assert (acc.orders, acc.seeds) == (2, 2)
    assert acc.mean == pytest.approx(0.75)
    assert acc.order_sd == pytest.approx(0.1414213, abs=1e-6)  # sd of 0.65 and 0.85
    assert acc.seed_sd == pytest.approx(0.0707107, abs=1e-6)  # sd of (0.6, 0.7) = sd of (0.8, 0.9)


def test_order_folders_are_guarded_set_aside_and_replaced(toy_data, write_config, tmp_path):
    """seed-k-order-o/ folders follow the same rules as seed-k/: other settings under the same
    label are refused naming the order, --fresh sets the work aside in .previous/ and drops it
    once the new run has a stage."""
    import shutil

    def config(alpha, name):
        methods = [{"method": "lora", "rank": 2, "alpha": alpha, "label": "lora-r2"}]
        return load_config(write_config(tiny_config(toy_data, perplexity=None, orders=2, methods=methods), name))[0]

    out = tmp_path / "out"
    old = run_experiment(config(1.0, "a.yaml"), out)
    shutil.rmtree(out / "lora-r2" / "seed-0")  # only the order folder holds the old work now
    changed = config(2.0, "b.yaml")
    with pytest.raises(BenchError, match=r"lora-r2 seed 0 order 1: .*seed-0-order-1 holds work of other settings "
                                         r"\(differs in: alpha"):
        run_experiment(changed, out)
    assert (out / "lora-r2" / "seed-0-order-1" / "summary.json").is_file()
    new = run_experiment(changed, out, fresh=True)
    assert [s.order for s in new] == [None, 1] and new[1].run_key != old[1].run_key
    assert not (out / "lora-r2" / "seed-0-order-1" / ".previous").exists()
