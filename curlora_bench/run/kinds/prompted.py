"""Prompted tasks: trained as text through the model's own LM head, scored as
lm-evaluation-harness scores.

A task with `prompt:` renders each row into a prompt and an answer: `choices[label]`, or
`target_prefix` + its `target` column. Training is the causal LM loss on the answer tokens
only (and the EOS after them; the prompt carries no loss), each example's loss the mean over
its answer tokens, through the LM head every task shares: nothing is added but what the method
trains. After a stage, a `choices` task is scored by the log-likelihood of each choice given
the prompt (accuracy; length-normalised accuracy divides by the choice's characters, as
lm-evaluation-harness's `acc_norm`) and by greedy generation (exact match); a `target` task by
greedy generation, with ROUGE-L, exact match and chrF. Generation is batched, left-padded,
with the KV cache (`transformers`' `generate`), up to the task's `max_new_tokens`, cut at its
stop strings. A prompt longer than its budget loses its beginning: the answer and the text next
to it are kept.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...core import metrics
from ...core.errors import BenchError
from ...sources.kinds import TARGET_EXTRA
from ...sources.models import backbone, lm_logits
from ..data import PreparedTask, Split, batches, task_data
from .base import Score, TaskKind

DEFAULT_STOP = ["\n"]
DEFAULT_TARGET_PREFIX = " "


@dataclass
class PromptedSplit(Split):
    """A tokenised split of a prompted task: `ids` hold BOS + prompt (+ answer + EOS in training);
    `answer_start[i]` is where row i's answer begins (eval: its length, the prompt only)."""

    answer_start: list[int] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # each row's answer text

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([self.ids, self.labels, self.answer_start, self.references]).encode())
        return h.hexdigest()[:16]


@dataclass
class PromptSpec:
    """How a prompted task is answered and scored (a `PreparedTask.spec`)."""

    answer: str  # choices | target
    metric: str  # the primary one
    max_new_tokens: int
    stop: list[str]
    eos_id: int | None
    tokenizer: Any = field(repr=False)
    choices: list[str] | None = None
    choice_ids: list[list[int]] | None = None


def render(template: str, ds) -> list[str]:
    """The template filled from each row (its `{column}` fields)."""
    columns = ds.column_names
    data = {c: ds[c] for c in columns if "{" + c in template}
    return [template.format_map({c: v[i] for c, v in data.items()}) for i in range(len(ds))]


def encode(tokenizer, ds, task, max_length: int, bos_id: int | None, answer_room: int | None,
           train: bool, where: str) -> PromptedSplit:
    """Prompt (+ answer and EOS when `train`) of every row, within `max_length` tokens.

    The answer keeps up to all but one token of the budget; the prompt keeps its last tokens in
    what is left: `answer_room` tokens are set aside for the answer (None: the row's own answer,
    EOS included; evaluation sets aside the longest choice or the generation budget, so the
    prompt never depends on the row's answer)."""
    prompts = render(task.prompt, ds)
    if task.choices is not None:
        answers = [task.choices[y] for y in ds["label"]]
    else:
        prefix = DEFAULT_TARGET_PREFIX if task.target_prefix is None else task.target_prefix
        answers = [prefix + t for t in ds[task.target]]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    head = [bos_id] if bos_id is not None else []
    budget = max_length - len(head)
    ids, starts = [], []
    for k, (p, a) in enumerate(zip(prompt_ids, answer_ids)):
        a = (list(a) + [tokenizer.eos_token_id])[: budget - 1]
        room = budget - min(answer_room if answer_room is not None else len(a), budget - 1)
        p = list(p)[-room:]
        if not p and not head:
            raise BenchError(f"{where}: example {k + 1} (after subsetting): its prompt tokenises to nothing, and "
                             "the model takes no BOS: the first answer token would have nothing to follow")
        ids.append(head + p + (a if train else []))
        starts.append(len(head) + len(p))
    return PromptedSplit(ids, [int(y) for y in ds["label"]], starts, answers)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (a left-padded row starts at 0 too)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def collate(split: PromptedSplit, idx: list[int], pad_id: int, device: torch.device,
            padding_side: str = "right") -> dict[str, torch.Tensor]:
    """input_ids / attention_mask / labels as `data.collate`, plus `answer_mask`: 1 on each row's
    answer tokens (the positions the loss is taken at), 0 on its prompt and the padding."""
    seqs = [split.ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    answer = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (i, s) in enumerate(zip(idx, seqs)):
        offset = width - len(s) if padding_side == "left" else 0
        input_ids[r, offset: offset + len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, offset: offset + len(s)] = 1
        answer[r, offset + split.answer_start[i]: offset + len(s)] = 1
    labels = torch.tensor([split.labels[i] for i in idx], dtype=torch.long)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
            "answer_mask": answer.to(device)}


