"""Exponential moving average of the trainable parameters (float32 shadow copies)."""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import torch


class EMA:
    def __init__(self, named_params: Iterable[Tuple[str, torch.nn.Parameter]], decay: float = 0.999,
                 warmup: bool = True):
        self.decay, self.warmup, self.updates = float(decay), warmup, 0
        self.params = dict(named_params)
        self.shadow: Dict[str, torch.Tensor] = {n: p.detach().float().clone() for n, p in self.params.items()}

    def current_decay(self) -> float:
        # the usual (1 + n) / (10 + n) ramp so early averages are not dominated by the random init
        return min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        for n, p in self.params.items():
            self.shadow[n].mul_(d).add_(p.detach().float(), alpha=1 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, named_params: Dict[str, torch.nn.Parameter]) -> None:
        for n, p in named_params.items():
            p.copy_(self.shadow[n].to(p.dtype))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {n: t.clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        for n, t in state["shadow"].items():
            self.shadow[n].copy_(t)
