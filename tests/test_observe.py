"""run/observe.py: the train log's lines from hand-made step reports, and peak memory."""

from __future__ import annotations

import pytest
import torch

from curlora_bench.run.observe import PeakMemory, TrainLog
from curlora_bench.run.train import StepInfo


def log_of(steps: int, every: int, offset: int = 0):
    lines, seen = [], []
    return TrainLog(2, "pairs", steps, every, offset, lines.append, lambda s, loss: seen.append((s, loss))), lines, seen


def step(k: int, loss: float, examples: int = 4, tokens: int = 10) -> StepInfo:
    return StepInfo(k, loss, lr=0.1 * k, examples=examples, tokens=tokens, grad_norm=lambda: float(k))


def test_a_line_every_few_steps_and_at_the_last():
    log, lines, seen = log_of(steps=5, every=2, offset=10)
    for k, loss in enumerate([1.0, 3.0, 5.0, 7.0, 9.0], 1):
        log(step(k, loss))
    assert seen == [(1, 1.0), (2, 3.0), (3, 5.0), (4, 7.0), (5, 9.0)]  # every step reported on
    assert [(e.step, e.global_step) for e in lines] == [(2, 12), (4, 14), (5, 15)]
    # the loss is the mean over the steps since the previous line; the rest is this step's
    assert [e.loss for e in lines] == [2.0, 6.0, 9.0]
    assert [e.lr for e in lines] == pytest.approx([0.2, 0.4, 0.5])
    assert [e.grad_norm for e in lines] == [2.0, 4.0, 5.0]
    # examples and tokens count from the stage's start
    assert [(e.examples, e.tokens) for e in lines] == [(8, 20), (16, 40), (20, 50)]
    assert all(e.stage == 2 and e.task == "pairs" for e in lines)
    assert all(e.tokens_per_s > 0 for e in lines)
    assert [e.seconds for e in lines] == sorted(e.seconds for e in lines)


def test_grad_norm_is_read_only_when_a_line_is_written():
    log, lines, _ = log_of(steps=3, every=3)
    calls = []
    for k in (1, 2, 3):
        log(StepInfo(k, 1.0, 0.1, 1, 1, grad_norm=lambda k=k: calls.append(k) or 0.0))
    assert calls == [3] and len(lines) == 1


def test_every_larger_than_the_stage_gives_its_last_step():
    log, lines, _ = log_of(steps=3, every=50)
    for k in (1, 2, 3):
        log(step(k, float(k)))
    assert [(e.step, e.loss) for e in lines] == [(3, 2.0)]


def test_peak_memory_on_the_cpu_counts_what_was_touched():
    mem = PeakMemory(torch.device("cpu"))
    assert mem.kind == "rss-process"
    mem.reset()
    assert mem.kind in ("rss", "rss-process")  # "rss" where /proc/self/clear_refs can be written
    before = mem.peak()
    big = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, written
    after = mem.peak()
    del big
    assert before > 0 and after >= before + 32 * 1024 * 1024


def test_peak_memory_without_a_resettable_peak_is_the_process_peak(monkeypatch):
    import resource

    mem = PeakMemory(torch.device("cpu"))
    monkeypatch.setattr("curlora_bench.run.observe.Path.write_text", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    mem.reset()
    assert mem.kind == "rss-process"
    assert mem.peak() == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
