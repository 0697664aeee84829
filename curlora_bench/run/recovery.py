"""The recovery probe (`diagnostics.recovery_steps`): how much of an earlier task's lost score
comes back when the final model trains a few steps on that task again.

Zheng et al. 2025 ("Spurious Forgetting in Continual Learning of Language Models") separate
forgetting that a few steps of the old task undo (alignment lost, the knowledge still there) from
forgetting that stays (knowledge lost). After the last stage, for each earlier task in turn, the
run trains what its method trains (and that task's head, where it has one) for `steps` optimizer
steps on the task's training rows, plainly (the method's stage hooks are not applied), scores the
task's eval rows, and puts every weight back: the run's results are those of its sequence.
"""

from __future__ import annotations

import copy

import torch

from ..config.regimes import Stage
from ..store.schema import Recovery
from .context import StageContext
from .state import RunState
from .train import StageTrainer, epoch_batches


def recovery(state: RunState, steps: int) -> list[Recovery]:
    """Each earlier task's score just after it was learned, at the end, and after `steps` steps of
    retraining from the end (every weight restored afterwards)."""
    model = state.model
    A, last = state.progress.matrix, len(state.progress.stages) - 1
    saved = {n: t.detach().clone() for n, t in model.named_parameters() if t.requires_grad}
    heads = copy.deepcopy(state.heads.state_dict())
    out = []
    for j, task in enumerate(state.tasks[:last]):
        recovered = retrain_and_score(state, j, steps)
        with torch.no_grad():
            for n, t in model.named_parameters():
                if n in saved:
                    t.copy_(saved[n])
        state.heads.load_state_dict(heads)
        out.append(Recovery(task.name, task.metric, steps, A[j][j], A[last][j], recovered))
    return out


def retrain_and_score(state: RunState, j: int, steps: int) -> float:
    """`steps` optimizer steps on task `j`'s training rows (cycling them), then its eval score."""
    task, p = state.tasks[j], state.prepared
    new = [state.heads.heads[task.name].requires_grad_(True)] if task.name in state.heads.heads else []
    stage = Stage(len(state.tasks) + 1 + j, len(state.tasks) + 1, (0,), task.name, False, 10_000 + j)
    ctx = StageContext(state.model, state.modules, state.method, state.heads, stage, [task], {task.name: task},
                       state.train_cfg, state.cfg.execution, p.batching, p.protocol, state.spec.seed, state.spec.where)
    trainer = StageTrainer(ctx, new, [], steps)
    gen = torch.Generator().manual_seed(state.spec.seed + stage.seed_offset)
    while trainer.steps < steps:
        for _, rows in epoch_batches([task], state.train_cfg.batch_size, False, gen):
            trainer.step(task, rows)
            if trainer.steps == steps:
                break
    trainer.finish()
    with p.inference():
        return task.kind.score(state.model, state.heads, task, p.eval_batch_size, p.batching)[0].value
