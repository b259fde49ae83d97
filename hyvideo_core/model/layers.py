"""Small shared layers: RMS q/k norm, non-affine LayerNorm, adaLN modulation, gated MLP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Per-head RMS norm on q/k (eps 1e-6, learned scale), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Non-affine LayerNorm in float32 (as autocast runs it in the official inference)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x·(1 + scale) + shift, with per-sample (B, D) shift and scale."""
    return x * (1 + scale[:, None].float()) + shift[:, None].float()


@dataclass(frozen=True)
class Conditioning:
    """The conditioning vector (B, D), and for image-to-video token replacement a second vector
    for the first ``first_tokens`` image tokens (the clean first frame, seen at t = 0)."""
    vec: torch.Tensor
    first: Optional[torch.Tensor] = None
    first_tokens: int = 0


@dataclass(frozen=True)
class ModulationOut:
    """adaLN chunks, each (B, D); ``first`` chunks apply to the first ``first_tokens`` tokens."""
    chunks: Tuple[torch.Tensor, ...]
    first: Optional[Tuple[torch.Tensor, ...]] = None
    first_tokens: int = 0

    def modulate(self, x: torch.Tensor, shift: int) -> torch.Tensor:
        """x·(1 + chunk[shift+1]) + chunk[shift], in float32."""
        return self._per_tokens(x, lambda part, c: modulate(part, c[shift], c[shift + 1]))

    def gate(self, y: torch.Tensor, index: int) -> torch.Tensor:
        return self._per_tokens(y, lambda part, c: part * c[index][:, None])

    def _per_tokens(self, x, fn):
        if self.first is None:
            return fn(x, self.chunks)
        n = self.first_tokens
        return torch.cat([fn(x[:, :n], self.first), fn(x[:, n:], self.chunks)], dim=1)


class Modulation(nn.Module):
    """SiLU -> Linear on the conditioning vector, split into ``factor`` (B, D) chunks."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.factor = factor
        self.act = nn.SiLU()
        self.linear = nn.Linear(hidden_size, factor * hidden_size)

    def forward(self, cond: Union[Conditioning, torch.Tensor]) -> ModulationOut:
        if isinstance(cond, torch.Tensor):
            cond = Conditioning(cond)
        chunks = self.linear(self.act(cond.vec)).chunk(self.factor, dim=-1)
        if cond.first is None:
            return ModulationOut(chunks)
        return ModulationOut(chunks, self.linear(self.act(cond.first)).chunk(self.factor, dim=-1), cond.first_tokens)


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (GELU-tanh in the main blocks, SiLU in the token refiner)."""

    def __init__(self, hidden_size: int, mlp_hidden: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.act = act
        self.fc2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
