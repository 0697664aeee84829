"""A run's identity: computed once, left untouched by execution options, unchanged for every
published run, and able to say which keys differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curlora_bench.config.identity import RunIdentity, comparable
from curlora_bench.config.loading import load_config
from curlora_bench.core.errors import BenchError
from curlora_bench.run.spec import RunSpec
from curlora_bench.store.folders import find_runs
from tests.conftest import tiny_config

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published"


# published folders that hold a script's measurement, not runs (no config, no run keys)
NOT_RUNS = {"probe-sensitivity"}


@pytest.mark.parametrize("folder", sorted(p.name for p in PUBLISHED.iterdir() if p.is_dir() and p.name not in NOT_RUNS))
def test_every_published_run_keeps_its_identity(folder):
    """The published config.yaml (written before `execution:` and regimes existed), loaded today,
    gives every published run its stored settings hash and run key, joint training included."""
    cfg, _ = load_config(PUBLISHED / folder / "config.yaml")
    by_label = {m.display_label: m for m in cfg.methods}
    runs = find_runs([PUBLISHED / folder])
    for run in runs:
        s = run.summary
        identity = cfg.identity(by_label[s.label], s.seed, s.tasks if s.order is not None else None)
        assert (identity.settings_hash, identity.run_key) == (s.settings_hash, s.run_key), run.path
        assert identity.settings == comparable(s.settings)


def test_execution_options_never_change_identity(toy_data, write_config, tmp_path):
    base = tiny_config(toy_data)
    a, _ = load_config(write_config(base, "a.yaml"))
    b, _ = load_config(write_config({**base, "execution": {
        "log": ["tensorboard"], "log_every": 5, "gradient_checkpointing": True, "compile": True,
        "executor": "ray", "workers": 2, "cpus_per_run": 1, "gpus_per_run": 0.5, "cache_dir": str(tmp_path)}},
        "b.yaml"))
    for m, n in zip(a.methods, b.methods):
        assert a.identity(m, 0) == b.identity(n, 0)
    spec = RunSpec.of(a, 0, 0, tmp_path)
    assert spec.identity == a.identity(a.methods[0], 0)  # computed once, when the spec is made
    assert RunSpec.from_dict(__import__("dataclasses").asdict(spec)).identity == spec.identity


def test_legacy_positions_of_execution_options_still_load(toy_data, write_config):
    base = tiny_config(toy_data)
    old = {**base, "log": ["tensorboard"], "cache_dir": "/x",
           "train": {**base["train"], "gradient_checkpointing": True, "log_every": 3, "compile": False}}
    cfg, _ = load_config(write_config(old))
    e = cfg.execution
    assert (e.log, e.cache_dir, e.gradient_checkpointing, e.log_every, e.compile) == (["tensorboard"], "/x", True, 3,
                                                                                       False)
    new, _ = load_config(write_config(base, "new.yaml"), ["train.log_every=3"])  # --set by the old name
    assert new.execution.log_every == 3
    with pytest.raises(BenchError, match=r"^train\.log_every: also set as execution\.log_every"):
        load_config(write_config({**old, "execution": {"log_every": 4}}, "both.yaml"))


def test_a_method_train_override_may_not_hold_an_execution_option(toy_data, write_config):
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "train": {"gradient_checkpointing": True}}])
    with pytest.raises(BenchError, match=r"methods\[0\]\.train\.gradient_checkpointing: an execution option"):
        load_config(write_config(cfg))


def test_differences_name_the_keys(toy_data, write_config):
    cfg, _ = load_config(write_config(tiny_config(toy_data)))
    identity = cfg.identity(cfg.methods[0], 0)
    other = {**identity.settings, "train": {**identity.settings["train"], "lr": 1.0}, "data_seed": 9}
    method = {**identity.method, "rank": 99}
    assert identity.differences(method, other) == ["rank", "data_seed", "train"]
    assert identity.differences(identity.method, None) == []
    again = RunIdentity.of(identity.settings, identity.method, 0)
    assert (again.settings_hash, again.run_key) == (identity.settings_hash, identity.run_key)


def test_joint_entries_written_either_way_are_one_run(toy_data, write_config):
    old = tiny_config(toy_data, methods=[{"method": "joint", "adapter": {"method": "lora", "rank": 2}}])
    new = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "regime": "joint"}])
    a, _ = load_config(write_config(old, "old.yaml"))
    b, _ = load_config(write_config(new, "new.yaml"))
    assert a.methods[0].display_label == b.methods[0].display_label == "joint-lora-r2"
    assert a.identity(a.methods[0], 0) == b.identity(b.methods[0], 0)
    seq = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "regime": "sequential"}])
    c, _ = load_config(write_config(seq, "seq.yaml"))
    plain, _ = load_config(write_config(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}]), "p.yaml"))
    assert c.identity(c.methods[0], 0) == plain.identity(plain.methods[0], 0)  # the default, stored as nothing
    assert yaml.safe_dump(c.methods[0].regime) == "null\n...\n"
