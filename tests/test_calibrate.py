"""`curlora-bench calibrate`: the search on a plasticity curve with a known answer, and probes that
are ordinary runs, found again when the command is repeated."""

from __future__ import annotations

import pytest
import yaml

from curlora_bench.config.loading import raw_config
from curlora_bench.core.errors import BenchError
from curlora_bench.experiment.calibrate import finished_probes, probe_entry, search
from tests.conftest import tiny_config


def curve(lr: float) -> float:
    """A known plasticity curve: 0.6 at tiny rates, 0.95 at large ones, 0.775 at lr 1e-3."""
    return 0.6 + 0.35 / (1 + 1e-3 / lr)


def test_search_finds_the_rate_of_a_known_curve():
    calls = []
    s = search(lambda lr: calls.append(lr) or curve(lr), start=1e-4, target=0.85, tolerance=0.005,
               bounds=(1e-6, 1.0), max_probes=10)
    # the answer: 0.35 / (1 + 1e-3/lr) = 0.25 -> lr = 1e-3 / 0.4 = 2.5e-3
    assert s.within and abs(curve(s.found) - 0.85) <= 0.005 and s.found == pytest.approx(2.5e-3, rel=0.1)
    assert calls[0] == 1e-4 and len(calls) <= 7 and len(set(calls)) == len(calls)  # no rate measured twice
    down = search(curve, start=1e-1, target=0.7, tolerance=0.005, bounds=(1e-6, 1.0), max_probes=10)
    assert down.within and down.found == pytest.approx(1e-3 / 2.5, rel=0.1)  # 0.35/(1+x) = 0.1 -> lr 4e-4
    once = search(curve, start=1e-3, target=0.775, tolerance=0.01, bounds=(1e-6, 1.0), max_probes=10)
    assert once.within and list(once.probes) == [1e-3]


def test_a_target_out_of_reach_says_the_reach_it_measured():
    s = search(curve, start=1e-3, target=0.99, tolerance=0.005, bounds=(1e-5, 1e-1), max_probes=10)
    assert not s.within and s.found == max(s.probes)  # the closest probe is kept
    lo, hi = s.reach
    assert hi < 0.95 and hi == pytest.approx(curve(max(s.probes)))
    few = search(curve, start=1e-5, target=0.85, tolerance=0.001, bounds=(1e-6, 1.0), max_probes=3)
    assert not few.within and len(few.probes) == 3


def test_the_walk_takes_the_step_asked_and_probes_a_bound_it_would_pass():
    calls = []
    s = search(lambda lr: calls.append(lr) or curve(lr), start=1e-3, target=0.85, tolerance=0.005,
               bounds=(1e-6, 1.0), max_probes=10, step=1.5)
    assert calls[:3] == [1e-3, 1.5e-3, 2.25e-3] and s.within  # 1e-3 x 1.5 x 1.5, then regula falsi
    assert s.found == pytest.approx(2.5e-3, rel=0.1)
    # the answer (2.5e-3) lies past the upper bound: the bound is probed, then the search ends there
    capped = search(curve, start=1e-3, target=0.85, tolerance=0.005, bounds=(1e-6, 2e-3), max_probes=10)
    assert list(capped.probes) == [1e-3, 2e-3] and not capped.within and capped.found == 2e-3
    with pytest.raises(BenchError, match="--step: 1 is not above 1"):
        search(curve, start=1e-3, target=0.85, tolerance=0.005, bounds=(1e-6, 1.0), max_probes=10, step=1.0)


def test_rates_measured_before_cost_no_probe_and_bracket_at_once():
    calls = []
    measure = lambda lr: calls.append(lr) or curve(lr)  # noqa: E731
    # finished runs at 1e-3 (0.775) and 1e-2 (0.918) bracket 0.85: regula falsi between them, not the start
    s = search(measure, start=1e-5, target=0.85, tolerance=0.005, bounds=(1e-6, 1.0), max_probes=4,
               known={1e-3: curve(1e-3), 1e-2: curve(1e-2)})
    assert calls and all(1e-3 < lr < 1e-2 for lr in calls) and 1e-5 not in s.probes
    assert s.within and s.found == pytest.approx(2.5e-3, rel=0.1) and len(calls) <= 2  # the known count as probes
    calls.clear()
    spent = search(measure, start=1e-5, target=0.85, tolerance=0.005, bounds=(1e-6, 1.0), max_probes=2,
                   known={1e-3: curve(1e-3), 1e-2: curve(1e-2)})
    assert calls == [] and not spent.within and spent.found == 1e-2  # closest of the two
    calls.clear()  # a finished rate within the tolerance is the answer: nothing runs
    hit = search(measure, start=1e-5, target=0.78, tolerance=0.01, bounds=(1e-6, 1.0), max_probes=5,
                 known={1e-3: curve(1e-3), 1e-2: curve(1e-2)})
    assert calls == [] and hit.within and hit.found == 1e-3
    # known rates on one side only: the walk starts where the entry says, and brackets with them
    one = search(measure, start=3e-3, target=0.85, tolerance=0.002, bounds=(1e-6, 1.0), max_probes=5,
                 known={1e-4: curve(1e-4)})
    assert calls[0] == 3e-3 and one.within and 1e-4 in one.probes


