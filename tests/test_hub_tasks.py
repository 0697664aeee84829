"""The paper's hub tasks and corpus, loaded from local folders with the hub datasets' schema."""

from __future__ import annotations

import copy
import textwrap

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from curlora_bench.config.experiment import corpus_config
from curlora_bench.core.errors import BenchError
from curlora_bench.sources.tasks import CORPORA, TASKS
from curlora_bench.sources.tasks.loaders import load_corpus_text, load_splits


def _hub_folder(root, configs: dict[str, dict[str, Dataset]]):
    """A folder laid out like a hub dataset repo: <config>/<split>-00000-of-00001.parquet + README configs."""
    lines = ["---", "configs:"]
    for cfg, splits in configs.items():
        lines += [f"- config_name: {cfg}", "  data_files:"]
        for split, ds in splits.items():
            (root / cfg).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(root / cfg / f"{split}-00000-of-00001.parquet"))
            lines += [f"  - split: {split}", f"    path: {cfg}/{split}-*"]
    lines.append("---")
    (root / "README.md").write_text("\n".join(lines) + "\n")
    return root


def _glue_mrpc(n):
    f = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                  "label": ClassLabel(names=["not_equivalent", "equivalent"]), "idx": Value("int32")})
    return Dataset.from_dict({"sentence1": [f"a {i}" for i in range(n)], "sentence2": [f"b {i}" for i in range(n)],
                              "label": [i % 2 for i in range(n)], "idx": list(range(n))}, features=f)


def _glue_sst2(n):
    f = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                  "idx": Value("int32")})
    return Dataset.from_dict({"sentence": [f"s {i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                              "idx": list(range(n))}, features=f)


def _s140(labels):
    n = len(labels)
    return Dataset.from_dict({"text": [f"tweet {i}" for i in range(n)], "date": ["Mon May 11 03:17:40 UTC 2009"] * n,
                              "user": ["u"] * n, "sentiment": labels, "query": ["NO_QUERY"] * n})


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    return _hub_folder(root, {
        "mrpc": {"train": _glue_mrpc(10), "validation": _glue_mrpc(6), "test": _glue_mrpc(4)},
        "sst2": {"train": _glue_sst2(8), "validation": _glue_sst2(4), "test": _glue_sst2(4)},
    })


@pytest.mark.parametrize("name, n_train, n_eval, cols", [("mrpc", 10, 6, 4), ("sst2", 8, 4, 3)])
def test_glue_tasks(glue, name, n_train, n_eval, cols):
    task = copy.deepcopy(TASKS.get(name))
    task.path = str(glue)
    splits = load_splits(task, None, "tasks[0]")
    assert len(splits["train"]) == n_train and len(splits["eval"]) == n_eval
    assert splits["train"]["label"][:2] == [0, 1]
    for col in task.text:
        assert col in splits["train"].column_names


def test_sentiment140_standard_and_paper(tmp_path):
    root = _hub_folder(tmp_path / "s140", {"default": {
        "train": _s140([0, 0, 0, 4, 4, 4]), "test": _s140([0, 2, 4, 4, 2])}})
    # drop the config folder name the real repo does not have: one config, `default`
    task = copy.deepcopy(TASKS.get("sentiment140"))
    task.path = str(root)
    splits = load_splits(task, None, "tasks[2]")
    assert splits["train"]["label"] == [0, 0, 0, 1, 1, 1]
    assert splits["eval"]["label"] == [0, 1, 1]  # neutral (2) tweets dropped, 4 -> 1
    import dataclasses

    paper = dataclasses.replace(task, **task.paper)
    p = load_splits(paper, None, "tasks[2]")
    assert p["train"]["label"] == [0, 0, 1, 1, 0]  # the test split, label // 4
    assert p["eval"]["label"] == [0, 0, 0, 1, 1, 1]


def test_wikitext2_corpus(tmp_path):
    ds = Dataset.from_dict({"text": ["", " = Robert Boulter = \n", "", " Robert Boulter is an English actor . \n"]})
    root = _hub_folder(tmp_path / "wt", {"wikitext-2-raw-v1": {"test": ds, "train": ds, "validation": ds}})
    corpus = copy.deepcopy(CORPORA.get("wikitext2"))
    corpus.path = str(root)
    text = load_corpus_text(corpus, None, "perplexity")
    assert text == "\n\n".join(ds["text"])


def test_unreachable_hub_is_one_clear_error(monkeypatch):
    """Offline, as a run is by default (`run.general.offline`): the hub client and `datasets` read
    HF_HUB_OFFLINE at import, so the test sets their copies too; with the variables alone,
    `datasets` would try the network and wait out its timeouts (20 s) before the same error."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    task = copy.deepcopy(TASKS.get("mrpc"))
    task.path = "nobody-has/this-dataset-" + textwrap.shorten("x", 5)
    with pytest.raises(BenchError, match="cannot load hub dataset .* needs a dataset hub"):
        load_splits(task, None, "tasks[0]")


def test_file_corpus_missing(tmp_path):
    from curlora_bench.config.experiment import PerplexityConfig

    with pytest.raises(BenchError, match="corpus file not found"):
        load_corpus_text(corpus_config(PerplexityConfig(file=str(tmp_path / "none.txt"))), None, "perplexity")


@pytest.mark.parametrize("name, fields, answers", [
    ("mrpc-prompt", ("first sentence: a 1\nsecond sentence: b 1\nAnswer:",), [" False", " True"]),
    ("sst2-prompt", ("Option: Good, Bad \nText: s 1\nAnswer:",), [" Bad", " Good"]),
])
def test_prompted_glue_forms_render_o_loras_prompts(glue, name, fields, answers):
    """The prompted hub forms read the hub's schema and render O-LoRA's prompt around each row;
    each label's answer is its choice."""
    from curlora_bench.run.kinds import KINDS
    from curlora_bench.sources.models import load_model

    task = copy.deepcopy(TASKS.get(name))
    task.path = str(glue)
    assert task.task_kind.name == "prompted" and task.choices == answers and "O-LoRA" in task.card["prompt"]
    splits = load_splits(task, None, "tasks[0]")
    lm = load_model("tiny-gpt2")
    prepared = KINDS.get("prompted").prepare(task, splits["train"], splits["eval"], lm.tokenizer, 256, None, "t")
    first = lm.tokenizer.decode(prepared.train.ids[1])
    assert first.startswith(task.prompt.split("\n")[0]) and fields[0] in first
    assert first.endswith(answers[1] + lm.tokenizer.eos_token)  # row 1 is labelled 1
    assert prepared.eval.references == [answers[i % 2] for i in range(len(splits["eval"]))]


def test_prompted_sentiment140_keeps_the_standard_splits(tmp_path):
    root = _hub_folder(tmp_path / "s140-prompt", {"default": {
        "train": _s140([0, 0, 4, 4]), "test": _s140([0, 2, 4])}})
    task = copy.deepcopy(TASKS.get("sentiment140-prompt"))
    task.path = str(root)
    splits = load_splits(task, None, "tasks[2]")
    assert splits["train"]["label"] == [0, 0, 1, 1] and splits["eval"]["label"] == [0, 1]
    assert task.choices == [" Bad", " Good"] and task.paper is None
