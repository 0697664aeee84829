"""Prompted tasks (the `prompted` task kind): trained as text through the model's own LM head,
scored by choice log-likelihood, greedy generation, exact match, ROUGE-L and chrF; every run
feature on them (strategies, joint, resume after SIGKILL, export into PEFT, the report)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from datasets import Dataset

from curlora_bench.config.loading import load_config
from curlora_bench.core import metrics
from curlora_bench.core.errors import BenchError
from curlora_bench.core.layout import GENERATIONS, RECORDS
from curlora_bench.core.protocol import Protocol
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.data import Batching
from curlora_bench.run.kinds import KINDS
from curlora_bench.run.kinds.prompted import (
    PromptSpec,
    choice_loglikelihoods,
    collate,
    generate,
)
from curlora_bench.run.prepare import prepare_tasks
from curlora_bench.sources.models import load_model
from curlora_bench.sources.tasks import PROMPT_FIELDS, TaskConfig
from curlora_bench.store.schema import read_generations, read_records
from tests.conftest import crashed_and_resumed, cut_to, tiny_config

CPU = torch.device("cpu")


def prompted_config(data, model="tiny-gpt2", **extra) -> dict:
    """A prompted CSV sequence: a choices task, then a target task (toy data)."""
    cfg = tiny_config(data, model, perplexity={"file": str(data / "corpus.txt"), "max_tokens": 300, "window": 64,
                                               "stride": 64},
                      train={"epochs": 1, "batch_size": 8, "lr": 1e-2, "max_length": 48, "limit": 16,
                             "warmup_steps": 1},
                      eval={"batch_size": 8, "limit": 8})
    cfg["tasks"] = [
        {"name": "polarity", "format": "csv", "train": str(data / "polarity_train.csv"),
         "eval": str(data / "polarity_dev.csv"), "prompt": "Review: {text}\nSentiment:",
         "choices": [" negative", " positive"]},
        {"name": "rewrite", "format": "csv", "train": str(data / "rewrite_train.csv"),
         "eval": str(data / "rewrite_dev.csv"), "prompt": "Words: {text}\nReversed:", "target": "reversed",
         "max_new_tokens": 12},
    ]
    cfg.update(extra)
    return cfg


METHODS = [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2},
           {"method": "lora", "rank": 2, "strategy": {"name": "replay", "per_task": 4}},
           {"method": "curlora", "rank": 2, "strategy": {"name": "ewc", "lambda": 100}},
           {"method": "lora", "rank": 2, "regime": "joint"}]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    import make_toy_data

    out = tmp_path_factory.mktemp("toy-prompted")
    make_toy_data.main(out, n_train=32, n_eval=16)
    return out


@pytest.fixture(scope="module")
def gen_run(toy, tmp_path_factory):
    """The prompted sequence on tiny-gpt2 with LoRA, CURLoRA, replay, EWC and joint training."""
    root = tmp_path_factory.mktemp("gen-run")
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(prompted_config(toy, methods=METHODS), sort_keys=False))
    cfg, _ = load_config(path)
    summaries = run_experiment(cfg, root / "out")
    return path, cfg, root / "out", summaries


def _lines(path):
    return path.read_text().splitlines() if path.is_file() else []


# ---- config --------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"choices": None}, "exactly one of `choices`"),
    ({"target": "reversed"}, "exactly one of `choices`"),
    ({"choices": [" a"]}, "at least 2 non-empty answers"),
    ({"choices": [" a", " a"]}, "answers must differ"),
    ({"prompt": "Review: {0}"}, "is not a column name"),
    ({"prompt": "Review: {text"}, "not a template"),
    ({"metric": "rouge_l"}, "scored by accuracy | accuracy_norm | exact_match"),
    ({"num_classes": 3}, "but 2 choices"),
    ({"target_prefix": " "}, "only for a target task"),
    ({"prompt": None}, "only for a prompted task"),
])
def test_prompted_task_fields_are_checked(change, message):
    base = {"name": "t", "train": "a.csv", "eval": "b.csv", "prompt": "Review: {text}\nSentiment:",
            "choices": [" negative", " positive"]}
    from curlora_bench.core.parse import from_dict

    with pytest.raises(BenchError, match=message):
        from_dict(TaskConfig, {**base, **change}, "tasks[0]")


def test_kind_and_primary_metric_follow_the_fields():
    from curlora_bench.core.parse import from_dict

    plain = from_dict(TaskConfig, {"name": "t", "train": "a", "eval": "b"}, "")
    choices = from_dict(TaskConfig, {"name": "t", "train": "a", "eval": "b", "prompt": "{text}:", "choices": ["a", "b"]},
                        "")
    target = from_dict(TaskConfig, {"name": "t", "train": "a", "eval": "b", "prompt": "{x} {y}:", "target": "z"}, "")
    assert (plain.task_kind.name, plain.primary_metric) == ("classification", "accuracy")
    assert (choices.task_kind.name, choices.primary_metric, choices.columns) == ("prompted", "accuracy", ["text"])
    assert (target.task_kind.name, target.primary_metric, target.columns) == ("prompted", "rouge_l", ["x", "y", "z"])
    # `kind:` written: the inferred kind is stored unwritten (same run keys); another is one line naming the field
    written = from_dict(TaskConfig, {"name": "t", "train": "a", "eval": "b", "kind": "prompted", "prompt": "{x}:",
                                     "target": "z"}, "")
    assert written.kind is None and written.task_kind.name == "prompted"
    for bad, message in [({"kind": "classification", "prompt": "{x}:", "target": "z"},
                          r"tasks\[0\]\.prompt: only for a prompted task, not a classification task"),
                         ({"kind": "prompted"}, r"tasks\[0\]\.prompt: required for a prompted task"),
                         ({"kind": "regression"}, r"tasks\[0\]\.kind: unknown task kind 'regression'")]:
        with pytest.raises(BenchError, match=message):
            from_dict(TaskConfig, {"name": "t", "train": "a", "eval": "b", **bad}, "tasks[0]")


def test_prompted_fields_are_left_out_of_identities_while_unset(toy, write_config):
    from curlora_bench.config.identity import OMITTED_AT_DEFAULT

    # besides the prompted fields: kind, and rows_field (a JSON file's list of rows, for any kind)
    assert {key[1] for key in OMITTED_AT_DEFAULT if key[0] == "tasks[]"} - {"val", "rows_field"} == \
        {"kind", *PROMPT_FIELDS}
    plain, _ = load_config(write_config(tiny_config(toy), "plain.yaml"))
    assert not any(k in t for t in plain.identity(plain.methods[0], 0).settings["tasks"] for k in PROMPT_FIELDS)
    prompted, _ = load_config(write_config(prompted_config(toy), "p.yaml"))
    settings = prompted.identity(prompted.methods[0], 0).settings
    assert settings["tasks"][1]["target"] == "reversed" and "choices" not in settings["tasks"][1]


def test_every_task_metric_is_a_record_metric_and_every_prompted_metric_a_task_metric():
    import dataclasses
    import typing

    from curlora_bench.sources.tasks import PROMPTED_METRICS
    from curlora_bench.store.schema import RECORD_METRICS, Record

    assert typing.get_type_hints(Record)["metric"] is str  # a harness metric may be any name
    assert set(RECORD_METRICS) == set(metrics.TASK_METRICS) | {"perplexity"}
    assert {m for ms in PROMPTED_METRICS.values() for m in ms} | {"accuracy"} == set(metrics.TASK_METRICS)
    assert dataclasses.fields(Record)[3].name == "metric"


def test_head_only_says_there_is_nothing_to_train_before_any_run(toy, write_config, cli, tmp_path):
    path = write_config(prompted_config(toy, methods=[{"method": "lora", "rank": 2}, {"method": "head-only"}]))
    code, _, err = cli("run", path, "-o", tmp_path / "out")
    assert code == 2 and not (tmp_path / "out").exists()
    assert "methods[1]: head-only trains only task heads, and prompted task 'polarity' has none" in err
    assert len(err.strip().splitlines()) == 1


def test_a_target_task_needs_its_columns(toy, write_config, tmp_path):
    cfg = prompted_config(toy)
    cfg["tasks"][1]["target"] = "missing"
    with pytest.raises(BenchError, match="missing target column 'missing'"):
        run_experiment(load_config(write_config(cfg))[0], tmp_path / "out")


# ---- the kind, piece by piece ----------------------------------------------------------------

def _prepared(model: str, rows: list[dict], task: dict, max_length: int = 64):
    lm = load_model(model)
    cfg = TaskConfig(name="t", train="a", eval="b", **task)
    cfg.validate("t")
    ds = Dataset.from_list(rows)
    bos = lm.tokenizer.bos_token_id if lm.add_bos else None
    return lm, KINDS.get("prompted").prepare(cfg, ds, ds, lm.tokenizer, max_length, bos, "t")


ROWS = [{"text": "good fine", "reversed": "fine good", "label": 1},
        {"text": "bad awful dark days", "reversed": "days dark awful bad", "label": 0},
        {"text": "ok", "reversed": "ok", "label": 1}]


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_the_loss_is_on_the_answer_tokens_only(model, side):
    """Each example's loss is the mean NLL of its answer tokens (and EOS) given the prompt: the
    prompt and the padding carry none, whichever side pads."""
    lm, task = _prepared(model, ROWS, {"prompt": "Words: {text}\nReversed:", "target": "reversed"})
    split = task.train
    batch = collate(split, [0, 1, 2], lm.tokenizer.pad_token_id, CPU, side)
    assert batch["answer_mask"].sum(1).tolist() == [len(split.ids[i]) - split.answer_start[i] for i in range(3)]
    kind = KINDS.get("prompted")
    with torch.no_grad():
        losses = kind.loss(lm.model, None, task, batch, "last", reduction="none")
        for i in range(3):
            ids = torch.tensor([split.ids[i]])
            logp = lm.model(ids).logits.log_softmax(-1)[0]
            start = split.answer_start[i]
            answer = [-float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])]
            everything = [-float(logp[t - 1, ids[0, t]]) for t in range(1, ids.shape[1])]
            assert losses[i].item() == pytest.approx(sum(answer) / len(answer), abs=1e-4)
            assert abs(losses[i].item() - sum(everything) / len(everything)) > 1e-3  # the prompt is not in it
            assert split.ids[i][start:] == lm.tokenizer(" " + ROWS[i]["reversed"], add_special_tokens=False)[
                "input_ids"] + [lm.tokenizer.eos_token_id]
        mean = kind.loss(lm.model, None, task, batch, "last")
        total = kind.loss(lm.model, None, task, batch, "last", reduction="sum")
    assert mean.item() == pytest.approx(losses.mean().item()) and total.item() == pytest.approx(losses.sum().item())


def test_truncation_keeps_the_answer_and_the_end_of_the_prompt():
    lm, task = _prepared("tiny-gpt2", ROWS, {"prompt": "A long instruction first. Words: {text}\nReversed:",
                                             "target": "reversed"}, max_length=24)
    for row, ids, start, ref in zip(ROWS, task.train.ids, task.train.answer_start, task.train.references):
        assert len(ids) <= 24 and lm.tokenizer.decode(ids[start:-1]) == ref == " " + row["reversed"]
        kept = lm.tokenizer.decode(ids[:start])
        assert kept and f"A long instruction first. Words: {row['text']}\nReversed:".endswith(kept)
    assert all(len(p) + task.spec.max_new_tokens <= 24 for p in task.eval.ids)


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_choice_scores_are_the_hand_computed_log_likelihoods(model):
    lm, task = _prepared(model, ROWS, {"prompt": "Review: {text}\nSentiment:", "choices": [" negative", " positive"]})
    got = choice_loglikelihoods(lm.model, task.eval, task.spec.choice_ids, 2, lm.tokenizer.pad_token_id, CPU)
    for i, prompt in enumerate(task.eval.ids):
        for c, choice in enumerate(task.spec.choice_ids):
            with torch.no_grad():
                logp = lm.model(torch.tensor([prompt + choice])).logits.log_softmax(-1)[0]
            want = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(choice))
            assert got[i][c] == pytest.approx(want, abs=1e-4)
    scores = {s.metric: s for s in KINDS.get("prompted").score(lm.model, None, task, 2,
                                                               Batching(CPU, lm.tokenizer.pad_token_id))}
    assert list(scores) == ["accuracy", "accuracy_norm", "exact_match"]
    chars = [len(" negative"), len(" positive")]
    for i, y in enumerate(task.eval.labels):
        assert scores["accuracy"].per_example[i] == float(max((0, 1), key=lambda c: got[i][c]) == y)
        assert scores["accuracy_norm"].per_example[i] == float(max((0, 1), key=lambda c: got[i][c] / chars[c]) == y)
    assert scores["exact_match"].generations is not None and len(scores["exact_match"].generations) == 3


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_batched_left_padded_generation_equals_one_at_a_time(model):
    lm = load_model(model)
    tok = lm.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in
               ["Review: great film\nSentiment:", "Hi", "Words: a b c d\nReversed:", "x" * 30]]
    for stop in (["\n"], ["a", "("], []):
        spec = PromptSpec("target", "rouge_l", 10, stop, tok.eos_token_id, tok)
        batched = generate(lm.model, prompts, spec, 4, tok.pad_token_id, CPU)
        alone = [generate(lm.model, [p], spec, 1, tok.pad_token_id, CPU)[0] for p in prompts]
        assert batched == alone
        assert not any(s in t for s in stop for t in batched)


def test_generation_computes_the_prompt_once():
    """With the KV cache, each new token after the first feeds one position: the embedding sees
    the prompts once, then one token per row and step."""
    lm = load_model("tiny-gpt2")
    tok = lm.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in ["Review: great film\nSent:", "Hi there"]]
    fed = []
    hook = lm.model.get_input_embeddings().register_forward_hook(lambda m, args, out: fed.append(args[0].shape))
    spec = PromptSpec("target", "rouge_l", 6, [], tok.eos_token_id, tok)
    try:
        generate(lm.model, prompts, spec, 2, tok.pad_token_id, CPU)
    finally:
        hook.remove()
    width = max(map(len, prompts))
    assert 1 < len(fed) <= 6 and fed == [torch.Size([2, width])] + [torch.Size([2, 1])] * (len(fed) - 1)


def test_text_metrics_against_the_packages_on_known_strings():
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    preds = ["the cat sat on the mat", "In the beginning", "", "God said, Let there be light"]
    refs = ["the cat is on the mat", "In the beginning", "something", "God said, \"Let there be light,\""]
    got = metrics.rouge_l(preds, refs)
    assert got[0] == pytest.approx(5 / 6)  # LCS "the cat on the mat": 5 of 6 words each way
    assert got[1] == 1.0 and got[2] == 0.0 and got[3] == 1.0  # punctuation is not a token
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert got == [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    assert metrics.chrf(preds, refs) == [CHRF().sentence_score(p, [r]).score / 100 for p, r in zip(preds, refs)]
    assert metrics.chrf(["abc"], ["abc"]) == [1.0]
    assert [metrics.exact_match(p, r) for p, r in [(" Good", "Good"), ("good", "Good"), ("Good\n", " Good")]] == \
        [1.0, 0.0, 1.0]


# ---- whole runs ----------------------------------------------------------------------------

def test_records_hold_every_metric_of_every_earlier_task_each_stage(gen_run):
    _, cfg, out, summaries = gen_run
    assert [s.status for s in summaries] == ["complete"] * 5
    for s in summaries:
        recs = read_records(out / s.label / "seed-0" / RECORDS)
        got = {(r.stage, r.task, r.metric) for r in recs if r.metric != "perplexity"}
        zero = {(0, "polarity", m) for m in ("accuracy", "accuracy_norm", "exact_match")} | \
            {(0, "rewrite", m) for m in ("rouge_l", "exact_match", "chrf")}
        if s.regime == "joint":  # one stage over both tasks, checkpointed as stage 2
            stages = zero | {(2, t, m) for _, t, m in zero}
        else:
            stages = zero | {(1, "polarity", m) for m in ("accuracy", "accuracy_norm", "exact_match")} | \
                {(2, t, m) for _, t, m in zero}
        assert got == stages, s.label
        assert all(r.measured_once for r in recs if r.stage == 0)
        zs = {(r.task, r.metric): r.value for r in recs if r.stage == 0 and r.metric != "perplexity"}
        assert all(r.baseline == zs[(r.task, r.metric)] for r in recs if r.stage > 0 and r.task in
                   ("polarity", "rewrite"))
        assert s.metric == {"polarity": "accuracy", "rewrite": "rouge_l"}
        assert s.baseline == {"polarity": zs[("polarity", "accuracy")], "rewrite": zs[("rewrite", "rouge_l")]}
        assert s.head_parameters == {"polarity": 0, "rewrite": 0} and s.num_classes == {"polarity": 2, "rewrite": 0}
        last = s.score_matrix[-1]
        assert last == [next(r.value for r in recs if r.stage == 2 and r.task == t and r.metric == s.primary(t))
                        for t in ("polarity", "rewrite")]
        gens = read_generations(out / s.label / "seed-0" / GENERATIONS)
        assert [(g.stage, g.task) for g in gens][:2] == [(0, "polarity"), (0, "rewrite")]
        assert all(len(g.texts) == 8 for g in gens)
    replay, ewc = summaries[2], summaries[3]
    assert replay.strategy["memory_examples"] == 8 and ewc.strategy["memory_floats"] > 0
    # the first method's zero-shot stage-0 records are every run's (measured once)
    first = [r for r in read_records(out / summaries[0].label / "seed-0" / RECORDS) if r.stage == 0]
    for s in summaries[1:]:
        assert [r for r in read_records(out / s.label / "seed-0" / RECORDS) if r.stage == 0] == first


def test_report_renders_matrix_forgetting_and_tradeoff_on_primary_metrics(gen_run, cli, tmp_path):
    _, _, out, _ = gen_run
    code, md, err = cli("report", out, "--draws", "50")
    assert code == 0, err
    assert "| | baseline |" in md.replace("|  | baseline |", "| | baseline |")
    for row in ("polarity accuracy (after polarity)", "rewrite ROUGE-L (after rewrite)",
                "polarity accuracy (after rewrite)", "Average score (final)", "Forgetting", "Backward transfer"):
        assert f"| {row} |" in md, row
    assert "a prompted task's base model, zero-shot" in md
    assert "Learning vs forgetting" in md or "matched plasticity" in md
    # the averages are of scores (ROUGE-L among them), and every table says so
    assert "| final average score |" in md and "| final avg score |" in md and "final average accuracy" not in md
    code, text, err = cli("report", out, "-f", "json", "--draws", "50")
    data = json.loads(text)
    assert data["tradeoff"]["frontiers"] and {"lora", "curlora"} <= set(data["tradeoff"]["frontiers"])
    code, _, err = cli("report", out, "--plots", tmp_path / "plots", "--draws", "0")
    assert code == 0 and (tmp_path / "plots" / "accuracy_matrix.png").is_file(), err


def test_prompted_runs_resume_after_a_crash_with_identical_records(gen_run, toy, tmp_path, cli, monkeypatch):
    path, _, whole, _ = gen_run
    # replay (its memory is checkpointed too; 2 steps a stage), killed at the first step of stage 2
    out = tmp_path / "killed"
    crashed_and_resumed(cli, monkeypatch, cut_to(path, METHODS[2], tmp_path), out, 3)
    label = "lora-r2+replay4"
    for name in (RECORDS, GENERATIONS, "predictions.jsonl"):
        assert _lines(out / label / "seed-0" / name) == _lines(whole / label / "seed-0" / name), name


@pytest.mark.parametrize("label", ["lora-r2", "curlora-r2"])
def test_export_reproduces_the_runs_generations(gen_run, tmp_path, label):
    """Export after stage 2: a LoRA export loads in PEFT, any export through load_adapter, and
    greedy generation reproduces the run's generations.jsonl."""
    import curlora_bench
    from curlora_bench.store.export import export

    _, cfg, out, _ = gen_run
    folder = export(out, tmp_path / "ex", stage=2, method=label, seed=0)
    meta = json.loads((folder / "curlora_bench.json").read_text())
    assert [t.get("head", True) for t in meta["tasks"]] == [False, False]
    lm = load_model("tiny-gpt2")
    if label.startswith("lora"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(lm.model, str(folder)).eval()
    else:
        model = lm.model
        heads = curlora_bench.load_adapter(model, folder)
        assert len(heads.heads) == 0
    tasks = prepare_tasks(cfg, load_model("tiny-gpt2"), Protocol.of("standard"))
    want = {g.task: g.texts for g in read_generations(out / label / "seed-0" / GENERATIONS) if g.stage == 2}
    for t in tasks:
        assert generate(model, t.eval.ids, t.spec, 8, lm.tokenizer.pad_token_id, CPU) == want[t.name], t.name


def test_the_prompted_sequence_on_tiny_llama(toy, write_config, tmp_path, cli):
    path = write_config(prompted_config(toy, "tiny-llama", methods=METHODS[:2]))
    code, stdout, err = cli("run", path, "-o", tmp_path / "out")
    assert code == 0, err
    assert "zero-shot polarity: accuracy" in stdout and "zero-shot rewrite: rouge_l" in stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| rewrite ROUGE-L (after rewrite) |" in report and "| Forgetting |" in report
    for label in ("lora-r2", "curlora-r2"):
        recs = read_records(tmp_path / "out" / label / "seed-0" / RECORDS)
        assert {r.metric for r in recs if r.stage == 2 and r.task == "polarity"} == \
            {"accuracy", "accuracy_norm", "exact_match"}
        assert {r.metric for r in recs if r.stage == 2 and r.task == "rewrite"} == {"rouge_l", "exact_match", "chrf"}


def test_a_mixed_sequence_keeps_the_classification_head(toy, write_config, tmp_path):
    """A classification task beside a prompted one: it keeps its head (and its majority baseline)."""
    cfg = prompted_config(toy, methods=[{"method": "curlora", "rank": 2}])
    cfg["tasks"][0] = {k: v for k, v in cfg["tasks"][0].items() if k not in ("prompt", "choices")}
    [s] = run_experiment(load_config(write_config(cfg))[0], tmp_path / "out")
    assert s.status == "complete" and s.head_parameters["polarity"] > 0 and s.head_parameters["rewrite"] == 0
    assert s.zero_shot.keys() == {"rewrite"} and s.metric == {"polarity": "accuracy", "rewrite": "rouge_l"}
    recs = read_records(tmp_path / "out" / "curlora-r2" / "seed-0" / RECORDS)
    polarity = [r for r in recs if r.task == "polarity"]
    assert [(r.stage, r.metric) for r in polarity] == [(1, "accuracy"), (2, "accuracy")]
    assert polarity[0].baseline == s.baseline["polarity"]


def test_a_finished_prompted_run_is_kept_and_checked(gen_run, tmp_path):
    """Rerunning keeps every finished run (its records count as the summary says); a records
    file that lost a primary-metric line is refused."""
    path, cfg, out, summaries = gen_run
    again = run_experiment(cfg, out)
    assert [s.run_key for s in again] == [s.run_key for s in summaries]
    copy_dir = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy_dir)
    recs = copy_dir / "lora-r2" / "seed-0" / RECORDS
    lines = recs.read_text().splitlines(keepends=True)
    drop = next(i for i, line in enumerate(lines) if '"metric": "rouge_l"' in line and '"stage": 2' in line)
    recs.write_text("".join(lines[:drop] + lines[drop + 1:]))
    with pytest.raises(BenchError, match="primary-metric/perplexity records"):
        run_experiment(copy.deepcopy(cfg), copy_dir)


