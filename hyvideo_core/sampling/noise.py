"""Latent shapes and seeded noise that is identical on every device."""
from __future__ import annotations

import numbers
from typing import Tuple

import torch

from ..errors import InputError


def latent_shape(frames: int, height: int, width: int, channels: int = 16, batch: int = 1,
                 time_compression: int = 4, spatial_compression: int = 8) -> Tuple[int, int, int, int, int]:
    """(B, C, T, H/8, W/8) for a video of ``frames`` (4n+1) × ``height`` × ``width`` (multiples of 16)."""
    sizes = dict(frames=frames, height=height, width=width, channels=channels, batch=batch,
                 time_compression=time_compression, spatial_compression=spatial_compression)
    for name, value in sizes.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive whole number, got {value!r}")
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
    shape = tuple(shape)
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise InputError(f"noise shape must be whole numbers >= 0, got {shape}; use latent_shape(...) to get one")
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
