"""Configs: every shipped YAML validates; bad input is named in one line."""

from __future__ import annotations

import sys
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


def test_unknown_set_key():
    with pytest.raises(BenchError, match="--set train.lrr: unknown key 'train.lrr'"):
        apply_override({}, "train.lrr=1")


def test_readme_config_reference_is_the_generated_one():
    """The README's config reference is generated from the schema (scripts/config_reference.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import config_reference

    from curlora_bench.config.reference import reference_yaml

    assert config_reference.readme_block((ROOT / "README.md").read_text()) == reference_yaml()
