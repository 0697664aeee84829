"""Reliability, round four: bad input refused before any work (on an empty asset cache), a signal
at any moment of start-up is one line, and the surfaces added last round tried with hostile input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, run_in, tiny_config


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# ---- a signal while the command starts (imports, config, data) ---------------------------------

def _command() -> list[str]:
    script = shutil.which("curlora-bench")  # the console script, as a user starts it
    return [script] if script else [sys.executable, "-m", "curlora_bench"]


def wait_for_handlers(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the child catches SIGTERM: the package's start-up handler is in place (what comes
    before it is Python's own start-up, `site` and its .pth files, which no package can reach)."""
    status = f"/proc/{proc.pid}/status"
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        with open(status) as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.002)
    raise AssertionError("the child never installed a SIGTERM handler")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the child's caught signals from /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.8])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("how", ["script", "module"])
def test_a_signal_during_start_up_is_one_line(toy_data, tmp_path, sig, code, delay, how):
    """SIGINT/SIGTERM while the CLI imports (typer, torch), reads the config or loads data: one line
    and 128 + the signal number, never a traceback, and no results folder left half-made."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(toy_data)))
    cmd = _command() if how == "script" else [sys.executable, "-m", "curlora_bench"]
    if how == "script" and cmd[0] == sys.executable:
        pytest.skip("no console script installed")
    proc = subprocess.Popen([*cmd, "run", str(path), "--output", str(tmp_path / "out")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    wait_for_handlers(proc)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    # a SIGINT racing the interpreter's own shutdown can end the process by the signal after the
    # one line (-2 here, 130 to a shell: the residual on the reliability page), as for `report`
    assert proc.returncode in (code, -sig if sig == signal.SIGINT else code), err
    assert one_line(err).startswith("interrupted"), err


# ---- the legacy `joint` spelling: one rule (config.legacy) -----------------------------------------

LORA = {"method": "lora", "rank": 2}


@pytest.mark.parametrize(("entry", "message"), [
    ({"method": "joint", "adapter": {"method": "joint", "adapter": LORA}},
     "methods[0].adapter.method: a joint entry inside a joint entry"),
    ({"method": "joint", "adapter": {"method": "joint"}}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "adapter": "joint"}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "regime": "sequential", "adapter": LORA}, "methods[0].regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "regime": "sequential"}},
     "methods[0].adapter.regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "train": {"lr": 0.1}}}, "methods[0].adapter.train: set it on the joint"),
    ({"method": "joint", "adapter": {"rank": 2}}, "methods[0].adapter: expected a mapping with a 'method' key"),
    ({"method": "joint", "adapter": LORA, "rank": 4}, "methods[0].rank: unknown key of a joint entry"),
])
def test_a_nested_or_contradictory_joint_is_one_line_naming_the_field(entry, message, toy_data, write_config, cli,
                                                                      tmp_path, empty_cache):
    path = write_config(tiny_config(toy_data, methods=[entry]))
    code, _, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and message in one_line(err), err
    assert not (tmp_path / "out").exists()


def test_the_legacy_joint_reads_alike_in_configs_and_summaries(toy_data, write_config):
    from curlora_bench.config.legacy import unwrap_joint, upgrade_summary
    from curlora_bench.config.loading import load_config

    legacy = {"method": "joint", "label": "j", "train": {"lr": 0.01}, "adapter": {**LORA, "label": "inner"}}
    assert unwrap_joint(legacy, "m") == {**LORA, "regime": "joint", "label": "j", "train": {"lr": 0.01}}
    a, _ = load_config(write_config(tiny_config(toy_data, methods=[legacy]), "a.yaml"))
    b, _ = load_config(write_config(tiny_config(toy_data, methods=[{**LORA, "regime": "joint", "label": "j",
                                                                     "train": {"lr": 0.01}}]), "b.yaml"))
    assert a.identity(a.methods[0], 0) == b.identity(b.methods[0], 0)
    stored = upgrade_summary({"method": legacy})
    assert stored["regime"] == "joint" and stored["method"] == {**LORA, "label": "j", "train": {"lr": 0.01},
                                                                "regime": "joint"}
    assert upgrade_summary({"method": LORA}) == {"method": LORA}  # anything else as it is


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


# ---- a damaged asset cache is found, not trusted ----------------------------------------------------

@pytest.fixture
def fake_model_asset(monkeypatch, tmp_path):
    """An asset whose build writes a small safetensors file (no package to fetch)."""
    import torch
    from safetensors.torch import save_file

    from curlora_bench.sources import assets

    builds = []

    def build(files, out):
        builds.append(out)
        save_file({"w": torch.arange(4096, dtype=torch.float32)}, str(out / "model.safetensors"))
        (out / "config.json").write_text("{}")

    monkeypatch.setitem(assets.ASSETS._loaded(), "fake-model",
                        assets.Asset("fake-model", "model", [], build, "a test model", "none", 0))
    return tmp_path / "cache", builds


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "built-before-manifests"])
def test_a_truncated_cached_model_file_is_found_and_built_again(fake_model_asset, manifest, cli):
    from curlora_bench.sources import assets

    cache, builds = fake_model_asset
    folder = assets.ensure("fake-model", str(cache))
    size = (folder / "model.safetensors").stat().st_size
    assert (folder / assets.MANIFEST).is_file() and dict(assets.verify(str(cache)))["fake-model"] == "ok"
    if not manifest:
        (folder / assets.MANIFEST).unlink()
    _cut(folder / "model.safetensors")
    status = dict(assets.verify(str(cache)))["fake-model"]
    assert status.startswith("damaged: model.safetensors is ") and "assets fetch fake-model" in status, status
    code, out, _ = cli("assets", "verify", "--cache-dir", cache)
    assert code == 1 and "fake-model damaged: model.safetensors" in " ".join(out.split()), out
    code, out, err = cli("assets", "fetch", "fake-model", "--cache-dir", cache)  # found and built again
    assert code == 0 and "asset fake-model: damaged in the cache (model.safetensors is " in " ".join(out.split())
    assert len(builds) == 2 and (folder / "model.safetensors").stat().st_size == size
    assert dict(assets.verify(str(cache)))["fake-model"] == "ok"


def test_a_cached_file_of_the_right_size_but_other_bytes_fails_verify(fake_model_asset):
    from curlora_bench.sources import assets

    cache, _ = fake_model_asset
    folder = assets.ensure("fake-model", str(cache))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert dict(assets.verify(str(cache)))["fake-model"].startswith("damaged: model.safetensors checksum mismatch")


def test_a_local_model_folder_with_cut_weights_is_one_line(tmp_path):
    from curlora_bench.core.errors import BenchError
    from curlora_bench.sources.models import load_model

    lm = load_model("tiny-gpt2")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    _cut(tmp_path / "m" / "model.safetensors")
    with pytest.raises(BenchError, match=r"the weights in .* are damaged"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize("digest", [True, False], ids=["digest", "built-before-digests"])
def test_a_probe_file_cut_short_is_built_again(monkeypatch, tmp_path, digest):
    from curlora_bench.sources import assets, general

    monkeypatch.setitem(assets.ASSETS._loaded(), "fake-data",
                        assets.Asset("fake-data", "data", [], lambda files, out: None, "a test asset", "none", 0))
    items = [{"id": f"x-{i}", "context": f"c {i}", "choices": ["a", "b", "c", "d"], "label": i % 4}
             for i in range(general.PROBE_ITEMS)]
    builds = []
    monkeypatch.setitem(general.PROBES, "nyt_cloze", ("fake-data", lambda folder: builds.append(folder) or items))
    cache = str(tmp_path / "cache")
    general.probe_yaml("nyt_cloze", cache)
    data = tmp_path / "cache" / "general" / "nyt_cloze.jsonl"
    whole = data.read_text()
    general.probe_yaml("nyt_cloze", cache)
    assert len(builds) == 1  # intact: used as it is
    if not digest:
        data.with_name(data.name + ".sha256").unlink()
    data.write_text("".join(whole.splitlines(keepends=True)[:3]))  # cut to 3 items
    general.probe_yaml("nyt_cloze", cache)
    assert len(builds) == 2 and data.read_text() == whole


# ---- report: hostile options and damaged run files ------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy_data):
    """One finished two-method experiment (LoRA, CURLoRA; two stages)."""
    return run_in(tmp_path_factory.mktemp("finished"), tiny_config(toy_data))


@pytest.fixture
def results(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "out")
    return tmp_path / "out"


def _summary(results, change) -> None:
    import json

    path = results / "lora-r2" / "seed-0" / "summary.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _predictions(results, data: bytes) -> None:
    path = results / "lora-r2" / "seed-0" / "predictions.jsonl"
    path.write_bytes(data(path.read_bytes()))


REPORT_CASES = {
    "--margin inf": (None, ["--margin", "inf"], "--margin: must be a finite number, got inf"),
    "--plasticity gain without head-only": (None, ["--plasticity", "gain"], "--plasticity gain: no head-only run"),
    "accuracy 7.0 in a summary": (lambda r: _summary(r, lambda d: d["accuracy_matrix"][0].__setitem__(0, 7.0)), [],
                                  "accuracy_matrix[0][0]: 7.0 is not a score in [0, 1]"),
    "accuracy -0.5 in a summary": (lambda r: _summary(r, lambda d: d["accuracy_matrix"][1].__setitem__(1, -0.5)), [],
                                   "accuracy_matrix[1][1]: -0.5 is not a score in [0, 1]"),
    "NaN accuracy in a summary": (lambda r: _summary(r, lambda d: d["accuracy_matrix"][1].__setitem__(0, float("nan"))),
                                  [], "accuracy_matrix[1][0]: expected a number, got nan"),
    "a baseline of 2 in a summary": (lambda r: _summary(r, lambda d: d["majority_baseline"].__setitem__("pairs", 2)),
                                     [], "majority_baseline.pairs: 2.0 is not a score in [0, 1]"),
    "non-UTF-8 predictions": (lambda r: _predictions(r, lambda b: b + b"\xff\xfe\n"), [],
                              "predictions.jsonl: line "),
    "truncated predictions": (lambda r: _predictions(r, lambda b: b[: len(b) // 2]), [],
                              "predictions.jsonl: line "),
}


@pytest.mark.parametrize("case", REPORT_CASES)
def test_report_on_hostile_options_and_damaged_files_is_one_line(case, results, cli):
    damage, args, message = REPORT_CASES[case]
    if damage:
        damage(results)
    code, out, err = cli("report", results, *args)
    assert code == 2 and message in one_line(err), err


# ---- scripts/publish.sh ---------------------------------------------------------------------------

def test_publish_refuses_a_summary_without_records_and_publishes_the_others(tmp_path):
    src = tmp_path / "my exp 'quoted'"  # spaces and quotes in the names
    runs = [src / "a label" / "seed-0", src / "b" / "seed-0", src / "c" / "seed-0"]
    for run in runs:
        run.mkdir(parents=True)
        (run / "summary.json").write_text("{}")
        (run / "records.jsonl").write_text('{"stage": 0}\n')
    (runs[1] / "records.jsonl").unlink()  # half-written: the summary alone
    (src / "config.yaml").write_text("name: exp\n")
    dst = tmp_path / "pub lished"
    proc = subprocess.run([str(ROOT / "scripts" / "publish.sh"), str(src), str(dst)], capture_output=True, text=True)
    assert proc.returncode == 1 and "published 2 finished run(s)" in proc.stdout
    assert f"error: {runs[1]}: summary.json without records.jsonl" in proc.stderr
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == [
        "a label/seed-0/records.jsonl", "a label/seed-0/summary.json", "c/seed-0/records.jsonl",
        "c/seed-0/summary.json", "config.yaml"]


def test_asset_progress_goes_to_stdout_so_stderr_holds_errors_alone(fake_model_asset, capsys):
    from curlora_bench.sources import assets

    cache, _ = fake_model_asset
    assets.ensure("fake-model", str(cache))
    out = capsys.readouterr()
    assert "asset fake-model: ready in" in " ".join(out.out.split()) and out.err == ""


# ---- --fresh: the set-aside is not cut by a signal that another thread receives ---------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_deferred_block_holds_a_signal_another_thread_receives(sig):
    """With a second thread alive (torch's, a tracker's: every real run has them) the kernel hands a
    process-directed signal to that thread when the main thread blocks it, and CPython ran the
    handler mid-block: the moves of a set-aside were cut between two renames. Now the signal is
    noted and raised once the block is over, every time."""
    import threading

    from curlora_bench.core.errors import Interrupted, signals_deferred, stop_on_signals

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(30,), daemon=True)
    other.start()
    cut, raised = 0, 0
    try:
        for _ in range(20):
            finished = False
            try:
                with stop_on_signals(), signals_deferred():
                    os.kill(os.getpid(), sig)
                    for _ in range(100_000):  # bytecodes at which a handler could run
                        pass
                    finished = True
            except Interrupted as exc:
                raised += exc.signum == sig
            cut += not finished
    finally:
        stop.set()
    assert (cut, raised) == (0, 20)


def contents(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def busy_thread():
    """A second thread keeping a core busy while the test runs (a real run has threads: torch's, a
    tracker's), so the kernel may hand a signal to it rather than to the main thread."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=lambda: [sum(range(1000)) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def signal_at_move(monkeypatch, at: int, sig: int) -> None:
    """This process gets `sig` at the `at`-th rename into a run's `.previous/` (mid set-aside)."""
    replace, moves = os.replace, []

    def counting(a, b, *rest, **kw):
        if ".previous" in str(b) and not str(b).endswith(".previous"):
            moves.append(1)
            if len(moves) == at:
                os.kill(os.getpid(), sig)
        return replace(a, b, *rest, **kw)

    monkeypatch.setattr(os, "replace", counting)


@pytest.mark.parametrize("at", [1, 2, 3])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_the_middle_of_the_set_aside_leaves_every_run_as_it_was(results, cli, monkeypatch, busy_thread,
                                                                           sig, code, at):
    """`run --fresh` on a finished experiment, signalled between two renames of the first run's
    set-aside while another thread keeps a core busy: one line, 130/143, and every run's files
    exactly as they were (nothing left in `.previous/`)."""
    before = contents(results)
    signal_at_move(monkeypatch, at, sig)
    rc, _, err = cli("run", results / "config.yaml", "--output", results, "--fresh")
    assert rc == code, err
    assert one_line(err).startswith("interrupted"), err
    assert contents(results) == before


def test_a_second_signal_during_the_put_back_waits_until_everything_is_back(results, cli, monkeypatch, busy_thread):
    """SIGINT mid set-aside, then SIGTERM as the results are being put back (a second Ctrl-C, a
    supervisor's SIGTERM): the put-back finishes first, then the process ends in one line."""
    from curlora_bench.store import checkpoint

    before = contents(results)
    signal_at_move(monkeypatch, 5, signal.SIGINT)
    restore = checkpoint.restore_previous

    def signalling_restore(run):
        os.kill(os.getpid(), signal.SIGTERM)
        return restore(run)

    monkeypatch.setattr(checkpoint, "restore_previous", signalling_restore)
    rc, _, err = cli("run", results / "config.yaml", "--output", results, "--fresh")
    assert rc in (130, 143) and one_line(err).startswith("interrupted"), err
    assert contents(results) == before


@pytest.fixture(scope="module")
def whole_report(finished, tmp_path_factory):
    """`report --out` of the finished experiment, left alone (what a signalled one must equal)."""
    target = tmp_path_factory.mktemp("whole-report") / "whole.md"
    proc = subprocess.run([sys.executable, "-m", "curlora_bench", "report", str(finished), "--draws", "200",
                           "--out", str(target)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return target.read_text()


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_report_writes_is_one_line_and_no_half_file(finished, whole_report, tmp_path, sig, code,
                                                                  delay):
    """`report --out` signalled while it reads, computes or writes: one line and 130/143; or, when
    it came after the report was written (the interpreter shutting down), exit 0 and no killed
    process. The output file is either absent or whole, never cut."""
    def report(target):
        return subprocess.Popen([sys.executable, "-m", "curlora_bench", "report", str(finished), "--draws", "200",
                                 "--out", str(target)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})

    target = tmp_path / "report.md"
    proc = report(target)
    wait_for_handlers(proc)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished before the signal
        assert target.read_text() == whole_report
        return
    # rarely (about 1 in 40 at 0.5 s) the interpreter re-raises SIGINT on its way out after the line
    # and 130 were decided, so the process reports death by SIGINT, which a shell shows as 130 too
    assert proc.returncode in (code, -sig if sig == signal.SIGINT else code), err
    assert one_line(err).startswith("interrupted"), err
    assert not target.exists() or target.read_text() == whole_report
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.md")]  # no temporary left


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


PROBE_CHILD = """
import sys, time
from curlora_bench.sources import assets, general
assets.ASSETS._loaded()["fake-data"] = assets.Asset("fake-data", "data", [], lambda f, o: None, "t", "none", 0)
def build(folder):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(0.5)  # long enough for the other process to arrive meanwhile
    return [{"id": f"x-{i}", "context": f"c {i}", "choices": ["a", "b", "c", "d"], "label": i % 4}
            for i in range(general.PROBE_ITEMS)]
general.PROBES["nyt_cloze"] = ("fake-data", build)
print(general.probe_yaml("nyt_cloze", sys.argv[1]))
"""


def test_two_processes_preparing_one_probe_on_a_cold_cache_build_it_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", PROBE_CHILD, str(cache), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert log.read_text().splitlines() == ["built"]
    data = cache / "general" / "nyt_cloze.jsonl"
    assert len(data.read_text().splitlines()) == 500 and not list((cache / "general").glob(".*.tmp"))


# ---- a signal during general-ability scoring: one line, and the rerun's records are the same --------

@pytest.fixture(scope="module")
def general_reference(tmp_path_factory, toy_data):
    """An uninterrupted one-method run with a small `general:` task."""
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_experiment

    d = tmp_path_factory.mktemp("general-ref")
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}],
                      general={"tasks": [task_yaml(d)], "limit": None, "batch_size": 4})
    (d / "exp.yaml").write_text(yaml.safe_dump(cfg))
    loaded, _ = load_config(d / "exp.yaml")
    run_experiment(loaded, d / "out")
    return d / "exp.yaml", d / "out"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_general_scoring_is_one_line_and_the_rerun_matches(general_reference, tmp_path, cli,
                                                                          monkeypatch, sig, code):
    from curlora_bench.run import recipe

    path, whole = general_reference
    out = tmp_path / "out"
    own, calls = recipe.general_ability, []

    def signalling(state, ledger, stage):
        calls.append(1)
        if len(calls) == 2:  # scoring after stage 2: stage 1 is checkpointed, stage 2 is in flight
            os.kill(os.getpid(), sig)
        return own(state, ledger, stage)

    monkeypatch.setattr(recipe, "general_ability", signalling)
    rc, _, err = cli("run", path, "--output", out)
    assert rc == code and one_line(err).startswith("interrupted"), err
    rc, stdout, err = cli("run", path, "--output", out)
    assert rc == 0 and "resuming after stage 1/2" in stdout, err
    run = ("lora-r2", "seed-0")
    assert (out.joinpath(*run) / "records.jsonl").read_text() == (whole.joinpath(*run) / "records.jsonl").read_text()
