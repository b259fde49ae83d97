"""Flow-matching noise schedules (tech report §5.1: shifted timesteps for few-step sampling)."""
from __future__ import annotations

import torch

from ..errors import InputError


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = s·σ / (1 + (s − 1)·σ): spends more steps at high noise when s > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(steps: int, shift: float = 7.0) -> torch.Tensor:
    """(steps + 1,) float32 sigmas from 1 (noise) to 0 (data); the model sees t = 1000·σ."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if shift <= 0:
        raise InputError(f"shift must be positive, got {shift}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()
