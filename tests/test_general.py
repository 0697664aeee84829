"""General ability (`general:`): lm-evaluation-harness tasks scored in memory before the first
stage and after every stage, equal to `lm_eval.simple_evaluate` run directly on the same model
and task YAML; hub tasks over local copies of their data; one-line errors; report rows and
`report --forgetting general`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import crashed_and_resumed, cut_to, tiny_config

pytest.importorskip("lm_eval")

RECORDS = "records.jsonl"

# a hidden multiple-choice task: written here, data as a local jsonl (brier_score: a continuous
# metric, so a change of the model shows in it even on a handful of items)
HIDDEN_ROWS = [
    ("The cat sat on the", ["mat", "moon", "idea"], 0), ("Water is", ["wet", "dry", "loud"], 0),
    ("The sun rises in the", ["west", "east", "sea"], 1), ("One plus one is", ["two", "five", "blue"], 0),
    ("Birds can", ["swim", "fly", "read"], 1), ("Snow is", ["hot", "cold", "green"], 1),
    ("A week has seven", ["days", "cats", "roads"], 0), ("Fish live in", ["trees", "water", "fire"], 1),
]


def hidden_task(folder: Path) -> Path:
    data = folder / "hidden.jsonl"
    data.write_text("".join(json.dumps({"context": c, "choices": ch, "label": y}) + "\n" for c, ch, y in HIDDEN_ROWS))
    path = folder / "hidden_mc.yaml"
    path.write_text(yaml.safe_dump({
        "task": "hidden_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{context}}",
        "doc_to_choice": "choices", "doc_to_target": "{{label}}",
        "metric_list": [{"metric": m, "aggregation": m if m == "brier_score" else "mean",
                         "higher_is_better": m != "brier_score"} for m in ("acc", "acc_norm", "brier_score")]}))
    return path


def direct(model, tokenizer, task, batch_size: int = 4, limit=None) -> dict[str, dict[str, float]]:
    """`lm_eval.simple_evaluate` run directly: task -> metric -> value."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from curlora_bench.run.general import offline

    with offline():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        res = lm_eval.simple_evaluate(model=lm, tasks=[task] if not isinstance(task, list) else task, limit=limit,
                                      bootstrap_iters=0, log_samples=False,
                                      task_manager=TaskManager(include_defaults=False))
    return {t: {k.split(",")[0]: v for k, v in r.items() if "," in k and "_stderr" not in k}
            for t, r in res["results"].items()}


def general_records(folder: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for line in (folder / RECORDS).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("general"):
            out.setdefault(rec["stage"], {})[rec["metric"]] = rec["value"]
    return out


@pytest.fixture(scope="module")
def general_run(toy_data, tmp_path_factory):
    """A tiny 2-task run (LoRA, CURLoRA) with the hidden task in `general:`; a hook beside the
    run's own evaluation calls lm_eval directly on the same model after every stage."""
    from curlora_bench.cli import main
    from curlora_bench.run import recipe

    tmp = tmp_path_factory.mktemp("general")
    task = hidden_task(tmp)
    cfg = tiny_config(toy_data, general={"tasks": [str(task)], "limit": None, "batch_size": 4})
    cfg["train"]["lr"] = 2e-2
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    seen: dict[tuple[str, int], dict] = {}
    own = recipe.general_ability

    def hooked(state, ledger, stage):
        seconds = own(state, ledger, stage)
        seen[(state.method.display_label, stage.number)] = direct(state.model, state.prepared._lm.tokenizer, str(task))
        return seconds

    out = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe, "general_ability", hooked)
        mp.setattr(sys, "argv", ["curlora-bench", "run", str(path), "--output", str(out)])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
    assert (out / "lora-r2" / "seed-0" / "summary.json").is_file()
    return path, task, out, seen


def test_stage_zero_equals_lm_eval_on_the_base_model(general_run):
    from curlora_bench.sources.models import load_model

    _, task, out, _ = general_run
    lm = load_model("tiny-gpt2")
    expected = direct(lm.model, lm.tokenizer, str(task))["hidden_mc"]
    for label in ("lora-r2", "curlora-r2"):
        assert general_records(out / label / "seed-0")[0] == expected


@pytest.mark.parametrize("label", ["lora-r2", "curlora-r2"])
def test_every_stage_equals_lm_eval_on_the_model_after_it(general_run, label):
    _, _, out, seen = general_run
    recs = general_records(out / label / "seed-0")
    assert sorted(recs) == [0, 1, 2]
    for stage in (1, 2):
        assert recs[stage] == seen[(label, stage)]["hidden_mc"]
    # the adapter is in effect: the trained model scores otherwise than the base model
    assert recs[2]["brier_score"] != recs[0]["brier_score"]
    summary = json.loads((out / label / "seed-0" / "summary.json").read_text())
    assert summary["general"]["hidden_mc"]["acc"] == [recs[s]["acc"] for s in (0, 1, 2)]
    assert all(s["general_seconds"] > 0 for s in summary["stages"])
    zero = [json.loads(x) for x in (out / label / "seed-0" / RECORDS).read_text().splitlines()]
    assert all(r.get("measured_once") for r in zero if r.get("general") and r["stage"] == 0)


