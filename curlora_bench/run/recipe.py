"""One run, top to bottom: a method and a seed over the whole task sequence.

`run_one(spec)` is the unit an executor schedules: a serialisable `RunSpec` in, a typed
`RunSummary` out, its files in its own folder. It opens the run (model + adapter + heads),
resumes from the last checkpoint if there is one, and then, stage by stage: train ->
evaluate every task so far -> perplexity -> weight drift -> checkpoint; at the end it
summarises. Progress goes to `RunEvents` callbacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..adapters import ADAPTERS, Adapter, AdapterConfig, method_dict, uses_conv1d
from ..adapters.base import module_seed
from ..config.experiment import (
    ExperimentConfig,
    experiment_settings,
    resolved_dict,
    run_key,
    settings_hash,
)
from ..core.env import git_commit, package_versions, release_memory, set_seed
from ..core.metrics import (
    MATRIX_METRICS,
    average_accuracy,
    drift_summary,
    matrix_metrics,
    perplexity_drift,
)
from ..sources.heads import TaskHeads
from ..sources.models import backbone, enable_checkpointing, hidden_size
from ..store import checkpoint
from ..store.folders import (
    RECORDS,
    SUMMARY,
    TRAIN_LOG,
    RecordWriter,
    finished_summary,
    keep_records,
    write_summary,
)
from ..store.schema import (
    SCHEMA_VERSION,
    HeadInfo,
    PerplexitySummary,
    Record,
    RunProgress,
    RunSummary,
    StageCheckpoint,
    StageDrift,
    StageStats,
    TrainLogEntry,
    load,
    read_records,
    read_train_log,
)
from ..strategies.base import strategy_of
from ..strategies.runtime_tmp import StrategyState
from . import drift
from .evaluate import accuracy
from .events import Fanout, RunEvents, RunStart
from .joint import joint_steps, train_joint
from .observe import PeakMemory, TrainLog
from .prepare import Prepared, in_order, measure_perplexity, prepare, target_modules
from .spec import RunSpec
from .trackers import open_trackers
from .train import NonFiniteLoss, stage_steps, train_stage


def run_one(spec: RunSpec, prepared: Prepared | None = None, events: RunEvents | None = None,
            threads: int | None = None) -> RunSummary:
    """Run (or resume, or keep) one method and seed; return the summary written to disk.

    `prepared` shares tokenised data between the runs of one process; without it the run
    prepares its own (as in another process), with `threads` torch threads (default: all cores).
    """
    events = events or RunEvents()
    cfg = spec.experiment()
    method = spec.method(cfg)
    order = spec.task_order(cfg)
    folder, key = spec.folder(cfg), run_key(cfg, method, spec.seed, order)
    train_cfg = cfg.train_for(method)
    name = f"{method.display_label} seed {spec.seed}" + (f" order {spec.order}" if order else "")
    kept = finished_summary(folder, key)
    if kept is not None:
        events.message(f"  {name}: already complete, kept (--fresh reruns it)")
        return kept
    prepared = in_order(prepared or prepare(cfg, events, threads), order)
    base_ppl = prepared.initial_perplexity(events)
    start = time.perf_counter()

    run = open_run(cfg, method, spec, prepared)
    progress, resumed_from = resume(folder, key, run, prepared, events)
    # trackers live with the run, in whatever process runs it; they replay what was kept
    events = Fanout([events, *open_trackers(cfg.log, Path(spec.out))])
    config = {k: v for k, v in resolved_dict(cfg).items() if k not in ("methods", "seeds")}
    events.run_started(RunStart(
        cfg.name, folder, method.display_label, spec.seed, key,
        {**config, "seed": spec.seed, "method": method_dict(method)}, resumed_from,
        read_train_log(folder / TRAIN_LOG), read_records(folder / RECORDS)))
    writer, log_writer = RecordWriter(folder / RECORDS), RecordWriter(folder / TRAIN_LOG, sync_each=False)

    def record(rec: Record) -> None:
        writer.write(rec)
        progress.records += 1
        events.record(rec)

    def log(entry: TrainLogEntry) -> None:
        log_writer.write(entry)
        progress.train_log += 1
        events.logged(entry)

    corpus = (cfg.perplexity.corpus or cfg.perplexity.file) if cfg.perplexity else None
    if base_ppl is not None and not resumed_from:
        record(Record(0, None, corpus, "perplexity", base_ppl.perplexity, base_ppl.tokens,
                      protocol=base_ppl.protocol, measured_once=True))
    status, error = "complete", None
    T = len(prepared.tasks)
    by_name = {t.name: t for t in prepared.tasks}
    joint = method.method == "joint"  # one stage over every task; its matrix is the last row only
    memory = PeakMemory(prepared.device)
    try:
        for i in range(len(progress.stages), 1 if joint else T):
            task = prepared.tasks[i]
            t_stage = time.perf_counter()
            memory.reset()
            # 1. train
            done = sum(s.steps for s in progress.stages)  # optimizer steps of the finished stages
            try:
                if joint:
                    i = T - 1  # the joint run's one row sits where the sequence's final row does
                    for t in prepared.tasks:
                        run.heads.add(t.name, run.hidden, t.num_classes, seed=head_seed(spec.seed, t.name))
                    run.heads.to(prepared.device)
                    steps = joint_steps(prepared.tasks, train_cfg)
                    events.stage_started(name, T, "joint", steps)
                    on_step = TrainLog(T, "joint", steps, train_cfg.log_every, done, log, events.step)
                    stats = train_joint(run.model, run.heads, prepared.tasks, train_cfg, prepared.batching,
                                        prepared.protocol, spec.seed, on_step=on_step)
                else:
                    run.adapter.before_stage(run.model, run.modules, run.method, i + 1, spec.where)
                    head = run.heads.add(task.name, run.hidden, task.num_classes,
                                         seed=head_seed(spec.seed, task.name))
                    head.to(prepared.device)
                    steps = stage_steps(len(task.train), train_cfg)
                    events.stage_started(name, i + 1, task.name, steps)
                    on_step = TrainLog(i + 1, task.name, steps, train_cfg.log_every, done, log, events.step)
                    stats = train_stage(run.model, run.heads, task, train_cfg, prepared.batching, prepared.protocol,
                                        spec.seed + i, on_step=on_step,
                                        replay=run.strategy.replay(by_name, i + 1, train_cfg.batch_size),
                                        penalty=run.strategy.penalty(run.model))
            except NonFiniteLoss as exc:
                status = "failed"
                error = f"{name} stage {i + 1} ({'joint' if joint else task.name}) step {exc.step}: {exc}"
                events.stage_finished(name, i + 1)
                events.message(f"[red]stopped[/]: {error}; finished stages are kept")
                break
            after = "joint" if joint else task.name
            release_memory()  # training's freed activations leave the heap before evaluation
            run.strategy.after_stage(run.model, run.heads, task, train_cfg.batch_size, prepared.batching,
                                     prepared.protocol.train_pooling)
            # 2. evaluate every task so far, each through its own (frozen) head
            t_eval = time.perf_counter()
            batch_size = prepared.protocol.eval_batch_size or cfg.eval.batch_size
            for j, prev in enumerate(prepared.tasks[: i + 1]):
                acc = accuracy(run.model, run.heads, prev.name, prev.eval, batch_size, prepared.device,
                               prepared.batching.pad_id, padding_side=prepared.batching.padding_side)
                progress.matrix[i][j] = acc
                record(Record(i + 1, after, prev.name, "accuracy", acc, len(prev.eval),
                              majority_baseline=prev.majority))
            # 3. perplexity with the model's own LM head
            release_memory()
            if prepared.corpus_tokens is not None:
                res = measure_perplexity(prepared, run.model)
                progress.ppl_after[i] = res.perplexity
                record(Record(i + 1, after, corpus, "perplexity", res.perplexity, res.tokens,
                              protocol=res.protocol))
            # 4. how far the adapted weights moved
            per_module = drift.relative_drift(run.model, run.modules, run.reference)
            mean, top = drift_summary(per_module)
            progress.drift.append(StageDrift(i + 1, mean, top, len(per_module), per_module))
            progress.stages.append(StageStats(
                stage=i + 1, task=after, train_seconds=round(stats.seconds, 3),
                eval_seconds=round(time.perf_counter() - t_eval, 3), steps=stats.steps, examples=stats.examples,
                train_tokens=stats.tokens, final_loss=stats.final_loss, mean_loss=stats.mean_loss,
                wall_seconds=round(time.perf_counter() - t_stage, 3), peak_memory_bytes=memory.peak(),
                memory_kind=memory.kind))
            # 5. checkpoint
            release_memory()
            log_writer.sync()  # the lines the checkpoint counts are on disk
            save_checkpoint(folder, i + 1, key, spec.seed, run, cfg, prepared, progress)
            checkpoint.drop_previous(folder)
            events.stage_finished(name, i + 1)
            events.message(f"  {name} stage {i + 1}/{T} {after}: "
                           + ", ".join(f"{prepared.tasks[j].name} {progress.matrix[i][j]:.3f}" for j in range(i + 1))
                           + (f", ppl {progress.ppl_after[i]:.3f}" if progress.ppl_after[i] is not None else "")
                           + f", drift {mean:.2e} ({stats.seconds:.1f}s train)")
    except BaseException:
        events.close()  # interrupted: trackers mark their run so
        raise
    finally:
        writer.close()
        log_writer.close()
        # no stage of its own (a NaN, a signal): the work this run was to replace is put back
        restored = not progress.stages and checkpoint.restore_previous(folder)
    if restored:
        events.message(f"  {name}: no stage finished; the results it was to replace are restored")
        if (folder / SUMMARY).is_file():
            return load(RunSummary, folder / SUMMARY)
    summary = summarise(cfg, spec, run, prepared, progress, status, error, resumed_from,
                        time.perf_counter() - start)
    write_summary(folder, summary)
    events.run_finished(summary)
    events.close()
    return summary


@dataclass
class OpenRun:
    """A model with its adapter attached, the heads so far, and the weights at init."""

    model: nn.Module
    adapter: Adapter
    method: AdapterConfig
    modules: list[str]
    heads: TaskHeads
    hidden: int
    reference: dict[str, torch.Tensor]  # effective weights at init, for the drift
    trainable_parameters: int
    strategy: StrategyState


def open_run(cfg: ExperimentConfig, method: AdapterConfig, spec: RunSpec, prepared: Prepared) -> OpenRun:
    set_seed(spec.seed)
    model = prepared.take_model()
    adapter = ADAPTERS.get(method.method)
    modules = adapter.attach(model, target_modules(cfg, model), method, spec.seed, spec.where)
    model.to(prepared.device)
    reference = drift.snapshot(model, modules)
    if cfg.train_for(method).gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.train_for(method).compile:
        # in place, so names, state dicts and checkpoints stay those of the plain model
        backbone(model).compile(dynamic=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return OpenRun(model, adapter, method, modules, TaskHeads().to(prepared.device), hidden_size(model), reference,
                   trainable, StrategyState(strategy_of(method.strategy), spec.seed))


def resume(folder: Path, key: str, run: OpenRun, prepared: Prepared,
           events: RunEvents) -> tuple[RunProgress, int | None]:
    """Restore the last checkpoint of this run (adapter, heads, progress, RNG), or start clean."""
    folder.mkdir(parents=True, exist_ok=True)
    stage = checkpoint.latest(folder, key)
    if not stage:
        checkpoint.set_aside(folder)  # deleted once this run checkpoints its first stage
        return RunProgress.empty(len(prepared.tasks)), None
    state, adapter_sd, heads_sd, rng = checkpoint.load_stage(folder, stage)
    where = str(checkpoint.stage_dir(folder, stage))
    run.adapter.structure_for(run.model, run.modules, run.method, stage, where, adapter_sd)
    checkpoint.load_weights(run.model, adapter_sd, run.adapter.state_dict(run.model, run.modules, run.method), where)
    run.heads = TaskHeads.restore([(h.name, h.num_classes) for h in state.tasks], run.hidden, heads_sd,
                                  prepared.device)
    run.strategy.load_state_dict(checkpoint.load_strategy(folder, stage), [h.name for h in state.tasks],
                                 prepared.device)
    keep_records(folder / RECORDS, state.progress.records)
    keep_records(folder / TRAIN_LOG, state.progress.train_log)
    checkpoint.restore_rng(state.rng, rng)
    events.message(f"  {run.method.display_label} seed {state.seed}: resuming after stage {stage}/{len(prepared.tasks)}")
    return state.progress, stage


def save_checkpoint(folder: Path, stage: int, key: str, seed: int, run: OpenRun, cfg: ExperimentConfig,
                    prepared: Prepared, progress: RunProgress) -> None:
    state = StageCheckpoint(
        schema_version=SCHEMA_VERSION, stage=stage, run_key=key, label=run.method.display_label,
        method=method_dict(run.method), seed=seed, model=cfg.model,
        modules=run.modules, conv1d=uses_conv1d(run.model, run.modules), protocol=prepared.protocol.name,
        pooling=prepared.protocol.train_pooling,
        tasks=[HeadInfo(t.name, t.num_classes) for t in prepared.tasks[:stage]], hidden_size=run.hidden,
        adapter_tensors={}, progress=progress, rng={})
    checkpoint.save_stage(folder, state, run.adapter.state_dict(run.model, run.modules, run.method),
                          run.heads.state_dict(), run.strategy.state_dict())


def summarise(cfg: ExperimentConfig, spec: RunSpec, run: OpenRun, prepared: Prepared, progress: RunProgress,
              status: str, error: str | None, resumed_from: int | None, seconds: float) -> RunSummary:
    base = prepared.initial_perplexity(RunEvents())
    ppl0 = base.perplexity if base else None
    done = len(progress.stages)
    joint = run.method.method == "joint"
    last = len(prepared.tasks) - 1 if joint else done - 1  # joint: one stage, the final row
    final = progress.ppl_after[last] if done and base else None
    if joint:  # one row: a final average accuracy, nothing learned or forgotten along a sequence
        metrics = {m.key: None for m in MATRIX_METRICS} if done else {}
        if done:
            metrics.update(average_accuracy=average_accuracy(progress.matrix[: last + 1]),
                           perplexity_drift=perplexity_drift(ppl0, final))
    else:
        metrics = matrix_metrics(progress.matrix[:done], ppl0, final)
    return RunSummary(
        schema_version=SCHEMA_VERSION,
        label=run.method.display_label,
        method=method_dict(run.method),
        seed=spec.seed,
        run_key=run_key(cfg, run.method, spec.seed, spec.task_order(cfg)),
        order=spec.order if spec.task_order(cfg) is not None else None,
        settings_hash=settings_hash(cfg, run.method),
        settings=experiment_settings(resolved_dict(cfg)),
        status=status,
        error=error,
        model=cfg.model,
        protocol=prepared.protocol.name,
        padding_side=prepared.batching.padding_side,
        tasks=[t.name for t in prepared.tasks],
        num_classes={t.name: t.num_classes for t in prepared.tasks},
        majority_baseline={t.name: t.majority for t in prepared.tasks},
        data={t.name: t.info for t in prepared.tasks},
        accuracy_matrix=progress.matrix,
        perplexity=PerplexitySummary(ppl0, progress.ppl_after, final, base.protocol if base else None),
        metrics=metrics,
        drift=progress.drift,
        diagnostics=run.adapter.diagnostics(run.model, run.modules),
        trainable_parameters=run.trainable_parameters,
        head_parameters={t.name: run.hidden * t.num_classes + t.num_classes for t in prepared.tasks},
        adapted_modules=len(run.modules),
        stages=progress.stages,
        resumed_from_stage=resumed_from,
        wall_seconds=round(seconds, 3),
        device=str(prepared.device),
        threads=torch.get_num_threads(),
        versions=package_versions(),
        git_commit=git_commit(),
        strategy=run.strategy.summary({t.name: t for t in prepared.tasks}),
    )


def head_seed(seed: int, task: str) -> int:
    return module_seed(seed, "head:" + task)
