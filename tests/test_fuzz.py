"""A seeded fuzz of broken configs and data files, and of executor options and sizes: every
case is one line, exit 2, folder untouched.

Each case takes the tiny two-task config and breaks it in one way that must be refused: a key
dropped where it is required, a list item duplicated where duplicates are refused, a value of
the wrong type, an out-of-range or extreme value, an unknown key, a duplicated YAML key, a byte
that is not UTF-8, a data file truncated or corrupted. Every case runs in-process through
`main()`; a case the checks let through would reach a run, which the test stops and reports.
"""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ReachedRun, snapshot, tiny_config

SEED = 15
N_CASES = 300

# (path, required): dropping these keys must be refused
REQUIRED = [("name",), ("methods",), ("tasks",), ("methods", 0, "method"), ("tasks", 0, "name"),
            ("tasks", 0, "train"), ("tasks", 1, "eval"), ("perplexity", "file")]
# ints whose huge values are refused (the others, e.g. epochs, merely take long)
BOUNDED = {"seeds", "data_seed", "rank", "max_length", "window"}
# list items that must not repeat
UNIQUE = [("tasks",), ("methods",), ("seeds",)]


def leaves(node, path=()):
    """(path, value) of every scalar and container under `node`, the root excluded."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        yield (*path, k), v
        yield from leaves(v, (*path, k))


def get(node, path):
    for p in path:
        node = node[p]
    return node


def wrong_types(value):
    """Values of another kind than `value` that its field cannot take."""
    if isinstance(value, bool):
        return ["yes", 1, [True]]
    if isinstance(value, int):
        return ["x", [1], {"k": 1}, True, 1.5]
    if isinstance(value, float):
        return ["fast", [1.0], {"k": 1}, True, ".nan", float("nan"), float("inf")]
    if isinstance(value, str):
        return [7, [1], {"k": 1}, True]
    if isinstance(value, list):
        return [5, {"k": 1}, True]
    if isinstance(value, dict):
        return [5, [1], True, "x"]
    return []


def make_case(rng: random.Random, base: dict, data: Path, tmp: Path) -> tuple[str, str | bytes]:
    """(description, config file contents) of one broken case; data files it needs go into tmp."""
    cfg = copy.deepcopy(base)
    kind = rng.choice(["drop", "duplicate", "retype", "retype", "retype", "extreme", "unknown key",
                       "yaml duplicate key", "not utf-8", "data file", "data file"])
    paths = [p for p, _ in leaves(cfg)]
    if kind == "drop":
        path = rng.choice(REQUIRED)
        del get(cfg, path[:-1])[path[-1]]
        return f"drop {path}", yaml.safe_dump(cfg)
    if kind == "duplicate":
        path = rng.choice(UNIQUE)
        items = get(cfg, path)
        items.append(copy.deepcopy(rng.choice(items)))
        return f"duplicate an item of {path}", yaml.safe_dump(cfg)
    if kind == "retype":
        path = rng.choice([p for p in paths if get(cfg, p) is not None])
        value = rng.choice(wrong_types(get(cfg, path)))
        get(cfg, path[:-1])[path[-1]] = value
        return f"retype {path} = {value!r}", yaml.safe_dump(cfg)
    if kind == "extreme":
        numeric = [p for p in paths if isinstance(get(cfg, p), (int, float)) and not isinstance(get(cfg, p), bool)]
        path = rng.choice(numeric)
        value = get(cfg, path)
        bounded = any(isinstance(k, str) and k in BOUNDED for k in path)
        choices = [-1, -(2**70)] if isinstance(value, int) else [-1.0, -1e300]
        if bounded:
            choices += [2**70, 10**30]
        new = rng.choice(choices)
        get(cfg, path[:-1])[path[-1]] = new
        return f"extreme {path} = {new!r}", yaml.safe_dump(cfg)
    if kind == "unknown key":
        dicts = [()] + [p for p in paths if isinstance(get(cfg, p), dict)]
        path = rng.choice(dicts)
        get(cfg, path)[f"bogus_{rng.randrange(1000)}"] = rng.choice([1, "x", None, [1]])
        return f"unknown key under {path}", yaml.safe_dump(cfg)
    if kind == "yaml duplicate key":
        lines = yaml.safe_dump(cfg).splitlines()
        i = rng.choice([k for k, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("- ")])
        lines.insert(i + 1, lines[i] if not lines[i].rstrip().endswith(":") else lines[i] + " {}")
        return f"YAML key on line {i + 1} repeated", "\n".join(lines) + "\n"
    if kind == "not utf-8":
        text = yaml.safe_dump(cfg).encode()
        at = rng.randrange(len(text))
        return f"byte 0xff at {at}", text[:at] + b"\xff" + text[at:]
    # a data file truncated or corrupted
    task = rng.randrange(2)
    t = cfg["tasks"][task]
    split = rng.choice(["train", "eval"])
    src = Path(t[split]).read_bytes()
    how = rng.choice(["cut in a row's first field", "invalid UTF-8", "jsonl bad line", "corpus cut", "empty"])
    out = tmp / f"broken-{task}-{split}.csv"
    if how == "cut in a row's first field":
        lines = src.split(b"\n")
        row = rng.randrange(1, len(lines) - 1)
        first = lines[row].split(b",")[0]
        cut = rng.randrange(1, max(2, len(first))) if len(first) > 1 else 1
        out.write_bytes(b"\n".join(lines[:row]) + b"\n" + lines[row][:cut])
    elif how == "invalid UTF-8":
        at = rng.randrange(src.index(b"\n") + 1, len(src) - 1)
        out.write_bytes(src[:at] + b"\xc3\x28" + src[at:])
    elif how == "jsonl bad line":
        out = out.with_suffix(".jsonl")
        out.write_text('{"text": "a", "sentence1": "a", "sentence2": "b", "label": 1}\n{"text": "b", oops\n')
        t["format"], t["train"], t["eval"] = "jsonl", str(out), str(out)
        return f"task {task}: a JSONL line is not JSON", yaml.safe_dump(cfg)
    elif how == "corpus cut":
        corpus = tmp / "corpus-cut.txt"
        corpus.write_text(Path(cfg["perplexity"]["file"]).read_text()[: rng.randrange(1, 12)])
        cfg["perplexity"]["file"] = str(corpus)
        return "corpus cut to a few characters", yaml.safe_dump(cfg)
    else:
        out.write_bytes(src.split(b"\n")[0] + b"\n")
    t[split] = str(out)
    return f"task {task} {split}: {how}", yaml.safe_dump(cfg)


def test_fuzz_broken_configs_and_data(tmp_path, toy_data, cli, stubbed_results, empty_cache):
    base = json.loads(json.dumps(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])))
    # a results folder of the unbroken config, with files in it, which no case may change; a
    # case that gets past every check reaches `run_one` (and fails the test), not a config mismatch
    out = stubbed_results
    before = snapshot(out)
    rng = random.Random(SEED)
    failures, kinds = [], set()
    start = time.perf_counter()
    for n in range(N_CASES):
        case_dir = tmp_path / f"case-{n}"
        case_dir.mkdir()
        what, text = make_case(rng, base, toy_data, case_dir)
        kinds.add(what.split(" ")[0])
        path = case_dir / "exp.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            code, stdout, err = cli("run", path, "--output", out)
        except ReachedRun:
            failures.append(f"{what}: accepted")
            continue
        except Exception as exc:  # noqa: BLE001 (a traceback is what this test looks for)
            failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
            continue
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in stdout + err:
            failures.append(f"{what}: exit {code}, {err.strip()[:300]!r}")
        elif snapshot(out) != before:
            failures.append(f"{what}: the results folder changed")
    seconds = time.perf_counter() - start
    # the harness itself: the unbroken config gets through every check to the run
    with pytest.raises(ReachedRun):
        cli("run", tmp_path / "base.yaml", "--output", out)
    assert not failures, f"{len(failures)} of {N_CASES} cases:\n" + "\n".join(failures[:40])
    assert {"drop", "duplicate", "retype", "extreme", "unknown", "YAML", "byte", "task", "corpus"} <= kinds, kinds
    assert seconds < 60 * 2, seconds  # < 1 min on an idle machine; slack for a busy one


def test_fuzz_cases_are_reproducible(tmp_path, toy_data):
    """Same seed, same cases (the generator draws from its own RNG only), so a failure reruns."""
    base = json.loads(json.dumps(tiny_config(toy_data)))
    runs = []
    for k in range(2):
        (tmp_path / str(k)).mkdir()
        rng = random.Random(SEED)
        runs.append([make_case(rng, base, toy_data, tmp_path / str(k))[0] for _ in range(40)])
    assert runs[0] == runs[1] and len(set(runs[0])) > 20


# ---- executor options and sizes (issue 27): each refused in one line before anything runs -------

BAD_GPUS = ["nan", "inf", "-inf", "-1", "1.5", "2.25", "1e308"]
BAD_ADDRESSES = ["not a host::", "", "h", "h:", ":1", "h:0", "h:65536", "ray://", "http://h:1", "a b:1", "h:1:2",
                 f"127.0.0.1:{1}"]  # the last one well formed: nothing answers there


def executor_case(rng: random.Random, cfg: dict) -> tuple[str, dict, list[str]]:
    """(description, config, extra `run` arguments) of one executor or size case that must be refused."""
    kind = rng.choice(["gpus flag", "address flag", "execution key", "cpus", "grid", "orders", "max runs"])
    if kind == "gpus flag":
        value = rng.choice(BAD_GPUS)
        return f"--gpus-per-run {value}", cfg, ["--executor", "ray", "--gpus-per-run", value]
    if kind == "address flag":
        value = rng.choice(BAD_ADDRESSES)
        return f"--address {value!r}", cfg, ["--executor", "ray", "--address", value]
    if kind == "execution key":
        key, value = rng.choice([("gpus_per_run", ".nan"), ("gpus_per_run", ".inf"), ("gpus_per_run", "-0.5"),
                                 ("gpus_per_run", "3.5"), ("address", "'x y:1'"), ("address", "'::'"),
                                 ("workers", "0"), ("cpus_per_run", "-2"), ("max_runs", "0"), ("log_every", "0")])
        return f"execution.{key}={value}", cfg, ["--executor", "ray", "--set", f"execution.{key}={value}"]
    if kind == "cpus":
        return "--cpus-per-run 1000000", cfg, ["--executor", "ray", "--cpus-per-run", "1000000"]
    cfg = copy.deepcopy(cfg)
    if kind == "grid":
        lists = rng.randrange(2, 7)
        length = rng.choice([40, 100, 1000])
        keys = ["rank", "alpha", "train.lr", "train.epochs", "train.weight_decay", "train.warmup_steps"][:lists]
        cfg["methods"] = [{"method": "lora", "grid": {k: list(range(1, length + 1)) for k in keys}}]
        return f"grid of {length}**{lists} points", cfg, []
    if kind == "orders":
        tasks = rng.randrange(8, 20)
        cfg["tasks"] = [dict(cfg["tasks"][0], name=f"t{i}") for i in range(tasks)]
        cfg["orders"] = rng.choice([10**4, 10**8, 10**12])
        return f"orders: {cfg['orders']} over {tasks} tasks", cfg, []
    limit = rng.choice(["0", "-1", "1"])  # 1: fewer runs than the two methods make
    return f"--max-runs {limit}", cfg, ["--max-runs", limit]


def test_fuzz_executor_options_and_sizes(tmp_path, toy_data, cli, stubbed_results, empty_cache):
    base = json.loads(json.dumps(tiny_config(toy_data)))
    rng = random.Random(SEED)
    failures, kinds = [], set()
    start = time.perf_counter()
    for n in range(60):
        what, cfg, args = executor_case(rng, base)
        kinds.add(what.split(" ")[0].split("=")[0])
        path = tmp_path / f"case-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = tmp_path / f"out-{n}"
        case_start = time.perf_counter()
        try:
            code, stdout, err = cli("run", path, "--output", out, *args)
        except ReachedRun:
            failures.append(f"{what}: accepted")
            continue
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in stdout + err:
            failures.append(f"{what}: exit {code}, {err.strip()[:300]!r}")
        elif list(out.glob("*/seed-*")) or (out / ".lock").exists():
            failures.append(f"{what}: left files in the results folder")
        elif time.perf_counter() - case_start > 20:
            failures.append(f"{what}: took {time.perf_counter() - case_start:.0f} s")
    assert not failures, f"{len(failures)} of 60 cases:\n" + "\n".join(failures)
    assert {"--gpus-per-run", "--address", "--cpus-per-run", "--max-runs", "execution.gpus_per_run",
            "execution.address", "grid", "orders:"} <= kinds, kinds
    assert time.perf_counter() - start < 300
