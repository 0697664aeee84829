"""Built-in task sequences: loading and expansion into tasks/orders, errors, the `sequences`
command, and the offline long sequence's embedded builders (sizes, disjoint splits, no text
that a drift measure reads)."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from curlora_bench.config.loading import load_config
from curlora_bench.sources.sequences import SEQUENCES
from curlora_bench.sources.tasks import TASKS
from curlora_bench.sources.tasks.baselines import naive_bayes_accuracy


def _config(write_config, **extra):
    cfg = {"name": "s", "model": "tiny-gpt2", "methods": [{"method": "lora", "rank": 2}], **extra}
    return write_config(cfg)


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_every_sequence_loads_as_its_tasks_and_orders(name, write_config):
    seq = SEQUENCES.get(name)
    assert len(seq.tasks) >= 2 and seq.data in ("embedded", "hub", "files", "embedded + hub")
    cfg, _ = load_config(_config(write_config, sequence=name))
    first = seq.orders[next(iter(seq.orders))]
    assert [t.name for t in cfg.tasks] == first
    if len(seq.orders) > 1:
        assert cfg.orders == list(seq.orders.values())
    for order, tasks in seq.orders.items():  # one order: its tasks as listed, no orders
        one, _ = load_config(_config(write_config, sequence=name, order=order))
        assert [t.name for t in one.tasks] == tasks and one.orders is None


def test_offline_long_has_five_tasks_or_more_in_three_orders():
    for name in ("offline-long", "offline-long-prompt"):
        seq = SEQUENCES.get(name)
        assert len(seq.tasks) >= 5 and len(seq.orders) == 3 and seq.data == "embedded"
        assert len({tuple(o) for o in seq.orders.values()}) == 3
        assert set(seq.card) == set(seq.tasks)
    prompted = SEQUENCES.get("offline-long-prompt")
    assert all(TASKS.get(t).task_kind.name == "prompted" for t in prompted.tasks)
    plain = SEQUENCES.get("offline-long")
    assert [[t + "-prompt" for t in o] for o in plain.orders.values()] == list(prompted.orders.values())


def test_a_sequence_run_is_the_run_of_its_tasks(write_config):
    """`sequence:` adds nothing to a run's identity: the run key is the written-out config's."""
    seq = SEQUENCES.get("offline-long")
    by_name, _ = load_config(_config(write_config, sequence="offline-long", order=2))
    written, _ = load_config(_config(write_config, tasks=seq.orders["2"]))
    a = by_name.identity(by_name.methods[0], 0)
    b = written.identity(written.methods[0], 0)
    assert a.run_key == b.run_key and "sequence" not in a.settings and "order" not in a.settings
    every, _ = load_config(_config(write_config, sequence="offline-long"))
    first, _ = load_config(_config(write_config, sequence="offline-long", order=1))
    assert every.identity(every.methods[0], 0).run_key == first.identity(first.methods[0], 0).run_key


def test_order_list_and_set_override(write_config):
    path = _config(write_config, sequence="offline-long", order=[3, "1"])
    cfg, _ = load_config(path)
    seq = SEQUENCES.get("offline-long")
    assert cfg.orders == [seq.orders["3"], seq.orders["1"]]
    cfg, _ = load_config(_config(write_config, sequence="offline-long"), ["order=2"])
    assert [t.name for t in cfg.tasks] == seq.orders["2"]
    cfg, _ = load_config(write_config({"name": "s", "methods": [{"method": "lora"}]}),
                         ["sequence=offline-long-prompt", "order=3"])
    assert [t.name for t in cfg.tasks] == SEQUENCES.get("offline-long-prompt").orders["3"]


@pytest.mark.parametrize("extra, message", [
    ({"sequence": "nope"}, "sequence: unknown sequence 'nope' (known: "),
    ({"sequence": 3}, "sequence: expected the name of a built-in sequence, got 3"),
    ({"sequence": "offline-long", "order": 7}, "order: sequence 'offline-long' has no order 7 (its orders: 1, 2, 3"),
    ({"sequence": "offline-long", "order": [1, 9]}, "order[1]: sequence 'offline-long' has no order 9"),
    ({"sequence": "offline-long", "order": [1, 1]}, "order[1]: order 1 is listed twice"),
    ({"sequence": "offline-long", "order": []}, "order: the list is empty"),
    ({"sequence": "offline-long", "tasks": ["rt-sentiment"]}, "sequence: a config gives either `sequence:`"),
    ({"sequence": "offline-long", "orders": 2}, "orders: a sequence brings its own orders"),
    ({"order": 1, "tasks": ["rt-sentiment"]}, "order: selects orders of a built-in `sequence:`"),
])
def test_bad_sequence_keys_are_one_line(extra, message, write_config, cli, tmp_path):
    code, out, err = cli("run", _config(write_config, **extra), "--output", tmp_path / "out")
    assert code == 2 and message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_sequences_command_lists_tasks_orders_and_data(cli):
    code, out, _ = cli("sequences")
    flat = " ".join(out.split())
    assert code == 0
    for name, seq in SEQUENCES.items():
        assert name in flat and f"data: {seq.data}" in flat
        for order, tasks in seq.orders.items():
            assert f"order {order}: {', '.join(tasks)}" in flat
        for task, line in seq.card.items():
            assert f"{task}: {line}" in flat


def test_naive_bayes_on_a_hand_counted_example():
    # class 0 says "bad", class 1 says "good"; "good bad good" has two good words
    train = ["bad bad", "bad movie", "good good", "good movie"]
    assert naive_bayes_accuracy(train, [0, 0, 1, 1], ["good bad good", "bad", "movie good"], [1, 0, 1]) == 1.0
    assert naive_bayes_accuracy(train, [0, 0, 1, 1], ["unseen"], [0]) == 1.0  # a tie goes to the lower class


def test_no_drift_corpus_is_a_task():
    """nyt-editorials and the brown corpus are measured for drift: no task or sequence reads them."""
    builders = {t.builder for _, t in TASKS.items() if t.format == "embedded"}
    assert not builders & {"nyt-editorials", "brown"}
    for _, seq in SEQUENCES.items():
        assert not {"nyt-editorials", "brown"} & set(seq.tasks)


def _built(name):
    from curlora_bench.sources import assets
    from curlora_bench.sources.tasks import EMBEDDED_TASKS

    task = TASKS.get(name)
    return EMBEDDED_TASKS.get(task.builder)(assets.ensure(task.asset))


@pytest.mark.slow
def test_brown_genre_reads_no_text_a_drift_measure_reads():
    from curlora_bench.sources import assets
    from curlora_bench.sources.general import brown_documents
    from curlora_bench.sources.tasks import EMBEDDED_CORPORA
    from curlora_bench.sources.tasks.embedded import BROWN_GENRES, brown_files

    folder = assets.ensure("brown")
    splits = _built("brown-genre")
    files = {p.name: i for i, p in enumerate(brown_files(folder))}
    used = {rid.split("-")[0] for ds in splits.values() for rid in ds["id"]}
    assert all(files[f] % 10 not in (0, 5) for f in used) and len(used) == 400
    train_files = {rid.split("-")[0] for rid in splits["train"]["id"]}
    assert not train_files & {rid.split("-")[0] for rid in splits["eval"]["id"]}  # split by text
    corpus = EMBEDDED_CORPORA.get("brown")(folder)
    probe = {s for doc in brown_documents(folder) for s in doc}
    for ds in splits.values():
        for text in ds["text"]:
            assert text not in corpus and not any(s in probe for s in text.split(". "))
    labels = {rid.split("-")[0]: y for ds in splits.values() for rid, y in zip(ds["id"], ds["label"])}
    assert all(list(BROWN_GENRES)[y] == f[1] for f, y in labels.items())  # the genre is the file's letter
    assert set(splits["eval"]["label"]) == set(range(15))


@pytest.mark.slow
def test_bible_genre_and_paraphrase_never_train_on_each_others_eval_books():
    genre, para = _built("bible-genre"), _built("bible-paraphrase")
    for name, splits in (("genre", genre), ("paraphrase", para)):
        books = {split: {int(v) // 1_000_000 for v in ds["id"]} for split, ds in splits.items()}
        assert all(b % 5 == 0 for b in books["eval"]) and not any(b % 5 == 0 for b in books["train"]), name
    assert set(genre["eval"]["label"]) == set(range(6))


@pytest.mark.slow
def test_amazon_sentiment_splits_by_review():
    splits = _built("amazon-sentiment")
    reviews = {split: {rid.split("_")[0] for rid in ds["id"]} for split, ds in splits.items()}
    assert not reviews["train"] & reviews["eval"]
    assert Counter(splits["train"]["label"]).keys() == {0, 1, 2}


@pytest.mark.slow
def test_offline_long_cards_are_the_built_data():
    """The card of `offline-long` (shown by `sequences` without building anything) is what the
    builders give: sizes, classes, eval majority and the simple baseline."""
    from curlora_bench.sources.tasks.embedded import overlap_baseline

    for task, line in SEQUENCES.get("offline-long").card.items():
        splits = _built(task)
        train, ev = splits["train"], splits["eval"]
        counts = Counter(ev["label"])
        if task == "bible-paraphrase":
            baseline = f"word overlap {overlap_baseline(splits)[1]:.3f}"
        else:
            acc = naive_bayes_accuracy(train["text"], train["label"], ev["text"], ev["label"])
            baseline = f"bag-of-words naive Bayes {acc:.3f}"
        assert line == (f"train {len(train):,}, eval {len(ev):,}; {TASKS.get(task).num_classes} classes; "
                        f"eval majority {max(counts.values()) / len(ev):.3f}; {baseline}"), task
    assert SEQUENCES.get("offline-long-prompt").card == {f"{k}-prompt": v for k, v in
                                                         SEQUENCES.get("offline-long").card.items()}


# O-LoRA's CL_Benchmark layout: <kind>/<dataset>/{train,dev,test}.json (JSON arrays of
# {"label": name, "sentence": pre-formatted text}) and labels.json, as in cmnfriend/O-LoRA
OLORA = {"olora-dbpedia": ("TC/dbpedia", "Title: {i}\nText:  an abstract {i}\n"),
         "olora-amazon": ("SC/amazon", "Title: review {i}\nText: it broke {i}\n"),
         "olora-yahoo": ("TC/yahoo", "Question: why {i}?\nAnswer: because {i}\n"),
         "olora-agnews": ("TC/agnews", "Title: news {i}\nText: a story {i}\n")}


@pytest.fixture
def olora_checkout(tmp_path):
    """A config folder beside a tiny CL_Benchmark with O-LoRA's schema: string labels named in
    each folder's labels.json (in its order), 2 train rows per class and 1 test row per class."""
    import json

    for task, (folder, text) in OLORA.items():
        labels = list(TASKS.get(task).label_map)
        out = tmp_path / "CL_Benchmark" / folder
        out.mkdir(parents=True)
        (out / "labels.json").write_text(json.dumps(labels))
        for split, per_class in (("train", 2), ("test", 1), ("dev", 1)):
            rows = [{"label": lab, "sentence": text.format(i=f"{k}-{j}")} for j in range(per_class)
                    for k, lab in enumerate(labels)]
            (out / f"{split}.json").write_text(json.dumps(rows))
    return tmp_path


