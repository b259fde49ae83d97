"""Flow-matching noise schedules (tech report §5.1: shifted timesteps for few-step sampling)."""
from __future__ import annotations

import math
import numbers

import torch

from ..errors import InputError


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = s·σ / (1 + (s − 1)·σ): spends more steps at high noise when s > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(steps: int, shift: float = 7.0) -> torch.Tensor:
    """(steps + 1,) float32 sigmas from 1 (noise) to 0 (data); the model sees t = 1000·σ."""
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise InputError(f"steps must be a whole number of at least 1, got {steps!r}")
    if not isinstance(shift, numbers.Real) or not math.isfinite(shift) or shift <= 0:
        raise InputError(f"shift must be a positive number, got {shift!r}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()