def test_task_orders_and_grids_run_prompted_tasks(toy, write_config, tmp_path):
    """Every order of a grid's points: the zero-shot scores are each task's, whatever its place."""
    cfg = prompted_config(toy, methods=[{"method": "lora", "rank": 2, "grid": {"train.lr": [1e-2, 3e-2]}}],
                          orders=2)
    summaries = run_experiment(load_config(write_config(cfg))[0], tmp_path / "out")
    assert len(summaries) == 4 and all(s.status == "complete" for s in summaries)
    assert {tuple(s.tasks) for s in summaries} == {("polarity", "rewrite"), ("rewrite", "polarity")}
    assert len({json.dumps(s.zero_shot, sort_keys=True) for s in summaries}) == 1
    for s in summaries:  # the matrix's entries are each task's primary metric, in the run's order
        assert s.baseline == {t: s.zero_shot[t][s.primary(t)] for t in s.tasks}


def test_trackers_get_every_metric_by_name():
    from curlora_bench.experiment.trackers import record_scalar
    from curlora_bench.store.schema import Record

    assert record_scalar(Record(2, "rewrite", "rewrite", "rouge_l", 0.5, 8)) == ("rouge_l/rewrite", 0.5, 2)
    assert record_scalar(Record(0, None, "polarity", "exact_match", 0.25, 8, measured_once=True))[0] == \
        "exact_match/polarity"


