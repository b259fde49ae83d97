"""Latent shapes and seeded noise that is identical on every device."""
from __future__ import annotations

from typing import Tuple

import torch

from ..errors import InputError


def latent_shape(frames: int, height: int, width: int, channels: int = 16, batch: int = 1,
                 time_compression: int = 4, spatial_compression: int = 8) -> Tuple[int, int, int, int, int]:
    """(B, C, T, H/8, W/8) for a video of ``frames`` (4n+1) × ``height`` × ``width`` (multiples of 16)."""
    if frames < 1 or (frames - 1) % time_compression:
        lo = (frames - 1) // time_compression * time_compression + 1
        raise InputError(f"frame count must be {time_compression}n+1 (1, 5, 9, …, 129), got {frames}; "
                         f"use {max(lo, 1)} or {lo + time_compression}")
    step = 2 * spatial_compression  # VAE ×8 then the transformer's 2×2 patch
    for name, value in (("height", height), ("width", width)):
        if value < step or value % step:
            raise InputError(f"{name} must be a positive multiple of {step} pixels, got {value}; "
                             f"use {max(step, value // step * step)}")
    return (batch, channels, (frames - 1) // time_compression + 1, height // spatial_compression,
            width // spatial_compression)


def make_noise(shape, seed: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``seed``, then moved: the same seed gives the
    same video on CPU and on any GPU."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
