"""PEFT's methods by name (adapters/peft_named.py): built by PEFT, no change at init, options
refused in one line, drift against the original weights, data-driven inits from the first task's
training split, AdaLoRA's allocator through the hooks. Runs, resume and export: test_roundtrip."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from curlora_bench.adapters import adapter_of
from curlora_bench.adapters.peft_named import NAMED
from curlora_bench.config.methods import method_dict, parse_method
from curlora_bench.core.errors import BenchError
from curlora_bench.run import drift
from curlora_bench.sources.models import auto_targets, load_model

pytestmark = pytest.mark.filterwarnings("ignore")
SMALL = {"r": 2, "init_r": 4, "target_r": 2, "oft_block_size": 16}


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in ("tiny-gpt2", "tiny-llama")}


def entry(name: str, **extra):
    fields = {f for f in NAMED[name].config_cls.__dataclass_fields__}
    return parse_method({"method": name, **{k: v for k, v in SMALL.items() if k in fields}, **extra}, "m")


def attached(lm, method, seed=0):
    model = copy.deepcopy(lm.model)
    adapter = adapter_of(method)
    adapter.check(model, auto_targets(model), method.options, "m")
    return model, adapter, adapter.attach(model, auto_targets(model), method.options, seed, "m")


def logits(model, lm):
    x = torch.tensor([lm.tokenizer("a test sentence, with words").input_ids])
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("name", sorted(NAMED))
def test_each_named_entry_is_the_base_model_at_init(models, name):
    """Every entry builds on a Linear model, only PEFT's own tensors train, and the model's
    output is the base model's before training (PiSSA/OLoRA move W's top directions into A, B)."""
    lm = models["tiny-llama"]
    method = entry(name)
    model, adapter, names = attached(lm, method)
    torch.testing.assert_close(logits(model, lm), logits(lm.model, lm), atol=1e-5, rtol=1e-5)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(adapter.stem in n and any(n.startswith(m + ".") for m in names) for n in trainable)
    if name == "mica":  # B is PEFT's frozen minor singular vectors; A trains
        assert all(".lora_A." in n for n in trainable)
    assert method_dict(method)["method"] == name and method_dict(method)["label"] == method.display_label


@pytest.mark.parametrize("name", sorted(set(NAMED) - {"olora", "oft"}))
def test_gpt2_conv1d(models, name):
    lm = models["tiny-gpt2"]
    model, _, _ = attached(lm, entry(name))
    torch.testing.assert_close(logits(model, lm), logits(lm.model, lm), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec,message", [
    ({"method": "dora", "r": 0}, r"^m\.r: must be > 0, got 0$"),
    ({"method": "dora", "use_dora": False}, r"^m\.use_dora: unknown key"),
    ({"method": "pissa", "init_lora_weights": "gaussian"}, r"^m\.init_lora_weights: unknown key"),
    ({"method": "eva", "rho": 0.5}, r"^m\.rho: must be >= 1"),
    ({"method": "eva", "tau": 2}, r"^m\.tau: must be between 0 and 1"),
    ({"method": "corda", "init_examples": 0}, r"^m\.init_examples: must be > 0"),
    ({"method": "lora-ga", "direction": "sideways"}, r"^m\.direction: "),
    ({"method": "adalora", "deltaT": 0}, r"^m\.deltaT: must be > 0"),
    ({"method": "adalora", "beta1": 1.5}, r"^m\.beta1: must be between 0 and 1"),
    ({"method": "adalora", "init_r": 2, "target_r": 4}, r"^m\.target_r: 4 exceeds init_r \(2\)"),
    ({"method": "vera", "r": -1}, r"^m\.r: must be > 0"),
    ({"method": "oft", "oft_block_size": "big"}, r"^m\.oft_block_size: "),
])
def test_bad_options_are_one_line(spec, message):
    with pytest.raises(BenchError, match=message) as info:
        parse_method(spec, "m")
    assert "\n" not in str(info.value)


def test_models_peft_cannot_run_are_refused_before_attaching(models):
    for name, where in (("oft", "OFT"), ("olora", "OLoRA")):
        with pytest.raises(BenchError, match=rf"^m\.method: PEFT's {where} .*Conv1D"):
            attached(models["tiny-gpt2"], entry(name))
    with pytest.raises(BenchError, match=r"^m\.oft_block_size: 12 does not divide the 32 inputs"):
        attached(models["tiny-llama"], entry("oft", oft_block_size=12))
    with pytest.raises(BenchError, match=r"^m\.r: 64 exceeds the"):
        attached(models["tiny-llama"], entry("pissa", r=64))


def test_pissa_drift_is_measured_against_the_original_weights(models):
    """PiSSA leaves W - B A in the base layer: the drift reference is the layer's effective
    weight (W itself), so drift at step 0 is ~0 and the residual is never taken for W."""
    lm = models["tiny-llama"]
    model, _, names = attached(lm, entry("pissa", r=4))
    reference = drift.snapshot(model, names)
    for name in names:
        w = lm.model.get_submodule(name).weight.detach()  # the original (out, in)
        residual = model.get_submodule(name).base_layer.weight.detach()
        torch.testing.assert_close(reference[name], w.T, atol=1e-5, rtol=1e-5)
        assert (residual - w).norm() > 0.1 * w.norm()  # the base layer holds the residual, not W
        w0, now = drift.weight_pair(model, name, reference)
        torch.testing.assert_close(w0, w, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(now, w, atol=1e-5, rtol=1e-5)
    assert max(drift.relative_drift(model, names, reference).values()) < 1e-5


def fake_stage(model, names, method, train_rows, lm, position=1):
    """What a plugin sees of a stage: the first task's training split is `train_rows` texts."""
    ids = [lm.tokenizer(t).input_ids for t in train_rows]

    def collate(task, rows):
        width = max(len(ids[r]) for r in rows)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(x)
        for k, r in enumerate(rows):
            x[k, :len(ids[r])], mask[k, :len(ids[r])] = torch.tensor(ids[r]), 1
        return {"input_ids": x, "attention_mask": mask}

    task = SimpleNamespace(name="first", train=ids)
    return SimpleNamespace(model=model, modules=names, method=method.options, where="m", seed=0, batch_size=4,
                           stage=SimpleNamespace(position=position, tasks=(0,)), tasks=[task], by_name={"first": task},
                           train=SimpleNamespace(epochs=1, batch_size=1), collate=collate)