def test_a_probe_is_labelled_as_a_grid_point_would_be():
    assert probe_entry({"method": "lora", "rank": 8}, 1e-3) == {"method": "lora", "rank": 8, "train": {"lr": 1e-3}}
    assert probe_entry({"method": "lora", "label": "mine", "train": {"epochs": 2}}, 3e-4) == \
        {"method": "lora", "label": "mine-lr3e-4", "train": {"epochs": 2, "lr": 3e-4}}
    assert probe_entry("curlora", 0.01) == {"method": "curlora", "train": {"lr": 0.01}}


def test_calibrate_runs_probes_as_ordinary_runs_and_resumes(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])
    path = write_config(cfg)
    out, frag = tmp_path / "cal", tmp_path / "found.yaml"
    code, _, err = cli("calibrate", path, "--target", "0.999", "--max-probes", "2", "--output", out,
                       "--write", frag)
    assert code == 1 and "lora-r2: target 0.999 ± 0.01 not reached in 2 probe(s)" in err and "Traceback" not in err
    runs = sorted(p.parent.parent.name for p in out.glob("*/seed-0/summary.json"))
    assert runs == ["lora-r2-lr1e-3", "lora-r2-lr3.16e-3"]  # the config's rate, then one step up
    text = frag.read_text()
    assert "not reached" in text and yaml.safe_load(text)["methods"][0]["train"]["lr"] in (1e-3, 3.16e-3)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-0/summary.json")}
    code, _, _ = cli("calibrate", path, "--target", "0.999", "--max-probes", "2", "--output", out, "--write", frag)
    assert code == 1 and {p: p.stat().st_mtime_ns for p in out.glob("*/seed-0/summary.json")} == before  # resumed
    # a search from another start finds both rates measured (by identity), for the seeds it probes
    raw, entry = raw_config(path, []), cfg["methods"][0]
    known = finished_probes(raw, entry, [0], path.parent, out)
    assert sorted(known) == [1e-3, 3.16e-3] and all(0 <= p <= 1 for p in known.values())
    assert finished_probes(raw, entry, [0, 1], path.parent, out) == {}  # seed 1 never ran
    assert finished_probes(raw_config(path, ["train.max_length=24"]), entry, [0], path.parent, out) == {}
    code, out_text, _ = cli("calibrate", path, "--target", "0.999", "--max-probes", "3", "--output", out,
                            "--write", frag, "--set", "methods=[{method: lora, rank: 2, train: {lr: 1.0e-2}}]")
    runs = sorted(p.parent.parent.name for p in out.glob("*/seed-0/summary.json"))
    assert code == 1 and "lr 3.16e-3 -> plasticity" in out_text and "finished runs in" in out_text
    assert runs == ["lora-r2-lr0.01", "lora-r2-lr1e-3", "lora-r2-lr3.16e-3"]  # one new probe, the two known free


@pytest.mark.parametrize("args, message", [
    (["--target", "1.5"], "--target: 1.5 is not a plasticity between 0 and 1"),
    (["--target", "0.8", "--method", "nope"], "--method 'nope': no such method"),
    (["--target", "0.8", "--seeds", "a,b"], "--seeds 'a,b': expected integers"),
    (["--target", "0.8", "--lr-range", "1", "0.1"], "--lr-range: 1 is not below 0.1"),
    (["--target", "0.8", "--step", "0.5"], "--step: 0.5 is not above 1"),
])
def test_bad_calibrate_input_is_one_line(toy_data, write_config, tmp_path, cli, args, message):
    path = write_config(tiny_config(toy_data))
    code, _, err = cli("calibrate", path, *args, "--output", tmp_path / "cal")
    assert code == 2 and message in err and err.strip().count("\n") == 0 and not (tmp_path / "cal").exists()
