"""fp8 (e4m3fn) weights with one scale per tensor: W ≈ fp8 · scale.

Three on-disk conventions carry the scales (shared/spec/official_t2v.md §6, §10.3):
ComfyUI ``fp8_scaled`` files put ``<module>.scale_weight`` beside each weight (plus a
``scaled_fp8`` marker tensor); kijai's files use ``<module>.fp8_scale``; the official release
keeps them in a separate ``*_fp8_map.pt`` keyed by module name.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import torch

E4M3_MAX = 448.0  # largest finite float8_e4m3fn value
SCALE_SUFFIXES = (".scale_weight", ".fp8_scale")
MARKER_KEYS = ("scaled_fp8",)
IGNORED_SUFFIXES = (".scale_input",)  # activation scales for fp8 matmul; weight-only dequant ignores them


def quantize_fp8(weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor absmax quantisation, as the official fp8 checkpoint was made."""
    scale = weight.float().abs().amax().clamp_min(1e-12) / E4M3_MAX
    q = (weight.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale.reshape(())  # 0-d, as ComfyUI fp8_scaled files store it


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return weight.to(dtype) * scale.to(dtype)


def official_map_path(weights_path: str) -> Optional[str]:
    """``mp_rank_00_model_states_fp8.pt`` -> ``mp_rank_00_model_states_fp8_map.pt`` if it exists."""
    root, ext = os.path.splitext(weights_path)
    candidate = f"{root}_map{ext}"
    return candidate if os.path.isfile(candidate) else None


def split_scale_keys(keys) -> Tuple[Dict[str, str], set]:
    """module name -> scale key found in the file, and the set of keys that are not weights."""
    scales, extra = {}, set()
    for key in keys:
        suffix = next((s for s in SCALE_SUFFIXES if key.endswith(s)), None)
        if suffix is not None:
            scales[key[: -len(suffix)]] = key
            extra.add(key)
        elif key in MARKER_KEYS or key.endswith(IGNORED_SUFFIXES):
            extra.add(key)
    return scales, extra


def prepare_fp8_linears(model, names) -> None:
    """Turn the named ``nn.Linear`` layers into fp8-storage layers before loading a state dict:
    an empty e4m3fn weight and a persistent ``scale_weight`` that the file fills in. They then
    dequantize on the fly like every other scaled layer (``quant.cast.CastLinear``)."""
    from torch import nn

    from .cast import CastLinear

    for name in names:
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            continue
        layer.__class__ = CastLinear
        layer.weight = nn.Parameter(torch.empty_like(layer.weight, dtype=torch.float8_e4m3fn), requires_grad=False)
        layer.register_buffer("scale_weight", torch.ones((), device=layer.weight.device))


def is_fp8_linear(module) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear) and module.weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
