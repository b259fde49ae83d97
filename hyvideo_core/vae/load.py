"""Loading and saving VAE weights.

The architecture is read from tensor shapes (never from the file name) and matched against the
VAE configs of the variant registry; weights are placed into a model built on the meta device,
one tensor at a time, so loading never holds two copies of the VAE.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..checkpoints.io import TensorSource, open_weights
from ..checkpoints.validate import describe_mismatch
from ..config import VaeConfig
from ..errors import IncompatibleWeightsError, UnknownCheckpointError
from .autoencoder import CausalVideoVAE

logger = logging.getLogger(__name__)

# Prefixes other layouts put in front of the official keys: the official .pt ("vae."),
# LDM/ComfyUI-style merged checkpoints ("first_stage_model.").
KEY_PREFIXES = ("vae.", "first_stage_model.")
# Keys that only a transformer file has (official layout, diffusers, ComfyUI-prefixed).
_TRANSFORMER_MARKERS = ("double_blocks.", "single_blocks.", "img_in.", "txt_in.",
                        "transformer_blocks.", "single_transformer_blocks.", "x_embedder.")
# Keys of the LDM-style layout ComfyUI converts VAEs to internally (and may save).
_LDM_MARKERS = ("decoder.mid.attn_1.", "encoder.mid.attn_1.", "decoder.up.0.block.", "encoder.down.0.block.")
_SENTINEL = "post_quant_conv.weight"


def load_vae(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
             dtype: Optional[torch.dtype] = None) -> CausalVideoVAE:
    """Load a HunyuanVideo VAE file (official, diffusers or prefixed layout) in eval mode.

    ``dtype`` None keeps the file's dtype, except that half-precision weights are computed in
    float32 on CPU (CPU half convolutions are slow and inaccurate).
    """
    source = open_weights(path)
    names = _vae_key_names(source)
    config = detect_vae_config({key: source.shape(name) for key, name in names.items()}, source.path)
    device = torch.device(device)
    target = _target_dtype(source.dtype(names[_SENTINEL]), dtype, device)

    with torch.device("meta"):
        vae = CausalVideoVAE(config)
    _check_keys(vae, names, source)
    state = {key: source.get(name).to(device=device, dtype=target) for key, name in names.items()}
    vae.load_state_dict(state, strict=True, assign=True)
    logger.info("loaded VAE %s from %s (%s on %s)", config.block_out_channels, source.path, target, device)
    return vae.eval().requires_grad_(False)


def save_vae(vae: Union[nn.Module, Mapping[str, torch.Tensor]], path: Union[str, os.PathLike]) -> None:
    """Write ``vae``'s weights as .safetensors in the official key layout (atomically)."""
    from ..checkpoints.load import write_safetensors_atomic

    state = vae.state_dict() if isinstance(vae, nn.Module) else dict(vae)
    write_safetensors_atomic({k: v.detach().contiguous().cpu() for k, v in state.items()}, os.fspath(path),
                             metadata={"format": "pt", "model": "hunyuanvideo-vae"})


def detect_vae_config(shapes: Mapping[str, Tuple[int, ...]], path: str = "<memory>") -> VaeConfig:
    """The registered VaeConfig whose architecture matches these (official-key) tensor shapes."""
    from ..variants import VARIANTS

    derived = _derive_architecture(shapes)
    known: Dict[Tuple, VaeConfig] = {}
    for spec in VARIANTS.values():
        known.setdefault(_architecture(spec.vae), spec.vae)
    if derived in known:
        return known[derived]
    described = ", ".join(_describe(a) for a in known)
    raise UnknownCheckpointError(
        f"{path!r} is a causal video VAE with {_describe(derived)}, which matches no registered "
        f"VAE config (known: {described}). Use a HunyuanVideo VAE file, or register the config "
        f"in hyvideo_core/variants.py.")


def _architecture(config: VaeConfig) -> Tuple:
    return (config.in_channels, config.out_channels, config.latent_channels,
            tuple(config.block_out_channels), config.layers_per_block, config.mid_block_add_attention)


def _describe(arch: Tuple) -> str:
    in_ch, out_ch, latent, blocks, layers, attention = arch
    return (f"[latent_channels={latent}, block_out_channels={blocks}, layers_per_block={layers}, "
            f"in/out={in_ch}/{out_ch}, mid attention={attention}]")


