"""One attention function with registered backends.

``attention(q, k, v, mask=..., backend=...)`` takes (B, L, H, D) tensors (the official
layout; queries and keys may differ in length, as in cross-attention adapters) and an optional
key mask: (B, L_k) bool key-padding, or (B, 1, L_q, L_k) bool.
Backends: ``reference`` (matmul-softmax in float32, the test oracle), ``sdpa`` (torch, the
CPU default), ``flash_varlen`` (flash-attn, CUDA) and ``sage`` (SageAttention, CUDA).
An unavailable backend falls back to ``sdpa`` with one log line.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from ..errors import BackendUnavailableError

log = logging.getLogger(__name__)

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: AttentionFn
    why_unavailable: Callable[[torch.device], Optional[str]]  # None = usable on that device
    supports_full_mask: bool = True


_BACKENDS: Dict[str, Backend] = {}
_warned: set = set()


def register_backend(name: str, fn: AttentionFn, why_unavailable: Callable[[torch.device], Optional[str]],
                     supports_full_mask: bool = True) -> None:
    _BACKENDS[name] = Backend(name, fn, why_unavailable, supports_full_mask)


def _always(_device: torch.device) -> Optional[str]:
    return None


def _needs_module(module: str, extra: str) -> Callable[[torch.device], Optional[str]]:
    def check(device: torch.device) -> Optional[str]:
        if importlib.util.find_spec(module) is None:
            return f"python package {module!r} is not installed (pip install {extra})"
        if device.type != "cuda":
            return f"needs a CUDA device, tensors are on {device.type}"
        return None
    return check


def available_backends(device: torch.device | str = "cpu") -> Dict[str, Optional[str]]:
    """Every registered backend -> None if usable on ``device``, else the reason why not."""
    device = torch.device(device)
    return {name: b.why_unavailable(device) for name, b in _BACKENDS.items()}


def _as_full_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if mask is None or mask.dim() == 4:
        return mask
    return mask[:, None, None, :]  # key padding -> (B, 1, 1, L_k)


def reference_attention(q, k, v, mask=None):
    """Plain softmax(QK^T/sqrt(d))V in float32: slow, obviously correct, the test oracle."""
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
    scores = qf @ kf.transpose(-1, -2) / qf.shape[-1] ** 0.5
    full = _as_full_mask(mask)
    if full is not None:
        scores = scores.masked_fill(~full, float("-inf"))
    return (scores.softmax(-1) @ vf).transpose(1, 2).to(q.dtype)


def sdpa_attention(q, k, v, mask=None):
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=_as_full_mask(mask))
    return out.transpose(1, 2)


def _varlen_segments(mask: Optional[torch.Tensor], batch: int, length: int, device):
    """cu_seqlens splitting each sample into [valid tokens | padded tokens] segments, as the
    official flash path does; pad queries only see pads, which never reach valid tokens."""
    valid = (torch.full((batch,), length, device=device, dtype=torch.int32) if mask is None
             else mask.sum(-1, dtype=torch.int32))
    ends = torch.arange(1, batch + 1, device=device, dtype=torch.int32) * length
    bounds = torch.stack([ends - length + valid, ends], dim=1).flatten()
    return torch.cat([torch.zeros(1, dtype=torch.int32, device=device), bounds])


def _cross_segments(mask: Optional[torch.Tensor], batch: int, q_len: int, k_len: int, device):
    """Cross-attention (L_q != L_k): one query segment per sample, and per sample only its valid
    keys, packed; returns (cu_q, cu_k, key index or None)."""
    cu_q = torch.arange(batch + 1, device=device, dtype=torch.int32) * q_len
    if mask is None:
        return cu_q, torch.arange(batch + 1, device=device, dtype=torch.int32) * k_len, None
    valid = mask.sum(-1, dtype=torch.int32)
    cu_k = torch.cat([torch.zeros(1, dtype=torch.int32, device=device), valid.cumsum(0, dtype=torch.int32)])
    return cu_q, cu_k, mask.reshape(-1).nonzero().squeeze(1)


def flash_varlen_attention(q, k, v, mask=None):
    from flash_attn import flash_attn_varlen_func

    b, length, heads, dim = q.shape
    k_len = k.shape[1]
    if k_len != length:
        cu_q, cu_k, keep = _cross_segments(mask, b, length, k_len, q.device)
        kf, vf = k.reshape(b * k_len, heads, dim), v.reshape(b * k_len, heads, dim)
        if keep is not None:
            kf, vf = kf[keep], vf[keep]
        out = flash_attn_varlen_func(q.reshape(b * length, heads, dim), kf, vf, cu_q, cu_k, length,
                                     int((cu_k[1:] - cu_k[:-1]).max()))
        return out.reshape(b, length, heads, dim)
    cu = _varlen_segments(mask, b, length, q.device)
    out = flash_attn_varlen_func(q.reshape(b * length, heads, dim), k.reshape(b * length, heads, dim),
                                 v.reshape(b * length, heads, dim), cu, cu, length, length)
    return out.reshape(b, length, heads, dim)


def sage_attention(q, k, v, mask=None):
    from sageattention import sageattn

    if mask is None:
        return sageattn(q, k, v, tensor_layout="NHD", is_causal=False)
    # SageAttention has no mask input: run each sample on its valid keys. In self-attention the
    # pad queries' outputs are zero (they only ever feed other pad tokens); in cross-attention
    # (L_q != L_k) every query attends to the sample's valid keys.
    cross = q.shape[1] != k.shape[1]
    out = torch.zeros_like(q)
    for i, n in enumerate(mask.sum(-1).tolist()):
        rows = slice(None) if cross else slice(0, n)
        out[i : i + 1, rows] = sageattn(q[i : i + 1, rows], k[i : i + 1, :n], v[i : i + 1, :n],
                                        tensor_layout="NHD", is_causal=False)
    return out


register_backend("reference", reference_attention, _always)
register_backend("sdpa", sdpa_attention, _always)
register_backend("flash_varlen", flash_varlen_attention, _needs_module("flash_attn", "flash-attn"),
                 supports_full_mask=False)
register_backend("sage", sage_attention, _needs_module("sageattention", "sageattention"),
                 supports_full_mask=False)

DEFAULT_BACKEND = "sdpa"


def resolve_backend(name: Optional[str], device: torch.device, strict: bool = False) -> str:
    """Name of the backend to use: ``name`` if usable, else ``sdpa`` with one log line (or an
    error when ``strict``)."""
    name = name or DEFAULT_BACKEND
    if name not in _BACKENDS:
        raise BackendUnavailableError(
            f"unknown attention backend {name!r}; registered: {', '.join(_BACKENDS)}")
    reason = _BACKENDS[name].why_unavailable(torch.device(device))
    if reason is None:
        return name
    if strict:
        raise BackendUnavailableError(f"attention backend {name!r} is unavailable: {reason}")
    if (name, reason) not in _warned:
        _warned.add((name, reason))
        log.warning("attention backend %r unavailable (%s); using %r", name, reason, DEFAULT_BACKEND)
    return DEFAULT_BACKEND


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None,
              backend: Optional[str] = None) -> torch.Tensor:
    """Scaled dot-product attention over (B, L, H, D) tensors; returns (B, L_q, H, D)."""
    name = resolve_backend(backend, q.device)
    chosen = _BACKENDS[name]
    if mask is not None and mask.dim() == 4 and not chosen.supports_full_mask:
        chosen = _BACKENDS[DEFAULT_BACKEND]  # only key-padding masks map to varlen segments
    return chosen.fn(q, k, v, mask)
