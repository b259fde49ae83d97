"""Reference models built from the same tiny configs: diffusers' HunyuanVideo transformer and
the checkpoint files our loaders must read, written in the real layouts and dtypes."""
from __future__ import annotations

import os
from typing import Dict

import torch

from hyvideo_core.checkpoints.io import DictSource
from hyvideo_core.checkpoints.layouts import DIFFUSERS, NativeView
from hyvideo_core.config import TransformerConfig
from hyvideo_core.quant.fp8 import quantize_fp8


def diffusers_transformer(cfg: TransformerConfig, seed: int = 0, image_condition_type=None):
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_attention_heads=cfg.heads_num,
        attention_head_dim=cfg.head_dim, num_layers=cfg.double_depth, num_single_layers=cfg.single_depth,
        num_refiner_layers=cfg.refiner_depth, mlp_ratio=cfg.mlp_width_ratio, patch_size=cfg.patch_size[1],
        patch_size_t=cfg.patch_size[0], qk_norm="rms_norm", guidance_embeds=cfg.guidance_embed,
        text_embed_dim=cfg.text_states_dim, pooled_projection_dim=cfg.text_states_dim_2,
        rope_theta=cfg.rope_theta, rope_axes_dim=cfg.rope_axes,
        image_condition_type=image_condition_type or cfg.condition_type,
    ).eval()


def official_state_dict(diffusers_model) -> Dict[str, torch.Tensor]:
    view = NativeView(DictSource(diffusers_model.state_dict()), DIFFUSERS)
    return {k: view.get(k).clone() for k in view.keys()}


def fp8_scaled(official: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """ComfyUI fp8_scaled layout: block linears as e4m3fn with ``scale_weight``, the rest as is."""
    out = {}
    for key, tensor in official.items():
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and tensor.dim() == 2 and ("double_blocks" in key or "single_blocks" in key):
            out[key], out[module + ".scale_weight"] = quantize_fp8(tensor)
        else:
            out[key] = tensor
    out["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    return out


def dequantized(fp8_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, tensor in fp8_sd.items():
        if key.endswith(".scale_weight") or key == "scaled_fp8":
            continue
        scale = fp8_sd.get(key.rsplit(".", 1)[0] + ".scale_weight")
        out[key] = tensor.float() * scale.float() if scale is not None and key.endswith(".weight") else tensor
    return out


def save(tensors: Dict[str, torch.Tensor], path: str) -> str:
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    else:
        torch.save({"module": tensors}, path)   # DeepSpeed wrapper, as the official .pt
    return path


def dit_inputs(cfg: TransformerConfig, batch: int = 2, seed: int = 1):
    """B=2 with the second sample right-padded, timesteps on the 0..1000 scale."""
    g = torch.Generator().manual_seed(seed)
    pt, ph, pw = cfg.patch_size
    x = torch.randn(batch, cfg.in_channels, 3 * pt, 4 * ph, 4 * pw, generator=g)
    text = torch.randn(batch, 12, cfg.text_states_dim, generator=g)
    mask = torch.ones(batch, 12, dtype=torch.int64)
    mask[1:, 7:] = 0
    pooled = torch.randn(batch, cfg.text_states_dim_2, generator=g)
    t = torch.tensor([937.5, 250.0][:batch])
    guidance = torch.full((batch,), 6000.0) if cfg.guidance_embed else None
    return x, t, text, mask, pooled, guidance


def diffusers_forward(model, x, t, text, mask, pooled, guidance):
    with torch.no_grad():
        return model(hidden_states=x, timestep=t, encoder_hidden_states=text, encoder_attention_mask=mask,
                     pooled_projections=pooled, guidance=guidance, return_dict=False)[0]