def _derive_architecture(shapes: Mapping[str, Tuple[int, ...]]) -> Tuple:
    blocks = sorted({int(m.group(1)) for k in shapes
                     if (m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.0\.conv1\.conv\.weight$", k))})
    resnets = {int(m.group(1)) for k in shapes
               if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))}
    needed = ["encoder.conv_in.conv.weight", "decoder.conv_out.conv.weight", _SENTINEL]
    absent = [k for k in needed if k not in shapes]
    if absent or not blocks:
        raise IncompatibleWeightsError(
            f"VAE file lacks the tensors its architecture is read from: "
            f"{_sample(absent or ['encoder.down_blocks.0.resnets.0.conv1.conv.weight'])}. "
            f"The file is incomplete; re-download or re-export it.")
    block_out = tuple(shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"][0] for i in blocks)
    return (shapes["encoder.conv_in.conv.weight"][1], shapes["decoder.conv_out.conv.weight"][0],
            shapes[_SENTINEL][0], block_out, len(resnets),
            "encoder.mid_block.attentions.0.to_q.weight" in shapes)


def _vae_key_names(source: TensorSource) -> Dict[str, str]:
    """Official key -> key in the file, after stripping a known prefix."""
    keys = source.keys()
    if any(marker in k for k in keys for marker in _LDM_MARKERS):
        raise UnknownCheckpointError(
            f"{source.path!r} is a VAE in ComfyUI/LDM key format (keys such as "
            f"{_sample(k for k in keys if any(m in k for m in _LDM_MARKERS))}), which this loader "
            f"does not read yet. Use the original-format HunyuanVideo VAE (official, diffusers or "
            f"Comfy-Org/Kijai 'hunyuan_video_vae_bf16.safetensors' with keys like "
            f"'decoder.up_blocks.0.resnets.0.norm1.weight').")
    for prefix in ("",) + KEY_PREFIXES:
        if prefix + _SENTINEL in source and prefix + "encoder.conv_in.conv.weight" in source:
            return {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
    if "audio_embedder.proj.weight" in keys:
        raise UnknownCheckpointError(
            f"{source.path!r} is a HunyuanVideo-Foley video-to-audio model, not a VAE: load it with "
            f"hyvideo_core.v2a.load_foley (the Foley model loader) and pick the HunyuanVideo VAE "
            f"(e.g. hunyuan_video_vae_bf16.safetensors, models/vae) here.")
    if any(marker in k for k in keys for marker in _TRANSFORMER_MARKERS):
        raise UnknownCheckpointError(
            f"{source.path!r} is a transformer (diffusion model) file, not a VAE: it has keys such "
            f"as {_sample(k for k in keys if any(m in k for m in _TRANSFORMER_MARKERS))}. Load it "
            f"with load_transformer (ComfyUI: models/diffusion_models) and pick the VAE file "
            f"(e.g. hunyuan_video_vae_bf16.safetensors, models/vae) here.")
    raise UnknownCheckpointError(
        f"{source.path!r} is not a HunyuanVideo VAE: expected keys like 'encoder.conv_in.conv.weight' "
        f"and 'post_quant_conv.weight' (optionally prefixed with {' or '.join(KEY_PREFIXES)}); "
        f"found {len(keys)} keys such as {_sample(keys)}. Choose the VAE file of HunyuanVideo.")


def _check_keys(vae: nn.Module, names: Mapping[str, str], source: TensorSource) -> None:
    problems = describe_mismatch({k: tuple(v.shape) for k, v in vae.state_dict().items()},
                                 {k: tuple(source.shape(name)) for k, name in names.items()})
    if problems:
        raise IncompatibleWeightsError(
            f"{source.path!r} looks like a HunyuanVideo VAE but does not fit it: {problems}. "
            f"The file is incomplete or from a different VAE version; re-download or re-export it.")


def _target_dtype(file_dtype: torch.dtype, requested: Optional[torch.dtype],
                  device: torch.device) -> torch.dtype:
    if requested is not None:
        return requested
    if device.type == "cpu" and file_dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if not file_dtype.is_floating_point or file_dtype.itemsize < 2:   # fp8 storage etc.
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return file_dtype


def _sample(keys, n: int = 3) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (", ..." if len(keys) > n else "")
