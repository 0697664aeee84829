"""The legacy `joint` spelling: one rule (config.legacy), read alike in configs and summaries."""

from __future__ import annotations

import pytest

from tests.conftest import (
    one_line,
    tiny_config,
)

# ---- the legacy `joint` spelling: one rule (config.legacy) -----------------------------------------

LORA = {"method": "lora", "rank": 2}


@pytest.mark.parametrize(("entry", "message"), [
    ({"method": "joint", "adapter": {"method": "joint", "adapter": LORA}},
     "methods[0].adapter.method: a joint entry inside a joint entry"),
    ({"method": "joint", "adapter": {"method": "joint"}}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "adapter": "joint"}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "regime": "sequential", "adapter": LORA}, "methods[0].regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "regime": "sequential"}},
     "methods[0].adapter.regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "train": {"lr": 0.1}}}, "methods[0].adapter.train: set it on the joint"),
    ({"method": "joint", "adapter": {"rank": 2}}, "methods[0].adapter: expected a mapping with a 'method' key"),
    ({"method": "joint", "adapter": LORA, "rank": 4}, "methods[0].rank: unknown key of a joint entry"),
])
def test_a_nested_or_contradictory_joint_is_one_line_naming_the_field(entry, message, toy_data, write_config, cli,
                                                                      tmp_path, empty_cache):
    path = write_config(tiny_config(toy_data, methods=[entry]))
    code, _, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and message in one_line(err), err
    assert not (tmp_path / "out").exists()


def test_the_legacy_joint_reads_alike_in_configs_and_summaries(toy_data, write_config):
    from curlora_bench.config.legacy import unwrap_joint, upgrade_summary
    from curlora_bench.config.loading import load_config

    legacy = {"method": "joint", "label": "j", "train": {"lr": 0.01}, "adapter": {**LORA, "label": "inner"}}
    assert unwrap_joint(legacy, "m") == {**LORA, "regime": "joint", "label": "j", "train": {"lr": 0.01}}
    a, _ = load_config(write_config(tiny_config(toy_data, methods=[legacy]), "a.yaml"))
    b, _ = load_config(write_config(tiny_config(toy_data, methods=[{**LORA, "regime": "joint", "label": "j",
                                                                     "train": {"lr": 0.01}}]), "b.yaml"))
    assert a.identity(a.methods[0], 0) == b.identity(b.methods[0], 0)
    stored = upgrade_summary({"method": legacy})
    assert stored["regime"] == "joint" and stored["method"] == {**LORA, "label": "j", "train": {"lr": 0.01},
                                                                "regime": "joint"}
    assert upgrade_summary({"method": LORA}) == {"method": LORA}  # anything else as it is
