"""Sizes counted before anything is expanded (grids, orders, runs), the limit overridable, specs
made in linear time; errors after a grid's expansion name the entry the user wrote."""

from __future__ import annotations

import time

import pytest

from tests.conftest import (
    one_line,
    two_runs,
)

# ---- sizes: counted before anything is expanded ------------------------------------------------

@pytest.mark.parametrize(("what", "message"), [
    ("grid 10**6", "methods[0].grid: 1,000,000 runs (1,000,000 method points), more than execution.max_runs (1,000)"),
    ("grid 10**9", "methods[0].grid: 1,000,000,000 runs (1,000,000,000 method points), more than"),
    ("orders 10**8 of 12 tasks", "orders: 100,000,000 runs (1 method point x 100,000,000 task orders), more than"),
    ("grid x orders x seeds", "methods: 3,000 runs (10 method points x 100 task orders x 3 seeds), more than"),
])
def test_sizes_are_counted_before_anything_is_expanded(what, message, toy_data, write_config):
    import tracemalloc

    from curlora_bench.config.loading import load_config
    from curlora_bench.core.errors import BenchError

    cfg = two_runs(toy_data, methods=[{"method": "lora"}])
    task = cfg["tasks"][0]
    if what.startswith("grid 10"):
        n = 100 if what == "grid 10**6" else 1000
        cfg["methods"] = [{"method": "lora", "grid": {"rank": list(range(1, n + 1)), "alpha": list(range(1, n + 1)),
                                                      "train.epochs": list(range(1, n + 1))}}]
    elif what.startswith("orders"):
        cfg["tasks"], cfg["orders"] = [dict(task, name=f"t{i}") for i in range(12)], 10**8
    else:
        cfg["tasks"], cfg["orders"], cfg["seeds"] = [dict(task, name=f"t{i}") for i in range(6)], 100, [0, 1, 2]
        cfg["methods"] = [{"method": "lora", "grid": {"rank": list(range(1, 11))}}]
    path = write_config(cfg)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(BenchError) as caught:
        load_config(path)
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert message in str(caught.value) and "--max-runs" in str(caught.value)
    assert seconds < 30 and peak < 100 * 2**20, (seconds, peak)  # no hang, no gigabytes (about 2 s, 4 MiB)


def test_the_limit_is_overridable(toy_data, write_config, tmp_path, cli):
    from curlora_bench.config.loading import load_config

    cfg = two_runs(toy_data, methods=[{"method": "lora", "rank": 2, "grid": {"train.lr": [1e-3, 2e-3, 3e-3]}}])
    path = write_config(cfg)
    code, _, err = cli("run", path, "-o", tmp_path / "o", "--max-runs", "2")
    assert code == 2 and "methods[0].grid: 3 runs (3 method points), more than execution.max_runs (2)" in one_line(err)
    assert not (tmp_path / "o").exists()
    assert len(load_config(path, ["execution.max_runs=3"])[0].methods) == 3


def test_a_large_grid_makes_its_specs_in_linear_time(toy_data, write_config, tmp_path):
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_specs

    n = 3000  # before: every spec resolved the whole config again (quadratic: minutes)
    cfg = two_runs(toy_data, methods=[{"method": "lora", "rank": 2, "grid": {"alpha": list(range(1, n + 1))}}])
    start = time.perf_counter()
    loaded = load_config(write_config(cfg), [f"execution.max_runs={n}"])[0]
    specs = run_specs(loaded, tmp_path / "o")
    seconds = time.perf_counter() - start
    assert len(specs) == n and len({s.identity.run_key for s in specs}) == n
    assert specs[0].config is specs[-1].config  # one resolved config, shared
    assert len(specs[5].alone()["config"]["methods"]) == 1 and specs[5].alone()["origin"] == \
        "methods[0] (grid point alpha=6)"
    assert seconds < 60, seconds


def test_orders_close_to_every_permutation_are_drawn_quickly():
    from curlora_bench.config.experiment import task_orders

    start = time.perf_counter()
    orders = task_orders(120, ["a", "b", "c", "d", "e"], 0)
    assert len({tuple(o) for o in orders}) == 120 and time.perf_counter() - start < 5

# ---- the smaller items ----------------------------------------------------------------------

def test_errors_after_grid_expansion_name_the_entry_the_user_wrote(toy_data, write_config, tmp_path, cli):
    cfg = two_runs(toy_data, methods=[{"method": "lora", "grid": {"train.lr": [1e-3, 0.001]}}])
    code, _, err = cli("run", write_config(cfg), "-o", tmp_path / "o")
    assert code == 2
    assert one_line(err) == ("error: methods[0].grid: its points train.lr=1e-3 and train.lr=1e-3 both get the label "
                             "'lora-r8-lr1e-3'; give the grid distinct values (or set `label:` per entry)")
    cfg = two_runs(toy_data, methods=[{"method": "curlora", "grid": {"rank": [2, 100000]}}])
    code, _, err = cli("run", write_config(cfg, "big.yaml"), "-o", tmp_path / "o")
    assert code == 2
    line = one_line(err)
    assert line.startswith("error: methods[0] (grid point rank=100000).rank: 100000 exceeds") and "methods[1]" not in line
