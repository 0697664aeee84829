"""One run, as named phases: a method and a seed over the whole task sequence.

`run_one(spec)` is the unit an executor schedules: a serialisable `RunSpec` in, a typed
`RunSummary` out, its files in its own folder. It reads top to bottom, as torchtune's recipes
do (setup / train / save_checkpoint / cleanup): keep a finished run, or open the run (model +
adapter + strategy, `run/state.py`) and resume it from its last checkpoint; then, for every
stage of its regime, `run_stage`: before-stage hooks, train, after-stage hooks, evaluate every
task so far, perplexity, weight drift, checkpoint; at the end the summary. Each phase takes the
run's state and its ledger (`run/ledger.py`: the JSONL files and their counts). What a task
trains and how it is scored is its task kind's (`run/kinds`); what a method or a strategy does
around a stage are their hooks (`core.hooks`). Progress goes to `RunEvents`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from torch import nn

from ..adapters import adapter_of, uses_conv1d
from ..config.experiment import ExecutionConfig, TrainConfig, resolved_dict
from ..config.methods import method_dict
from ..config.regimes import Stage
from ..core.env import module_seed, release_memory
from ..core.layout import RECORDS, SUMMARY, TRAIN_LOG
from ..core.metrics import drift_summary
from ..core.protocol import Protocol
from ..sources.heads import TaskHeads
from ..store import checkpoint
from ..store.folders import finished_summary, write_summary
from ..store.schema import (
    SCHEMA_VERSION,
    Generation,
    HeadInfo,
    Intruders,
    Prediction,
    Record,
    RunSummary,
    StageCheckpoint,
    StageDrift,
    StageStats,
    load,
    read_records,
    read_train_log,
)
from ..strategies import make_strategy
from . import drift
from .context import StageContext
from .data import Batching, PreparedTask
from .events import RunEvents, RunStart, StageNumbers
from .ledger import Ledger, summarise
from .observe import TrainLog
from .prepare import Prepared
from .recovery import recovery
from .spec import RunSpec
from .state import RunState, open_run, resume, run_inputs
from .train import NonFiniteLoss, StageTrainer, TrainStats, schedule_length, steps_of, train_stage


def run_one(spec: RunSpec, prepared: Prepared | None = None, events: RunEvents | None = None,
            threads: int | None = None, fresh: bool = False) -> RunSummary:
    """Run (or resume, or keep) one method and seed; return the summary written to disk.

    `prepared` shares tokenised data between the runs of one process; without it the run
    prepares its own (as in another process), with `threads` torch threads (default: all cores).
    `fresh` starts the run over: its earlier results are set aside as it starts, deleted at its
    first checkpoint and put back if it ends before that.
    """
    events = events or RunEvents()
    with checkpoint.replacing(spec.folder, fresh=fresh, on_restore=restored(spec.name, events)) as replacement:
        kept = finished_summary(spec.folder, spec.identity.run_key)
        if kept is not None:
            events.message(f"  {spec.name}: already complete, kept (--fresh reruns it)")
            return kept
        inputs = run_inputs(spec, prepared, events, threads)
        start = time.perf_counter()
        state = resume(open_run(spec, inputs), events)
        if state.resumed_from is None:
            replacement.start_over(spec.folder)  # what the folder held goes at this run's first checkpoint
        started(state, events)
        ledger = Ledger(spec.folder, state.progress, events, generations=bool(inputs.zero_shot))
        status, error = "complete", None
        try:
            if state.resumed_from is None:
                record_base_model(state, ledger)
            for stage in state.regime.stages([t.name for t in state.tasks])[len(state.progress.stages):]:
                error = run_stage(state, ledger, stage, events)
                if error is not None:
                    status = "failed"
                    break
        except BaseException:
            events.close()  # interrupted: trackers mark their run so
            raise
        finally:
            ledger.close()
        # a run without a stage of its own (a NaN at its first) puts back the work it was to replace
        if replacement.settle() and (spec.folder / SUMMARY).is_file():
            return load(RunSummary, spec.folder / SUMMARY)
        summary = summarise(state, status, error, time.perf_counter() - start)
        d = state.cfg.diagnostics
        if status == "complete" and d is not None and d.recovery_steps and state.regime.sequence:
            summary.recovery = recovery(state, d.recovery_steps)
        write_summary(spec.folder, summary)
        events.run_finished(summary)
        events.close()
        return summary


def restored(name: str, events: RunEvents):
    """What the run says when work set aside by a replacement comes back."""
    def say(_run: Path, earlier: bool) -> None:
        events.message(f"  {name}: the results an unfinished replacement had set aside are back" if earlier
                       else f"  {name}: no stage finished; the results it was to replace are restored")
    return say


def head_seed(seed: int, task: str) -> int:
    return module_seed(seed, "head:" + task)


def run_stage(state: RunState, ledger: Ledger, stage: Stage, events: RunEvents) -> str | None:
    """One stage; returns the error line when its training diverged (finished stages are kept)."""
    t_stage = time.perf_counter()
    state.memory.reset()
    ctx = stage_context(state, stage)
    try:
        stats = train(state, ledger, ctx, events)
    except NonFiniteLoss as exc:
        error = f"{state.name} stage {stage.number} ({stage.name}) step {exc.step}: {exc}"
        events.stage_finished(state.name, stage.number)
        events.message(f"[red]stopped[/]: {error}; finished stages are kept")
        return error
    release_memory()  # training's freed activations leave the heap before evaluation
    for plugin in state.plugins:
        plugin.after_stage(ctx)
    t_eval = time.perf_counter()
    evaluate(state, ledger, stage)
    release_memory()
    perplexity(state, ledger, stage)
    general_seconds = general_ability(state, ledger, stage)
    mean = weight_drift(state, stage)
    state.progress.stages.append(StageStats(
        stage=stage.number, task=stage.name, train_seconds=round(stats.seconds, 3),
        eval_seconds=round(time.perf_counter() - t_eval, 3), steps=stats.steps, examples=stats.examples,
        train_tokens=stats.tokens, final_loss=stats.final_loss, mean_loss=stats.mean_loss,
        wall_seconds=round(time.perf_counter() - t_stage, 3), peak_memory_bytes=state.memory.peak(),
        memory_kind=state.memory.kind, general_seconds=general_seconds))
    release_memory()
    save_checkpoint(state, ledger, stage)
    row = state.progress.matrix[stage.row]
    events.stage_finished(state.name, stage.number, StageNumbers(
        stage.number, len(state.tasks), stage.name, [(t.name, row[j]) for j, t in enumerate(state.tasks[: stage.row + 1])],
        state.progress.ppl_after[stage.row], mean, stats.seconds))
    return None


# -- the run's start ------------------------------------------------------------------------------
def started(state: RunState, events: RunEvents) -> None:
    """The run's start to its sink; trackers replay what the files kept."""
    cfg, spec, folder = state.cfg, state.spec, state.folder
    config = {k: v for k, v in resolved_dict(cfg).items() if k not in ("methods", "seeds")}
    events.run_started(RunStart(
        cfg.name, folder, state.method.display_label, spec.seed, state.key,
        {**config, "seed": spec.seed, "method": method_dict(state.method)}, state.resumed_from,
        read_train_log(folder / TRAIN_LOG), read_records(folder / RECORDS)))


