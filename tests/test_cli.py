"""The CLI end to end on tiny models with CSV tasks in a temp dir."""

from __future__ import annotations

import json

import pytest

from curlora_bench.store.schema import read_records
from tests.conftest import tiny_config


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_run_and_report(toy_data, write_config, tmp_path, cli, model):
    out = tmp_path / "res"
    code, stdout, stderr = cli("run", write_config(tiny_config(toy_data, model)), "--output", out)
    assert code == 0, stderr
    assert "Forgetting table" in stdout
    assert (out / "config.yaml").is_file() and (out / "report.md").is_file()
    for label, params in (("lora-r2", None), ("curlora-r2", 4)):
        run = out / label / "seed-0"
        recs = read_records(run / "records.jsonl")
        acc = [r for r in recs if r.metric == "accuracy"]
        ppl = [r for r in recs if r.metric == "perplexity"]
        assert [(r.stage, r.task) for r in acc] == [(1, "pairs"), (2, "pairs"), (2, "polarity")]
        assert [r.stage for r in ppl] == [0, 1, 2]
        assert all(r.protocol["window"] == 128 for r in ppl)
        summary = json.loads((run / "summary.json").read_text())
        A = summary["score_matrix"]
        assert A[0][1] is None and all(0 <= v <= 1 for v in (A[0][0], A[1][0], A[1][1]))
        assert summary["perplexity"]["initial"] == ppl[0].value
        if params:
            assert summary["trainable_parameters"] == params * summary["adapted_modules"]
        assert summary["versions"]["torch"]
    code, md, _ = cli("report", out)
    assert code == 0
    for row in ("Initial perplexity", "pairs accuracy (after pairs)", "polarity accuracy (after polarity)",
                "pairs accuracy (after polarity)", "Final perplexity", "Trainable parameters"):
        assert row in md
    assert "lora-r2" in md.splitlines()[0]
    for fmt in ("csv", "latex", "json"):
        code, text, _ = cli("report", out, "--format", fmt)
        assert code == 0 and "curlora-r2" in text
    code, _, _ = cli("report", out, "--format", "json", "--out", tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert rows[0]["row"] == "Initial perplexity"


def test_seeds_give_mean_and_std(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data, methods=[{"method": "curlora", "rank": 2}], seeds=[0, 1], perplexity=None)
    code, _, err = cli("run", write_config(cfg), "--output", tmp_path / "o")
    assert code == 0, err
    code, md, _ = cli("report", tmp_path / "o")
    assert "±" in md and "2 seed(s)" in md
    data = json.loads(cli("report", tmp_path / "o", "--format", "json")[1])
    cell = data["rows"][1]["cells"]["curlora-r2"]  # row 0 (perplexity) is empty here
    assert cell["n"] == 2 and len(cell["ci95"]) == 2


def test_bad_input_is_one_line_exit_2(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data)
    cfg["train"]["lr"] = -1
    code, out, err = cli("run", write_config(cfg))
    assert code == 2
    assert "train.lr: must be > 0" in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_listing_commands(cli):
    for cmd, needle in (("models", "tiny-gpt2"), ("tasks", "mrpc"), ("methods", "curlora")):
        code, out, _ = cli(cmd)
        assert code == 0 and needle in out


def test_paper_protocol_runs_and_is_recorded(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data, protocol="paper", methods=[{"method": "curlora", "rank": 2}])
    code, _, err = cli("run", write_config(cfg), "--output", tmp_path / "p")
    assert code == 0, err
    s = json.loads((tmp_path / "p" / "curlora-r2" / "seed-0" / "summary.json").read_text())
    assert s["protocol"] == "paper"
    # one window over the first max_length tokens
    assert s["perplexity"]["protocol"]["window"] == 64 and s["perplexity"]["protocol"]["max_tokens"] == 64


def test_run_into_unwritable_output(toy_data, write_config, tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("run", write_config(tiny_config(toy_data)), "--output", blocker / "sub")
    assert code == 2 and "cannot write" in err


@pytest.mark.slow
def test_tasks_command_shows_cards(cli):
    from curlora_bench.sources.assets import ensure, is_ready
    from curlora_bench.sources.tasks import TASKS

    embedded = sorted({t.asset for _, t in TASKS.items() if t.format == "embedded"})
    if not all(is_ready(a) for a in embedded):  # a cold cache: the card names the command that fills it
        code, out, _ = cli("tasks")
        assert code == 0 and "(sizes after `curlora-bench assets fetch" in out
        for asset in embedded:
            ensure(asset)
    code, out, _ = cli("tasks")
    assert code == 0
    assert "majority baseline" in out and "word-overlap baseline" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("sentence1,sentence2,lbl\na,b,1\n", "missing label column 'label'"),
        ("sentence1,label\na,1\n", "missing text column 'sentence2'"),
        ("sentence1,sentence2,label\na,b,1\nc,d,7\n", "row 2: label 7 outside 0..1"),
        ("sentence1,sentence2,label\na,b,yes\n", "row 1: label 'yes' in column 'label' is not an integer"),
    ],
)
def test_bad_data_file_names_file_and_row(toy_data, write_config, tmp_path, cli, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    cfg = tiny_config(toy_data)
    cfg["tasks"][0]["train"] = str(bad)
    cfg["tasks"][0]["num_classes"] = 2
    code, out, err = cli("run", write_config(cfg), "--output", tmp_path / "o")
    assert code == 2, out
    assert message in err and str(bad) in err and "Traceback" not in err


def test_missing_data_file(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data)
    cfg["tasks"][1]["eval"] = str(tmp_path / "nope.csv")
    code, _, err = cli("run", write_config(cfg), "--output", tmp_path / "o")
    assert code == 2 and "tasks[1].eval: data file not found" in err