def test_olora_standard_orders_and_prompts_are_olora_s():
    seq = SEQUENCES.get("olora-standard")
    name = {t: t.removeprefix("olora-") for t in seq.tasks}
    assert {k: [name[t] for t in v] for k, v in seq.orders.items()} == {
        "1": ["dbpedia", "amazon", "yahoo", "agnews"], "2": ["dbpedia", "amazon", "agnews", "yahoo"],
        "3": ["yahoo", "amazon", "agnews", "dbpedia"]}  # scripts/order_{1,2,3}.sh
    for task in seq.tasks:
        t = TASKS.get(task)
        kind = "SC" if task == "olora-amazon" else "TC"
        labels = list(t.label_map)
        assert t.format == "hub" and t.train == "train" and t.eval == "test"
        assert t.prompt.startswith(f"Task:{kind}\nDataset:{name[task]}\n")
        assert t.prompt.endswith("Choose one from the option.\nOption: " + ", ".join(labels) + " \n{sentence}\nAnswer:")
        assert t.choices == [" " + lab for lab in labels] and list(t.label_map.values()) == list(range(len(labels)))


def test_olora_standard_loads_o_lora_files_through_the_hub_path(olora_checkout, write_config):
    """The pack's tasks read O-LoRA's files as a local dataset folder (`load_dataset(path)`, the
    call a hub id takes), labels by name through label_map, prompts filled from `sentence`."""
    from curlora_bench.sources.tasks.loaders import load_splits

    path = olora_checkout / "exp.yaml"
    path.write_text("name: s\nmodel: tiny-gpt2\nmethods: [{method: lora, rank: 2}]\nsequence: olora-standard\n")
    cfg, _ = load_config(path)
    assert [t.name for t in cfg.tasks] == SEQUENCES.get("olora-standard").orders["1"] and len(cfg.orders) == 3
    for task in cfg.tasks:
        folder = olora_checkout / "CL_Benchmark" / OLORA[task.name][0]
        assert task.path == str(folder)  # resolved against the config's folder
        splits = load_splits(task, None, task.name)
        classes = len(task.choices)
        assert len(splits["train"]) == 2 * classes and len(splits["eval"]) == classes
        assert splits["train"]["label"] == list(range(classes)) * 2
        row = splits["eval"][3]
        assert task.prompt.format(sentence=row["sentence"]).endswith(f"{row['sentence']}\nAnswer:")


