"""Methods and strategies from other installed packages, found through entry points
(`curlora_bench.methods`, `curlora_bench.strategies`): the guide's complete external method
(docs/guides/examples/top_layers) installed from a temporary package, found by name and run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tiny_config

EXAMPLE = ROOT / "docs" / "guides" / "examples" / "top_layers"


def _cli(args: list, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    # the package under test stays importable (a checkout on PYTHONPATH rather than installed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "curlora_bench", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def _dist(site: Path, name: str, entry_points: str) -> None:
    """A package's metadata as pip installs it (no code): enough for its entry points to be found."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_an_installed_method_is_found_by_name_listed_and_runs(toy_data, tmp_path):
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, src)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(src)], check=True, capture_output=True, timeout=300)
    listed = _cli(["methods"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "top-layers (plug-in from curlora-bench-top-layers 0.1.0)" in listed.stdout
    assert "layers = 1  how many of the last transformer blocks train" in listed.stdout
    cfg = tiny_config(toy_data, methods=[{"method": "top-layers", "layers": 1}])
    cfg["tasks"] = cfg["tasks"][:1]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    ran = _cli(["run", tmp_path / "cfg.yaml", "--output", out], site, tmp_path)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads((out / "top-layers-1" / "seed-0" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["trainable_parameters"] > 0
    assert summary["method"]["method"] == "top-layers" and summary["metrics"]["perplexity_drift"] > 0
    again = _cli(["run", tmp_path / "cfg.yaml", "--output", out], site, tmp_path)  # finished: found, not redone
    assert again.returncode == 0 and json.loads((out / "top-layers-1" / "seed-0" / "summary.json").read_text()) == summary
    bad = tiny_config(toy_data, methods=[{"method": "top-layers", "layers": 0}])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    refused = _cli(["run", tmp_path / "bad.yaml", "--output", tmp_path / "bad"], site, tmp_path)
    assert refused.returncode == 2 and "methods[0].layers: at least 1, got 0" in refused.stderr


def test_a_plugin_that_cannot_load_or_is_not_a_method_is_one_line(tmp_path):
    site = tmp_path / "site"
    _dist(site, "broken-plugin", "[curlora_bench.methods]\nbroken = no_such_module:Thing\n")
    res = _cli(["methods"], site, tmp_path)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "method plug-in 'broken' (from broken-plugin 1.0): cannot load no_such_module:Thing" in res.stderr
    other = tmp_path / "other"
    _dist(other, "odd-plugin", "[curlora_bench.methods]\nodd = json:dumps\n")
    res = _cli(["methods"], other, tmp_path)
    assert res.returncode == 2 and "method plug-in 'odd' (from odd-plugin 1.0)" in res.stderr
    assert "is not a subclass of curlora_bench.adapters.Adapter" in res.stderr


def test_a_strategy_plugin_may_not_take_a_builtin_name(tmp_path):
    site = tmp_path / "site"
    _dist(site, "dup-strategy", "[curlora_bench.strategies]\nreplay = curlora_bench.strategies.replay:Replay\n")
    res = _cli(["methods"], site, tmp_path)
    assert res.returncode == 2 and "strategy plug-in 'replay' (from dup-strategy 1.0): that name is taken" in res.stderr


def test_a_registry_entry_loads_on_its_first_lookup_and_is_checked():
    """Built-in entries are "module:object" strings: nothing is imported until a name is looked up,
    and an entry that cannot load or is not the family's class is one line naming it."""
    from curlora_bench.core.errors import BenchError
    from curlora_bench.core.registry import Registry

    class Base:
        name = ""

    class Good(Base):
        name = "good"

    made = []
    registry = Registry("widget", base=Base, make=lambda cls: made.append(cls) or cls(), entries={
        "good": f"{__name__}:_GOOD", "missing": "no_such_module:Thing", "odd": "json:dumps"})
    globals()["_GOOD"] = Good
    try:
        assert made == [] and isinstance(registry.get("good"), Good) and made == [Good]  # only the one looked up
        assert registry.get("GOOD") is registry.get("good")  # loaded once, names in any case
        with pytest.raises(BenchError, match=r"^widget 'missing' \(no_such_module:Thing\): cannot load: "
                                             r"ModuleNotFoundError"):
            registry.get("missing")
        with pytest.raises(BenchError, match=r"^widget 'odd' \(json:dumps\): .* is not a subclass of "):
            registry.get("odd")
        renamed = Registry("widget", base=Base, entries={"other": f"{__name__}:_GOOD"})
        with pytest.raises(BenchError, match="its class's name is 'good', not the entry's 'other'"):
            renamed.get("other")
    finally:
        del globals()["_GOOD"]


def test_builtin_families_are_registry_entries():
    """Adapters, strategies, task kinds (both halves), regimes and embedded builders all load
    through the one mechanism, each entry checked against its family."""
    from curlora_bench.adapters import ADAPTERS, Adapter
    from curlora_bench.config.regimes import REGIMES, Regime
    from curlora_bench.run.kinds import KINDS, TaskKind
    from curlora_bench.sources.kinds import KINDS as SPECS
    from curlora_bench.sources.kinds import KindSpec
    from curlora_bench.sources.tasks import EMBEDDED_TASKS
    from curlora_bench.strategies import STRATEGIES, Strategy

    assert {"curlora", "lora", "osf", "peft"} <= set(ADAPTERS) and all(isinstance(a, Adapter) for _, a in
                                                                      ADAPTERS.items())
    assert {"naive", "replay", "ewc", "l2", "lwf", "migu"} <= set(STRATEGIES) and all(issubclass(c, Strategy) for _, c in
                                                                      STRATEGIES.items())
    assert set(REGIMES) == {"sequential", "joint"} and all(isinstance(r, Regime) for _, r in REGIMES.items())
    assert set(SPECS) == set(KINDS) == {"classification", "prompted"}
    assert all(isinstance(k, TaskKind) and isinstance(k.spec, KindSpec) for _, k in KINDS.items())
    assert "rt-sentiment" in EMBEDDED_TASKS
