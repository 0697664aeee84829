"""Where one run's wall time goes: training against every evaluation phase.

Runs the first method of a config (one seed) into a fresh temporary folder, in this process,
with a timer around each phase of the run loop (`run/recipe.py`), and prints a table:
phase -> seconds and share of the run's wall time. Nothing it measures changes a number; the
run's records.jsonl is copied to `--records` when given (to compare two versions bit for bit).

    OMP_NUM_THREADS=1 python scripts/profile_eval.py configs/seq.yaml \
        --set train.limit=64 --set eval.limit=128 --set perplexity.max_tokens=2048

`--cprofile FILE` also writes a cProfile of the whole run (read it with `python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import cProfile
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curlora_bench.config.loading import load_config  # noqa: E402
from curlora_bench.core import env  # noqa: E402
from curlora_bench.core.layout import RECORDS  # noqa: E402
from curlora_bench.run import recipe  # noqa: E402
from curlora_bench.run.prepare import Prepared  # noqa: E402

# the run loop's phases, as recipe.py names them, and the base model's perplexity (measured once
# per process); `release_memory` is the gc + malloc_trim calls between phases; `other` is the
# rest (reading and tokenising the data, loading the model, attaching the adapter)
PHASES = {
    "base-model perplexity (once)": (Prepared, "initial_perplexities"),
    "train": (recipe, "train"),
    "evaluate (task scoring)": (recipe, "evaluate"),
    "perplexity": (recipe, "perplexity"),
    "general ability": (recipe, "general_ability"),
    "weight drift": (recipe, "weight_drift"),
    "checkpoint": (recipe, "save_checkpoint"),
    "release_memory": (recipe, "release_memory"),
}
EVAL = ("evaluate (task scoring)", "perplexity", "general ability", "weight drift")


def timed(seconds: dict[str, float], calls: dict[str, int], name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - t
            calls[name] += 1
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--records", type=Path, help="copy the run's records.jsonl here")
    ap.add_argument("--cprofile", type=Path, help="write a cProfile of the run here")
    args = ap.parse_args()

    cfg, _ = load_config(args.config, args.overrides)
    cfg.methods = cfg.methods[:1]
    cfg.seeds = cfg.seeds[:1]
    cfg.execution.executor = "local"
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, (module, attr) in PHASES.items():
        setattr(module, attr, timed(seconds, calls, name, getattr(module, attr)))
    env.configure_threads(1)

    from curlora_bench.experiment.driver import run_experiment
    from curlora_bench.run import RunEvents

    out = Path(tempfile.mkdtemp(prefix="profile-eval-")) / cfg.name
    profiler = cProfile.Profile() if args.cprofile else None
    start = time.perf_counter()
    try:
        if profiler:
            profiler.enable()
        run_experiment(cfg, out, RunEvents())
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        wall = time.perf_counter() - start
        if args.records:
            shutil.copyfile(next(out.rglob(RECORDS)), args.records)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)

    print(f"\n{cfg.methods[0].display_label}, seed {cfg.seeds[0]}: {wall:.1f} s wall")
    print(f"{'phase':40} {'calls':>5} {'seconds':>8} {'share':>6}")
    for name in PHASES:
        print(f"{name:40} {calls[name]:5d} {seconds[name]:8.2f} {seconds[name] / wall:6.1%}")
    ev = sum(seconds[k] for k in EVAL)
    print(f"{'evaluation (scoring+ppl+general+drift)':40} {'':5} {ev:8.2f} {ev / wall:6.1%}")
    rest = wall - sum(seconds.values())
    print(f"{'other':40} {'':5} {rest:8.2f} {rest / wall:6.1%}")


if __name__ == "__main__":
    main()
