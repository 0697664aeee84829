"""Evaluation's repeated work removed without changing a number: a Ray worker's runs share the
base model's perplexities (measured once per worker process, not once per run)."""

from __future__ import annotations

import yaml

from curlora_bench.config.loading import load_config
from curlora_bench.run import RunEvents
from curlora_bench.run import prepare as prepare_module
from curlora_bench.run.prepare import prepare
from tests.conftest import tiny_config


def _cfg(tmp_path, toy_data, **extra):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(toy_data, **extra)))
    return load_config(path)[0]


def _counting(monkeypatch) -> list[int]:
    calls = []
    measure = prepare_module.measure

    def counted(*args, **kwargs):
        calls.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "measure", counted)
    return calls


def test_a_workers_runs_measure_the_base_perplexity_once(tmp_path, toy_data, monkeypatch):
    cfg = _cfg(tmp_path, toy_data)
    calls = _counting(monkeypatch)
    alone = prepare(cfg, RunEvents()).initial_perplexities(RunEvents())  # no memo: measured per Prepared
    assert len(calls) == 1
    monkeypatch.setattr(prepare_module, "BASE_PERPLEXITIES", {})
    first = prepare(cfg, RunEvents()).initial_perplexities(RunEvents())
    second = prepare(cfg, RunEvents()).initial_perplexities(RunEvents())
    assert len(calls) == 2  # the second run of the worker reuses the first's
    assert second is first
    assert [r.as_dict() for r in first] == [r.as_dict() for r in alone]  # the same numbers, to the bit
    other = _cfg(tmp_path, toy_data, perplexity={"file": str(toy_data / "corpus.txt"), "max_tokens": 300,
                                                  "window": 128, "stride": 128})
    prepare(other, RunEvents()).initial_perplexities(RunEvents())
    assert len(calls) == 3  # another corpus setting is measured
