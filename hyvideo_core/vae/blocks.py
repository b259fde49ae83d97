"""Building blocks of the causal 3D VAE (spec official_t2v.md §4.3): resnet, strided
down-sampling, first-frame-special up-sampling, and the mid block with frame-causal attention.

Attribute names follow the official checkpoint keys (``resnets.N.norm1``, ``downsamplers.0.conv``,
``attentions.0.to_out.0`` ...), so official and diffusers files load with an identity map.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .causal_conv import CausalConv3d

NORM_EPS = 1e-6


def silu(x: torch.Tensor) -> torch.Tensor:
    # In place saves one activation-sized buffer per call when no graph needs the input.
    return F.silu(x, inplace=not torch.is_grad_enabled())


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken in float32 for half-precision inputs, as the
    official fp16-autocast decode does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                                self.eps).to(x.dtype)
        return super().forward(x)


class ResnetBlock(nn.Module):
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))`` with a 1x1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=NORM_EPS)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = GroupNorm(groups, out_channels, eps=NORM_EPS)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut = (CausalConv3d(in_channels, out_channels, 1)
                              if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(silu(self.norm1(x)))
        h = self.conv2(silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        if torch.is_grad_enabled():
            return shortcut + h
        return h.add_(shortcut)


class Downsample(nn.Module):
    """A strided causal conv: (1,2,2) halves H and W, (2,2,2) also maps T frames to (T-1)//2+1."""

    def __init__(self, channels: int, stride: Tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest up-sampling by ``factor`` (t, h, w), then a causal conv.

    The first frame is up-sampled in space only: it stands for a single pixel frame, the others
    for ``factor[0]`` frames each, so T latent frames become 1 + factor_t * (T - 1).
    """

    def __init__(self, channels: int, factor: Tuple[int, int, int]) -> None:
        super().__init__()
        self.factor = tuple(factor)
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fh, fw = self.factor
        b, c, t, h, w = x.shape
        out = x.new_empty(b, c, 1 + ft * (t - 1), h * fh, w * fw)
        # Nearest up-sampling written as broadcast copies into one tensor: no intermediates.
        out[:, :, :1].view(b, c, 1, h, fh, w, fw).copy_(
            x[:, :, :1, :, None, :, None].expand(b, c, 1, h, fh, w, fw))
        if t > 1:
            out[:, :, 1:].view(b, c, t - 1, ft, h, fh, w, fw).copy_(
                x[:, :, 1:, None, :, None, :, None].expand(b, c, t - 1, ft, h, fh, w, fw))
        return self.conv(out)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_resnets: int, groups: int,
                 stride: Tuple[int, int, int]) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_resnets))
        self.downsamplers = (nn.ModuleList([Downsample(out_channels, stride)])
                             if stride != (1, 1, 1) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_resnets: int, groups: int,
                 factor: Tuple[int, int, int]) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_resnets))
        self.upsamplers = (nn.ModuleList([Upsample(out_channels, factor)])
                           if factor != (1, 1, 1) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


def frame_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           tokens_per_frame: int) -> torch.Tensor:
    """Single-head attention over frame-major tokens (B, T*N, C) where a token of frame f sees
    every token of frames <= f, with scale 1/sqrt(C).

    Equal to softmax with the official additive -inf mask, but each query frame attends only to
    its visible prefix, so no (T*N)^2 mask is ever built.
    """
    out = torch.empty_like(q)
    for start in range(0, q.shape[1], tokens_per_frame):
        end = start + tokens_per_frame
        out[:, start:end] = F.scaled_dot_product_attention(q[:, start:end], k[:, :end], v[:, :end])
    return out


class CausalFrameAttention(nn.Module):
    """The mid-block attention: group norm, one head as wide as the channels, frame-causal,
    residual (diffusers ``Attention`` with ``_from_deprecated_attn_block``)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=NORM_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)      # (B, T*H*W, C), frame-major
        attended = frame_causal_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens),
                                          tokens_per_frame=height * width)
        del tokens
        out = self.to_out[0](attended).transpose(1, 2).reshape(batch, channels, frames, height, width)
        return x + out


class MidBlock(nn.Module):
    """resnet -> frame-causal attention -> resnet, at the lowest resolution."""

    def __init__(self, channels: int, groups: int, add_attention: bool = True) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups),
                                      ResnetBlock(channels, channels, groups)])
        self.attentions = nn.ModuleList(
            [CausalFrameAttention(channels, groups)] if add_attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)