TEXTS = [f"example {k}: the quick brown fox {'jumps over' if k % 2 else 'sleeps near'} the lazy dog {k * 7}"
         for k in range(12)]


@pytest.mark.parametrize("name,extra", [("corda", {}), ("eva", {"rho": 2.0}), ("lora-ga", {})])
def test_data_driven_inits_read_the_first_tasks_training_split(models, name, extra):
    """CorDA, EVA and LoRA-GA are initialised by PEFT in the first stage's before_stage hook from
    the first task's training examples: the adapter changes, the output stays the base model's
    (CorDA and LoRA-GA subtract B A from W; EVA keeps B = 0), and the draw is seeded."""
    lm = models["tiny-llama"]
    method = entry(name, init_examples=8, **extra)
    outs = []
    for _ in range(2):
        model, adapter, names = attached(lm, method)
        placeholder = {k: v.clone() for k, v in adapter.state_dict(model, names, method.options).items()}
        adapter.before_stage(fake_stage(model, names, method, TEXTS, lm))
        after = adapter.state_dict(model, names, method.options)
        changed = [k for k in placeholder if k in after and (after[k].shape != placeholder[k].shape
                                                            or not torch.equal(after[k], placeholder[k]))]
        assert any(".lora_A." in k for k in changed)
        assert any(".base_layer." in k for k in changed) == (name != "eva")
        torch.testing.assert_close(logits(model, lm), logits(lm.model, lm), atol=1e-4, rtol=1e-4)
        assert all(p.requires_grad == (".lora_" in n) for n, p in model.named_parameters())
        outs.append(after)
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])  # the same examples, the same init
    if name == "eva":  # rho 2 redistributed the ranks; a resume rebuilds them from the saved tensors
        ranks = {n: model.get_submodule(n).lora_A["default"].weight.shape[0] for n in names}
        fresh, adapter, _ = attached(lm, method)
        adapter.structure_for(fresh, names, method.options, 1, "m", dict(outs[0]))
        assert {n: fresh.get_submodule(n).lora_A["default"].weight.shape[0] for n in names} == ranks


def test_a_later_stage_initialises_nothing(models):
    lm = models["tiny-llama"]
    method = entry("corda", init_examples=4)
    model, adapter, names = attached(lm, method)
    before = {k: v.clone() for k, v in adapter.state_dict(model, names, method.options).items()}
    adapter.before_stage(fake_stage(model, names, method, TEXTS, lm, position=2))
    assert all(torch.equal(v, before[k]) for k, v in adapter.state_dict(model, names, method.options).items())


def test_adalora_allocates_its_budget_through_the_hooks(models):
    """before_stage sets total_step to the run's optimizer steps; after_step calls PEFT's
    update_and_allocate once per step, so the budget ends at target_r triplets per layer; step adds
    PEFT's orthogonal regulariser to the loss."""
    lm = models["tiny-llama"]
    method = entry("adalora", init_r=4, target_r=2)
    model, adapter, names = attached(lm, method)
    ctx = fake_stage(model, names, method, TEXTS, lm)
    adapter.before_stage(ctx)
    assert model.adalora.peft_config["default"].total_step == len(TEXTS)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    x = torch.tensor([lm.tokenizer(TEXTS[0]).input_ids])
    for _ in range(len(TEXTS)):
        loss = model(x, labels=x).loss
        plain = float(loss)
        regularised = adapter.step(ctx, loss, 1)
        assert float(regularised) > plain == float(loss)
        opt.zero_grad()
        regularised.backward()
        opt.step()
        adapter.after_step(ctx)
    kept = sum(int((model.get_submodule(n).lora_E["default"] != 0).sum()) for n in names)
    assert kept == 2 * len(names)
    assert model.adalora.step == len(TEXTS)


def test_adalora_refuses_a_schedule_without_a_budgeting_phase(models):
    lm = models["tiny-llama"]
    method = entry("adalora", tinit=10, tfinal=5)
    model, adapter, names = attached(lm, method)
    with pytest.raises(BenchError, match=r"^m\.tinit: tinit \(10\) \+ tfinal \(5\) leave no budgeting phase in "
                                         r"the run's 12 optimizer steps$"):
        adapter.before_stage(fake_stage(model, names, method, TEXTS, lm))
