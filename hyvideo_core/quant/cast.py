"""Weights stored in one dtype, computed in another: a pass applied to a built model.

``cast_weights_on_the_fly(model, compute_dtype)`` turns every Linear/Conv3d whose weight is
stored in another dtype (bf16 or fp16 on a CPU that computes in float32, or fp8 with a
per-tensor ``scale_weight``) into a casting variant of the same class. Parameters and
state-dict keys are unchanged; small tensors (biases, norm weights) are cast once.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _stored_weight(module: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    weight = module.weight.to(dtype)
    scale: Optional[torch.Tensor] = getattr(module, "scale_weight", None)
    return weight if scale is None else weight * scale.to(dtype)


class CastLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, _stored_weight(self, x.dtype), bias)


class CastConv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return self._conv_forward(x, _stored_weight(self, x.dtype), bias)


_CASTING = {nn.Linear: CastLinear, nn.Conv3d: CastConv3d}


def set_fp8_scale(module: nn.Module, scale: torch.Tensor) -> None:
    """Attach a per-tensor dequantisation scale (W = fp8_weight · scale). Not a state-dict entry,
    so the module keeps the official key set."""
    module.register_buffer("scale_weight", scale.reshape(()).float(), persistent=False)


def cast_weights_on_the_fly(model: nn.Module, compute_dtype: torch.dtype) -> nn.Module:
    for module in model.modules():
        weight = getattr(module, "weight", None)
        cast_cls = _CASTING.get(type(module))
        if cast_cls is not None and weight is not None and (
                weight.dtype != compute_dtype or getattr(module, "scale_weight", None) is not None):
            module.__class__ = cast_cls
        for name, param in module.named_parameters(recurse=False):
            if name == "weight" and (isinstance(module, tuple(_CASTING)) or
                                     getattr(module, "scale_weight", None) is not None):
                continue  # the big tensors stay in their storage dtype (fp8 ones dequantise with their scale)
            if param.dtype != compute_dtype:
                setattr(module, name, nn.Parameter(param.detach().to(compute_dtype), requires_grad=param.requires_grad))
    return model
