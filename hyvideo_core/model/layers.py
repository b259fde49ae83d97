"""Small shared layers: RMS q/k norm, non-affine LayerNorm, adaLN modulation, gated MLP."""
from __future__ import annotations

from typing import Tuple

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
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Non-affine LayerNorm in float32 (as autocast runs it in the official inference)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x·(1 + scale) + shift, with per-sample (B, D) shift and scale."""
    return x * (1 + scale[:, None].float()) + shift[:, None].float()


class Modulation(nn.Module):
    """SiLU -> Linear on the conditioning vector, split into ``factor`` (B, D) chunks."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.factor = factor
        self.act = nn.SiLU()
        self.linear = nn.Linear(hidden_size, factor * hidden_size)

    def forward(self, vec: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.linear(self.act(vec)).chunk(self.factor, dim=-1)


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (GELU-tanh in the main blocks, SiLU in the token refiner)."""

    def __init__(self, hidden_size: int, mlp_hidden: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.act = act
        self.fc2 = nn.Linear(mlp_hidden, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
