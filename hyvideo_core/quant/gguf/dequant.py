"""Vectorised dequantisation of GGML block formats in torch (runs on CPU and on any GPU).

Each function takes the raw bytes of a tensor as a uint8 tensor of shape (n_blocks, type_size)
and returns float32 values of shape (n_blocks, block_size). The bit layouts follow ggml
(``ggml-quants.c``) and the numpy reference in ``gguf.quants``; tests compare every type
against that reference.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch

QK_K = 256

# name -> (values per block, bytes per block); the same numbers as gguf.GGML_QUANT_SIZES.
BLOCK_SIZES: Dict[str, Tuple[int, int]] = {
    "Q4_0": (32, 2 + 16), "Q4_1": (32, 2 + 2 + 16), "Q5_0": (32, 2 + 4 + 16),
    "Q5_1": (32, 2 + 2 + 4 + 16), "Q8_0": (32, 2 + 32),
    "Q2_K": (256, 2 + 2 + QK_K // 16 + QK_K // 4), "Q3_K": (256, 2 + QK_K // 4 + QK_K // 8 + 12),
    "Q4_K": (256, 2 + 2 + QK_K // 2 + 12), "Q5_K": (256, 2 + 2 + QK_K // 2 + QK_K // 8 + 12),
    "Q6_K": (256, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
}


def _f16(b: torch.Tensor) -> torch.Tensor:
    """(n, 2) uint8 -> (n, 1) float32 from little-endian fp16."""
    return b.contiguous().view(torch.float16).float()


def _shifts(values, device, dtype=torch.uint8) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, k) packed bytes -> (n, 2k): low nibbles of all bytes first, then high nibbles."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _bits(packed: torch.Tensor, n_bits: int) -> torch.Tensor:
    """(n, k) bytes -> (n, k*8) single bits, LSB first within each byte (little-endian packbits)."""
    shifts = _shifts(list(range(8)), packed.device)
    return ((packed[..., None] >> shifts) & 1).reshape(packed.shape[0], -1)[:, :n_bits]


def dq_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])
    return blocks[:, 2:].contiguous().view(torch.int8).float() * d


def dq_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])
    return (_nibbles(blocks[:, 2:]).to(torch.int8) - 8).float() * d


def dq_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    d, m = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
    return _nibbles(blocks[:, 4:]).float() * d + m


def _q5_values(qh_bytes: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    high = _bits(qh_bytes, 32)
    return _nibbles(qs) | (high << 4)


def dq_q5_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, :2])
    q = _q5_values(blocks[:, 2:6], blocks[:, 6:])
    return (q.to(torch.int8) - 16).float() * d


def dq_q5_1(blocks: torch.Tensor) -> torch.Tensor:
    d, m = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
    q = _q5_values(blocks[:, 4:8], blocks[:, 8:])
    return q.float() * d + m


def _k_scale_min(scales: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 12-byte packed 6-bit scales and mins of Q4_K / Q5_K -> (n, 8) each."""
    n = scales.shape[0]
    s = scales.reshape(n, 3, 4)
    d, m, m_d = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def dq_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dmin = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
    sc, mn = _k_scale_min(blocks[:, 4:16])
    qs = blocks[:, 16:].reshape(n, 4, 32)                       # 4 groups of 32 bytes -> 64 values each
    q = torch.stack([qs & 0x0F, qs >> 4], dim=2).reshape(n, 8, 32).float()
    return (d * sc.float())[..., None].mul(q).sub((dmin * mn.float())[..., None]).reshape(n, QK_K)


def dq_q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dmin = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
    sc, mn = _k_scale_min(blocks[:, 4:16])
    qh = blocks[:, 16:48]                                       # 32 bytes: bit j of byte i -> value 32j+i
    qs = blocks[:, 48:].reshape(n, 4, 32)
    low = torch.stack([qs & 0x0F, qs >> 4], dim=2).reshape(n, 8, 32)
    high = (qh[:, None, :] >> _shifts(list(range(8)), blocks.device)[None, :, None]) & 1
    q = (low | (high << 4)).float()
    return (d * sc.float())[..., None].mul(q).sub((dmin * mn.float())[..., None]).reshape(n, QK_K)


def dq_q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    ql = blocks[:, :128].reshape(n, 2, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 32)
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
    d = _f16(blocks[:, 208:210])
    low = torch.stack([ql & 0x0F, ql >> 4], dim=2).reshape(n, 2, 4, 32)   # (half, quarter, 32)
    high = (qh[:, :, None, :] >> _shifts([0, 2, 4, 6], blocks.device)[None, None, :, None]) & 3
    q = ((low | (high << 4)).to(torch.int8) - 32).float().reshape(n, 16, 16)
    return ((d * scales)[..., None] * q).reshape(n, QK_K)


def dq_q2_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    scales = blocks[:, :16]
    qs = blocks[:, 16:80].reshape(n, 2, 1, 32)
    d, dmin = _f16(blocks[:, 80:82]), _f16(blocks[:, 82:84])
    dl = (d * (scales & 0x0F).float())[..., None]
    ml = (dmin * (scales >> 4).float())[..., None]
    q = ((qs >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 1, 4, 1)) & 3).reshape(n, 16, 16).float()
    return (dl * q - ml).reshape(n, QK_K)


def dq_q3_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    hmask = blocks[:, :32].reshape(n, 1, 32)
    qs = blocks[:, 32:96].reshape(n, 2, 1, 32)
    scales = blocks[:, 96:108]
    d = _f16(blocks[:, 108:110])
    low_s = (scales[:, :8].reshape(n, 1, 8) >> _shifts([0, 4], blocks.device).reshape(1, 2, 1)).reshape(n, 16)
    high_s = (scales[:, 8:].reshape(n, 1, 4) >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 4, 1)).reshape(n, 16)
    sc = ((low_s & 0x0F) | ((high_s & 0x03) << 4)).to(torch.int8).float() - 32
    dl = (d * sc)[..., None]
    ql = ((qs >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 1, 4, 1)) & 3).reshape(n, 16, 16)
    qh = ((hmask >> _shifts(list(range(8)), blocks.device).reshape(1, 8, 1)) & 1).reshape(n, 16, 16)
    q = ql.to(torch.int8) - ((qh ^ 1) << 2).to(torch.int8)
    return (dl * q.float()).reshape(n, QK_K)


DEQUANTIZERS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Q8_0": dq_q8_0, "Q4_0": dq_q4_0, "Q4_1": dq_q4_1, "Q5_0": dq_q5_0, "Q5_1": dq_q5_1,
    "Q2_K": dq_q2_k, "Q3_K": dq_q3_k, "Q4_K": dq_q4_k, "Q5_K": dq_q5_k, "Q6_K": dq_q6_k,
}
SUPPORTED_QUANT_TYPES = tuple(DEQUANTIZERS)


def dequantize(raw: torch.Tensor, qtype: str, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Raw GGML bytes (any shape, uint8, row-major) -> a ``shape`` tensor of ``dtype``."""
    block, size = BLOCK_SIZES[qtype]
    blocks = raw.reshape(-1, size)
    return DEQUANTIZERS[qtype](blocks).to(dtype).reshape(shape)
