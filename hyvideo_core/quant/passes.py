"""Quantise a built transformer from outside: ``quantize_transformer(model, "fp8_e4m3fn")``.

The official fp8 recipe (``hyvideo/modules/fp8_optimization.py``, and ComfyUI's ``fp8_scaled``
files): only the Linear layers inside the double and single blocks are stored as float8 e4m3fn
with one absmax scale per tensor (models whose blocks hold 1-D convolutions, the Foley DiT's
conv FFNs, get those stored the same way, dequantised before the convolution); embedders, the token refiner, modulation outside blocks and
the final layer stay in high precision. The result is numerically the same model that loading an
official/ComfyUI fp8-scaled file gives.

The layers become :class:`FP8Linear`. On a CUDA GPU with compute capability >= 8.9 (Ada,
Hopper, Blackwell) and ``fp8_matmul=True`` the matmul itself runs in fp8 through
``torch._scaled_mm`` with a dynamic per-tensor input scale; elsewhere it falls back to
dequantise-then-matmul (weight-only fp8, as the official code does) with one log line.
"""
from __future__ import annotations

import logging
from typing import Dict

import torch
from torch import nn

from ..model.block_lists import block_lists
from .cast import CastLinear, _stored_weight, set_fp8_scale
from .fp8 import E4M3_MAX, quantize_fp8

log = logging.getLogger(__name__)

SCHEMES = ("fp8_e4m3fn",)
_fallback_logged: set = set()


def fp8_matmul_unavailable(device: torch.device) -> str | None:
    """None if ``torch._scaled_mm`` can run on ``device``, else why not."""
    if device.type != "cuda":
        return f"fp8 matmul needs a CUDA GPU, tensors are on {device.type}"
    if not hasattr(torch, "_scaled_mm"):
        return "this torch has no torch._scaled_mm"
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 9):
        return f"fp8 matmul needs compute capability >= 8.9, this GPU has {cap[0]}.{cap[1]}"
    return None


class FP8Linear(CastLinear):
    """fp8 e4m3fn weight + per-tensor ``scale_weight``; fp8 GEMM where the hardware has it."""

    fp8_matmul: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8_matmul:
            reason = fp8_matmul_unavailable(x.device)
            if reason is None and self.in_features % 16 == 0 and self.out_features % 16 == 0:
                return self._scaled_mm(x)
            if reason is not None and reason not in _fallback_logged:
                _fallback_logged.add(reason)
                log.info("%s; fp8 layers dequantise their weights and multiply in %s", reason, x.dtype)
        return super().forward(x)

    def _scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        x_scale = (x2.abs().amax().float() / E4M3_MAX).clamp_min(1e-12)
        xq = (x2 / x_scale.to(x2.dtype)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        bias = None if self.bias is None else self.bias.to(out_dtype)
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=x_scale, scale_b=self.scale_weight.float(),
                             bias=bias, out_dtype=out_dtype)
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)


class FP8Conv1d:
    """Mixed into a block's Conv1d class (keeping its own forward, e.g. a channels-last one): the
    fp8 weight is dequantised with its ``scale_weight`` in the input's dtype before convolving."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias):
        return super()._conv_forward(x, _stored_weight(self, x.dtype), None if bias is None else bias.to(x.dtype))


_FP8_CONV_CLASSES: Dict[type, type] = {}


def _fp8_conv_class(cls: type) -> type:
    if issubclass(cls, FP8Conv1d):
        return cls
    if cls not in _FP8_CONV_CLASSES:
        _FP8_CONV_CLASSES[cls] = type(f"FP8{cls.__name__}", (FP8Conv1d, cls), {})
    return _FP8_CONV_CLASSES[cls]


def _block_layers(model: nn.Module):
    prefixes = tuple(f"{name}." for name in block_lists(model))
    for name, module in model.named_modules():
        if name.startswith(prefixes) and isinstance(module, (nn.Linear, nn.Conv1d)):
            yield name, module


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def _store_fp8(layer: nn.Module) -> None:
    """The layer's weight as fp8 e4m3 with its per-tensor ``scale_weight``."""
    q, scale = quantize_fp8(layer.weight.detach())
    layer.weight = nn.Parameter(q, requires_grad=False)
    set_fp8_scale(layer, scale.to(q.device))


def quantize_transformer(model: nn.Module, scheme: str = "fp8_e4m3fn", fp8_matmul: bool = True) -> Dict[str, int]:
    """Quantise the block Linear (and Conv1d) weights of ``model`` in place; returns
    {"quantized": n, "skipped": m}. Layers already stored in fp8 or GGUF are left alone (counted as skipped)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantisation scheme {scheme!r}; supported: {', '.join(SCHEMES)} "
                         f"(GGUF files are quantised already: load them with load_transformer)")
    done = skipped = convs = 0
    for name, layer in _block_layers(model):
        weight = layer.weight
        if isinstance(layer, nn.Conv1d):
            if weight.dtype in FP8_DTYPES or not weight.dtype.is_floating_point:
                skipped += 1
                continue
            _store_fp8(layer)
            layer.__class__ = _fp8_conv_class(type(layer))
            done += 1
            convs += 1
            continue
        if type(layer) not in (nn.Linear, CastLinear, FP8Linear) or not weight.dtype.is_floating_point \
                or weight.dtype in FP8_DTYPES:
            if isinstance(layer, FP8Linear) or weight.dtype == torch.float8_e4m3fn:
                layer.__class__ = FP8Linear
                layer.fp8_matmul = fp8_matmul
            skipped += 1
            continue
        _store_fp8(layer)
        layer.__class__ = FP8Linear
        layer.fp8_matmul = fp8_matmul
        done += 1
    log.info("quantize_transformer(%s): %d block linears quantised, %d skipped%s", scheme, done - convs, skipped,
             f", {convs} block Conv1d quantised" if convs else "")
    return {"quantized": done, "skipped": skipped}