def answer_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The negative log-likelihood of every answer token given what precedes it, through the LM
    head on those positions only: (nll per answer token, the batch row of each)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hidden = backbone(model)(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                             use_cache=False).last_hidden_state
    scored = batch["answer_mask"][:, 1:].bool()  # token t+1 is predicted at position t
    logits = lm_logits(model, hidden[:, :-1][scored]).float()
    nll = nn.functional.cross_entropy(logits, ids[:, 1:][scored], reduction="none")
    rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1).expand_as(scored)[scored]
    return nll, rows


def per_example(values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Sum of `values` per batch row."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)


def left_padded(prompts: list[list[int]], idx: list[int], pad_id: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `idx` of `prompts` as a left-padded batch (real tokens last) and its attention mask."""
    width = max(len(prompts[i]) for i in idx)
    input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        input_ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i], dtype=torch.long)
        mask[r, width - len(prompts[i]):] = 1
    return input_ids.to(device), mask.to(device)


@torch.inference_mode()
def choice_loglikelihoods(model: nn.Module, split: PromptedSplit, choice_ids: list[list[int]], batch_size: int,
                          pad_id: int, device: torch.device) -> list[list[float]]:
    """log p(choice | prompt) of every choice for every row. Each batch's prompts run once,
    left-padded, keeping their KV cache; every choice then continues from that cache (its first
    token is scored from the prompt's last position, the rest from the choice's own), and the
    cache is cut back to the prompt before the next choice."""
    model.eval()
    body = backbone(model)
    # transformers 5 calls the KV cache `cache`, 4.x `past_key_values`
    key = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    out = [[0.0] * len(choice_ids) for _ in range(len(split))]
    for idx in batches([len(s) for s in split.ids], batch_size, shuffle=False):
        ids, mask = left_padded(split.ids, idx, pad_id, device)
        res = body(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
        cache, last = res[key], res.last_hidden_state[:, -1:]
        next_pos = positions(mask)[:, -1:] + 1
        for c, choice in enumerate(choice_ids):
            target = torch.tensor(choice, dtype=torch.long, device=device).expand(len(idx), -1)
            hidden = last
            if len(choice) > 1:  # the choice's own tokens but its last predict the rest, after a copy of the cache
                rest = len(choice) - 1
                cont = body(input_ids=target[:, :-1], use_cache=True, **{key: copy.deepcopy(cache)},
                            attention_mask=torch.cat([mask, mask.new_ones(len(idx), rest)], dim=1),
                            position_ids=next_pos + torch.arange(rest, device=device))
                hidden = torch.cat([last, cont.last_hidden_state], dim=1)
            logp = torch.log_softmax(lm_logits(model, hidden).float(), dim=-1)
            scores = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)
            for i, v in zip(idx, scores.tolist()):
                out[i][c] = v
    return out


def cut(text: str, stop: list[str]) -> str:
    """`text` up to the first stop string."""
    ends = [text.find(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


@torch.inference_mode()
def generate_ids(model: nn.Module, prompts: list[list[int]], spec: PromptSpec, batch_size: int, pad_id: int,
                 device: torch.device, use_cache: bool = True) -> list[list[int]]:
    """The greedy continuation (token ids, EOS and padding included) of every prompt: length-sorted
    batches, left-padded, with the KV cache (the prompt is computed once, then one position per
    new token), ended at EOS (`spec.eos_id`; None: never) or a stop string. `use_cache=False`
    recomputes every position at every step (only `bench` asks for that, to compare)."""
    from transformers import GenerationConfig

    model.eval()
    config = GenerationConfig(max_new_tokens=spec.max_new_tokens, do_sample=False, num_beams=1, use_cache=use_cache,
                              pad_token_id=pad_id, eos_token_id=spec.eos_id, stop_strings=spec.stop or None)
    out: list[list[int]] = [[] for _ in prompts]
    for idx in batches([len(p) for p in prompts], batch_size, shuffle=False):
        input_ids, mask = left_padded(prompts, idx, pad_id, device)
        res = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                             tokenizer=spec.tokenizer if spec.stop else None)
        for r, i in enumerate(idx):
            out[i] = res[r, input_ids.shape[1]:].tolist()
    return out


def generate(model: nn.Module, prompts: list[list[int]], spec: PromptSpec, batch_size: int, pad_id: int,
             device: torch.device) -> list[str]:
    """The greedy generation of every prompt as text (special tokens dropped), cut at the first stop
    string: what a prompted task is scored on, and what generations.jsonl keeps."""
    ids = generate_ids(model, prompts, spec, batch_size, pad_id, device)
    return [cut(spec.tokenizer.decode(new, skip_special_tokens=True), spec.stop) for new in ids]


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda c: values[c])


class Prompted(TaskKind):
    name = "prompted"
    zero_shot = True

    def prepare(self, task, train, eval, tokenizer, max_length, bos_id, where, val=None):
        choice_ids = None
        if task.choices is not None:
            choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in task.choices]
            empty = next((c for c, ids in zip(task.choices, choice_ids) if not ids), None)
            if empty is not None:
                raise BenchError(f"{where}.choices: {empty!r} tokenises to nothing")
            room = max(len(c) for c in choice_ids) + 1  # + EOS
        else:
            room = None
        tr = encode(tokenizer, train, task, max_length, bos_id, room, True, f"{where}.train")
        longest = max(len(ids) - s for ids, s in zip(tr.ids, tr.answer_start))
        new_tokens = task.max_new_tokens or (room if room is not None else longest)
        ev = encode(tokenizer, eval, task, max_length, bos_id, room if room is not None else new_tokens, False,
                    f"{where}.eval")
        va = None if val is None else encode(tokenizer, val, task, max_length, bos_id,
                                              room if room is not None else new_tokens, False, f"{where}.val")
        spec = PromptSpec(task.answer, task.primary_metric, new_tokens,
                          DEFAULT_STOP if task.stop is None else list(task.stop), tokenizer.eos_token_id, tokenizer,
                          task.choices, choice_ids)
        return PreparedTask(task.name, len(task.choices or []), tr, ev, task_data(task, tr, ev), self, va,
                            spec=spec, metric=spec.metric)

    def describe(self, task):
        spec = task.spec
        how = f"{len(spec.choices)} choices" if spec.answer == "choices" else "a target text"
        return f"prompted ({how}, up to {spec.max_new_tokens} new tokens), primary metric {spec.metric}"

    def collate(self, task, rows, batching):
        return collate(task.train, rows, batching.pad_id, batching.device, batching.padding_side)

    def loss(self, model, heads, task, batch, pooling, reduction="mean"):
        nll, rows = answer_nll(model, batch)
        counts = batch["answer_mask"][:, 1:].sum(1).clamp(min=1)
        losses = per_example(nll, rows, batch["input_ids"].shape[0]) / counts  # each example: its mean per token
        if reduction == "none":
            return losses
        return losses.sum() if reduction == "sum" else losses.mean()

    def score(self, model, heads, task, batch_size, batching):
        spec, ev = task.spec, task.eval
        texts = generate(model, ev.ids, spec, batch_size, batching.pad_id, batching.device)
        exact = [metrics.exact_match(t, r) for t, r in zip(texts, ev.references)]
        if spec.answer == "choices":
            ll = choice_loglikelihoods(model, ev, spec.choice_ids, batch_size, batching.pad_id, batching.device)
            chars = [len(c) for c in spec.choices]
            by = {"accuracy": [float(argmax(x) == y) for x, y in zip(ll, ev.labels)],
                  "accuracy_norm": [float(argmax([v / n for v, n in zip(x, chars)]) == y)
                                    for x, y in zip(ll, ev.labels)],
                  "exact_match": exact}
        else:
            refs = [r.strip() for r in ev.references]
            by = {"rouge_l": metrics.rouge_l(texts, refs), "exact_match": exact, "chrf": metrics.chrf(texts, refs)}
            if spec.metric in TARGET_EXTRA:  # a pack's own metric (TRACE's), recorded where it is the primary one
                by[spec.metric] = [getattr(metrics, spec.metric)(t, r) for t, r in zip(texts, refs)]
        order = [spec.metric, *(m for m in by if m != spec.metric)]
        return [Score(m, sum(by[m]) / len(by[m]), len(by[m]), None, by[m], texts if m == "exact_match" else None)
                for m in order]
