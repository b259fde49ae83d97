"""Keep GGUF-quantised weights packed in memory and dequantise them per layer in the forward.

``attach_packed_weights(model, packed, device)`` is a class-swap pass like
``quant.cast.cast_weights_on_the_fly``: every ``nn.Linear`` whose weight is quantised becomes a
:class:`GGUFLinear` holding the raw GGML bytes as its ``weight`` buffer (so the official key set
is unchanged), plus ``quant_type`` and ``weight_shape``. Its forward dequantises the weight in
torch on the input's device and dtype, then runs the matmul; the dequantised copy is freed right
after, so peak memory holds one layer's weight in float at a time.
"""
from __future__ import annotations

import logging
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from .dequant import BLOCK_SIZES, dequantize
from .source import PackedWeight

log = logging.getLogger(__name__)

# On the CPU a large layer's float32 copy (and the int->float intermediate behind it) would set
# peak memory; there the weight is dequantised this many elements at a time, row block by row block.
CPU_DEQUANT_ELEMENTS = 1 << 20


class GGUFLinear(nn.Linear):
    quant_type: str
    weight_shape: tuple

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.weight, self.quant_type, self.weight_shape, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        rows = self._rows_per_chunk(x.device)
        if rows is None:
            return F.linear(x, self.dequantized_weight(x.dtype), bias)
        out_features, in_features = self.weight_shape
        raw = self.weight.reshape(out_features, -1)
        out = x.new_empty(*x.shape[:-1], out_features)
        for start in range(0, out_features, rows):
            stop = min(start + rows, out_features)
            weight = dequantize(raw[start:stop], self.quant_type, (stop - start, in_features), x.dtype)
            out[..., start:stop] = F.linear(x, weight, None if bias is None else bias[start:stop])
        return out

    def _rows_per_chunk(self, device: torch.device):
        """Rows per dequantised block on the CPU, or None to dequantise the layer at once."""
        out_features, in_features = self.weight_shape
        block, size = BLOCK_SIZES[self.quant_type]
        rows = max(1, CPU_DEQUANT_ELEMENTS // in_features)
        row_aligned = in_features % block == 0 and self.weight.numel() == out_features * (in_features // block) * size
        return rows if device.type == "cpu" and row_aligned and rows < out_features else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quant_type={self.quant_type}"


def make_gguf_linear(module: nn.Linear, packed: PackedWeight, device: torch.device) -> GGUFLinear:
    """Turn ``module`` (possibly on ``meta``) into a GGUFLinear over ``packed`` (in place)."""
    if tuple(packed.shape) != (module.out_features, module.in_features):
        raise ValueError(f"packed weight shape {packed.shape} does not fit Linear"
                         f"({module.in_features}, {module.out_features})")
    del module.weight  # the Parameter goes; a uint8 buffer of raw blocks takes its name
    module.register_buffer("weight", packed.raw.to(device))
    module.quant_type, module.weight_shape = packed.qtype, tuple(packed.shape)
    module.__class__ = GGUFLinear
    return module


def attach_packed_weights(model: nn.Module, packed: Dict[str, PackedWeight],
                          device: torch.device | str = "cpu") -> Dict[str, int]:
    """Install quantised weights ``{"<module>.weight": PackedWeight}`` into ``model``.

    Linear layers keep them packed (GGUFLinear); any other module gets them dequantised once
    (with one log line). Returns counts per quant type of the layers kept packed."""
    device = torch.device(device)
    counts: Dict[str, int] = {}
    for key, weight in packed.items():
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if attr == "weight" and type(module) is nn.Linear:
            make_gguf_linear(module, weight, device)
            counts[weight.qtype] = counts.get(weight.qtype, 0) + 1
        else:
            log.info("GGUF %s (%s) is not a Linear weight; dequantised once at load", key, weight.qtype)
            setattr(module, attr, nn.Parameter(weight.dequantize(torch.float32).to(device), requires_grad=False))
    return counts
