"""Configs: every shipped YAML validates; bad input is named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from curlora_bench.config.loading import apply_override, load_config
from curlora_bench.core.errors import BenchError
from tests.conftest import ROOT, tiny_config

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg, _ = load_config(path)
    assert cfg.methods and cfg.tasks


def test_overrides_apply_and_are_typed(toy_data, write_config):
    path = write_config(tiny_config(toy_data))
    cfg, _ = load_config(path, ["train.lr=1e-4", "methods.1.rank=3", "seeds=[1, 2]"])
    assert cfg.train.lr == 1e-4 and cfg.methods[1].options.rank == 3 and cfg.seeds == [1, 2]


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


def test_docs_config_reference_is_the_generated_one():
    """docs/reference/config.md is generated from the schema (`python scripts/gen_docs.py --write`)."""
    import gen_docs

    text = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert text == gen_docs.config_markdown(), "docs/reference/config.md is stale: run `make docs-gen`"


def test_every_config_reference_example_loads(tmp_path):
    """The example below each section of the config reference is valid: merged into a small
    config, it loads and validates (an example naming a removed or renamed key fails here)."""
    import yaml

    from curlora_bench.config.reference import reference_sections

    base = {"name": "example", "methods": [{"method": "lora"}], "tasks": ["rt-sentiment"]}
    sections = reference_sections()
    assert all(s.example for s in sections if s.level <= 3), "every section and method has an example"
    for section in sections:
        if section.example:
            (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, **yaml.safe_load(section.example)}))
            try:
                load_config(tmp_path / "c.yaml")
            except BenchError as exc:
                pytest.fail(f"the config reference's example for {section.title!r} does not load: {exc}")


def test_strategy_labels_follow_the_name_rule(toy_data, write_config):
    """'+' is no path separator: strategy labels (default and explicit) pass the name rule,
    which still refuses '+' first and '+' beside a path."""
    cfg = tiny_config(toy_data, methods=[
        {"method": "lora", "rank": 8, "strategy": {"name": "replay", "per_task": 4}},
        {"method": "lora", "rank": 2, "strategy": {"name": "l2", "lambda": 0.5}},
        {"method": "curlora", "rank": 2, "label": "lora-r8+replay64"}])
    loaded, _ = load_config(write_config(cfg))
    assert [m.display_label for m in loaded.methods] == ["lora-r8+replay4", "lora-r2+l2-0.5", "lora-r8+replay64"]
    for bad in ("+replay4", "lora+/x", "lora+..+x/y"):
        cfg["methods"][2]["label"] = bad
        with pytest.raises(BenchError, match=r"methods\[2\]\.label: label .* must be"):
            load_config(write_config(cfg))


def test_the_config_reference_does_not_depend_on_import_order():
    """Importing one strategy's module first (as a test or a user's script may) leaves the
    generated reference as it is."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'scripts'); {first}import gen_docs; "
            "sys.stdout.write(gen_docs.config_markdown())")
    outs = [subprocess.run([sys.executable, "-c", code.format(first=first)], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
            for first in ("", "import curlora_bench.strategies.replay; ", "import curlora_bench.strategies.ewc; ")]
    assert outs[0] == outs[1] == outs[2]
