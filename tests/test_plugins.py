"""Methods and strategies from other installed packages, found through entry points
(`curlora_bench.methods`, `curlora_bench.strategies`): the guide's complete external method
(docs/guides/examples/top_layers) installed from a temporary package, found by name and run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tiny_config

EXAMPLE = ROOT / "docs" / "guides" / "examples" / "top_layers"


@pytest.fixture
def installed(monkeypatch):
    """`installed(site)`: the packages in `site` importable and their entry points found, as if
    installed, by this process's CLI; the method and strategy registries are put back as they
    were afterwards (a plug-in's name is not left behind for later tests)."""
    from curlora_bench.adapters import ADAPTERS
    from curlora_bench.adapters.base import PLUGIN_GROUP as METHODS_GROUP
    from curlora_bench.strategies import STRATEGIES
    from curlora_bench.strategies.base import PLUGIN_GROUP as STRATEGIES_GROUP

    registries = ((ADAPTERS, METHODS_GROUP), (STRATEGIES, STRATEGIES_GROUP))
    saved = [(r, dict(r._items), dict(r._entries), r._group, dict(r.origins)) for r, _ in registries]

    def install(site: Path) -> None:
        monkeypatch.syspath_prepend(str(site))
        for registry, group in registries:  # read the entry points again, with `site` on the path
            registry._items = {k: v for k, v in registry._items.items() if k not in registry.origins}
            registry.origins, registry._group = {}, group

    yield install
    for registry, items, entries, group, origins in saved:
        registry._items, registry._entries, registry._group, registry.origins = items, entries, group, origins


def _dist(site: Path, name: str, entry_points: str) -> None:
    """A package's metadata as pip installs it (no code): enough for its entry points to be found."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_an_installed_method_is_found_by_name_listed_and_runs(toy_data, tmp_path, installed, cli):
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, src)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(src)], check=True, capture_output=True, timeout=300)
    installed(site)
    code, stdout, err = cli("methods")
    assert code == 0, err
    listed = " ".join(stdout.split())  # the console wraps long lines
    assert "top-layers (plug-in from curlora-bench-top-layers 0.1.0)" in listed
    assert "layers = 1 how many of the last transformer blocks train" in listed
    cfg = tiny_config(toy_data, methods=[{"method": "top-layers", "layers": 1}])
    cfg["tasks"] = cfg["tasks"][:1]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    code, _, err = cli("run", tmp_path / "cfg.yaml", "--output", out)
    assert code == 0, err
    summary = json.loads((out / "top-layers-1" / "seed-0" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["trainable_parameters"] > 0
    assert summary["method"]["method"] == "top-layers" and summary["metrics"]["perplexity_drift"] > 0
    code, _, _ = cli("run", tmp_path / "cfg.yaml", "--output", out)  # finished: found, not redone
    assert code == 0 and json.loads((out / "top-layers-1" / "seed-0" / "summary.json").read_text()) == summary
    bad = tiny_config(toy_data, methods=[{"method": "top-layers", "layers": 0}])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = cli("run", tmp_path / "bad.yaml", "--output", tmp_path / "bad")
    assert code == 2 and "methods[0].layers: at least 1, got 0" in err


def _one_line(err: str) -> str:
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    return " ".join(err.split())


@pytest.mark.parametrize("package,entry,message", [
    ("broken-plugin", "broken = no_such_module:Thing",
     "method plug-in 'broken' (from broken-plugin 1.0): cannot load no_such_module:Thing"),
    ("odd-plugin", "odd = json:dumps",
     "method plug-in 'odd' (from odd-plugin 1.0): <function dumps"),
])
def test_a_plugin_that_cannot_load_or_is_not_a_method_is_one_line(tmp_path, installed, cli, package, entry, message):
    _dist(tmp_path / "site", package, f"[curlora_bench.methods]\n{entry}\n")
    installed(tmp_path / "site")
    code, _, err = cli("methods")
    assert code == 2 and message in _one_line(err)
    assert package != "odd-plugin" or "is not a subclass of curlora_bench.adapters.Adapter" in err


def test_a_strategy_plugin_may_not_take_a_builtin_name(tmp_path, installed, cli):
    site = tmp_path / "site"
    _dist(site, "dup-strategy", "[curlora_bench.strategies]\nreplay = curlora_bench.strategies.replay:Replay\n")
    installed(site)
    code, _, err = cli("methods")
    assert code == 2 and "strategy plug-in 'replay' (from dup-strategy 1.0): that name is taken" in _one_line(err)


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
