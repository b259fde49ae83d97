"""The causal 3D convolution every VAE conv is built from (spec official_t2v.md §4.2).

Causality lives in the padding: the time axis is padded only at the front, with copies of the
first frame, so output frame t sees input frames <= t. Spatial padding is replicate as well.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

IntOr3 = Union[int, Tuple[int, int, int]]


class CausalConv3d(nn.Module):
    """``nn.Conv3d`` with front-only replicate padding in time; the conv sits at ``.conv``
    so its keys are ``<prefix>.conv.weight`` / ``.conv.bias`` as in the official checkpoint."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: IntOr3 = 1) -> None:
        super().__init__()
        half = kernel_size // 2
        # F.pad order: (W left, W right, H top, H bottom, T front, T back).
        self.padding = (half, half, half, half, kernel_size - 1, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding, mode="replicate")
        return self.conv(x)
