"""The field's benchmark packs as built-in sequences, on fixtures in each pack's own schema
(tests/fixtures/packs: a few made-up rows per task): O-LoRA's Long Sequence benchmark (orders
4-6), TRACE-8 and SAPT's SuperNI-15. Each pack loads by name, expands its orders, reads its files
through the task definitions, runs a 2-3 task slice on the tiny model, and names a missing data
folder and where to get it in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from curlora_bench.config.loading import load_config
from curlora_bench.sources.sequences import SEQUENCES
from curlora_bench.sources.tasks import TASKS
from curlora_bench.sources.tasks.loaders import load_splits

FIXTURES = Path(__file__).parent / "fixtures" / "packs"
RUN = ("name: s\nmodel: tiny-gpt2\ndevice: cpu\nmethods: [{method: lora, rank: 2}]\nperplexity: null\n"
       "train: {epochs: 1, batch_size: 8, max_length: 96, limit: 4}\neval: {batch_size: 16, limit: 4}\n")


@pytest.fixture
def pack(tmp_path):
    """A config folder beside a copy of one pack's fixture folder."""
    def _copy(name: str) -> Path:
        shutil.copytree(FIXTURES / name, tmp_path, dirs_exist_ok=True)
        return tmp_path
    return _copy


def _tasks_load(folder: Path, sequence: str, only: list[str]) -> dict:
    """Splits of the tasks `only` names, as the config of `sequence` beside `folder` resolves them."""
    path = folder / "exp.yaml"
    path.write_text(f"name: s\nmodel: tiny-gpt2\nmethods: [{{method: lora, rank: 2}}]\nsequence: {sequence}\n")
    cfg, _ = load_config(path)
    assert {t.name for t in cfg.tasks} == set(SEQUENCES.get(sequence).tasks)
    return {t.name: load_splits(t, None, t.name) for t in cfg.tasks if t.name in only}


def _run_slice(folder: Path, tasks: list[str]):
    from curlora_bench.experiment.driver import run_experiment

    path = folder / "exp.yaml"
    path.write_text(RUN + f"tasks: {json.dumps(tasks)}\n")
    (summary,) = run_experiment(load_config(path)[0], folder / "out")
    assert summary.status == "complete" and summary.tasks == tasks
    return summary


def _missing_folder_is_one_line(cli, tmp_path, task: str, where_from: str):
    path = tmp_path / "exp.yaml"
    path.write_text(RUN + f"tasks: [{task}]\n")
    code, out, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and "Traceback" not in err + out and len(err.strip().splitlines()) == 1, err
    assert f"data folder not found: {TASKS.get(task).path}" in err and where_from in err


# ---- O-LoRA's Long Sequence benchmark -------------------------------------------------------

LONG = ["mnli", "cb", "wic", "copa", "qqp", "boolq", "rte", "imdb", "yelp", "amazon", "sst2", "dbpedia", "agnews",
        "multirc", "yahoo"]


def test_olora_long_orders_are_the_papers():
    seq = SEQUENCES.get("olora-long")
    short = {k: [t.removeprefix("olora-") for t in v] for k, v in seq.orders.items()}
    assert short["4"] == LONG and sorted(seq.tasks) == sorted("olora-" + t for t in LONG)
    assert short["5"] == ["multirc", "boolq", "wic", "mnli", "cb", "copa", "qqp", "rte", "imdb", "sst2", "dbpedia",
                          "agnews", "yelp", "amazon", "yahoo"]
    # scripts/long.sh of cmnfriend/O-LoRA, in its --task_config_dir order
    assert short["6"] == ["yelp", "amazon", "mnli", "cb", "copa", "qqp", "rte", "imdb", "sst2", "dbpedia", "agnews",
                          "yahoo", "multirc", "boolq", "wic"]
    assert set(seq.card) == set(seq.tasks)


def test_olora_long_prompts_are_o_loras():
    """Task and dataset names, the task type's instruction, an Option line of labels.json's labels
    in order; COPA alone has neither instruction nor options (uie_dataset_lora.py)."""
    for name in SEQUENCES.get("olora-long").tasks:
        task = TASKS.get(name)
        kind, ds = task.path.split("/")[1:3]
        labels = json.loads((FIXTURES / "olora" / task.path / "labels.json").read_text())
        assert list(task.label_map) == labels and task.choices == [" " + lab for lab in labels]
        assert task.prompt.startswith(f"Task:{kind}\nDataset:{ds}\n") and task.prompt.endswith("{sentence}\nAnswer:")
        if kind == "COPA":
            assert task.prompt == "Task:COPA\nDataset:COPA\n{sentence}\nAnswer:"
        else:
            assert f"Choose one from the option.\nOption: {', '.join(labels)} \n{{sentence}}" in task.prompt


def test_olora_long_reads_o_lora_files(pack):
    """One task of each of O-LoRA's loaders that differs in its rows (each ~0.5 s to read)."""
    splits = _tasks_load(pack("olora"), "olora-long", ["olora-mnli", "olora-copa", "olora-multirc", "olora-yelp"])
    for name, s in splits.items():
        classes = len(TASKS.get(name).choices)
        assert len(s["train"]) == 2 * classes and len(s["eval"]) == classes, name  # mnli's '-' row dropped
        assert s["eval"]["label"] == list(range(classes))


def test_olora_long_slice_runs_on_the_fixtures(pack):
    _run_slice(pack("olora"), ["olora-copa", "olora-cb"])


def test_olora_missing_data_folder_is_one_line(cli, tmp_path):
    _missing_folder_is_one_line(cli, tmp_path, "olora-wic", "git clone https://github.com/cmnfriend/O-LoRA")


# ---- TRACE-8 --------------------------------------------------------------------------------

