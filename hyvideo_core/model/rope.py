"""3-D rotary position embedding over the (t, h, w) token grid.

Head dims are split per axis (16/56/56 in the released model), positions are integer grid
indices, theta is 256, and rotation acts on interleaved pairs (x[2j], x[2j+1]).
RoPE is applied to image tokens only.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def rope_tables(grid: Sequence[int], axes: Sequence[int], theta: float,
                device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (T*H*W, sum(axes)) in float32, token order T-major, W fastest."""
    positions = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in grid], indexing="ij")
    cos_parts, sin_parts = [], []
    for pos, dim in zip(positions, axes):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device)[: dim // 2] / dim)
        angles = torch.outer(pos.reshape(-1), freqs)
        cos_parts.append(angles.cos().repeat_interleave(2, dim=1))
        sin_parts.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos_parts, dim=1), torch.cat(sin_parts, dim=1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, L, H, D) by tables of shape (L, D); computed in float32, returned in x's dtype."""
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (xf * cos + rotated * sin).to(x.dtype)
