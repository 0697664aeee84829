"""I-LoRA: a fast LoRA trained with replay and a consistency loss, a slow LoRA its moving average.
The EMA, the consistency loss and the combined step loss against hand numbers; the slow LoRA is
what the layer applies outside training and what the PEFT export holds; a crash in stage 2
resumes to the same records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from curlora_bench.adapters import adapter_of
from curlora_bench.adapters.ilora import consistency_terms
from curlora_bench.config.methods import parse_method
from curlora_bench.core.errors import BenchError
from tests.test_task_lora import resumed_runs


def attached(spec: dict, model: nn.Module, targets: list[str]):
    cfg = parse_method(spec, "m")
    adapter = adapter_of(cfg)
    return adapter, adapter.attach(model, targets, cfg.options, 0, "m"), cfg.options


def two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"p": nn.Linear(3, 2, bias=False), "q": nn.Linear(3, 2, bias=False)})


def test_options_labels_and_zero_change_at_init():
    with pytest.raises(BenchError, match=r"^m\.ema: must be in \[0, 1\), got 1\.0$"):
        parse_method({"method": "i-lora", "ema": 1.0}, "m")
    with pytest.raises(BenchError, match=r"^m\.per_task: must be > 0, got 0$"):
        parse_method({"method": "i-lora", "per_task": 0}, "m")
    with pytest.raises(BenchError, match=r"^m\.consistency: must be >= 0"):
        parse_method({"method": "i-lora", "consistency": -1}, "m")
    assert parse_method({"method": "i-lora", "rank": 4, "per_task": 8}, "m").display_label == "i-lora-r4-mem8"
    assert parse_method({"method": "i-lora", "ema": 0.5, "consistency": 0.1}, "m").display_label == \
        "i-lora-r8-mem64-ema0.5-cons0.1"
    model = two_layers()
    x = torch.randn(4, 3)
    base = model["p"](x)
    attached({"method": "i-lora", "rank": 2}, model, ["p", "q"])
    for slow in (True, False):  # both B's are zero: no change, whichever LoRA is applied
        model["p"].slow = slow
        torch.testing.assert_close(model["p"](x), base)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["p.ilora_A", "p.ilora_B", "q.ilora_A",
                                                                          "q.ilora_B"]
    assert {"p.ilora_slow_A", "p.ilora_slow_B"} <= set(model.state_dict())


def test_ema_after_each_step_and_the_slow_lora_outside_training():
    model = two_layers()
    adapter, names, options = attached({"method": "i-lora", "rank": 1, "ema": 0.9, "alpha": 2.0}, model, ["p", "q"])
    p = model["p"]
    fast_a, fast_b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0], [-1.0]])
    slow_a, slow_b = torch.tensor([[0.0, 4.0, -2.0]]), torch.tensor([[2.0], [0.0]])
    with torch.no_grad():
        p.ilora_A.copy_(fast_a), p.ilora_B.copy_(fast_b), p.ilora_slow_A.copy_(slow_a), p.ilora_slow_B.copy_(slow_b)
    ctx = SimpleNamespace(model=model, modules=names, method=options)
    adapter.after_step(ctx)  # step 1: lambda = min(1 - 1/2, 0.9) = 0.5
    torch.testing.assert_close(p.ilora_slow_A, torch.tensor([[0.5, 3.0, 0.5]]))
    torch.testing.assert_close(p.ilora_slow_B, torch.tensor([[1.5], [-0.5]]))
    adapter.after_step(ctx)  # step 2: lambda = min(1 - 1/3, 0.9) = 2/3
    torch.testing.assert_close(p.ilora_slow_A, torch.tensor([[2 / 3 * 0.5 + 1 / 3, 2.0 + 2 / 3, 1 / 3 + 1.0]]))
    torch.testing.assert_close(p.ilora_slow_B, torch.tensor([[1.0 + 1 / 3], [-1 / 3 - 1 / 3]]))
    torch.testing.assert_close(p.ilora_A, fast_a)  # the fast LoRA is left as it is
    # outside a stage the slow LoRA is applied: base(x) + alpha * x A^T B^T with the slow (A, B)
    x = torch.tensor([[1.0, 0.0, 2.0]])
    a, b = p.ilora_slow_A, p.ilora_slow_B
    torch.testing.assert_close(model["p"](x), p.base_layer(x) + 2.0 * (x @ a.T) @ b.T)
    p.slow = False
    torch.testing.assert_close(model["p"](x), p.base_layer(x) + 2.0 * (x @ fast_a.T) @ fast_b.T)


def test_the_default_lambda_is_their_constant_quarter():
    model = two_layers()
    adapter, names, options = attached({"method": "i-lora", "rank": 1}, model, ["p"])
    p = model["p"]
    with torch.no_grad():
        p.ilora_A.fill_(1.0), p.ilora_slow_A.fill_(0.0)
    for _ in range(2):  # min(1 - 1/(k + 1), 0.25) = 0.25 from the first step on
        adapter.after_step(SimpleNamespace(model=model, modules=names, method=options))
    torch.testing.assert_close(p.ilora_slow_A, torch.full((1, 3), 0.75 + 0.25 * 0.75))


def test_consistency_terms_by_hand():
    fast = [torch.tensor([[[1.0, 2.0], [3.0, 0.0]]]), torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])]
    slow = [torch.tensor([[[2.0, 1.0], [1.0, 1.0]]]), torch.tensor([[[-1.0, 3.0], [9.0, 9.0]]])]
    # both tokens: only fast < slow counts: (1-2)^2 + (0-1)^2 in the first, (0-3)^2 + 2 * 4^2 in the second
    total, count = consistency_terms(fast, slow, torch.tensor([[1, 1]]))
    assert (float(total), count) == (1 + 1 + 9 + 32, 8)
    total, count = consistency_terms(fast, slow, torch.tensor([[1, 0]]))  # the padding is left out
    assert (float(total), count) == (1 + 9, 4)


def tiny_gpt2() -> nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=16, n_embd=8, n_layer=2, n_head=2)).eval()


def test_step_loss_replays_and_pulls_the_fast_hidden_states_up_to_the_slow_ones():
    model = tiny_gpt2()
    adapter, names, options = attached({"method": "i-lora", "rank": 2, "per_task": 2, "consistency": 0.5},
                                       model, ["c_attn", "c_fc"])
    torch.manual_seed(1)
    with torch.no_grad():  # a fast and a slow LoRA that differ, so the consistency loss is not 0
        for name in names:
            layer = model.get_submodule(name)
            layer.ilora_B.normal_(0, 0.5), layer.ilora_slow_B.normal_(0, 0.5)
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    task = SimpleNamespace(name="old", train=[0] * 4)  # four training rows; every batch is the one above

    def batch_loss(_task, batch, reduction):  # a stand-in task loss through the body, summed over rows
        hidden = model.transformer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        per_row = hidden.pow(2).mean((1, 2))
        return per_row.sum() if reduction == "sum" else per_row.mean()

    ctx = SimpleNamespace(model=model, modules=names, method=options, seed=0, batch_size=2, where="m",
                          by_name={"old": task, "new": SimpleNamespace(name="new", train=[0] * 4)},
                          stage=SimpleNamespace(number=2, tasks=(1,)), batch_loss=batch_loss,
                          collate=lambda _t, _rows: {"input_ids": ids, "attention_mask": mask})
    adapter.before_stage(ctx)  # the memory holds 2 rows of `old`; 2 are replayed per step
    assert not model.get_submodule(names[0]).slow
    current = torch.tensor(0.7, requires_grad=True)
    loss = adapter.step(ctx, current, 2)

    def states(slow: bool):  # by hand: every hidden state of the body, the given LoRA applied
        for name in names:
            model.get_submodule(name).slow = slow
        out = model.transformer(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for name in names:
            model.get_submodule(name).slow = False
        return out.hidden_states, out.last_hidden_state

    with torch.no_grad():
        fast, last = states(False)
        slow, _ = states(True)
        replayed = last.pow(2).mean((1, 2)).mean()  # both replayed rows' mean
        keep = mask.bool()
        sq = [torch.clamp(s[keep] - f[keep], min=0) ** 2 for f, s in zip(fast, slow)]
        cons = sum(x.sum() for x in sq) / sum(x.numel() for x in sq)
    assert len(fast) == 3 and float(cons) > 0  # the embeddings' output and both blocks'
    torch.testing.assert_close(loss, (0.7 + replayed) / 2 + 0.5 * cons)
    loss.backward()  # the gradient reaches the fast LoRA only
    layer = model.get_submodule(names[0])
    assert layer.ilora_A.grad is not None and layer.ilora_slow_A.grad is None
    adapter.after_stage(ctx)
    assert layer.slow


def test_the_export_is_the_slow_lora_in_peft_layout(tmp_path):
    from peft import PeftModel

    model = tiny_gpt2()
    adapter, names, options = attached({"method": "i-lora", "rank": 2, "alpha": 1.5}, model, ["c_attn"])
    with torch.no_grad():
        for name in names:
            model.get_submodule(name).ilora_slow_B.normal_(0, 0.5)
    tensors = adapter.state_dict(model, names, options)
    adapter.export_extras(tmp_path, options, names, True, "tiny", tensors)
    peft = PeftModel.from_pretrained(tiny_gpt2(), tmp_path).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(peft(ids).logits, model(ids).logits)


def test_ilora_resumes_exactly_and_its_slow_lora_trails_the_fast_one(toy_data, tmp_path, cli, monkeypatch):
    one, two = resumed_runs(toy_data, tmp_path, cli, monkeypatch, {"method": "i-lora", "rank": 2, "per_task": 8},
                            "i-lora-r2-mem8")
    layers = sorted(k[: -len(".ilora_slow_B")] for k in two if k.endswith(".ilora_slow_B"))
    assert layers
    for name in layers:
        assert not torch.equal(two[f"{name}.ilora_B"], one[f"{name}.ilora_B"])  # stage 2 trained the fast LoRA
        assert not torch.equal(two[f"{name}.ilora_slow_B"], two[f"{name}.ilora_B"])
