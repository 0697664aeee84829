"""Continual-learning strategies: replay memory and sampling, the EWC/L2 penalty, labels,
`naive` unchanged, and a strategy run resumed after SIGKILL equals the uninterrupted one."""

from __future__ import annotations

import pytest
import torch
import yaml

from curlora_bench.config.loading import load_config
from curlora_bench.core.errors import BenchError
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.data import Batching, PreparedTask, Split
from curlora_bench.run.kinds import KINDS
from curlora_bench.sources.heads import TaskHeads, classify
from curlora_bench.store.schema import read_predictions, read_records
from curlora_bench.strategies import make_strategy
from curlora_bench.strategies.base import parse_strategy
from curlora_bench.strategies.ewc import quadratic_penalty
from curlora_bench.strategies.replay import memory_indices
from tests.conftest import crashed_and_resumed, tiny_config


def _task(name: str, n: int) -> PreparedTask:
    return PreparedTask(name, 2, Split([[1 + i % 7, 2, 3 + i % 5] for i in range(n)], [i % 2 for i in range(n)]),
                        Split([[1]], [0]), info=None,
                        kind=KINDS.get("classification"))


class Body(torch.nn.Module):
    """An embedding as the 'transformer': hidden state = the token's embedding."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)

    def forward(self, input_ids, attention_mask, use_cache=None):  # classify passes use_cache=False
        return type("Out", (), {"last_hidden_state": self.emb(input_ids)})()


class Toy(torch.nn.Module):
    base_model_prefix = "body"

    def __init__(self):
        super().__init__()
        self.body = Body()


def test_replay_memory_is_seeded_exact_and_distinct():
    # pinned once (torch.randperm under the task's own seed): a change of draw is a change of results
    assert memory_indices(10, 4, 0, "a") == memory_indices(10, 4, 0, "a")
    assert memory_indices(10, 4, 0, "a") == [int(i) for i in PINNED_MEMORY]
    assert memory_indices(10, 4, 0, "a") != memory_indices(10, 4, 1, "a")
    assert memory_indices(10, 4, 0, "a") != memory_indices(10, 4, 0, "b")
    rows = memory_indices(30, 30, 3, "x")
    assert sorted(rows) == list(range(30))  # without repeats


PINNED_MEMORY = [5, 3, 9, 4]


def _ctx(model, heads, tasks, stage=1, batch_size=3, trained=None):
    """The StageContext of stage `stage` training `trained` (default: the last of `tasks`)."""
    from curlora_bench.config.experiment import ExecutionConfig, TrainConfig
    from curlora_bench.config.regimes import Stage
    from curlora_bench.core.protocol import Protocol
    from curlora_bench.run.context import StageContext

    trained = trained or tasks[-1]
    return StageContext(model, [], None, heads, Stage(stage, stage, (0,), trained.name, False, stage - 1), [trained],
                        {t.name: t for t in tasks}, TrainConfig(batch_size=batch_size), ExecutionConfig(),
                        Batching(torch.device("cpu"), 0), Protocol.of("standard"), 0, "s")


def test_replay_sampler_draws_from_memory_seeded_per_stage():
    from types import SimpleNamespace

    tasks = {"a": _task("a", 20), "b": _task("b", 12), "c": _task("c", 9)}
    state = make_strategy({"name": "replay", "per_task": 5, "batch_size": None}, seed=7)
    assert state.sampler(1, 4) is None  # nothing finished yet: naive first stage
    state.after_stage(SimpleNamespace(tasks=[tasks["a"]]))
    state.after_stage(SimpleNamespace(tasks=[tasks["b"]]))
    assert state.memory == {"a": memory_indices(20, 5, 7, "a"), "b": memory_indices(12, 5, 7, "b")}
    draws = [state.sampler(3, 4) for _ in range(2)]
    steps = [[draw() for _ in range(6)] for draw in draws]
    assert steps[0] == steps[1]  # the same stage draws the same
    other = state.sampler(4, 4)
    assert steps[0] != [other() for _ in range(6)]  # another stage does not
    seen = set()
    for step in steps[0]:
        rows = [(t, i) for t, idx in step for i in idx]
        assert len(rows) == 4 and len(set(rows)) == 4  # batch_size distinct rows per step
        for t, idx in step:
            assert set(idx) <= set(state.memory[t])
        seen |= set(rows)
    assert seen <= {(t, i) for t, r in state.memory.items() for i in r} and len(seen) > 4
    # state survives a checkpoint round trip, memory order included
    again = make_strategy({"name": "replay", "per_task": 5, "batch_size": None}, seed=7)
    again.load_state_dict(state.state_dict(), ["a", "b"], torch.device("cpu"))
    assert again.memory == state.memory and list(again.memory) == ["a", "b"]
    resumed = again.sampler(3, 4)
    assert [resumed() for _ in range(6)] == steps[0]


def test_quadratic_penalty_equals_the_formula():
    params = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor([[3.0]])}
    anchor = {"w": torch.tensor([0.0, 0.0]), "v": torch.tensor([[1.0]])}
    fisher = {"w": torch.tensor([2.0, 3.0]), "v": torch.tensor([[0.5]])}
    # 4/2 * (2*1 + 3*4 + 0.5*4) = 32; with F = 1: 4/2 * (1 + 4 + 4) = 18
    assert quadratic_penalty(params, anchor, fisher, 4.0).item() == pytest.approx(32.0)
    assert quadratic_penalty(params, anchor, None, 4.0).item() == pytest.approx(18.0)


def test_online_ewc_folds_fisher_with_decay_and_anchors(monkeypatch):
    from types import SimpleNamespace

    import curlora_bench.strategies.ewc as ewc

    model = torch.nn.Linear(2, 1, bias=False)
    fishers = iter([{"weight": torch.tensor([[1.0, 2.0]])}, {"weight": torch.tensor([[4.0, 4.0]])}])
    monkeypatch.setattr(ewc, "diagonal_fisher", lambda *a: next(fishers))
    state = make_strategy(parse_strategy({"name": "ewc", "lambda": 2, "decay": 0.5}, "s"), 0)
    assert state.penalty(model) is None  # first stage: nothing to hold on to
    ctx = SimpleNamespace(model=model, tasks=[_task("t", 3)])
    state.after_stage(ctx)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    state.after_stage(ctx)
    assert torch.equal(state.fisher["weight"], torch.tensor([[4.5, 5.0]]))  # 0.5 * F1 + F2
    assert torch.equal(state.anchor["weight"], torch.tensor([[1.0, 1.0]]))
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 3.0]]))
    # 2/2 * (4.5 * 1 + 5 * 4)
    assert state.penalty(model)().item() == pytest.approx(24.5)


def test_diagonal_fisher_is_mean_squared_batch_gradient():
    from curlora_bench.strategies.ewc import diagonal_fisher

    torch.manual_seed(0)
    model = Toy()
    emb = model.body.emb
    heads = TaskHeads()
    heads.add("t", 4, 2, seed=0)
    heads.requires_grad_(False)
    task = _task("t", 6)
    f = diagonal_fisher(_ctx(model, heads, [task], batch_size=3), "t")
    expected = torch.zeros_like(emb.weight)
    for idx in ([0, 1, 2], [3, 4, 5]):  # equal lengths: the length sort keeps the order
        ids = torch.tensor([task.train.ids[i] for i in idx])
        logits = classify(model, heads, "t", ids, torch.ones_like(ids))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([task.train.labels[i] for i in idx]))
        (g,) = torch.autograd.grad(loss, [emb.weight])
        expected += g.pow(2) / 2
    assert torch.allclose(f["body.emb.weight"], expected)


def test_replayed_loss_is_the_mean_over_all_rows():
    torch.manual_seed(0)
    model = Toy()
    heads = TaskHeads()
    heads.add("a", 4, 2, seed=1)
    heads.add("b", 4, 2, seed=2)
    a, b = _task("a", 6), _task("b", 6)

    def ce(task, rows):
        ids = torch.tensor([task.train.ids[i] for i in rows])
        logits = classify(model, heads, task.name, ids, torch.ones_like(ids))
        return torch.nn.functional.cross_entropy(logits, torch.tensor([task.train.labels[i] for i in rows]),
                                                 reduction="sum")

    current = ce(b, [0, 1, 2]) / 3
    replay = make_strategy({"name": "replay", "per_task": 2, "batch_size": None}, 0)
    replay._sample = lambda: [("a", [4, 5])]
    got = replay.step(_ctx(model, heads, [a, b], stage=2), current, 3)
    assert got.item() == pytest.approx(((ce(b, [0, 1, 2]) + ce(a, [4, 5])) / 5).item())


def test_labels_options_and_naive(toy_data, write_config):
    methods = [{"method": "lora", "rank": 2, "strategy": {"name": "replay", "per_task": 64}},
               {"method": "curlora", "rank": 2, "strategy": {"name": "ewc", "lambda": 1000}},
               {"method": "peft", "type": "VERA", "r": 2, "strategy": {"name": "l2", "lambda": 0.5}},
               {"method": "lora", "rank": 2, "strategy": "naive"},
               {"method": "lora", "rank": 4, "strategy": {"name": "ewc", "lambda": 1}, "grid": {"strategy.lambda": [1, 10]}}]
    cfg, _ = load_config(write_config(tiny_config(toy_data, methods=methods)))
    assert [m.display_label for m in cfg.methods] == [
        "lora-r2+replay64", "curlora-r2+ewc1000", "peft-vera-r2+l2-0.5", "lora-r2", "lora-r4+ewc1", "lora-r4+ewc10"]
    assert cfg.methods[1].strategy == {"name": "ewc", "lambda": 1000.0, "decay": 1.0}
    plain, _ = load_config(write_config(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}]), "p.yaml"))
    assert cfg.identity(cfg.methods[3], 0).run_key == plain.identity(plain.methods[0], 0).run_key  # naive = no strategy
    with pytest.raises(BenchError, match=r"x\.per_task: required key is missing for strategy replay"):
        parse_strategy({"name": "replay"}, "x")
    with pytest.raises(BenchError, match=r"x\.decay: must be <= 1"):
        parse_strategy({"name": "ewc", "lambda": 1, "decay": 2}, "x")


def _records(run):
    return [r.to_json() for r in read_records(run / "records.jsonl")]


def _predictions(run):
    lines = read_predictions(run / "predictions.jsonl")
    # one line per (stage, task evaluated), its scores averaging to that accuracy record's value
    accuracies = {(r.stage, r.task): r.value for r in read_records(run / "records.jsonl") if r.metric == "accuracy"}
    assert {(p.stage, p.task) for p in lines} == set(accuracies) and len(lines) == len(accuracies)
    for p in lines:
        assert sum(p.scores) / len(p.scores) == accuracies[(p.stage, p.task)]
    return [p.to_json() for p in lines]


def test_strategies_resume_after_a_crash_with_identical_records(toy_data, tmp_path, cli, monkeypatch):
    methods = [{"method": "lora", "rank": 2, "strategy": {"name": "replay", "per_task": 8}},
               {"method": "curlora", "rank": 2, "strategy": {"name": "ewc", "lambda": 1e4}},
               {"method": "lora", "rank": 2, "strategy": {"name": "l2", "lambda": 10}}]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(toy_data, methods=methods, perplexity=None)))
    cfg, _ = load_config(path)
    whole = run_experiment(cfg, tmp_path / "whole")
    assert [s.strategy["name"] for s in whole] == ["replay", "ewc", "l2"]
    assert whole[0].strategy["memory_examples"] == 16 and whole[1].strategy["memory_floats"] > 0
    # 3 steps per stage: step 5 is in the middle of replay's stage 2; the rerun resumes it (steps
    # 6-8), runs EWC's stage 1 (9-11) and crashes at 13, in the middle of EWC's stage 2
    out = tmp_path / "killed"
    crashed_and_resumed(cli, monkeypatch, path, out, 5, 13)
    for s in whole:
        assert _records(out / s.label / "seed-0") == _records(tmp_path / "whole" / s.label / "seed-0"), s.label
        assert _predictions(out / s.label / "seed-0") == _predictions(tmp_path / "whole" / s.label / "seed-0")


def test_joint_sees_every_task_with_the_sequences_steps():
    from curlora_bench.config.experiment import TrainConfig
    from curlora_bench.config.regimes import REGIMES
    from curlora_bench.run.train import epoch_batches, steps_of

    tasks = [_task("a", 20), _task("b", 7), _task("c", 13)]
    cfg = TrainConfig(epochs=2, batch_size=4)
    (stage,) = REGIMES.get("joint").stages([t.name for t in tasks])
    assert stage.tasks == (0, 1, 2) and stage.interleave and stage.number == 3 and stage.position == 1
    assert steps_of(tasks, cfg) == 2 * (5 + 2 + 4)
    gen = torch.Generator().manual_seed(0)
    epoch = epoch_batches(tasks, 4, True, gen)
    assert len(epoch) == 5 + 2 + 4
    for k, t in enumerate(tasks):  # every example of every task exactly once per epoch
        rows = sorted(i for j, idx in epoch if j == k for i in idx)
        assert rows == list(range(len(t.train)))
    assert [k for k, _ in epoch] != sorted(k for k, _ in epoch)  # tasks interleaved, not in sequence
    assert epoch == epoch_batches(tasks, 4, True, torch.Generator().manual_seed(0))  # seeded


def test_joint_run_is_one_row_flagged_in_the_report(toy_data, write_config, tmp_path):
    from curlora_bench.analysis.report import render
    from curlora_bench.store.folders import find_runs

    cfg, _ = load_config(write_config(tiny_config(toy_data, perplexity=None, methods=[
        {"method": "lora", "rank": 2}, {"method": "joint", "adapter": {"method": "lora", "rank": 2}}])))
    seq, joint = run_experiment(cfg, tmp_path / "out")
    assert joint.label == "joint-lora-r2"
    assert joint.score_matrix[0] == [None, None] and None not in joint.score_matrix[1]
    assert [s.steps for s in joint.stages] == [sum(s.steps for s in seq.stages)]
    assert joint.metrics["forgetting"] is None
    assert joint.metrics["average_accuracy"] == pytest.approx(sum(joint.score_matrix[1]) / 2)
    records = read_records(tmp_path / "out" / "joint-lora-r2" / "seed-0" / "records.jsonl")
    assert {(r.stage, r.after_task, r.task) for r in records} == {(2, "joint", "pairs"), (2, "joint", "polarity")}
    md = render(find_runs([tmp_path / "out"]), "md")
    assert "joint-lora-r2: the multi-task upper bound" in md and "single row" in md
    assert "### Paired differences against lora-r2" in md  # the config's first method, not joint


@pytest.mark.parametrize("what", ["a tensor missing", "file missing", "not safetensors"])
def test_damaged_strategy_state_is_refused_on_resume(toy_data, tmp_path, cli, what):
    """strategy.safetensors is checked like the adapter's: every tensor state.json records, with its shape."""
    import shutil

    from safetensors.torch import load_file, save_file

    path = tmp_path / "exp.yaml"
    methods = [{"method": "lora", "rank": 2, "strategy": {"name": "ewc", "lambda": 10}}]
    path.write_text(yaml.safe_dump(tiny_config(toy_data, methods=methods, perplexity=None)))
    assert cli("run", path, "--output", tmp_path / "out")[0] == 0
    run = tmp_path / "out" / "lora-r2+ewc10" / "seed-0"
    stage = run / "checkpoints" / "stage-1"
    assert set(yaml.safe_load((stage / "state.json").read_text())["strategy_tensors"]) == set(
        load_file(stage / "strategy.safetensors"))
    shutil.rmtree(run / "checkpoints" / "stage-2")
    (run / "summary.json").unlink()
    if what == "file missing":
        (stage / "strategy.safetensors").unlink()
    elif what == "not safetensors":
        (stage / "strategy.safetensors").write_bytes(b"\x00" * 7)
    else:
        tensors = load_file(stage / "strategy.safetensors")
        del tensors[sorted(tensors)[0]]
        save_file(tensors, stage / "strategy.safetensors")
    code, _, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and "strategy.safetensors" in err and "--fresh" in err, err
    assert len(err.strip().splitlines()) == 1
