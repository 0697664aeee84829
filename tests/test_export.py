"""Export a finished run's adapter and load it back: `export`, `load_adapter`, PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import records


@pytest.fixture
def finished(finished_run):
    return finished_run


def prepared(cfg_path: Path):
    from curlora_bench.config.loading import load_config
    from curlora_bench.core.protocol import Protocol
    from curlora_bench.run.prepare import prepare_tasks
    from curlora_bench.sources.models import load_model

    cfg, _ = load_config(cfg_path)
    lm = load_model(cfg.model)
    return cfg, lm, prepare_tasks(cfg, lm, Protocol.of("standard"))


@pytest.mark.parametrize("label", ["lora-r2", "curlora-r2", "full"])
@pytest.mark.parametrize("stage", [1, 2])
def test_export_then_load_adapter_reproduces_the_run(finished, tmp_path, cli, label, stage):
    import curlora_bench
    from curlora_bench.run.evaluate import accuracy
    from curlora_bench.sources.models import load_model

    cfg_path, reference = finished
    code, _, err = cli("export", reference, tmp_path / "ex", "--method", label, "--stage", str(stage))
    assert code == 0, err
    meta = json.loads((tmp_path / "ex" / "curlora_bench.json").read_text())
    assert meta["stage"] == stage and meta["method"]["label"] == label and meta["base_model"] == "tiny-gpt2"
    if label.startswith("curlora"):
        assert len(meta["curlora_indices"]["transformer.h.0.attn.c_attn"]["columns"]) == 2
    cfg, _, tasks = prepared(cfg_path)
    model = load_model(cfg.model).model
    heads = curlora_bench.load_adapter(model, tmp_path / "ex")
    expected = {r["task"]: r["value"] for r in records(reference / label / "seed-0")
                if r["stage"] == stage and r["metric"] == "accuracy"}
    for t in tasks[:stage]:
        got = accuracy(model, heads, t.name, t.eval, 32, torch.device("cpu"), 0)
        assert got == expected[t.name], (t.name, got, expected[t.name])


def test_lora_export_loads_with_peft(finished, tmp_path, cli):
    from peft import PeftModel

    import curlora_bench
    from curlora_bench.sources.models import load_model

    _, reference = finished
    assert cli("export", reference, tmp_path / "ex", "--method", "lora-r2")[0] == 0
    ours = load_model("tiny-gpt2").model
    curlora_bench.load_adapter(ours, tmp_path / "ex")
    peft_model = PeftModel.from_pretrained(load_model("tiny-gpt2").model, str(tmp_path / "ex")).eval()
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        a, b = ours(ids).logits, peft_model(ids).logits
    assert torch.equal(a, b)
    # and the adapter really changed something (B started at zero)
    with torch.no_grad():
        base = load_model("tiny-gpt2").model(ids).logits
    assert not torch.allclose(a, base)


def test_export_asks_which_run(finished, tmp_path, cli):
    _, reference = finished
    code, _, err = cli("export", reference, tmp_path / "ex")
    assert code == 2 and "3 runs match" in err and "lora-r2 seed 0" in err
    code, _, err = cli("export", reference, tmp_path / "ex", "--method", "lora-r2", "--stage", "7")
    assert code == 2 and "--stage 7" in err and "stages 1, 2" in err


