"""Learning without Forgetting (Li & Hoiem 2016): distil the previous stage's outputs on the new
task's inputs.

From the second stage on, every training step adds `lambda * KD_T(old, new)` to the task's
loss, where `old` are the outputs the model gave at the start of the stage and `new` the
current model's, both on the step's own batch (the new task's inputs). The outputs distilled
are those of the earlier tasks:
- each earlier classification task's head, at the pooled position the heads are trained at
  (the paper's old-task heads on new data); one KD term per head, summed;
- where an earlier task is prompted (it learned through the LM head every task shares) and the
  batch has answer positions (a prompted task's batch): the next-token distribution over the
  whole vocabulary at the answer positions (the positions the prompted loss is taken at), each
  example's KD the mean over its answer tokens, then the mean over examples as the prompted
  loss averages. A classification stage after prompted ones distils the earlier heads only.

KD_T is Avalanche's: `kl_div(log_softmax(new / T), softmax(old / T), reduction="batchmean")`,
the KL divergence of the softened distributions averaged over rows, without a T^2 factor
(ContinualAI/avalanche@eb075be, avalanche/training/regularization.py lines 83-98
`_distillation_loss`; the sum over old heads line 130, `alpha *` line 142; added to the loss in
avalanche/training/plugins/lwf.py line 27). It differs from the paper's cross-entropy with the
recorded responses (Li & Hoiem, eq. 2, T = 2) by the old distribution's entropy, a constant:
the gradients are the same, and the added loss is 0 at each stage's first step.

The old outputs: Avalanche keeps a deep copy of the model (`copy.deepcopy` in `post_adapt`, line 152); the
paper records the responses before training. Here the model at the stage's start is kept as a
copy of its trainable tensors only (taken in `before_stage`, after the adapter's own
`before_stage`), and each step computes the old outputs by swapping that copy in under
`no_grad`: only the trainable tensors change while a stage trains, so this is the model at the
stage's start, at the memory of the trainable tensors rather than of the whole model. It costs
two extra forward passes per step (the old outputs and the current ones on the earlier heads).

Nothing is saved with a checkpoint: the copy is taken from the model in `before_stage`, and a
resumed run restarts the interrupted stage from the previous stage's checkpoint, whose tensors
are those the uninterrupted run held when it took the same copy; the earlier heads come back
from the checkpoint's heads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..core.parse import short_value
from ..sources.heads import pool
from ..sources.models import backbone, lm_logits
from .base import Strategy
from .ewc import trainable

DEFAULT_TEMPERATURE = 2.0  # the paper's T (Li & Hoiem 2016, section 3) and Avalanche's default


def kd_rows(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row: KL(softmax(old / T) || softmax(new / T)) over the last dimension."""
    log_p = torch.log_softmax(new.float() / temperature, dim=-1)
    q = torch.softmax(old.float() / temperature, dim=-1)
    return nn.functional.kl_div(log_p, q, reduction="none").sum(-1)


@contextlib.contextmanager
def swapped(params: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> Iterator[None]:
    """The parameters hold `values` inside the block (their storage swapped, not copied), their
    own values again after it, bit for bit."""
    kept: dict[str, torch.Tensor] = {}
    try:
        for name, value in values.items():
            kept[name] = params[name].data
            params[name].data = value
        yield
    finally:
        for name, data in kept.items():
            params[name].data = data


def outputs(ctx, batch: dict[str, torch.Tensor], heads: list[str], lm: bool) -> dict[str, torch.Tensor]:
    """The distilled outputs of the model as it is on `batch`: each named head's logits at the
    pooled position, and with `lm` the LM head's logits at the answer positions (key `lm`, with
    `lm_rows`: each position's batch row)."""
    model, ids, mask = ctx.model, batch["input_ids"], batch["attention_mask"]
    out: dict[str, torch.Tensor] = {}
    with ctx.mixed_precision():
        if heads:  # as the classification kind runs the body (sources.heads.classify)
            hidden = backbone(model)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            pooled = pool(hidden, mask, ctx.protocol.train_pooling)
            out.update({name: ctx.heads(name, pooled) for name in heads})
        if lm:  # as the prompted kind runs it (run.kinds.prompted.answer_nll): positions count real tokens
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            hidden = backbone(model)(input_ids=ids, attention_mask=mask, position_ids=positions,
                                     use_cache=False).last_hidden_state
            scored = batch["answer_mask"][:, 1:].bool()  # token t+1 is predicted at position t
            out["lm"] = lm_logits(model, hidden[:, :-1][scored])
            out["lm_rows"] = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1).expand_as(scored)[scored]
    return out


def distillation(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor], temperature: float,
                 examples: int) -> torch.Tensor:
    """The summed KD terms: each head's mean over the batch, and the LM's mean over examples of
    each example's mean over its answer tokens."""
    total = torch.zeros((), device=next(iter(new.values())).device)
    for name in new:
        if name in ("lm", "lm_rows"):
            continue
        total = total + kd_rows(new[name], old[name], temperature).mean()
    if "lm" in new:
        per_token, rows = kd_rows(new["lm"], old["lm"], temperature), new["lm_rows"]
        sums = torch.zeros(examples, device=per_token.device).index_add(0, rows, per_token)
        counts = torch.zeros(examples, device=per_token.device).index_add(0, rows, torch.ones_like(per_token))
        total = total + (sums / counts.clamp(min=1)).mean()
    return total


class LwF(Strategy):
    name = "lwf"
    help = ("learning without forgetting: distillation of the previous stage's outputs on the new task's "
            "inputs (Li & Hoiem 2016)")
    options_spec = {
        "lambda": (float, 1.0, "weight of the distillation loss added to every step from the second stage on "
                               "(the paper's lambda_o, Avalanche's alpha)"),
        "temperature": (float, DEFAULT_TEMPERATURE, "softmax temperature T of the old and the new outputs "
                                                    "(the paper's T = 2)"),
    }

    def __init__(self, options, seed):
        super().__init__(options, seed)
        self.anchor: dict[str, torch.Tensor] = {}  # the trainable tensors at the stage's start
        self.heads: list[str] = []  # the earlier tasks' heads
        self.lm = False  # an earlier task learned through the LM head

    @classmethod
    def suffix(cls, options):
        t = options["temperature"]
        return f"+lwf{short_value(options['lambda'])}" + ("" if t == DEFAULT_TEMPERATURE else f"-t{short_value(t)}")

    def before_stage(self, ctx) -> None:
        earlier = list(ctx.by_name.values())[: min(ctx.stage.tasks)]
        self.heads = [t.name for t in earlier if t.kind.has_head]  # the stage's own heads come after this hook
        self.lm = any(not t.kind.has_head for t in earlier)
        self.anchor = {n: p.detach().clone() for n, p in trainable(ctx.model).items()} if earlier else {}

    def step(self, ctx, loss, examples):
        batch = ctx.step_batch
        lm = self.lm and "answer_mask" in batch
        if not self.anchor or not (self.heads or lm) or self.options["lambda"] == 0:
            return loss
        with torch.no_grad(), swapped(trainable(ctx.model), self.anchor):
            old = outputs(ctx, batch, self.heads, lm)
        new = outputs(ctx, batch, self.heads, lm)
        kd = distillation(new, old, self.options["temperature"], batch["input_ids"].shape[0])
        return loss + self.options["lambda"] * kd

    def after_stage(self, ctx) -> None:
        self.anchor = {}
