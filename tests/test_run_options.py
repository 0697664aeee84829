"""Run-level options of the trust work: the heads' own learning rate, several perplexity
corpora, CURLoRA's random-C/R control; each at its default leaves every run as it was."""

from __future__ import annotations

import pytest
import torch

from curlora_bench.adapters import ADAPTERS
from curlora_bench.config.experiment import TrainConfig
from curlora_bench.config.loading import load_config
from curlora_bench.config.methods import method_dict, parse_method
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.train import make_optimizer
from curlora_bench.sources.models import auto_targets, load_model
from curlora_bench.store.folders import find_runs
from curlora_bench.store.schema import read_records
from tests.conftest import tiny_config


def test_head_lr_puts_the_heads_in_a_group_of_their_own():
    a, h = [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(3))]
    same, _ = make_optimizer(a + h, TrainConfig(lr=1e-3), 10, heads=1)
    assert len(same.param_groups) == 1  # as before the option existed
    own, sched = make_optimizer(a + h, TrainConfig(lr=1e-3, head_lr=5e-2, warmup_steps=0), 10, heads=1)
    assert [g["lr"] for g in own.param_groups] == [1e-3, 5e-2]
    assert sched.get_last_lr() == [1e-3, 5e-2]  # one schedule, two peaks
    heads_only, _ = make_optimizer(h, TrainConfig(lr=1e-3, head_lr=5e-2, warmup_steps=0), 10, heads=1)
    assert [g["lr"] for g in heads_only.param_groups] == [5e-2]


def test_head_lr_changes_head_only_learning_and_labels_its_points(toy_data, write_config, tmp_path):
    methods = [{"method": "head-only", "grid": {"train.head_lr": [1e-4, 1e-1]}}]
    cfg, _ = load_config(write_config(tiny_config(toy_data, methods=methods, perplexity=None)))
    assert [m.display_label for m in cfg.methods] == ["head-only-hlr1e-4", "head-only-hlr0.1"]
    slow, fast = run_experiment(cfg, tmp_path / "o")
    assert slow.score_matrix != fast.score_matrix
    logged = (tmp_path / "o" / "head-only-hlr0.1" / "seed-0" / "train_log.jsonl").read_text()
    assert '"lr": 0.1' in logged or '"lr": 0.09' in logged  # the heads' schedule is the one logged


def test_new_options_at_their_default_keep_every_identity(toy_data, write_config):
    base = tiny_config(toy_data, methods=[{"method": "curlora", "rank": 2}])
    a, _ = load_config(write_config(base, "a.yaml"))
    b, _ = load_config(write_config({**base, "methods": [{"method": "curlora", "rank": 2, "cr": "sampled"}],
                                     "train": {**base["train"], "head_lr": None}}, "b.yaml"))
    assert a.identity(a.methods[0], 0) == b.identity(b.methods[0], 0)
    assert "cr" not in method_dict(b.methods[0]) and "head_lr" not in a.identity(a.methods[0], 0).settings["train"]
    c, _ = load_config(write_config({**base, "train": {**base["train"], "head_lr": 1e-2}}, "c.yaml"))
    assert c.identity(c.methods[0], 0).run_key != a.identity(a.methods[0], 0).run_key
    # a head_lr equal to the run's lr is the run without one (the same single AdamW group)
    d, _ = load_config(write_config({**base, "train": {**base["train"], "head_lr": base["train"]["lr"]}}, "d.yaml"))
    assert d.identity(d.methods[0], 0).run_key == a.identity(a.methods[0], 0).run_key
    e, _ = load_config(write_config({**base, "train": {**base["train"], "head_lr": 1e-2}, "methods": [
        {"method": "curlora", "rank": 2, "train": {"lr": 1e-2}}]}, "e.yaml"))
    f, _ = load_config(write_config({**base, "methods": [{"method": "curlora", "rank": 2, "train": {"lr": 1e-2}}]},
                                    "f.yaml"))
    assert e.identity(e.methods[0], 0).run_key == f.identity(f.methods[0], 0).run_key


def test_random_cr_has_ws_scale_and_is_no_column_of_w():
    lm = load_model("tiny-llama")
    cfg = parse_method({"method": "curlora", "rank": 4, "cr": "random"}, "m")
    assert cfg.display_label == "curlora-r4-randcr"
    names = ADAPTERS.get("curlora").attach(lm.model, auto_targets(lm.model), cfg.options, 0, "m")
    for name in names:
        layer = lm.model.get_submodule(name)
        w = layer.base_layer.weight
        c, r = layer.curlora_C, layer.curlora_R
        assert c.shape == (w.shape[0], 4) and r.shape == (4, w.shape[1])
        rms = float(w.pow(2).mean().sqrt())
        assert float(c.pow(2).mean().sqrt()) == pytest.approx(rms, rel=0.35)
        assert not any(torch.allclose(c[:, k], w[:, j]) for k in range(4) for j in range(w.shape[1]))
    again = load_model("tiny-llama")
    ADAPTERS.get("curlora").attach(again.model, auto_targets(again.model), cfg.options, 0, "m")
    assert torch.equal(again.model.get_submodule(names[0]).curlora_C, lm.model.get_submodule(names[0]).curlora_C)


