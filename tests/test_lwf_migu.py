"""LwF and MIGU against hand-computed references on tiny models, their options, and a crashed
run of each resuming to the same records."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
import yaml

from curlora_bench.config.experiment import ExecutionConfig, TrainConfig
from curlora_bench.config.regimes import Stage
from curlora_bench.core.errors import BenchError
from curlora_bench.core.protocol import Protocol
from curlora_bench.run.context import StageContext
from curlora_bench.run.data import Batching
from curlora_bench.sources.heads import TaskHeads
from curlora_bench.strategies import make_strategy, parse_strategy, strategy_suffix
from tests.conftest import crashed_and_resumed, tiny_config
from tests.test_strategies import Toy, _records, _task

CPU = torch.device("cpu")


def _stage_ctx(model, heads, tasks, number):
    """The context of stage `number` (1-based), training tasks[number - 1] after the ones before it."""
    trained = tasks[number - 1]
    return StageContext(model, [], None, heads, Stage(number, number, (number - 1,), trained.name, False, number - 1),
                        [trained], {t.name: t for t in tasks}, TrainConfig(batch_size=3), ExecutionConfig(),
                        Batching(CPU, 0), Protocol.of("standard"), 0, "m")


def _kl(new, old, t):
    """KL(softmax(old/t) || softmax(new/t)) per row, written out."""
    q = torch.softmax(old / t, -1)
    return (q * (torch.log(q) - torch.log_softmax(new / t, -1))).sum(-1)


def test_options_labels_and_bad_options():
    lwf = parse_strategy({"name": "lwf"}, "m")
    assert lwf == {"name": "lwf", "lambda": 1.0, "temperature": 2.0}
    assert strategy_suffix(lwf) == "+lwf1"
    assert strategy_suffix(parse_strategy({"name": "lwf", "lambda": 0.5, "temperature": 4}, "m")) == "+lwf0.5-t4"
    assert strategy_suffix(parse_strategy({"name": "migu"}, "m")) == "+migu0.7"
    assert strategy_suffix(parse_strategy({"name": "migu", "threshold": 0.5}, "m")) == "+migu0.5"
    for raw, message in [({"name": "lwf", "temperature": 0}, r"m\.temperature: must be > 0"),
                         ({"name": "lwf", "lambda": -1}, r"m\.lambda: must be >= 0"),
                         ({"name": "lwf", "alpha": 1}, r"m\.alpha: unknown key for strategy lwf"),
                         ({"name": "migu", "threshold": 1.5}, r"m\.threshold: must be a quantile in \(0, 1\]"),
                         ({"name": "migu", "threshold": 0}, r"m\.threshold: must be > 0"),
                         ({"name": "migu", "threshold": "x"}, r"m\.threshold")]:
        with pytest.raises(BenchError, match=message):
            parse_strategy(raw, "m")


def test_lwf_adds_the_hand_computed_distillation_of_earlier_heads():
    torch.manual_seed(0)
    model, heads = Toy(), TaskHeads()
    a, b = _task("a", 6), _task("b", 6)
    heads.add("a", 4, 2, seed=1)
    heads.requires_grad_(False)  # a finished task's head
    lwf = make_strategy(parse_strategy({"name": "lwf", "lambda": 0.5}, "m"), 0)
    first = _stage_ctx(model, heads, [a, b], 1)
    lwf.before_stage(first)
    first.step_task, first.step_batch = a, first.collate(a, [0, 1, 2])
    zero = torch.tensor(0.25)
    assert lwf.step(first, zero, 3) is zero  # the first stage has nothing to distil
    lwf.after_stage(first)

    heads.add("b", 4, 2, seed=2)
    ctx = _stage_ctx(model, heads, [a, b], 2)
    lwf.before_stage(ctx)
    emb = model.body.emb.weight
    before = emb.detach().clone()
    with torch.no_grad():  # training moved the weights since the stage began
        emb.add_(torch.randn_like(emb))
    after = emb.detach().clone()
    rows = [0, 1, 2]
    ctx.step_task, ctx.step_batch = b, ctx.collate(b, rows)
    got = lwf.step(ctx, torch.tensor(0.25), 3)
    last = torch.tensor([b.train.ids[i][-1] for i in rows])  # equal lengths: the last token is the pooled one
    head = heads.heads["a"]
    expected = 0.25 + 0.5 * _kl(head(after[last]), head(before[last]), 2.0).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(emb, after)  # the old weights were swapped in and out, not left behind
    got.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_lwf_distils_the_next_token_distribution_on_the_answer_positions():
    from tests.test_prompted import ROWS, _prepared

    lm, task = _prepared("tiny-gpt2", ROWS, {"prompt": "Words: {text}\nReversed:", "target": "reversed"})
    model = lm.model
    model.requires_grad_(False)
    weight = model.transformer.h[0].attn.c_attn.weight
    weight.requires_grad_(True)  # the "adapter": one trainable tensor
    old_task = dataclasses.replace(task, name="old")
    ctx = _stage_ctx(model, TaskHeads(), [old_task, task], 2)
    ctx.batching = Batching(CPU, lm.tokenizer.pad_token_id)
    lwf = make_strategy(parse_strategy({"name": "lwf", "lambda": 2, "temperature": 3}, "m"), 0)
    lwf.before_stage(ctx)
    frozen = copy.deepcopy(model)
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    rows = [0, 1, 2]
    batch = ctx.collate(task, rows)
    ctx.step_task, ctx.step_batch = task, batch
    got = lwf.step(ctx, torch.tensor(0.0), 3)
    per_example = []
    with torch.no_grad():
        for i in rows:
            ids = torch.tensor([task.train.ids[i]])
            new, old = model(ids).logits[0], frozen(ids).logits[0]
            at = list(range(task.train.answer_start[i] - 1, ids.shape[1] - 1))  # token t is predicted at t - 1
            per_example.append(_kl(new[at], old[at], 3.0).mean())
    assert got.item() == pytest.approx(2 * torch.stack(per_example).mean().item(), rel=1e-4)
    assert got.item() > 0


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.a = torch.nn.Linear(3, 4)
        self.b = Conv1D(5, 4)  # GPT-2's layer: weight (in, out)
        self.frozen = torch.nn.Linear(5, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.b(self.a(x)))


def _loss(net, x):
    return net(x).pow(2).sum()


def test_migu_keeps_the_gradients_of_the_units_with_the_largest_outputs():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(6, 3)
    reference = copy.deepcopy(net)
    _loss(reference, x).backward()
    with torch.no_grad():  # the magnitudes, by hand: sum over the batch of |output| per unit
        mag_a = net.a(x).abs().sum(0)
        mag_b = net.b(net.a(x)).abs().sum(0)
    migu = make_strategy(parse_strategy({"name": "migu", "threshold": 0.5}, "m"), 0)
    ctx = SimpleNamespace(model=net, stage=SimpleNamespace(number=2), where="m")
    migu.before_stage(ctx)
    assert set(migu.layers) == {"a", "b"}  # the frozen layer is not masked
    _loss(net, x).backward()
    migu.after_backward(ctx)
    # quantile 0.5 of 4 units keeps the 2 largest; of 5 units, the 3 largest (>= the median)
    low_a = mag_a.argsort()[:2]
    low_b = mag_b.argsort()[:2]
    want_a = reference.a.weight.grad.clone()
    want_a[low_a] = 0
    want_b = reference.b.weight.grad.clone()
    want_b[:, low_b] = 0
    assert torch.allclose(net.a.weight.grad, want_a) and torch.allclose(net.b.weight.grad, want_b)
    assert torch.allclose(net.a.bias.grad, reference.a.bias.grad)  # biases are not masked, as MIGU's code
    assert (net.a.weight.grad[low_a] == 0).all() and (net.a.weight.grad.abs().sum(1) > 0).sum() == 2
    assert migu.magnitude == {}  # reset for the next step
    migu.after_stage(ctx)
    assert not net.a._forward_hooks and not net.b._forward_hooks


def test_migu_leaves_the_first_stage_alone_and_refuses_a_method_without_linear_layers():
    torch.manual_seed(0)
    net, x = Net(), torch.randn(6, 3)
    reference = copy.deepcopy(net)
    _loss(reference, x).backward()
    migu = make_strategy(parse_strategy({"name": "migu"}, "m"), 0)
    first = SimpleNamespace(model=net, stage=SimpleNamespace(number=1), where="m")
    migu.before_stage(first)
    _loss(net, x).backward()
    migu.after_backward(first)
    assert torch.equal(net.a.weight.grad, reference.a.weight.grad)
    net.requires_grad_(False)
    with pytest.raises(BenchError, match=r"m\.strategy: migu masks the gradients of trained linear layers"):
        migu.before_stage(first)


def test_lwf_and_migu_resume_after_a_crash_with_identical_records(toy_data, tmp_path, cli, monkeypatch):
    methods = [{"method": "lora", "rank": 2, "strategy": {"name": "lwf", "lambda": 1}},
               {"method": "lora", "rank": 2, "strategy": {"name": "migu", "threshold": 0.5}}]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(toy_data, methods=methods, perplexity=None)))
    code, _, err = cli("run", path, "--output", tmp_path / "whole")
    assert code == 0, err
    # 3 steps per stage: step 5 is in LwF's stage 2; the rerun resumes it (6-8), runs MIGU's stage 1
    # (9-11) and crashes at 13, in MIGU's stage 2
    crashed_and_resumed(cli, monkeypatch, path, tmp_path / "killed", 5, 13)
    for label in ("lora-r2+lwf1", "lora-r2+migu0.5"):
        whole = _records(tmp_path / "whole" / label / "seed-0")
        assert _records(tmp_path / "killed" / label / "seed-0") == whole, label
