"""Accuracy on a task's eval split; sliding-window perplexity on a corpus."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..sources.heads import TaskHeads, classify
from ..sources.models import backbone, lm_logits
from .data import Split, batches, collate


@torch.inference_mode()
def predictions(
    model: nn.Module,
    heads: TaskHeads,
    task: str,
    split: Split,
    batch_size: int,
    device: torch.device,
    pad_id: int,
    pooling: str = "last",
    padding_side: str = "right",
) -> list[int]:
    """The head's predicted class for every example of `split`, in the split's order (computed in
    length-sorted batches; `batch_size=1` is the paper's one-example-at-a-time evaluation)."""
    model.eval()  # never dropout here, whatever mode the caller left the model in
    out = [0] * len(split)
    for idx in batches([len(s) for s in split.ids], batch_size, shuffle=False):
        batch = collate(split, idx, pad_id, device, padding_side)
        logits = classify(model, heads, task, batch["input_ids"], batch["attention_mask"], pooling)
        for i, p in zip(idx, logits.argmax(-1).tolist()):
            out[i] = p
    return out


def accuracy(model: nn.Module, heads: TaskHeads, task: str, split: Split, batch_size: int, device: torch.device,
             pad_id: int, pooling: str = "last", padding_side: str = "right") -> float:
    """Fraction of `split` whose argmax head prediction equals the label."""
    preds = predictions(model, heads, task, split, batch_size, device, pad_id, pooling, padding_side)
    return sum(p == y for p, y in zip(preds, split.labels)) / len(split)


@dataclass
class Window:
    ids: list[int]  # model input (BOS first if used)
    first_target: int  # index into `ids` of the first token that is scored


def sliding_windows(tokens: list[int], window: int, stride: int, bos_id: int | None) -> list[Window]:
    """The Hugging Face perplexity guide's strided windows, made exact.

    Each window holds up to `window` input ids (BOS first when given); tokens already scored by
    an earlier window are context only. Every corpus token is scored at most once; a window's
    first token is not scored when nothing precedes it (no BOS and no overlap), and the count
    of scored tokens is exact, so the average is token-weighted.
    """
    content = window - (1 if bos_id is not None else 0)
    step = min(stride, content)
    out, prev_end = [], 0
    for begin in range(0, len(tokens), step):
        end = min(begin + content, len(tokens))
        seq = tokens[begin:end]
        first = end - prev_end  # number of new tokens to score
        prefix = [bos_id] if bos_id is not None else []
        first_target = len(prefix) + len(seq) - first
        out.append(Window(prefix + seq, max(first_target, 1)))
        prev_end = end
        if end == len(tokens):
            break
    return out


# positions per LM-head call: 256 x 49k-vocabulary fp32 logits = 50 MB, big enough for a fast matmul
LM_HEAD_CHUNK = 256


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens: int  # tokens scored
    windows: int
    protocol: dict

    def as_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def perplexity(
    model: nn.Module,
    tokens: list[int],
    window: int,
    stride: int,
    bos_id: int | None,
    batch_size: int,
    device: torch.device,
    protocol: dict | None = None,
) -> PerplexityResult:
    """Token-weighted perplexity over strided windows with the model's own LM head.

    The LM head runs only on positions whose next token is scored, in chunks, so context-only
    positions cost nothing there and the vocabulary-sized logits never fill memory.
    """
    wins = sliding_windows(tokens, window, stride, bos_id)
    model.eval()  # never dropout here, whatever mode the caller left the model in
    body = backbone(model)
    nll_sum, count = 0.0, 0
    # windows of equal length batch together (all but possibly the last)
    by_len: dict[int, list[Window]] = {}
    for w in wins:
        by_len.setdefault(len(w.ids), []).append(w)
    for group in by_len.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            ids = torch.tensor([w.ids for w in chunk], dtype=torch.long, device=device)
            hidden = body(input_ids=ids, use_cache=False).last_hidden_state
            for row, w in enumerate(chunk):
                # position t predicts token t+1: score targets first_target..end
                h = hidden[row, w.first_target - 1 : len(w.ids) - 1]
                target = ids[row, w.first_target :]
                for c in range(0, h.shape[0], LM_HEAD_CHUNK):
                    logits = lm_logits(model, h[c : c + LM_HEAD_CHUNK]).float()
                    nll_sum += float(nn.functional.cross_entropy(logits, target[c : c + LM_HEAD_CHUNK], reduction="sum"))
                count += int(target.numel())
    nll = nll_sum / max(count, 1)
    info = {
        "protocol": "sliding-window",
        "window": window,
        "stride": stride,
        "bos": bos_id is not None,
        "corpus_tokens": len(tokens),
        **(protocol or {}),
    }
    return PerplexityResult(math.exp(nll), nll, count, len(wins), info)