def record_base_model(state: RunState, ledger: Ledger) -> None:
    """A fresh run's stage-0 records: the base model's perplexity, general ability and zero-shot scores."""
    inputs = state.inputs
    for corpus, b in zip(state.prepared.corpora, inputs.base_ppls):
        ledger.record(Record(0, None, corpus.name, "perplexity", b.perplexity, b.tokens, protocol=b.protocol,
                             measured_once=True))
    for g in inputs.general:
        state.progress.general.setdefault(g.task, {})[g.metric] = [g.value]
        ledger.record(Record(0, None, g.task, g.metric, g.value, g.n, measured_once=True, general=True))
    for task, scores in inputs.zero_shot.items():  # in the experiment's task order
        for s in scores:
            ledger.record(Record(0, None, task, s.metric, s.value, s.n, measured_once=True))
            if s.generations is not None:
                ledger.generated(Generation(0, None, task, s.generations))


# -- one stage ------------------------------------------------------------------------------------
def stage_context(state: RunState, stage: Stage) -> StageContext:
    p, spec = state.prepared, state.spec
    return StageContext(state.model, state.modules, state.method.options, state.heads, stage, [p.tasks[k] for k in stage.tasks],
                        {t.name: t for t in p.tasks}, state.train_cfg, state.cfg.execution, p.batching, p.protocol,
                        spec.seed, spec.where)


