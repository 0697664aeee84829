"""Configs: every shipped YAML validates; bad input is named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from curlora_bench.config.experiment import apply_override, load_config
from curlora_bench.errors import BenchError

from .conftest import ROOT, tiny_config

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg, _ = load_config(path)
    assert cfg.methods and cfg.tasks


def test_overrides_apply_and_are_typed(toy_data, write_config):
    path = write_config(tiny_config(toy_data))
    cfg, _ = load_config(path, ["train.lr=1e-4", "methods.1.rank=3", "seeds=[1, 2]"])
    assert cfg.train.lr == 1e-4 and cfg.methods[1].rank == 3 and cfg.seeds == [1, 2]


def test_relative_paths_resolve_against_config_folder(toy_data, tmp_path):
    import shutil

    folder = tmp_path / "exp"
    shutil.copytree(toy_data, folder / "data")
    cfg = tiny_config(Path("data"))
    import yaml

    (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
    loaded, _ = load_config(folder / "c.yaml")
    assert Path(loaded.tasks[0].train) == (folder / "data" / "pairs_train.csv").resolve()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"lr": 0}}, "train.lr: must be > 0"),
        ({"train": {"max_length": -1}}, "train.max_length: must be > 0"),
        ({"seeds": []}, "seeds: the list is empty"),
        ({"methods": [{"method": "lora", "rank": 0}]}, r"methods\[0\].rank: must be > 0"),
        ({"methods": [{"method": "nope"}]}, r"methods\[0\].method: unknown method 'nope'"),
        ({"methods": [{"method": "lora", "rnk": 2}]}, r"methods\[0\].rnk: unknown key"),
        ({"methods": [{"method": "lora"}, {"method": "lora"}]}, "used twice"),
        ({"tasks": ["no-such-task"]}, r"tasks\[0\]: unknown task 'no-such-task'"),
        ({"perplexity": {"corpus": "nope"}}, "perplexity.corpus: unknown corpus"),
        ({"device": "gpu"}, "device: 'gpu'"),
        ({"protocol": "mine"}, "protocol: expected"),
    ],
)
def test_bad_config_is_named(toy_data, write_config, change, message):
    cfg = tiny_config(toy_data)
    for k, v in change.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "perplexity":
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    with pytest.raises(BenchError, match=message):
        load_config(write_config(cfg))


def test_duplicate_task_names(toy_data, write_config):
    cfg = tiny_config(toy_data)
    cfg["tasks"] = [cfg["tasks"][0], cfg["tasks"][0]]
    with pytest.raises(BenchError, match=r"tasks\[1\].name: task 'pairs' appears twice"):
        load_config(write_config(cfg))


def test_unknown_set_key():
    with pytest.raises(BenchError, match="--set train.lrr: unknown key 'train.lrr'"):
        apply_override({}, "train.lrr=1")


def test_yaml_that_does_not_parse(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        load_config(p)