def test_report_rows_and_forgetting_general(general_run, cli):
    _, _, out, _ = general_run
    code, text, err = cli("report", out, "--draws", "20", "--forgetting", "general")
    assert code == 0, err
    for metric in ("acc", "acc_norm", "brier_score"):
        for when in ("before", "after", "drop (before − after)"):
            assert f"| General ability (hidden_mc, {metric}) {when} |" in text
    assert "frontiers on general-ability drop" in text and "general-ability drop |" in text
    code, js, err = cli("report", out, "--format", "json", "--draws", "0", "--forgetting", "tasks")
    assert code == 0, err
    assert json.loads(js)["tradeoff"]["forgetting"] == "tasks"


def test_forgetting_general_without_general_runs_is_one_line(general_run, cli, tmp_path):
    from curlora_bench.store.folders import find_runs

    _, _, out, _ = general_run
    runs = find_runs([out], [])
    assert all(r.summary.general for r in runs)
    # a run folder without general ability: a copy with its summary's `general` dropped
    import shutil

    copy = tmp_path / "plain"
    shutil.copytree(out, copy)
    for p in copy.glob("*/seed-0/summary.json"):
        data = json.loads(p.read_text())
        data["general"] = None
        p.write_text(json.dumps(data))
    code, _, err = cli("report", copy, "--forgetting", "general")
    assert code == 2 and "--forgetting general: no run measured general ability" in err
    assert len(err.strip().splitlines()) == 1


def test_a_killed_run_resumes_with_identical_general_records(general_run, tmp_path, cli, monkeypatch):
    path, _, whole, _ = general_run
    single = cut_to(path, yaml.safe_load(path.read_text())["methods"][0], tmp_path)
    out = tmp_path / "killed"
    crashed_and_resumed(cli, monkeypatch, single, out, 4)  # killed at the first step of stage 2
    assert (out / "lora-r2" / "seed-0" / RECORDS).read_text() == (whole / "lora-r2" / "seed-0" / RECORDS).read_text()


def test_general_set_changes_the_identity_unset_keeps_it(toy_data):
    from curlora_bench.config.experiment import ExperimentConfig
    from curlora_bench.core.parse import from_dict

    plain = from_dict(ExperimentConfig, tiny_config(toy_data), "")
    with_general = from_dict(ExperimentConfig, tiny_config(toy_data, general={"tasks": ["nyt_cloze"]}), "")
    a, b = plain.identity(plain.methods[0], 0), with_general.identity(with_general.methods[0], 0)
    assert a.run_key != b.run_key and "general" not in a.settings and b.settings["general"]["tasks"] == ["nyt_cloze"]


# ---- hub task names on local copies of their data (the harness's own configs and processing) -------

HUB_FIXTURES = {
    "hellaswag": ("validation", [{"ind": i, "activity_label": "Cooking", "ctx_a": "A man cuts onions on a board.",
                                  "ctx_b": "he", "ctx": "A man cuts onions on a board. he",
                                  "endings": ["puts them in a pan.", "flies away [title] now.", "sings loudly.",
                                              "eats the knife."],
                                  "source_id": "x", "split": "val", "split_type": "indomain", "label": str(i % 4)}
                                 for i in range(4)]),
    "arc_challenge": ("test", [{"id": f"q{i}", "question": "Which of these is a liquid?",
                                "choices": {"text": ["rock", "water", "wood", "iron"], "label": ["A", "B", "C", "D"]},
                                "answerKey": "ABCD"[i % 4]} for i in range(4)]),
    "winogrande": ("validation", [{"sentence": "The trophy did not fit in the suitcase because the _ was too big.",
                                   "option1": "trophy", "option2": "suitcase", "answer": str(1 + i % 2)}
                                  for i in range(4)]),
}


