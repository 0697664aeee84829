"""`report` on what it is given: a run reached twice counted once, two different files for one run
refused, hostile options and damaged run files each one line; `scripts/publish.sh` on a
half-written run."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import (
    ROOT,
    one_line,
)

PUBLISHED = ROOT / "results" / "published" / "sweep"

# ---- report: runs by identity, not by path ----------------------------------------------------

@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The published sweep's report, reached once."""
    from curlora_bench.analysis.report import render
    from curlora_bench.store.folders import find_runs

    runs = find_runs([PUBLISHED])
    return len(runs), render(runs, "md")


@pytest.mark.parametrize("spelling", ["dotdot", "symlink", "copy"])
def test_report_counts_a_run_reached_twice_once(spelling, alone, tmp_path, cli):
    if spelling == "dotdot":
        again = PUBLISHED / ".." / PUBLISHED.name
    elif spelling == "symlink":
        again = tmp_path / "link"
        again.symlink_to(PUBLISHED, target_is_directory=True)
    else:
        again = tmp_path / "copy"
        shutil.copytree(PUBLISHED, again, ignore=shutil.ignore_patterns("*.png"))
    code, out, err = cli("report", PUBLISHED, again)
    assert code == 0, err
    assert out == alone[1]  # every point n = 3, not 6: the same intervals
    note = one_line(err)
    assert note.startswith(f"note: {alone[0]} runs reached twice, counted once: ") and str(again) in note


def test_report_refuses_two_different_files_for_one_run(tmp_path, cli):
    copy = tmp_path / "copy"
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns("*.png"))
    summary = sorted(copy.glob("*/seed-0/summary.json"))[0]
    data = json.loads(summary.read_text())
    data["wall_seconds"] += 1.0  # a rerun of the same run: the same identity, another file
    summary.write_text(json.dumps(data, indent=2))
    code, _, err = cli("report", PUBLISHED, copy)
    assert code == 2
    line = one_line(err)
    assert str(summary) in line and str(PUBLISHED / summary.relative_to(copy)) in line
    assert "different files for the same run" in line and f"{data['label']} seed 0" in line


@pytest.mark.parametrize("damage", ["a row missing", "a row too short", "a row too long"])
def test_report_on_a_wrongly_shaped_summary_is_one_line(damage, tmp_path, cli):
    run = tmp_path / "x" / "lora-r8" / "seed-0"
    shutil.copytree(sorted(PUBLISHED.glob("*/seed-0"))[0], run)
    data = json.loads((run / "summary.json").read_text())  # schema 2: renamed when read
    if damage == "a row missing":
        data["accuracy_matrix"] = data["accuracy_matrix"][:-1]
    elif damage == "a row too short":
        data["accuracy_matrix"][-1] = data["accuracy_matrix"][-1][:1]
    else:
        data["accuracy_matrix"][0] = [*data["accuracy_matrix"][0], 0.5]
    (run / "summary.json").write_text(json.dumps(data))
    code, _, err = cli("report", tmp_path / "x")
    assert code == 2
    line = one_line(err)
    assert str(run / "summary.json") in line and "score_matrix" in line and "expected 3 x 3 (3 tasks)" in line

# ---- report: hostile options and damaged run files ------------------------------------------------

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
    "accuracy 7.0 in a summary": (lambda r: _summary(r, lambda d: d["score_matrix"][0].__setitem__(0, 7.0)), [],
                                  "score_matrix[0][0]: 7.0 is not a score in [0, 1]"),
    "accuracy -0.5 in a summary": (lambda r: _summary(r, lambda d: d["score_matrix"][1].__setitem__(1, -0.5)), [],
                                   "score_matrix[1][1]: -0.5 is not a score in [0, 1]"),
    "NaN accuracy in a summary": (lambda r: _summary(r, lambda d: d["score_matrix"][1].__setitem__(0, float("nan"))),
                                  [], "score_matrix[1][0]: expected a number, got nan"),
    "a baseline of 2 in a summary": (lambda r: _summary(r, lambda d: d["baseline"].__setitem__("pairs", 2)),
                                     [], "baseline.pairs: 2.0 is not a score in [0, 1]"),
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
