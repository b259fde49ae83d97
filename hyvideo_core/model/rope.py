"""3-D rotary position embedding over the (t, h, w) token grid.

Head dims are split per axis (16/56/56 in the released model), positions are integer grid
indices, theta is 256, and rotation acts on interleaved pairs (x[2j], x[2j+1]) — the same as
multiplying the complex number x[2j] + i·x[2j+1] by e^{iθ_j}, which is how it is applied here.
RoPE is applied to image tokens only.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def grid_positions(grid: Sequence[int], offset: Sequence[float] = (0, 0, 0),
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """(T*H*W, 3) float32 (t, h, w) positions of a token grid, T-major, W fastest, shifted by
    ``offset`` (e.g. avatar's reference frame sits at t = -1)."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) + o if o else
            torch.arange(n, dtype=torch.float32, device=device) for n, o in zip(grid, offset)]
    return torch.stack([p.reshape(-1) for p in torch.meshgrid(*axes, indexing="ij")], dim=1)


def position_angles(positions: torch.Tensor, axes: Sequence[int], theta: float) -> torch.Tensor:
    """(L, sum(axes)/2) float32 rotation angles for explicit (L, len(axes)) positions."""
    if positions.dim() != 2 or positions.shape[1] != len(axes):
        raise ValueError(f"positions must be (L, {len(axes)}), found {tuple(positions.shape)}")
    parts = []
    for a, dim in enumerate(axes):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)[: dim // 2] / dim)
        parts.append(torch.outer(positions[:, a].float(), freqs))
    return torch.cat(parts, dim=1)


def rope_angles(grid: Sequence[int], axes: Sequence[int], theta: float,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(T*H*W, sum(axes)/2) float32 rotation angles, token order T-major, W fastest."""
    return position_angles(grid_positions(grid, device=device), axes, theta)


def rope_for_positions(positions: torch.Tensor, axes: Sequence[int], theta: float) -> torch.Tensor:
    """(L, D/2) complex64 rotations for explicit positions (tokens outside the latent grid)."""
    angles = position_angles(positions, axes, theta)
    return torch.polar(torch.ones_like(angles), angles)


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
