"""A layer with I-LoRA's two LoRAs of one shape: the torch half of `adapters/ilora.py`.

y = base(x) + alpha * x A^T B^T with (A, B) the fast LoRA (`ilora_A`, `ilora_B`: trainable) or
the slow one (`ilora_slow_A`, `ilora_slow_B`: buffers, moved only by `ema_update`), as `slow`
says. `slow` is a mode, not state: True from construction (so a loaded checkpoint or export
applies the slow LoRA), False while a stage trains.
"""

from __future__ import annotations

import torch
from torch import nn

from .task_lora import kaiming_a, orientation


class ILoRALayer(nn.Module):
    """base(x) + alpha * x A^T B^T, with the fast or the slow (A, B)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, seed: int, slow_seed: int):
        super().__init__()
        self.base_layer = base
        self.alpha = alpha
        self.transposed, self.out_features, self.in_features = orientation(base)
        w = base.weight
        # PEFT's LoRA init for both (kaiming A, zero B); the slow one is a second adapter with its own draw
        self.ilora_A = nn.Parameter(kaiming_a(rank, self.in_features, seed).to(w.device, w.dtype))
        self.ilora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=w.device, dtype=w.dtype))
        self.register_buffer("ilora_slow_A", kaiming_a(rank, self.in_features, slow_seed).to(w.device, w.dtype))
        self.register_buffer("ilora_slow_B", torch.zeros(self.out_features, rank, device=w.device, dtype=w.dtype))
        self.slow = True

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def pair(self, slow: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.ilora_slow_A, self.ilora_slow_B) if slow else (self.ilora_A, self.ilora_B)

    def update(self, slow: bool) -> torch.Tensor:
        """alpha * B A of the slow or the fast LoRA (out x in)."""
        a, b = self.pair(slow)
        return self.alpha * (b @ a)

    def delta_weight(self) -> torch.Tensor:
        """The applied LoRA's alpha * B A in the stored weight's orientation (in x out for Conv1D)."""
        delta = self.update(self.slow)
        return delta.T if self.transposed else delta

    @torch.no_grad()
    def ema_update(self, lam: float) -> None:
        """slow <- lam * slow + (1 - lam) * fast, A and B."""
        self.ilora_slow_A.mul_(lam).add_(self.ilora_A.detach(), alpha=1 - lam)
        self.ilora_slow_B.mul_(lam).add_(self.ilora_B.detach(), alpha=1 - lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        a, b = self.pair(self.slow)
        upd = (x.to(a.dtype) @ a.T) @ b.T
        return out + self.alpha * upd.to(out.dtype)
