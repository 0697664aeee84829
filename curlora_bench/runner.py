"""The experiment, top to bottom: setup -> per method and seed: for each stage train, eval, log."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import checkpoint, diagnostics, metrics
from .adapters import ADAPTERS, AdapterConfig, method_dict
from .adapters.base import module_seed
from .adapters.lora import uses_conv1d
from .config import ExperimentConfig, corpus_config, resolved_dict
from .data import PreparedTask, encode, subsample
from .errors import BenchError
from .evaluate import PerplexityResult, accuracy, perplexity
from .modeling import TaskHeads, auto_targets, backbone, hidden_size, load_model
from .results import RecordWriter, read_json, run_dir, write_atomic, write_json
from .tasks.loaders import load_corpus_text, load_splits
from .train import NonFiniteLoss, train_stage
from .utils import configure_threads, git_commit, package_versions, resolve_device, set_seed


@dataclass
class Protocol:
    """How the measurements are taken: `standard` (corrected) or `paper` (reference code)."""

    name: str
    train_pooling: str  # "last" real token, or "final" position -1 of the padded batch
    eval_batch_size: int | None  # None = config's; 1 = one example at a time
    steps_in_examples: bool
    first_rows: bool  # subsets: first N rows (paper) or a seeded shuffle (standard)
    padding_side: str | None = "right"  # None = the tokenizer's own (paper: AutoTokenizer's side)

    @classmethod
    def of(cls, name: str) -> Protocol:
        if name == "paper":
            return cls("paper", "final", 1, True, True, padding_side=None)
        return cls("standard", "last", None, False, False)


@dataclass
class Context:
    """Everything shared by the runs of one experiment (data is tokenised once here)."""

    cfg: ExperimentConfig
    out: Path
    device: torch.device
    protocol: Protocol
    tasks: list[PreparedTask]
    corpus_tokens: list[int] | None
    bos_id: int | None
    pad_id: int
    base_ppl: PerplexityResult | None
    console: Console
    base_model: torch.nn.Module | None  # the pristine model, until the first run adapts it
    padding_side: str = "right"  # of training/eval batches


def prepare_tasks(cfg: ExperimentConfig, lm, protocol: Protocol) -> list[PreparedTask]:
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    out = []
    for i, task in enumerate(cfg.tasks):
        if protocol.name == "paper" and task.paper:
            task = dataclasses.replace(task, **task.paper)
        where = f"tasks[{i}]"
        splits = load_splits(task, cfg.cache_dir, where)
        seed = None if protocol.first_rows else cfg.data_seed
        train_ds = subsample(splits["train"], cfg.train.limit, seed)
        eval_ds = subsample(splits["eval"], cfg.eval.limit, seed)
        num_classes = task.num_classes or max(splits["train"]["label"]) + 1
        bad = [y for y in eval_ds["label"] if y >= num_classes]
        if bad:
            raise BenchError(f"{where}: eval label {bad[0]} but the train labels give {num_classes} classes; set num_classes")
        train = encode(lm.tokenizer, train_ds, task.text, cfg.train.max_length, bos_id)
        ev = encode(lm.tokenizer, eval_ds, task.text, cfg.train.max_length, bos_id)
        info = {
            "version": task.version,
            "source": task.path or task.builder or task.train,
            "train_records": len(train),
            "eval_records": len(ev),
            "train_fingerprint": train.fingerprint(),
            "eval_fingerprint": ev.fingerprint(),
        }
        out.append(PreparedTask(task.name, num_classes, train, ev, info))
    return out


def setup(cfg: ExperimentConfig, out: Path, console: Console) -> Context:
    device = resolve_device(cfg.device)
    configure_threads()
    protocol = Protocol.of(cfg.protocol)
    console.print(f"[bold]{cfg.name}[/]: model {cfg.model} on {device}, protocol {protocol.name}")
    lm = load_model(cfg.model, cfg.cache_dir, protocol.padding_side)
    tasks = prepare_tasks(cfg, lm, protocol)
    targets = target_modules(cfg, lm.model)
    for i, method in enumerate(cfg.methods):  # every method must fit before any run starts
        ADAPTERS.get(method.method).check(lm.model, targets, method, f"methods[{i}]")
    for t in tasks:
        console.print(
            f"  task {t.name}: {len(t.train)} train / {len(t.eval)} eval, {t.num_classes} classes, "
            f"majority baseline {t.majority:.3f}"
        )
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    corpus_tokens = None
    if cfg.perplexity:
        corpus = corpus_config(cfg.perplexity)
        if protocol.name == "paper" and corpus.paper:
            corpus = dataclasses.replace(corpus, **corpus.paper)
        text = load_corpus_text(corpus, cfg.cache_dir, "perplexity")
        corpus_tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        corpus_tokens = corpus_tokens[: ppl_settings(cfg, protocol)["max_tokens"]]
    return Context(cfg, out, device, protocol, tasks, corpus_tokens, bos_id, lm.tokenizer.pad_token_id, None,
                   console, lm.model, padding_side=lm.tokenizer.padding_side)


def measure_initial_perplexity(ctx: Context) -> None:
    """The adapters are exact identities at init (tested), so the initial perplexity is the base
    model's, the same for every run: measured once here and recorded in each run."""
    if ctx.corpus_tokens is not None:
        ctx.base_ppl = measure_perplexity(ctx, ctx.base_model.to(ctx.device))
        ctx.console.print(f"  initial perplexity {ctx.base_ppl.perplexity:.3f} ({ctx.base_ppl.tokens} tokens)")