def test_several_corpora_each_measured_and_reported(toy_data, write_config, tmp_path, cli):
    corpus = toy_data / "corpus.txt"
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[::-1])
    ppl = [{"file": str(corpus), "max_tokens": 600, "window": 128, "stride": 128},
           {"file": str(other), "max_tokens": 400, "window": 64, "stride": 64}]
    path = write_config(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}], perplexity=ppl))
    cfg, _ = load_config(path)
    [s] = run_experiment(cfg, tmp_path / "o")
    assert s.perplexity.protocol["corpus"] == str(corpus)
    (name, extra), = s.perplexities.items()
    assert name == str(other) and extra.initial and None not in extra.after_stage and extra.final == extra.after_stage[-1]
    records = read_records(tmp_path / "o" / s.label / "seed-0" / "records.jsonl")
    assert sorted((r.stage, r.task) for r in records if r.metric == "perplexity") == sorted(
        (stage, c) for stage in (0, 1, 2) for c in (str(corpus), str(other)))
    code, out, err = cli("run", path, "--output", tmp_path / "o")  # its records check out: kept
    assert code == 0 and "already complete, kept" in out, err
    md = __import__("curlora_bench.analysis.report", fromlist=["render"]).render(find_runs([tmp_path / "o"]), "md")
    assert f"Perplexity drift ({other}, final/initial)" in md
    with pytest.raises(Exception, match=r"perplexity\[1\]: corpus .* is listed twice"):
        load_config(write_config(tiny_config(toy_data, perplexity=[ppl[0], ppl[0]]), "twice.yaml"))


def test_validation_rows_are_scored_apart_and_never_train_or_eval_rows(toy_data, write_config, tmp_path, cli):
    from curlora_bench.config.loading import load_config as load
    from curlora_bench.core.protocol import Protocol
    from curlora_bench.run.prepare import prepare_tasks

    base = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}],
                       perplexity=None, seeds=[0, 1])
    base["train"] = {**base["train"], "limit": 32}  # of the toy split's 48 train rows: 16 left over
    cfg, _ = load(write_config({**base, "eval": {**base["eval"], "validation": 8}}))
    lm = load_model("tiny-gpt2")
    plain = prepare_tasks(load(write_config(base, "plain.yaml"))[0], lm, Protocol.of("standard"))
    tasks = prepare_tasks(cfg, lm, Protocol.of("standard"))
    for with_val, without in zip(tasks, plain):
        assert with_val.train == without.train and with_val.eval == without.eval  # the same rows as before
        rows = {tuple(x) for x in with_val.val.ids}
        assert len(with_val.val) == 8 and not rows & {tuple(x) for x in with_val.train.ids}
    summaries = run_experiment(cfg, tmp_path / "o")
    s = summaries[0]
    assert s.validation_matrix[1][0] is not None and s.validation_matrix[0][1] is None
    val = [r for r in read_records(tmp_path / "o" / s.label / "seed-0" / "records.jsonl") if r.split == "validation"]
    assert {(r.stage, r.task) for r in val} == {(1, "pairs"), (2, "pairs"), (2, "polarity")} and all(r.n == 8 for r in val)
    code, out, err = cli("report", tmp_path / "o", "--select-on", "validation")
    assert code == 0 and "### Chosen on validation" in out, err
    code, _, err = cli("report", tmp_path / "o", "--select-on", "validation", "--draws", "0")
    assert code == 0
    too_many = {**base, "eval": {**base["eval"], "validation": 10_000}}
    with pytest.raises(Exception, match=r"tasks\[0\]: eval.validation 10000 after 32 train rows"):
        prepare_tasks(load(write_config(too_many, "many.yaml"))[0], lm, Protocol.of("standard"))


def test_per_run_data_draws_each_seeds_train_rows_and_keeps_eval_rows(toy_data, write_config, tmp_path):
    base = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}], perplexity=None, seeds=[0, 1])
    base["train"] = {**base["train"], "limit": 24}  # half the toy split: each seed draws its own half
    cfg, _ = load_config(write_config({**base, "data_seed": "per-run"}))
    plain, _ = load_config(write_config(base, "plain.yaml"))
    assert cfg.identity(cfg.methods[0], 0).run_key != plain.identity(plain.methods[0], 0).run_key
    a, b = run_experiment(cfg, tmp_path / "o")
    for t in ("pairs", "polarity"):
        assert a.data[t].train_fingerprint != b.data[t].train_fingerprint
        assert a.data[t].eval_fingerprint == b.data[t].eval_fingerprint
    with pytest.raises(Exception, match="data_seed: per-run draws seeded subsets; the paper protocol"):
        load_config(write_config({**base, "data_seed": "per-run", "protocol": "paper"}, "paper.yaml"))


def test_points_of_one_experiment_share_their_settings_whatever_their_head_lr(toy_data, write_config):
    """A head_lr equal to a point's own lr is hashed as none (the same run), but every point keeps
    the experiment's own settings, so the report sees one experiment."""
    base = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "grid": {"train.lr": [1e-3, 1e-2]}}])
    cfg, _ = load_config(write_config({**base, "train": {**base["train"], "head_lr": 1e-3}}))
    same, other = (cfg.identity(m, 0) for m in cfg.methods)
    assert same.settings == other.settings and same.settings["train"]["head_lr"] == 1e-3
    plain, _ = load_config(write_config({**base, "methods": [{"method": "lora", "rank": 2, "train": {"lr": 1e-3},
                                                               "label": "lora-r2-lr1e-3"}]}, "plain.yaml"))
    assert same.run_key == plain.identity(plain.methods[0], 0).run_key
