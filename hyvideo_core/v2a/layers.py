"""Layers of the Foley DiT that the video transformer does not have: gated (SwiGLU) projections,
convolutions over the token axis, nearest-exact resampling of token sequences and the 1-D
rotary tables. Module attribute names are the official checkpoint keys (``w1``/``w2``/``w3``,
``proj``)."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..model.layers import RMSNorm
from ..model.rope import position_angles


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) · w3 x)`` without biases (``visual_proj``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, out_dim, bias=False)
        self.w3 = nn.Linear(in_dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TokenConv1d(nn.Conv1d):
    """A 1-D convolution along the token axis of (B, L, C) tensors (channels last in and out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvSwiGLU(nn.Module):
    """The SwiGLU feed-forward with token-axis convolutions instead of linears (no biases):
    ``sync_in.2`` (kernel 1) and the single blocks' ``linear2`` (kernel 3, so neighbouring audio
    frames mix)."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.w1 = TokenConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)
        self.w2 = TokenConv1d(hidden_dim, dim, kernel_size, padding=pad, bias=False)
        self.w3 = TokenConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class AudioEmbed(nn.Module):
    """``audio_embedder``: (B, C_latent, La) DAC latents -> (B, La, H) tokens (a kernel-1 conv,
    i.e. one linear map per latent frame)."""

    def __init__(self, latent_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv1d(latent_dim, hidden_size, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).transpose(1, 2)


class DefaultEpsRMSNorm(RMSNorm):
    """The single blocks' q/k norm: ``torch.nn.RMSNorm`` built with ``eps=None``, as released.

    torch then takes the machine epsilon of the type it accumulates in, float32 (1.19e-7), for
    float32, bf16 and fp16 inputs alike (checked against ``torch.nn.RMSNorm`` in the tests); the
    triple blocks' norms use 1e-6."""

    def __init__(self, dim: int):
        super().__init__(dim, eps=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), torch.finfo(torch.float32).eps).to(x.dtype)


@lru_cache(maxsize=64)
def _nearest_exact_index_cpu(n_out: int, n_in: int) -> torch.Tensor:
    # torch's own nearest-exact rule applied to positions, so the index map is the one
    # F.interpolate(mode="nearest-exact") uses on the official side.
    positions = torch.arange(n_in, dtype=torch.float64)[None, None]
    return F.interpolate(positions, size=n_out, mode="nearest-exact")[0, 0].long()


def nearest_exact_index(n_out: int, n_in: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_out,) indices into a length-``n_in`` sequence: which input token each output token copies."""
    return _nearest_exact_index_cpu(n_out, n_in).to(device)


def resample_tokens(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, C) -> (B, length, C) by nearest-exact token copying (Synchformer tokens to audio frames)."""
    if x.shape[1] == length:
        return x
    return x[:, nearest_exact_index(length, x.shape[1], x.device)]


def rope_1d(length: int, head_dim: int, theta: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(length, head_dim/2) complex64 rotations for positions 0..length-1 over the whole head dim
    (pairs (x[2j], x[2j+1]) rotate together, as everywhere in this project)."""
    positions = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    angles = position_angles(positions, (head_dim,), theta)
    return torch.polar(torch.ones_like(angles), angles)
