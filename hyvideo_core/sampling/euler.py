"""Euler integration of a flow-matching ODE from noise (σ = 1) to data (σ = 0).

Model-agnostic: the velocity is any callable, so the video transformer, the Foley model or a
test oracle all use the same loop, the same progress events and the same interruption.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..runtime.progress import ProgressCallback, ProgressEvent, report

# (x, sigma, step index) -> float32 velocity
Velocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def euler(x: torch.Tensor, sigmas: torch.Tensor, velocity: Velocity, *, first: int = 0,
          after_step: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
          callback: Optional[ProgressCallback] = None, stage: str = "sample") -> torch.Tensor:
    """Integrate from ``sigmas[first]`` to ``sigmas[-1]``; ``after_step`` re-imposes conditions
    (e.g. a clean first frame) on the latents and on the x0 estimate after every step."""
    steps = len(sigmas) - 1
    for i in range(first, steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        v = velocity(x, sigma, i)
        denoised = x - sigma * v
        x = x + (sigma_next - sigma) * v
        if after_step is not None:
            x, denoised = after_step(x), after_step(denoised)
        report(callback, ProgressEvent(stage, i + 1 - first, steps - first, latents=x, denoised=denoised))
    return x