def lone_stage(model: nn.Module, modules: list[str], method, heads: TaskHeads, new: list[nn.Module],
               task: PreparedTask, train_cfg: TrainConfig, batching: Batching, checkpointing: bool, where: str,
               scheduler_total: int) -> StageTrainer:
    """One stage of one task outside a run (the standard protocol, seed 0), trained as a run's
    stage is: the method's adapter and a plain strategy around every step, `new` (the task's
    head) trained beside the adapter. What `bench` times, step by step."""
    ctx = StageContext(model, modules, method.options, heads, Stage(1, 1, (0,), task.name, False, 0), [task],
                       {task.name: task}, train_cfg, ExecutionConfig(gradient_checkpointing=checkpointing), batching,
                       Protocol.of("standard"), 0, where)
    return StageTrainer(ctx, new, [adapter_of(method), make_strategy(None, 0)], scheduler_total)


def train(state: RunState, ledger: Ledger, ctx: StageContext, events: RunEvents) -> TrainStats:
    """Before-stage hooks, the stage's tasks' new state (heads), then the training loop."""
    for plugin in state.plugins:
        plugin.before_stage(ctx)
    new = [m for t in ctx.tasks for m in t.kind.add(state.heads, t, state.hidden,
                                                                 head_seed(state.spec.seed, t.name))]
    for module in new:
        module.to(state.prepared.device)
    steps = steps_of(ctx.tasks, state.train_cfg)
    done = sum(s.steps for s in state.progress.stages)  # optimizer steps of the finished stages
    events.stage_started(state.name, ctx.stage.number, ctx.stage.name, steps)
    on_step = TrainLog(ctx.stage.number, ctx.stage.name, steps, state.cfg.execution.log_every, done, ledger.log,
                       events.step)
    total = schedule_length(ctx.tasks, state.train_cfg, state.prepared.protocol)
    return train_stage(ctx, new, state.plugins, total, on_step)


def evaluate(state: RunState, ledger: Ledger, stage: Stage) -> None:
    """Every task so far, each through its own kind (and its own frozen head), on its eval rows
    and, with `eval.validation`, its validation rows."""
    p, progress = state.prepared, state.progress
    ahead = state.cfg.eval.lookahead and state.regime.sequence
    with p.inference():
        for j, task in enumerate(p.tasks):
            if j > stage.row and not (ahead and task.kind.zero_shot):
                continue  # not learned yet, and not scored before it is
            for split, rows in (("eval", task.eval), ("validation", task.val)):
                if rows is None:
                    continue
                view = task if split == "eval" else dataclasses.replace(task, eval=rows)
                scores = task.kind.score(state.model, state.heads, view, p.eval_batch_size, p.batching)
                matrix = progress.matrix if split == "eval" else validation_matrix(state)
                matrix[stage.row][j] = scores[0].value
                tag = None if split == "eval" else split
                for s in scores:
                    ledger.record(Record(stage.number, stage.name, task.name, s.metric, s.value, s.n,
                                         baseline=baseline(state, task.name, s), split=tag))
                    if s.per_example is not None:
                        ledger.predicted(Prediction(stage.number, stage.name, task.name, s.metric, s.per_example, tag))
                    if s.generations is not None and tag is None:
                        ledger.generated(Generation(stage.number, stage.name, task.name, s.generations))


