"""Task heads on the frozen body: one seeded Linear per task, pooled at the last real token."""

from __future__ import annotations

import torch
from torch import nn

from .models import backbone, seeded


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-pad token of each row (works for right and left padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "last") -> torch.Tensor:
    """`last`: the last real token; `final`: position -1 (the paper's code: a pad token in
    right-padded rows, the last real token in left-padded ones)."""
    if mode == "final":
        return hidden[:, -1]
    idx = last_token_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


class TaskHeads(nn.Module):
    """One seeded Linear(hidden, num_classes) per task; earlier tasks' heads are kept frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()

    def add(self, task: str, hidden: int, num_classes: int, seed: int) -> nn.Linear:
        head = seeded(lambda: nn.Linear(hidden, num_classes), seed)
        self.heads[task] = head
        return head

    def forward(self, task: str, pooled: torch.Tensor) -> torch.Tensor:
        return self.heads[task](pooled)

    @classmethod
    def restore(cls, tasks: list[tuple[str, int]], hidden: int, tensors: dict[str, torch.Tensor],
                device: torch.device) -> TaskHeads:
        """Saved heads of `tasks` ((name, classes), in order), frozen and in eval mode."""
        heads = cls()
        for name, num_classes in tasks:
            heads.add(name, hidden, num_classes, seed=0)
        heads.load_state_dict(tensors)
        return heads.to(device).eval().requires_grad_(False)


def classify(
    model: nn.Module, heads: TaskHeads, task: str, input_ids, attention_mask, pooling: str = "last"
) -> torch.Tensor:
    """Logits of task `task`'s head at the pooled position of the frozen body (+ adapter)."""
    hidden = backbone(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return heads(task, pool(hidden, attention_mask, pooling))