def test_hub_tasks_over_local_copies_equal_the_harness_own_config(tmp_path):
    """`{task: hellaswag, data_files: {validation: ...}}` (and ARC-Challenge, WinoGrande) scores
    the harness's own task (its prompt, its process_docs) on the local rows: equal to lm_eval run
    on a YAML that includes the harness's file and points it at the same rows."""
    from curlora_bench.config.experiment import GeneralConfig
    from curlora_bench.run.general import check_general, evaluate_general, task_manager
    from curlora_bench.sources.models import load_model

    entries, yamls = [], []
    manager = task_manager(True)
    for name, (split, rows) in HUB_FIXTURES.items():
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        entries.append({"task": name, "data_files": {split: str(data)}})
        own = yaml.safe_dump({"include": str(manager.task_index[name].yaml_path), "task": name, "dataset_path": "json",
                              "dataset_name": None, "dataset_kwargs": {"data_files": {split: str(data)}},
                              **{k: (split if k.startswith(split[:4]) else None)
                                 for k in ("training_split", "validation_split", "test_split")},
                              "fewshot_split": None})
        (tmp_path / f"{name}_own.yaml").write_text(own)
        yamls.append(str(tmp_path / f"{name}_own.yaml"))
    general = GeneralConfig(tasks=entries, limit=None, batch_size=4)
    specs = check_general(general)
    lm = load_model("tiny-gpt2")
    got: dict[str, dict[str, float]] = {}
    for s in evaluate_general(lm.model, lm.tokenizer, general, specs):
        got.setdefault(s.task, {})[s.metric] = s.value
    assert set(got) == set(HUB_FIXTURES) and set(got["hellaswag"]) == {"acc", "acc_norm"}
    assert set(got["winogrande"]) == {"acc"}
    assert got == direct(lm.model, lm.tokenizer, yamls)


# ---- one line, before anything is written --------------------------------------------------------

@pytest.mark.parametrize(("general", "message"), [
    ({"tasks": ["nyt_cloze", "helaswag"]}, "general.tasks[1]: unknown harness task 'helaswag'"),
    ({"tasks": []}, "general.tasks: give at least one harness task"),
    ({"tasks": ["nyt_cloze"], "limit": 0}, "general.limit: "),
    ({"tasks": ["nyt_cloze"], "num_fewshot": -1}, "general.num_fewshot: "),
    ({"tasks": ["nyt_cloze"], "batch_size": 0}, "general.batch_size: "),
    ({"tasks": ["missing.yaml"]}, "general.tasks[0]: task YAML not found: missing.yaml"),
    ({"tasks": [{"task": "hellaswag", "data_files": {"dev": "x.jsonl"}}]}, "general.tasks[0].data_files.dev: not a split"),
    ({"tasks": [{"task": "hellaswag", "data_files": {"validation": "nope.jsonl"}}]},
     "general.tasks[0].data_files.validation: file not found: nope.jsonl"),
    ({"tasks": ["nyt_cloze", "nyt_cloze"]}, "general.tasks[1]: 'nyt_cloze' is listed twice"),
])
def test_bad_general_is_one_line_and_nothing_is_written(general, message, toy_data, write_config, cli, tmp_path,
                                                      empty_cache):
    path = write_config(tiny_config(toy_data, general=general))
    out = tmp_path / "out"
    code, _, err = cli("run", path, "--output", out)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_missing_lm_eval_is_one_line_before_anything_is_written(toy_data, write_config, cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed: find_spec says None
    path = write_config(tiny_config(toy_data, general={"tasks": ["nyt_cloze"]}))
    out = tmp_path / "out"
    code, _, err = cli("run", path, "--output", out)
    assert code == 2 and "general: lm-evaluation-harness is not installed: pip install 'curlora-bench[general]'" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_general_ability_before_after_drop_by_hand():
    from curlora_bench.core.metrics import general_ability, general_primary

    g = {"a": {"acc": [0.5, 0.4, 0.3], "acc_norm": [0.6, 0.5, None]}, "b": {"acc": [0.8, None, 0.7]}}
    assert general_primary(["acc", "acc_norm"]) == "acc_norm" and general_primary(["brier_score"]) == "brier_score"
    assert general_ability(g, "drop", "a", "acc") == pytest.approx(0.2)
    assert general_ability(g, "after", "a", "acc_norm") == 0.5  # the last stage that measured it
    # the average: a's acc_norm (0.6 -> 0.5) and b's acc (0.8 -> 0.7)
    assert general_ability(g, "before") == pytest.approx(0.7) and general_ability(g, "drop") == pytest.approx(0.1)
    assert general_ability(None, "drop") is None


def test_the_harness_draws_no_progress_bars_other_text_still_shows(tmp_path, capsys):
    from curlora_bench.config.experiment import GeneralConfig
    from curlora_bench.run.general import evaluate_general, quiet, task_specs
    from curlora_bench.sources.models import load_model

    lm = load_model("tiny-gpt2")
    general = GeneralConfig(tasks=[str(hidden_task(tmp_path))], limit=None, batch_size=4)
    scores = evaluate_general(lm.model, lm.tokenizer, general, task_specs(general))
    assert {s.metric for s in scores} == {"acc", "acc_norm", "brier_score"}
    with quiet():
        print("  3%|▎         | 1/24 [00:00<00:01, 12.1it/s]\rnot a bar: kept", end="", file=sys.stderr)
    err = capsys.readouterr().err
    assert "it/s" not in err and "%|" not in err
    assert err == "not a bar: kept\n"
