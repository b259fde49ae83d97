"""Flow-matching training objective (tech report §4.3 / §4.5, official `transport.py`).

x_t = (1 − σ)·x0 + σ·ε, target velocity v = ε − x0, model time t = 1000·σ.
σ is drawn from a logit-normal distribution (σ = sigmoid(N(mean, std))), optionally through
the same shift the sampler uses (σ' = sσ / (1 + (s − 1)σ)), or uniformly.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import InputError

TIMESTEP_SAMPLING = ("logit_normal", "uniform")


def shift_sigmas(sigma: torch.Tensor, shift: Optional[float]) -> torch.Tensor:
    if shift is None or shift == 1.0:
        return sigma
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_sigmas(n: int, generator: torch.Generator, mode: str = "logit_normal", mean: float = 0.0,
                  std: float = 1.0, shift: Optional[float] = None) -> torch.Tensor:
    """(n,) noise levels in (0, 1) drawn with ``generator`` (CPU)."""
    if mode == "logit_normal":
        sigma = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    elif mode == "uniform":
        sigma = torch.rand(n, generator=generator)
    else:
        raise InputError(f"timestep sampling {mode!r} is unknown; use one of {TIMESTEP_SAMPLING}")
    return shift_sigmas(sigma, shift).clamp(1e-5, 1 - 1e-5)


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def flow_matching_loss(pred: torch.Tensor, target: torch.Tensor, first_frame_free: bool = False) -> torch.Tensor:
    """mean((v_pred − v)²); ``first_frame_free`` skips latent frame 0 (I2V token_replace)."""
    if first_frame_free:
        pred, target = pred[:, :, 1:], target[:, :, 1:]
    return (pred.float() - target.float()).pow(2).mean()