TRACE = ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]


def test_trace_order_files_and_metrics_are_traces():
    """The order of TRACE's train scripts (--dataset_name), its files, its metric per task
    (evaluations/eval_*.py), the answer following the prompt directly (data_collator.py)."""
    seq = SEQUENCES.get("trace-8")
    assert seq.data == "files" and list(seq.orders) == ["1"] and set(seq.card) == set(seq.tasks)
    metric = {"C-STANCE": "exact_match", "FOMC": "exact_match", "MeetingBank": "rouge_l", "Py150": "edit_similarity",
              "ScienceQA": "first_char", "NumGLUE-cm": "exact_match", "NumGLUE-ds": "exact_match",
              "20Minuten": "rouge_l"}
    for name, ds in zip(seq.orders["1"], TRACE, strict=True):
        task = TASKS.get(name)
        assert task.train == f"LLM-CL-Benchmark_5000/{ds}/train.json" and task.eval.endswith(f"/{ds}/test.json")
        assert (task.prompt, task.target, task.target_prefix) == ("{prompt}", "answer", "")
        assert task.primary_metric == metric[ds]


def test_edit_similarity_and_first_char_by_hand():
    from curlora_bench.core.metrics import edit_similarity, first_char

    # kitten / sitting: longest common subsequence "ittn" (4 characters) of 6 + 7
    assert edit_similarity("kitten", "sitting") == pytest.approx(8 / 13)
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "abc") == 0.0
    assert edit_similarity("ab", "ba") == pytest.approx(2 / 4)  # one character in common order
    assert first_char(" A", "A\nBecause ...") == 1.0 and first_char("B", "A\nBecause") == 0.0
    assert first_char("A", "") == 0.0


def test_trace_reads_traces_files(pack):
    (s,) = _tasks_load(pack("trace"), "trace-8", ["trace-scienceqa"]).values()  # the run below reads three more
    assert len(s["train"]) == 2 and len(s["eval"]) == 2 and s["eval"][0]["answer"].startswith("A\nBecause")


def test_trace_slice_runs_on_the_fixtures(pack):
    """Three tasks, three metrics: each task's records carry its primary metric."""
    folder = pack("trace")
    summary = _run_slice(folder, ["trace-scienceqa", "trace-py150", "trace-cstance"])
    lines = next((folder / "out").rglob("records.jsonl")).read_text().splitlines()
    by_task = {(r["task"], r["metric"]) for r in map(json.loads, lines)}
    assert {("trace-scienceqa", "first_char"), ("trace-py150", "edit_similarity"),
            ("trace-cstance", "exact_match")} <= by_task
    assert ("trace-cstance", "first_char") not in by_task and summary.zero_shot


def test_trace_missing_data_is_one_line(cli, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(RUN + "tasks: [trace-fomc]\n")
    code, out, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and "Traceback" not in err + out and len(err.strip().splitlines()) == 1, err
    assert "LLM-CL-Benchmark_5000/FOMC/train.json" in err and "github.com/BeyonderXX/TRACE" in err


# ---- SAPT's SuperNI-15 ----------------------------------------------------------------------

def test_superni_orders_and_prompts_are_sapts():
    """gen_script_superni_t5.py's two orders; each prompt the task's Definition as SAPT's
    load_SuperNI_dataset builds it (zero-shot), the Definition read from the fixture's task object."""
    seq = SEQUENCES.get("superni-15")
    number = {t: t.split("-")[1] for t in seq.tasks}
    assert [number[t] for t in seq.orders["1"]] == ["1572", "363", "1290", "181", "002", "1510", "639", "1729", "073",
                                                     "1590", "748", "511", "591", "1687", "875"]
    assert [number[t] for t in seq.orders["2"]] == ["748", "073", "1590", "639", "1572", "1687", "591", "363", "1510",
                                                     "1729", "181", "511", "002", "1290", "875"]
    for name in seq.tasks:
        task = TASKS.get(name)
        folder = Path(task.train).parent
        definition = json.loads((FIXTURES / "superni" / folder / "train.json").read_text())["Definition"][0].strip()
        assert task.prompt.format(input="X") == (f"Definition: {definition}\n\nNow complete the following example -\n"
                                                 "Input: X\nOutput:")
        assert (task.rows_field, task.target, task.primary_metric, task.max_new_tokens) == ("Instances", "output",
                                                                                            "rouge_l", 50)


def test_superni_reads_task_objects_and_takes_the_first_output(pack):
    """A task file is one JSON object; its Instances are the rows, a list of outputs gives its first."""
    splits = _tasks_load(pack("superni"), "superni-15", ["superni-002-quoref"])
    ev = splits["superni-002-quoref"]["eval"]
    assert len(ev) == 2 and ev["output"] == ["answer 0", "answer 1"] and ev["input"][0] == "made-up input 0 of test"


def test_superni_slice_runs_on_the_fixtures(pack):
    _run_slice(pack("superni"), ["superni-363-sst2", "superni-1572-samsum"])


def test_superni_missing_data_and_rows_field_misuse_are_one_line(cli, tmp_path, write_config):
    path = tmp_path / "exp.yaml"
    path.write_text(RUN + "tasks: [superni-591-sciq]\n")
    code, out, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "github.com/circle-hit/SAPT" in err, err
    assert "task591_sciq_answer_generation/train.json" in err
    bad = {"name": "x", "format": "csv", "train": "a.csv", "eval": "b.csv", "rows_field": "Instances"}
    code, _, err = cli("run", write_config({"name": "s", "model": "tiny-gpt2", "methods": [{"method": "lora"}],
                                            "tasks": [bad]}), "--output", tmp_path / "out2")
    assert code == 2 and "tasks[0].rows_field: only for format 'jsonl'" in err