def target_modules(cfg: ExperimentConfig, model) -> list[str]:
    return auto_targets(model) if cfg.target_modules == "auto" else cfg.target_modules


def ppl_settings(cfg: ExperimentConfig, protocol: Protocol) -> dict:
    p = cfg.perplexity
    if protocol.name == "paper":  # one window over the first max_length tokens
        n = cfg.train.max_length
        return {"window": n, "stride": n, "max_tokens": n, "batch_size": 1}
    return {"window": p.window, "stride": p.stride, "max_tokens": p.max_tokens, "batch_size": p.batch_size}


def measure_perplexity(ctx: Context, model) -> PerplexityResult:
    s = ppl_settings(ctx.cfg, ctx.protocol)
    corpus = ctx.cfg.perplexity.corpus or ctx.cfg.perplexity.file
    return perplexity(
        model, ctx.corpus_tokens, s["window"], s["stride"], ctx.bos_id, s["batch_size"], ctx.device,
        protocol={"corpus": corpus, "max_tokens": s["max_tokens"], "protocol_name": ctx.protocol.name},
    )


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_key(cfg: ExperimentConfig, method: AdapterConfig, seed: int) -> str:
    """Identity of one run: the experiment's settings, the method's options and the seed."""
    data = {"experiment": experiment_settings(resolved_dict(cfg)), "method": method_dict(method), "seed": seed}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def experiment_settings(resolved: dict) -> dict:
    """The part of a config every run of an experiment shares (methods and seeds may grow)."""
    return json.loads(json.dumps({k: v for k, v in resolved.items() if k not in RUN_LOCAL_KEYS}))


RUN_LOCAL_KEYS = ("name", "seeds", "methods", "cache_dir")


@dataclass
class RunState:
    """Everything a run has measured so far; checkpointed after every stage."""

    matrix: list[list[float | None]]
    ppl_after: list[float | None]
    stages: list[dict]
    drift: list[dict]
    records: int = 0

    @classmethod
    def empty(cls, T: int) -> RunState:
        return cls([[None] * T for _ in range(T)], [None] * T, [], [])


