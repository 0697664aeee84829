"""Bad configs, data files and `--set` values: each refused in one line naming the key, file or
row, exit 2, before anything is run (the run itself is stubbed out: a case that got past every
check would reach it and fail the test) and with the results folder untouched. The seeded fuzz of
the same ground: tests/test_fuzz.py; hostile task files and options: tests/test_signals.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, one_line, snapshot, tiny_config


def _mutate(cfg: dict, data: Path, tmp: Path, case: str) -> str | None:
    """Apply one bad-input case to a tiny config; return raw YAML text when the case needs it."""
    bad_csv = tmp / "bad.csv"
    bad_txt = tmp / "bad.txt"
    t0 = cfg["tasks"][0]
    if case == "yaml":
        return "name: [unclosed\n"
    if case == "duplicate YAML key":
        return "name: t\nseeds: [0]\nname: u\n"
    if case == "not UTF-8":
        return "name: t\xff\n"
    if case == "alias bomb":
        lines = ["name: t", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        return "\n".join(lines) + "\n"
    edits = {
        "unknown key": lambda: cfg.update(bogus=1),
        "wrong type": lambda: cfg["train"].update(batch_size="eight"),
        "rank <= 0": lambda: cfg.update(methods=[{"method": "curlora", "rank": 0}]),
        "rank too large": lambda: cfg.update(methods=[{"method": "curlora", "rank": 1000}]),
        "unknown method": lambda: cfg.update(methods=[{"method": "loraa"}]),
        "unknown task": lambda: cfg.update(tasks=["no-such-task"]),
        "unknown model": lambda: cfg.update(model=str(tmp / "no-such-model")),
        "unknown corpus": lambda: cfg.update(perplexity={"corpus": "no-such-corpus"}),
        "missing file": lambda: t0.update(train=str(tmp / "missing.csv")),
        "two tasks same name": lambda: cfg.update(tasks=[t0, t0]),
        "empty seeds": lambda: cfg.update(seeds=[]),
        "lr <= 0": lambda: cfg["train"].update(lr=0),
        "max_length <= 0": lambda: cfg["train"].update(max_length=0),
        "lr not a number": lambda: cfg["train"].update(lr="fast"),
        "method key typo": lambda: cfg.update(methods=[{"method": "lora", "rnk": 2}]),
        "label used twice": lambda: cfg.update(methods=[{"method": "lora"}, {"method": "lora"}]),
        "unknown device": lambda: cfg.update(device="gpu"),
        "unknown protocol": lambda: cfg.update(protocol="mine"),
        "unknown lora init": lambda: cfg.update(methods=[{"method": "lora", "init": "foo"}]),
        "seed out of range": lambda: cfg.update(seeds=[2**40]),
        "negative seed": lambda: cfg.update(seeds=[-1]),
        "unknown strategy": lambda: cfg.update(methods=[{"method": "lora", "strategy": {"name": "forget"}}]),
        "negative lambda": lambda: cfg.update(methods=[{"method": "lora", "strategy": {"name": "ewc", "lambda": -1}}]),
        "strategy key typo": lambda: cfg.update(methods=[{"method": "lora", "strategy": {"name": "replay",
                                                                                          "per_tsk": 4}}]),
        "OSF option PEFT rejects": lambda: cfg.update(methods=[{"method": "peft", "type": "OSF", "effective_rank": 2,
                                                                 "no_such_option": 1}]),
        "OSF without effective_rank": lambda: cfg.update(methods=[{"method": "peft", "type": "OSF"}]),
        "rank_step on LoRA": lambda: cfg.update(methods=[{"method": "peft", "type": "LORA", "rank_step": 2}]),
        "order not a permutation": lambda: cfg.update(orders=[["pairs"]]),
        "too many orders": lambda: cfg.update(orders=3),
        "joint with a strategy": lambda: cfg.update(methods=[{"method": "joint", "strategy": {"name": "l2",
                                                                                              "lambda": 1}}]),
        "replay per_task > task": lambda: cfg.update(methods=[{"method": "lora", "strategy": {"name": "replay",
                                                                                               "per_task": 49}}]),
        "label escapes up": lambda: cfg["methods"][0].update(label="../t2"),
        "label is a path": lambda: cfg["methods"][0].update(label="a/b"),
        "label is ..": lambda: cfg["methods"][0].update(label=".."),
        "label absolute": lambda: cfg["methods"][0].update(label="/tmp/x"),
        "label non-ASCII": lambda: cfg["methods"][0].update(label="lora-ü"),
        "label empty": lambda: cfg["methods"][0].update(label=""),
        "label starts with +": lambda: cfg["methods"][0].update(label="+replay4"),
        "label with + and a slash": lambda: cfg["methods"][0].update(label="lora+../x"),
        "label in a grid escapes": lambda: cfg.update(methods=[{"method": "lora", "label": "../x",
                                                                "grid": {"rank": [1, 2]}}]),
        "name is ..": lambda: cfg.update(name=".."),
        "task name with a dot": lambda: t0.update(name="a.b"),
        "task name with a slash": lambda: t0.update(name="../a"),
        "task name empty": lambda: t0.update(name=""),
        "task name a ModuleDict attribute": lambda: t0.update(name="training"),
        "lora rank too large": lambda: cfg.update(methods=[{"method": "lora", "rank": 100000}]),
        "peft lora r too large": lambda: cfg.update(methods=[{"method": "peft", "type": "LORA", "r": 100000}]),
        "peft vera r too large": lambda: cfg.update(methods=[{"method": "peft", "type": "VERA", "r": 100000}]),
        "max_length beyond positions": lambda: cfg["train"].update(max_length=5000),
        "max_length too short for a pair": lambda: cfg["train"].update(max_length=1),
        "window beyond positions": lambda: cfg["perplexity"].update(window=5000, stride=5000),
        "paper max_length beyond positions": lambda: (cfg.update(protocol="paper"),
                                                      cfg["train"].update(max_length=4096)),
        "corpus too short": lambda: (bad_txt.write_text("a b"), cfg["perplexity"].update(file=str(bad_txt))),
        "window scores nothing": lambda: cfg["perplexity"].update(window=1, stride=1),
        "paper override unknown key": lambda: t0.update(paper={"bogus": 1}),
        "paper override wrong type": lambda: t0.update(paper={"train_rows": "x"}),
        "paper override renames": lambda: t0.update(paper={"name": "other"}),
        "paper override not a mapping": lambda: t0.update(paper=[1]),
        "seed beyond 64 bits": lambda: cfg.update(seeds=[2**70]),
        "data_seed out of range": lambda: cfg.update(data_seed=-5),
        "lr infinite": lambda: cfg["train"].update(lr=float("inf")),
    }
    files = {
        "missing text column": "sentence1,label\na,1\n",
        "missing label column": "sentence1,sentence2,y\na,b,1\n",
        "label out of range": "sentence1,sentence2,label\na,b,1\nc,d,2\n",
        "label not integer": "sentence1,sentence2,label\na,b,0.5\n",
        "label not integer, later row": "sentence1,sentence2,label\na,b,1\nc,d,x\n",
        "one class only": "sentence1,sentence2,label\na,b,1\nc,d,1\ne,f,1\n",
        "csv row with extra field": "sentence1,sentence2,label\na,b,1\nc,d,0,9\ne,f,1\n",
        "csv not UTF-8": "sentence1,sentence2,label\na,b,1\nc,\udcff,0\n",
        "empty train split": "sentence1,sentence2,label\n",
        "empty eval split": "sentence1,sentence2,label\n",
    }
    jsonl = {
        "jsonl bad line": '{"sentence1": "a", "sentence2": "b", "label": 1}\n{"sentence1": "c", oops\n',
        "jsonl not an object": '{"sentence1": "a", "sentence2": "b", "label": 1}\n[1, 2]\n',
        "jsonl empty text": '{"sentence1": "a", "sentence2": "b", "label": 1}\n{"sentence1": " ", "sentence2": "", "label": 0}\n',
    }
    if case in jsonl:
        bad_jsonl = tmp / "bad.jsonl"
        bad_jsonl.write_text(jsonl[case])
        t0.update(format="jsonl", train=str(bad_jsonl), eval=str(bad_jsonl), num_classes=2)
    elif case in files:
        bad_csv.write_bytes(files[case].encode("utf-8", "surrogateescape"))
        t0["eval" if case == "empty eval split" else "train"] = str(bad_csv)
        t0["num_classes"] = None if case == "one class only" else 2
    else:
        edits[case]()
    return None


# Every bad-config, bad-data and bad-value case lives here: each must give one line naming the
# key, file or row, exit 2, and leave a finished results folder byte-identical.
CASES = {
    "yaml": "not valid YAML",
    "unknown key": "bogus: unknown key",
    "wrong type": "train.batch_size: expected an integer",
    "rank <= 0": "methods[0].rank: must be > 0",
    "rank too large": "methods[0].rank: 1000 exceeds the 32x96 weight of transformer.h.0.attn.c_attn",
    "unknown method": "methods[0].method: unknown method 'loraa'",
    "unknown task": "tasks[0]: unknown task 'no-such-task'",
    "unknown model": "no-such-model",
    "unknown corpus": "perplexity.corpus: unknown corpus 'no-such-corpus'",
    "missing file": "tasks[0].train: data file not found",
    "missing text column": "missing text column 'sentence2'",
    "missing label column": "missing label column 'label'",
    "label out of range": "row 2: label 2 outside 0..1",
    "label not integer": "row 1: label 0.5 in column 'label' is not an integer",
    "label not integer, later row": "row 2: label 'x' in column 'label' is not an integer",
    "empty train split": "split is empty",
    "empty eval split": "split is empty",
    "two tasks same name": "tasks[1].name: task 'pairs' appears twice",
    "empty seeds": "seeds: the list is empty",
    "lr <= 0": "train.lr: must be > 0",
    "max_length <= 0": "train.max_length: must be > 0",
    "lr not a number": "train.lr: expected a number",
    "method key typo": "methods[0].rnk: unknown key",
    "label used twice": "methods[1]: label 'lora-r8' is used twice",
    "unknown device": "device: 'gpu'",
    "unknown protocol": "protocol: expected 'standard' | 'paper'",
    "unknown lora init": "methods[0].init: expected 'peft' | 'reference', got 'foo'",
    "seed out of range": "seeds[0]: 1099511627776 is outside 0 .. 2**32 - 1",
    "negative seed": "seeds[0]: -1 is outside 0 .. 2**32 - 1",
    "unknown strategy": "methods[0].strategy.name: unknown strategy 'forget'",
    "negative lambda": "methods[0].strategy.lambda: must be >= 0, got -1.0",
    "strategy key typo": "methods[0].strategy.per_tsk: unknown key for strategy replay",
    "replay per_task > task": "methods[0].strategy.per_task: 49 is larger than task 'pairs' (48 training examples)",
    "joint with a strategy": "methods[0].strategy: joint training sees every task at once",
    "OSF option PEFT rejects": "methods[0]: PEFT OSF config rejected",
    "OSF without effective_rank": "methods[0].effective_rank: set it for OSF",
    "rank_step on LoRA": "methods[0].rank_step: only OSF grows a preserved rank between tasks, not LORA",
    "order not a permutation": "orders[0]: ['pairs'] is not a permutation of the tasks",
    "too many orders": "orders: 3 distinct orders of 2 tasks do not exist",
    "label escapes up": "methods[0].label: label '../t2' must be ASCII letters, digits",
    "label is a path": "methods[0].label: label 'a/b' must be",
    "label is ..": "methods[0].label: label '..' must be",
    "label absolute": "methods[0].label: label '/tmp/x' must be",
    "label non-ASCII": "methods[0].label: label 'lora-ü' must be ASCII",
    "label empty": "methods[0].label: label '' must be",
    "label starts with +": "methods[0].label: label '+replay4' must be ASCII letters, digits, '_', '-', '.' or '+'",
    "label with + and a slash": "methods[0].label: label 'lora+../x' must be",
    "label in a grid escapes": "methods[0] (grid point rank=1).label: label '../x-rank1' must be",
    "name is ..": "name: name '..' must be",
    "task name with a dot": "tasks[0].name: task name 'a.b' cannot be a head's module name",
    "task name with a slash": "tasks[0].name: task name '../a' must be",
    "task name empty": "tasks[0].name: task name '' must be",
    "task name a ModuleDict attribute": "tasks[0].name: task name 'training' cannot be",
    "lora rank too large": "methods[0].rank: 100000 exceeds the 32x96 weight of transformer.h.0.attn.c_attn",
    "peft lora r too large": "methods[0].r: 100000 exceeds the 32x96 weight",
    "peft vera r too large": "methods[0].r: 100000 exceeds the 32x96 weight",
    "max_length beyond positions": "train.max_length: 5000 is longer than the 1024 positions of model tiny-gpt2",
    "max_length too short for a pair": "train.max_length: 1 leaves no room for the text (needs >= 3",
    "window beyond positions": "perplexity.window: 5000 is longer than the 1024 positions",
    "paper max_length beyond positions": "train.max_length: 4096 is longer than the 1024 positions",
    "corpus too short": "perplexity: the corpus leaves 2 token(s) to score (3 tokens); at least 16",
    "window scores nothing": "perplexity: the corpus leaves 0 token(s) to score",
    "paper override unknown key": "tasks[0].paper.bogus: unknown key",
    "paper override wrong type": "tasks[0].paper.train_rows: expected an integer, got 'x'",
    "paper override renames": "tasks[0].paper.name: cannot be overridden",
    "paper override not a mapping": "tasks[0].paper: expected a mapping",
    "seed beyond 64 bits": "seeds[0]: 1180591620717411303424 is outside 0 .. 2**32 - 1",
    "data_seed out of range": "data_seed: -5 is outside 0 .. 2**32 - 1",
    "lr infinite": "train.lr: expected a number, got inf",
    "duplicate YAML key": "line 3: key 'name' appears twice in one mapping",
    "not UTF-8": "not UTF-8 text (byte 7)",
    "alias bomb": "anchors/aliases are expanded (an alias bomb?)",
    "one class only": "tasks[0]: the train labels are all 1: a classifier needs at least 2 classes",
    "csv row with extra field": "bad.csv: cannot read as csv: line 3: 4 fields, the header has 3",
    "csv not UTF-8": "bad.csv: cannot read as csv: line 3: not UTF-8 text",
    "jsonl bad line": "bad.jsonl: cannot read as jsonl: line 2: not valid JSON",
    "jsonl not an object": "bad.jsonl: cannot read as jsonl: line 2: expected a JSON object",
    "jsonl empty text": "bad.jsonl: row 2: text column 'sentence1' is empty or not text",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_damaged(case, stubbed_results, tmp_path, cli, toy_data):
    out = stubbed_results
    before = snapshot(out)
    cfg = json.loads(json.dumps(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])))
    raw = _mutate(cfg, toy_data, tmp_path, case)
    path = tmp_path / "bad.yaml"
    text = raw if raw is not None else yaml.safe_dump(cfg)
    path.write_bytes(text.encode("latin-1" if case == "not UTF-8" else "utf-8"))
    code, stdout, err = cli("run", path, "--output", out)
    assert code == 2, stdout + err
    assert CASES[case] in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in stdout + err
    assert snapshot(out) == before


def test_unknown_set_key_via_cli(tmp_path, cli, write_config, toy_data):
    cfg_path = write_config(tiny_config(toy_data))
    code, _, err = cli("run", cfg_path, "--set", "train.lrr=1", "--output", tmp_path / "o")
    assert code == 2 and "--set train.lrr: unknown key" in err


def test_no_unsafe_deserialisation_in_the_package():
    import re

    bad = re.compile(r"yaml\.load\(|yaml\.unsafe_load|import pickle|pickle\.load|torch\.load\((?![^)]*weights_only=True)")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "curlora_bench").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []


@pytest.mark.parametrize("assignment", ["name.x.y=1", "train.lr.x=1", "methods.0.rank.x=2", "seeds.0.x=1"])
def test_set_through_a_scalar_is_one_line(tmp_path, cli, write_config, toy_data, assignment):
    cfg_path = write_config(tiny_config(toy_data))
    code, _, err = cli("run", cfg_path, "--set", assignment, "--output", tmp_path / "o")
    assert code == 2 and "not a mapping" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


# ---- hostile input: one line, exit 2, nothing written, the asset cache untouched -------------------

HIDDEN = [{"context": f"Item {i} is", "choices": ["yes", "no"], "label": i % 2} for i in range(6)]


def task_yaml(folder, name: str = "hidden_mc", metric: str = "acc", extra: str = "", file: str | None = None):
    """A small multiple-choice harness task YAML over a local jsonl (6 rows)."""
    import json

    data = folder / "hidden.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in HIDDEN))
    path = folder / (file or f"{name}.yaml")
    path.write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: {json.dumps(str(data))}}}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{context}}'\n"
                    "doc_to_choice: choices\ndoc_to_target: '{{label}}'\n"
                    f"metric_list:\n  - {{metric: {metric}, aggregation: mean, higher_is_better: true}}\n{extra}")
    return str(path)


def _prompted(cfg, data, **task):
    cfg["tasks"][1] = {"name": "rewrite", "format": "csv", "train": str(data / "rewrite_train.csv"),
                       "eval": str(data / "rewrite_dev.csv"), "prompt": "Words: {text}\nReversed:",
                       "target": "reversed", **task}


def _choices(cfg, data, choices):
    cfg["tasks"][1] = {"name": "polarity", "format": "csv", "train": str(data / "polarity_train.csv"),
                       "eval": str(data / "polarity_dev.csv"), "prompt": "Review: {text}\nSentiment:",
                       "choices": choices}


def _rows(data, folder, name: str, change) -> str:
    """The rewrite task's train rows, changed, as a CSV of their own."""
    import csv

    with open(data / "rewrite_train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(change(rows))
    return str(folder / name)


def _bytes(folder, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return str(folder / name)


HOSTILE = {
    "max_new_tokens past the positions": (
        lambda c, d, t: _prompted(c, d, max_new_tokens=1100),
        "tasks[1].max_new_tokens: 1,100 new tokens after a prompt of at least one token do not fit the 1,024 "
        "positions of model tiny-gpt2 (at most 1,023)"),
    "max_new_tokens 10**9": (lambda c, d, t: _prompted(c, d, max_new_tokens=10**9), "tasks[1].max_new_tokens: "),
    "choices differing by whitespace": (
        lambda c, d, t: _choices(c, d, [" positive", "positive"]),
        "tasks[1].choices: answers must differ beyond surrounding whitespace"),
    "one corpus spelled two ways": (
        lambda c, d, t: c.update(perplexity=[c["perplexity"], {**c["perplexity"],
                                                               "file": str(d / ".." / d.name / "corpus.txt")}]),
        "perplexity[1]: corpus "),
    "validation file that is the eval file": (
        lambda c, d, t: (c["tasks"][0].update(val=str(d / "." / "pairs_dev.csv")), c["eval"].update(validation=8)),
        "tasks[0].val: "),
    "epochs 10**30": (lambda c, d, t: c["train"].update(epochs=10**30),
                      "train.epochs: 1,000,000,000,000,000,000,000,000,000,000 is more than 10,000"),
    "duplicate choices": (lambda c, d, t: _choices(c, d, [" a", " a"]), "tasks[1].choices: answers must differ"),
    "choices and target both set": (
        lambda c, d, t: (_choices(c, d, [" negative", " positive"]), c["tasks"][1].update(target="text")),
        "tasks[1]: a prompted task gives exactly one of `choices`"),
    "a template naming a missing column": (
        lambda c, d, t: _prompted(c, d, prompt="Words: {nope}\nReversed:"), "missing prompt field column 'nope'"),
    "max_new_tokens 0": (lambda c, d, t: _prompted(c, d, max_new_tokens=0), "tasks[1].max_new_tokens: must be > 0"),
    "an empty eval split": (lambda c, d, t: _prompted(c, d, eval=_rows(d, t, "empty.csv", lambda rows: [])),
                            "empty.csv: split is empty (no data rows)"),
    "empty targets": (
        lambda c, d, t: _prompted(c, d, train=_rows(d, t, "blank.csv", lambda rows: [{**r, "reversed": ""} for r in rows])),
        "blank.csv: row 1: target column 'reversed' is empty or not text"),
    "a data file that is not UTF-8": (
        lambda c, d, t: _prompted(c, d, train=_bytes(t, "latin.csv", (d / "rewrite_train.csv").read_bytes() + b"\xff,x\n")),
        "latin.csv: cannot read as csv: line "),
    "epochs 0": (lambda c, d, t: c["train"].update(epochs=0), "train.epochs: must be > 0, got 0"),
    "epochs -1": (lambda c, d, t: c["train"].update(epochs=-1), "train.epochs: must be > 0, got -1"),
    "epochs 1e30": (lambda c, d, t: c["train"].update(epochs=1e30), "train.epochs: expected an integer"),
    "epochs '2'": (lambda c, d, t: c["train"].update(epochs="2"), "train.epochs: expected an integer, got '2'"),
    "a missing further corpus": (
        lambda c, d, t: c.update(perplexity=[c["perplexity"], {**c["perplexity"], "file": str(t / "nope.txt")}]),
        "perplexity[1].file: corpus file not found"),
    "an empty further corpus": (
        lambda c, d, t: c.update(perplexity=[c["perplexity"], {**c["perplexity"], "file": _bytes(t, "e.txt", b"")}]),
        "e.txt: corpus file is empty"),
    "general num_fewshot above the data": (
        lambda c, d, t: c.update(general={"tasks": [task_yaml(t)], "num_fewshot": 6}),
        "general.tasks[0]: num_fewshot 6 is more than task 'hidden_mc' can draw: 6 example(s) to take shots from, "
        "so at most 5"),
    "general task declared twice": (
        lambda c, d, t: c.update(general={"tasks": [task_yaml(t), task_yaml(t, file="copy.yaml")]}),
        "general.tasks[1]: task 'hidden_mc' is declared twice (also by general.tasks[0])"),
    "general unknown metric": (
        lambda c, d, t: c.update(general={"tasks": [task_yaml(t, metric="accuracy_of_vibes")]}),
        "general.tasks[0]: metric 'accuracy_of_vibes' of "),
    "general YAML that is no YAML": (
        lambda c, d, t: (t / "bad.yaml").write_text("task: [unclosed\n") and c.update(general={"tasks": [str(t / "bad.yaml")]}),
        "is not a readable task YAML"),
    "general YAML that is a list": (
        lambda c, d, t: (t / "list.yaml").write_text("- a\n- b\n") and c.update(general={"tasks": [str(t / "list.yaml")]}),
        "is not a task YAML (expected a mapping, got list)"),
    "general task over an empty data file": (
        lambda c, d, t: c.update(general={"tasks": [task_yaml(t)]}) or (t / "hidden.jsonl").write_text(""),
        "general.tasks[0]: the harness cannot load it"),
    "general task over a cut data file": (
        lambda c, d, t: c.update(general={"tasks": [task_yaml(t)]}) or (t / "hidden.jsonl").write_text('{"conte'),
        "general.tasks[0]: the harness cannot load it"),
    "general task YAML that is a folder": (
        lambda c, d, t: (t / "dir.yaml").mkdir() or c.update(general={"tasks": [str(t / "dir.yaml")]}),
        "general.tasks[0]: task YAML not found"),
    "general probe and a declared probe name": (
        lambda c, d, t: c.update(general={"tasks": ["nyt_cloze", task_yaml(t, name="nyt_cloze")]}),
        "general.tasks[1]: task 'nyt_cloze' is declared twice"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_is_one_line_before_any_work(case, toy_data, write_config, cli, tmp_path, empty_cache):
    change, message = HOSTILE[case]
    cfg = tiny_config(toy_data)
    folder = tmp_path / "yamls"
    folder.mkdir()
    change(cfg, toy_data, folder)
    out = tmp_path / "out"
    code, _, err = cli("run", write_config(cfg), "--output", out)
    assert code == 2 and message in one_line(err), err
    assert not out.exists()


def test_a_head_lr_equal_to_lr_is_accepted_and_is_the_run_without_it(toy_data, write_config):
    from curlora_bench.config.loading import load_config

    plain, _ = load_config(write_config(tiny_config(toy_data), "a.yaml"))
    cfg = tiny_config(toy_data)
    cfg["train"]["head_lr"] = cfg["train"]["lr"]
    same, _ = load_config(write_config(cfg, "b.yaml"))
    assert same.identity(same.methods[0], 0) .run_key == plain.identity(plain.methods[0], 0).run_key


def test_a_task_yaml_with_code_tags_says_what_it_will_run(toy_data, write_config, cli, tmp_path, empty_cache):
    """lm-eval's `!function` imports the Python file beside the YAML: the run says which, before it
    is imported (here the module is missing, so the harness then refuses the task in one line)."""
    folder = tmp_path / "[red]tasks"  # printed as it is, not read as console markup
    folder.mkdir()
    path = task_yaml(folder, extra="process_docs: !function helpers.keep_all\n")
    code, out, err = cli("run", write_config(tiny_config(toy_data, general={"tasks": [path]})), "--output",
                         tmp_path / "out")
    said = f"general.tasks[0]: {path} runs Python code when loaded: {folder / 'helpers.py'} (keep_all)"
    assert "".join(said.split()) in "".join(out.split()), out  # the console wraps long paths anywhere
    assert code == 2 and "general.tasks[0]: the harness cannot load it" in one_line(err)


def test_general_scoring_outside_a_git_repository_writes_nothing_to_stderr(tmp_path, monkeypatch, capfd):
    """The harness runs `git describe` for a note in its results (not read here); outside a
    repository git's "fatal: not a git repository" reached the terminal."""
    from curlora_bench.config.experiment import GeneralConfig
    from curlora_bench.run.general import check_general, evaluate_general
    from curlora_bench.sources.models import load_model

    monkeypatch.chdir(tmp_path)
    general = GeneralConfig(tasks=[task_yaml(tmp_path)], limit=None, batch_size=4)
    lm = load_model("tiny-gpt2")
    scores = evaluate_general(lm.model, lm.tokenizer, general, check_general(general))
    assert {s.metric for s in scores} == {"acc"}
    err = capfd.readouterr().err
    assert "git" not in err and "fatal" not in err, err


def test_nul_right_to_left_and_overlong_prompts_run(toy_data, write_config, cli, tmp_path):
    """What is valid runs: NUL and right-to-left text in a prompted task's rows, a template longer
    than `max_length` (the prompt keeps its last tokens), CURLoRA with random C/R."""
    rows = _rows(toy_data, tmp_path, "odd.csv", lambda rows: [
        {**r, "text": ("שלום \u202e" if i % 2 else "nul\x00 ") + r["text"]} for i, r in enumerate(rows)])
    cfg = tiny_config(toy_data, methods=[{"method": "curlora", "rank": 2, "cr": "random"}])
    _prompted(cfg, toy_data, train=rows, prompt="Words: " + "x " * 200 + "{text}\nReversed:", max_new_tokens=4)
    out = tmp_path / "out"
    code, _, err = cli("run", write_config(cfg), "--output", out)
    assert code == 0, err
    assert len(list(out.glob("curlora*/seed-0/summary.json"))) == 1, list(out.iterdir())
