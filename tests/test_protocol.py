"""The paper protocol's choices, each against the standard one: pooling, scheduler length,
row subsets, task overrides, one perplexity window, one-at-a-time evaluation."""

from __future__ import annotations

import pytest
import torch

from curlora_bench.config.loading import load_config
from curlora_bench.core.protocol import Protocol
from curlora_bench.run import train as train_mod
from curlora_bench.run.corpora import ppl_settings
from curlora_bench.run.data import Batching, PreparedTask, Split
from curlora_bench.run.kinds import KINDS
from curlora_bench.run.prepare import prepare_tasks
from curlora_bench.sources.heads import TaskHeads
from curlora_bench.sources.models import hidden_size, load_model
from curlora_bench.store.schema import TaskData
from tests.conftest import tiny_config, train_one


def test_protocols_differ_exactly_where_the_reference_code_does():
    std, paper = Protocol.of("standard"), Protocol.of("paper")
    assert (std.train_pooling, paper.train_pooling) == ("last", "final")
    assert (std.eval_batch_size, paper.eval_batch_size) == (None, 1)
    assert not std.steps_in_examples and paper.steps_in_examples
    assert not std.first_rows and paper.first_rows
    assert not std.task_overrides and paper.task_overrides
    assert not std.single_window and paper.single_window
    assert (std.padding_side, paper.padding_side) == ("right", None)


@pytest.mark.parametrize("name", ["standard", "paper"])
def test_training_pools_and_schedules_as_the_protocol_says(monkeypatch, name):
    seen = {}
    from curlora_bench.run.kinds import classification

    real_scheduler, real_classify = train_mod.get_scheduler, classification.classify

    def scheduler(kind, opt, num_warmup_steps, num_training_steps):
        seen["total"] = num_training_steps
        return real_scheduler(kind, opt, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)

    def classify(*args):
        seen.setdefault("pooling", set()).add(args[-1])
        return real_classify(*args)

    monkeypatch.setattr(train_mod, "get_scheduler", scheduler)
    monkeypatch.setattr(classification, "classify", classify)
    lm = load_model("tiny-gpt2")
    heads = TaskHeads()
    heads.add("t", hidden_size(lm.model), 2, seed=0)
    split = Split([[5, 6, 7, 8], [9, 10], [11, 12, 13], [14]] * 5, [0, 1] * 10)
    task = PreparedTask("t", 2, split, split, TaskData(1, None, 20, 20, "", ""), KINDS.get("classification"))
    from curlora_bench.config.experiment import TrainConfig

    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_steps=0, dropout="off")
    stats = train_one(lm.model, heads, task, cfg, Batching(torch.device("cpu"), 0), Protocol.of(name), 0)
    assert stats.steps == 2 * 3  # ceil(20 / 8) batches per epoch either way
    # the reference's scheduler counts examples (2 x 20), so its cosine barely decays
    assert seen["total"] == (2 * 20 if name == "paper" else 6)
    assert seen["pooling"] == ({"final"} if name == "paper" else {"last"})


def test_subsets_first_rows_under_paper_seeded_shuffle_otherwise(toy_data, write_config):
    lm = load_model("tiny-gpt2")
    firsts = {}
    for name in ("standard", "paper"):
        cfg, _ = load_config(write_config(tiny_config(toy_data, protocol=name, train={
            "epochs": 1, "batch_size": 8, "lr": 1e-3, "max_length": 64, "limit": 10, "warmup_steps": 0})))
        tasks = prepare_tasks(cfg, lm, Protocol.of(name))
        firsts[name] = tasks[1].train.ids
        assert len(tasks[1].train) == 10
        again = prepare_tasks(cfg, lm, Protocol.of(name))
        assert again[1].train.ids == tasks[1].train.ids  # the same rows every time
    import csv

    rows = list(csv.DictReader(open(toy_data / "polarity_train.csv")))[:10]
    expected = [lm.tokenizer(r["text"], add_special_tokens=False).input_ids[:64] for r in rows]
    assert firsts["paper"] == expected
    assert firsts["standard"] != expected


def test_task_paper_overrides_apply_only_under_paper(toy_data, write_config):
    lm = load_model("tiny-gpt2")
    sizes = {}
    for name in ("standard", "paper"):
        cfg_dict = tiny_config(toy_data, protocol=name)
        cfg_dict["tasks"][0]["paper"] = {"train_rows": 7}
        cfg, _ = load_config(write_config(cfg_dict))
        sizes[name] = len(prepare_tasks(cfg, lm, Protocol.of(name))[0].train)
    assert sizes == {"standard": 48, "paper": 7}


def test_paper_perplexity_is_one_window_over_the_first_max_length_tokens(toy_data, write_config):
    cfg, _ = load_config(write_config(tiny_config(toy_data)))
    p, n = cfg.perplexity, cfg.train.max_length
    assert ppl_settings(p, n, Protocol.of("paper")) == {"window": 64, "stride": 64, "max_tokens": 64, "batch_size": 1}
    assert ppl_settings(p, n, Protocol.of("standard"))["window"] == 128