def run_one(ctx: Context, method: AdapterConfig, seed: int, where: str) -> dict:
    """One method, one seed: the whole task sequence, resumed from its last checkpoint if any.

    Returns the summary written to disk.
    """
    cfg, label = ctx.cfg, method.display_label
    out = run_dir(ctx.out, label, seed)
    key = run_key(cfg, method, seed)
    previous = read_json(out / "summary.json")
    if previous and previous.get("run_key") == key and previous.get("status") == "complete":
        ctx.console.print(f"  {label} seed {seed}: already complete, kept (--fresh reruns it)")
        return previous
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(seed)
    # the first run adapts the model setup() loaded (untouched so far); later runs load afresh
    model = ctx.base_model if ctx.base_model is not None else load_model(cfg.model, cfg.cache_dir).model
    ctx.base_model = None
    targets = target_modules(cfg, model)
    adapter = ADAPTERS.get(method.method)
    modules = adapter.attach(model, targets, method, seed, where)
    model.to(ctx.device)
    reference = diagnostics.snapshot(model, modules)  # effective weights at init, for the drift
    if cfg.train.compile:
        # in place, so names, state dicts and checkpoints stay those of the plain model
        backbone(model).compile(dynamic=True)
    adapter_params = count_trainable(model)
    heads = TaskHeads().to(ctx.device)
    hid = hidden_size(model)
    T = len(ctx.tasks)
    state = RunState.empty(T)
    resumed_from = checkpoint.latest(out, key)
    if resumed_from:
        saved, adapter_sd, heads_sd, rng = checkpoint.load_stage(out, resumed_from)
        checkpoint.load_weights(model, adapter_sd, f"{out}/checkpoints")
        heads = TaskHeads.restore([(t.name, t.num_classes) for t in ctx.tasks[:resumed_from]], hid, heads_sd,
                                  ctx.device)
        state = RunState(**saved["run"])
        keep_records(out / "records.jsonl", state.records)
        checkpoint.restore_rng(saved["rng"], rng)
        ctx.console.print(f"  {label} seed {seed}: resuming after stage {resumed_from}/{T}")
    else:
        checkpoint.clear(out)
    writer = RecordWriter(out / "records.jsonl")

    def record(rec: dict) -> None:
        writer.write(rec)
        state.records += 1

    status, error = "complete", None
    ppl_record = {"metric": "perplexity", "task": (cfg.perplexity.corpus or cfg.perplexity.file) if cfg.perplexity else None}
    if ctx.base_ppl is not None and not resumed_from:
        record({"stage": 0, "after_task": None, **ppl_record, "value": ctx.base_ppl.perplexity,
                "n": ctx.base_ppl.tokens, "protocol": ctx.base_ppl.protocol, "measured_once": True})
    matrix, ppl_after = state.matrix, state.ppl_after
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=ctx.console, transient=True) as progress:
        for i in range(len(state.stages), T):
            task = ctx.tasks[i]
            head = heads.add(task.name, hid, task.num_classes, seed=hash_seed(seed, task.name))
            head.to(ctx.device)
            try:
                stats = train_stage(model, heads, task.name, task.train, cfg.train, ctx.device, seed + i,
                                    ctx.pad_id, ctx.protocol.train_pooling, ctx.protocol.steps_in_examples, progress,
                                    ctx.padding_side)
            except NonFiniteLoss as exc:
                status = "failed"
                error = f"{label} seed {seed} stage {i + 1} ({task.name}) step {exc.step}: {exc}"
                ctx.console.print(f"[red]stopped[/]: {error}; finished stages are kept")
                break
            t_eval = time.perf_counter()
            bs = ctx.protocol.eval_batch_size or cfg.eval.batch_size
            for j in range(i + 1):
                prev = ctx.tasks[j]
                acc = accuracy(model, heads, prev.name, prev.eval, bs, ctx.device, ctx.pad_id,
                               padding_side=ctx.padding_side)
                matrix[i][j] = acc
                record({"stage": i + 1, "after_task": task.name, "task": prev.name, "metric": "accuracy",
                        "value": acc, "n": len(prev.eval), "majority_baseline": prev.majority})
            if ctx.corpus_tokens is not None:
                res = measure_perplexity(ctx, model)
                ppl_after[i] = res.perplexity
                record({"stage": i + 1, "after_task": task.name, **ppl_record, "value": res.perplexity,
                        "n": res.tokens, "protocol": res.protocol})
            per_module = diagnostics.relative_drift(model, modules, reference)
            state.drift.append({"stage": i + 1, **diagnostics.summarise(per_module), "per_module": per_module})
            state.stages.append({"stage": i + 1, "task": task.name, "train_seconds": round(stats.seconds, 3),
                                 "eval_seconds": round(time.perf_counter() - t_eval, 3), "steps": stats.steps,
                                 "examples": stats.examples, "train_tokens": stats.tokens,
                                 "final_loss": stats.final_loss, "mean_loss": stats.mean_loss})
            checkpoint.save_stage(out, i + 1, adapter.state_dict(model, modules, method), heads.state_dict(), {
                "run_key": key, "label": label, "method": method_dict(method), "seed": seed, "model": cfg.model,
                "modules": modules, "conv1d": uses_conv1d(model, modules), "protocol": ctx.protocol.name, "pooling": ctx.protocol.train_pooling,
                "tasks": [{"name": t.name, "num_classes": t.num_classes} for t in ctx.tasks[: i + 1]],
                "hidden_size": hid, "run": dataclasses.asdict(state),
            })
            ctx.console.print(f"  {label} seed {seed} stage {i + 1}/{T} {task.name}: "
                              + ", ".join(f"{ctx.tasks[j].name} {matrix[i][j]:.3f}" for j in range(i + 1))
                              + (f", ppl {ppl_after[i]:.3f}" if ppl_after[i] is not None else "")
                              + f", drift {state.drift[-1]['mean']:.2e} ({stats.seconds:.1f}s train)")
    writer.close()
    done = len(state.stages)
    summary = {
        "label": label,
        "method": method_dict(method),
        "seed": seed,
        "run_key": key,
        "status": status,
        "error": error,
        "model": cfg.model,
        "protocol": ctx.protocol.name,
        "padding_side": ctx.padding_side,
        "tasks": [t.name for t in ctx.tasks],
        "num_classes": {t.name: t.num_classes for t in ctx.tasks},
        "majority_baseline": {t.name: t.majority for t in ctx.tasks},
        "data": {t.name: t.info for t in ctx.tasks},
        "accuracy_matrix": matrix,
        "perplexity": {
            "initial": ctx.base_ppl.perplexity if ctx.base_ppl else None,
            "after_stage": ppl_after,
            "final": ppl_after[done - 1] if done and ctx.base_ppl else None,
            "protocol": ctx.base_ppl.protocol if ctx.base_ppl else None,
        },
        "metrics": matrix_metrics(matrix[:done], ctx.base_ppl.perplexity if ctx.base_ppl else None,
                                  ppl_after[done - 1] if done else None),
        "drift": state.drift,
        "sampling": diagnostics.curlora_sampling(model, modules),
        "trainable_parameters": adapter_params,
        "head_parameters": {t.name: hid * t.num_classes + t.num_classes for t in ctx.tasks},
        "adapted_modules": len(modules),
        "stages": state.stages,
        "resumed_from_stage": resumed_from,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    write_json(out / "summary.json", summary)
    return summary


def keep_records(path: Path, n: int) -> None:
    """Cut records.jsonl back to the `n` records a checkpoint vouches for."""
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    if len(lines) < n:
        raise BenchError(f"{path}: {len(lines)} records but the checkpoint counts {n}; rerun with --fresh")
    write_atomic(path, "".join(lines[:n]))


def matrix_metrics(A: list[list[float | None]], ppl0: float | None, ppl1: float | None) -> dict:
    if not A:
        return {}
    T = len(A)
    sq = [row[:T] for row in A]
    return {
        "average_accuracy": metrics.average_accuracy(sq),
        "backward_transfer": metrics.backward_transfer(sq),
        "forgetting": metrics.forgetting(sq),
        "perplexity_drift": metrics.perplexity_drift(ppl0, ppl1) if ppl0 and ppl1 else None,
    }


def hash_seed(seed: int, name: str) -> int:
    return module_seed(seed, "head:" + name)


def run_experiment(cfg: ExperimentConfig, out: Path, console: Console | None = None,
                   fresh: bool = False, force: bool = False) -> list[dict]:
    """Run every (method, seed) of `cfg` into `out`, resuming finished stages; return the summaries.

    `fresh` starts every run of `cfg` over; `force` accepts a folder that holds another config.
    """
    console = console or Console()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"output directory {out}: cannot write there ({exc.strerror})") from None
    ctx = setup(cfg, out, console)  # loads and checks everything before anything is written
    check_same_experiment(cfg, out, force)
    write_atomic(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
    if fresh:
        for method in cfg.methods:
            for seed in cfg.seeds:
                checkpoint.clear(run_dir(out, method.display_label, seed))
    measure_initial_perplexity(ctx)
    summaries = []
    for i, method in enumerate(cfg.methods):
        for seed in cfg.seeds:
            summaries.append(run_one(ctx, method, seed, f"methods[{i}]"))
            gc.collect()  # injected adapters can hold reference cycles: free the run's model now
    return summaries


def check_same_experiment(cfg: ExperimentConfig, out: Path, force: bool) -> None:
    """Refuse to mix runs of different experiments in one folder (adding methods/seeds is fine)."""
    path = out / "config.yaml"
    if force or not path.is_file():
        return
    try:
        old = experiment_settings(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError:
        raise BenchError(f"{path}: unreadable; use --force to run into {out} anyway") from None
    new = experiment_settings(resolved_dict(cfg))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise BenchError(f"{out} holds results of a different config (differs in: {', '.join(differ)}); "
                         f"choose another --output, or pass --force to run there anyway")
