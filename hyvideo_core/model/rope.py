"""3-D rotary position embedding over the (t, h, w) token grid.

Head dims are split per axis (16/56/56 in the released model), positions are integer grid
indices, theta is 256, and rotation acts on interleaved pairs (x[2j], x[2j+1]) — the same as
multiplying the complex number x[2j] + i·x[2j+1] by e^{iθ_j}, which is how it is applied here.
RoPE is applied to image tokens only.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def rope_angles(grid: Sequence[int], axes: Sequence[int], theta: float,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(T*H*W, sum(axes)/2) float32 rotation angles, token order T-major, W fastest."""
    positions = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in grid], indexing="ij")
    parts = []
    for pos, dim in zip(positions, axes):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device)[: dim // 2] / dim)
        parts.append(torch.outer(pos.reshape(-1), freqs))
    return torch.cat(parts, dim=1)


def rope_frequencies(grid: Sequence[int], axes: Sequence[int], theta: float,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, D/2) complex64 rotations e^{iθ}, what :func:`apply_rope` takes."""
    angles = rope_angles(grid, axes, theta, device)
    return torch.polar(torch.ones_like(angles), angles)


def rope_tables(grid: Sequence[int], axes: Sequence[int], theta: float,
                device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """The official real form: cos and sin tables (L, D), each value repeated for its pair."""
    angles = rope_angles(grid, axes, theta, device)
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate (B, L, H, D) by (L, D/2) complex frequencies; float32 inside, x's dtype out."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs[None, :, None, :]).flatten(-2).to(x.dtype)