def test_ray_runs_prompted_tasks_as_the_local_executor_does(toy, write_config, tmp_path, cli):
    """The same records and generations from a Ray task as from a local run at its thread count,
    and each metric in TensorBoard where it is installed."""
    pytest.importorskip("ray")
    import importlib.util

    log = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    path = write_config(prompted_config(toy, methods=[{"method": "curlora", "rank": 2}], log=log))
    code, _, err = cli("run", path, "-o", tmp_path / "local", "--cpus-per-run", "1")
    assert code == 0, err
    code, _, err = cli("run", path, "-o", tmp_path / "ray", "--executor", "ray", "--workers", "1")
    assert code == 0, err
    for name in (RECORDS, GENERATIONS):
        assert _lines(tmp_path / "ray" / "curlora-r2" / "seed-0" / name) == \
            _lines(tmp_path / "local" / "curlora-r2" / "seed-0" / name), name
    if log:
        from tests.test_observability import scalars

        tags = scalars(tmp_path / "ray" / "curlora-r2" / "seed-0")
        assert [step for step, _ in tags["rouge_l/rewrite"]] == [0, 2]
        assert {"accuracy/polarity", "exact_match/polarity", "chrf/rewrite"} <= set(tags)


def test_prompted_validation_rows_are_scored_on_the_primary_metric(toy, write_config, tmp_path):
    """eval.validation on a prompted sequence: validation rows carved from the train rows the subset
    leaves are scored with the task's metrics beside eval; generations are the eval rows' only."""
    cfg = prompted_config(toy, methods=[{"method": "lora", "rank": 2}])
    cfg["eval"]["validation"] = 8
    [s] = run_experiment(load_config(write_config(cfg))[0], tmp_path / "out")
    assert s.status == "complete"
    assert s.validation_matrix[0][0] is not None and s.validation_matrix[0][1] is None
    assert all(v is not None for v in s.validation_matrix[1])
    run = tmp_path / "out" / "lora-r2" / "seed-0"
    val = [r for r in read_records(run / RECORDS) if r.split == "validation"]
    assert {(r.stage, r.task, r.metric) for r in val if r.metric == "rouge_l"} == {(2, "rewrite", "rouge_l")}
    assert s.validation_matrix[1][1] == next(r.value for r in val if r.metric == "rouge_l")
    assert all(r.n == 8 for r in val)
    assert all(len(g.texts) == 8 for g in read_generations(run / GENERATIONS))
    assert len(read_generations(run / GENERATIONS)) == len({(g.stage, g.task) for g in read_generations(run / GENERATIONS)})