def test_a_label_no_label_map_names_is_dropped_and_an_empty_split_named(olora_checkout, write_config):
    import json

    from curlora_bench.core.errors import BenchError
    from curlora_bench.sources.tasks.loaders import load_splits

    task = copy.deepcopy(TASKS.get("olora-agnews"))  # the registry's own stays as shipped
    folder = olora_checkout / "CL_Benchmark" / "TC" / "agnews"
    rows = json.loads((folder / "train.json").read_text())
    (folder / "train.json").write_text(json.dumps([dict(r, label="Sci/Tech") if r["label"] == "World" else r
                                                   for r in rows]))
    task.path = str(folder)
    splits = load_splits(task, None, "tasks[0]")
    assert sorted(set(splits["train"]["label"])) == [1, 2, 3]  # the unnamed label's rows are dropped
    (folder / "train.json").write_text(json.dumps([dict(r, label="Sci/Tech") for r in rows]))
    with pytest.raises(BenchError, match="split is empty"):
        load_splits(task, None, "tasks[0]")


def test_label_map_keys_are_one_kind(write_config, cli, tmp_path):
    task = {"name": "x", "format": "hub", "path": "p", "label_map": {"a": 0, 1: 1}}
    code, _, err = cli("run", _config(write_config, tasks=[task]), "--output", tmp_path / "out")
    assert code == 2 and "tasks[0].label_map: keys are all integers or all label texts" in err


def test_olora_standard_runs_end_to_end_on_the_fixtures(olora_checkout):
    """One order of the pack, trained and scored through the LM head on the tiny model."""
    from curlora_bench.experiment.driver import run_experiment

    path = olora_checkout / "exp.yaml"
    path.write_text("name: s\nmodel: tiny-gpt2\ndevice: cpu\nmethods: [{method: lora, rank: 2}]\n"
                    "sequence: olora-standard\norder: 3\nperplexity: null\n"
                    "train: {epochs: 1, batch_size: 8, max_length: 96, limit: 8}\neval: {batch_size: 16, limit: 4}\n")
    (summary,) = run_experiment(load_config(path)[0], olora_checkout / "out")
    assert summary.status == "complete" and summary.tasks == SEQUENCES.get("olora-standard").orders["3"]
    assert set(summary.zero_shot) == set(summary.tasks)  # prompted: the base model's scores are its baseline