def validation_matrix(state: RunState) -> list[list[float | None]]:
    if state.progress.val_matrix is None:
        T = len(state.tasks)
        state.progress.val_matrix = [[None] * T for _ in range(T)]
    return state.progress.val_matrix


def baseline(state: RunState, task: str, score) -> float | None:
    """What a trivial predictor scores on `task`'s metric: the kind's (the majority class), or
    the base model's zero-shot score of that metric."""
    zero_shot = state.inputs.zero_shot
    if score.baseline is not None or task not in zero_shot:
        return score.baseline
    return next(z.value for z in zero_shot[task] if z.metric == score.metric)


def perplexity(state: RunState, ledger: Ledger, stage: Stage) -> None:
    """Perplexity with the model's own LM head on every corpus of the experiment."""
    p, progress = state.prepared, state.progress
    for k, corpus in enumerate(p.corpora):
        res = p.measure(corpus, state.model)
        if k == 0:
            progress.ppl_after[stage.row] = res.perplexity
        else:
            progress.extra_ppl.setdefault(corpus.name, [None] * len(p.tasks))[stage.row] = res.perplexity
        ledger.record(Record(stage.number, stage.name, corpus.name, "perplexity", res.perplexity, res.tokens,
                             protocol=res.protocol))


def general_ability(state: RunState, ledger: Ledger, stage: Stage) -> float | None:
    """The `general:` harness tasks on the adapted model, in memory; returns the seconds it took."""
    if state.cfg.general is None:
        return None
    start = time.perf_counter()
    for s in state.prepared.general_scores(state.model):
        values = state.progress.general.setdefault(s.task, {}).setdefault(s.metric, [])
        values += [None] * (stage.number + 1 - len(values))
        values[stage.number] = s.value
        ledger.record(Record(stage.number, stage.name, s.task, s.metric, s.value, s.n, general=True))
    return round(time.perf_counter() - start, 3)


def weight_drift(state: RunState, stage: Stage) -> float:
    """How far the adapted weights moved (‖ΔW‖/‖W‖ per matrix); returns the mean."""
    per_module = drift.relative_drift(state.model, state.modules, state.reference)
    mean, top = drift_summary(per_module)
    state.progress.drift.append(StageDrift(stage.number, mean, top, len(per_module), per_module,
                                           intruders(state)))
    return mean


def intruders(state: RunState) -> Intruders | None:
    """Intruder dimensions of every adapted matrix against its weight at init (`diagnostics:`)."""
    d = state.cfg.diagnostics
    if d is None or not d.intruders:
        return None
    per_module = {name: drift.intruder_dimensions(*drift.weight_pair(state.model, name, state.reference),
                                                  d.top_k, d.epsilons) for name in state.modules}
    total = [sum(counts[k] for counts in per_module.values()) for k in range(len(d.epsilons))]
    return Intruders(d.top_k, list(d.epsilons), per_module, total)


def save_checkpoint(state: RunState, ledger: Ledger, stage: Stage) -> None:
    """The stage's checkpoint, once every line it counts is on disk; the work it replaces goes."""
    ledger.sync()
    p, method = state.prepared, state.method
    saved = StageCheckpoint(
        schema_version=SCHEMA_VERSION, stage=stage.number, run_key=state.key, label=method.display_label,
        method=method_dict(method), seed=state.spec.seed, model=state.cfg.model, modules=state.modules,
        conv1d=uses_conv1d(state.model, state.modules), protocol=p.protocol.name, pooling=p.protocol.train_pooling,
        tasks=[HeadInfo(t.name, t.num_classes, t.kind.has_head) for t in p.tasks[: stage.number]],
        hidden_size=state.hidden, adapter_tensors={}, progress=state.progress, rng={})
    checkpoint.save_stage(state.folder, saved, state.adapter.state_dict(state.model, state.modules, method.options),
                          state.heads.state_dict(), state.strategy.state_dict())
    checkpoint.drop_previous(state.folder)
