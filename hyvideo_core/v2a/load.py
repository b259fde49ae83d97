"""Loading the Foley DiT: ``hunyuanvideo_foley.pth`` (XXL) / ``hunyuanvideo_foley_xl.pth`` (XL),
or the same tensors as ``.safetensors``, with an identity key map.

The variant is read from tensor shapes (never the file name). Every tensor of the file must be
used and every parameter of the model present with its shape — the official loader's
``strict=False`` would hide a miss; here it is an error naming the keys. ``.pth`` files are read
with ``torch.load(weights_only=True)``: no pickled code runs.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

import torch

from ..attention import resolve_backend
from ..checkpoints.detect import count_blocks
from ..checkpoints.io import open_weights, strip_prefix
from ..checkpoints.layouts import KEY_PREFIXES, RenamedView
from ..checkpoints.load import default_compute_dtype
from ..checkpoints.tensor_source import TensorSource
from ..checkpoints.validate import describe_mismatch
from ..errors import IncompatibleWeightsError, UnknownCheckpointError
from ..quant.cast import cast_weights_on_the_fly
from .config import FOLEY_VARIANTS, FoleyVariant
from .model import HunyuanVideoFoley

log = logging.getLogger(__name__)

SENTINEL = "audio_embedder.proj.weight"

# Files people may pick by mistake, recognised by a sentinel, for a precise error.
_OTHER_KINDS = (
    (lambda keys: "img_in.proj.weight" in keys,
     "a HunyuanVideo video transformer (text/image-to-video); load it with load_transformer "
     "(ComfyUI: models/diffusion_models, the HunyuanVideo model loader)"),
    (lambda keys: "decoder.conv_in.conv.weight" in keys,
     "the HunyuanVideo video VAE; load it with load_vae (ComfyUI: models/vae)"),
    (lambda keys: "quant_conv.weight" in keys and any(k.startswith("encoder.block.") for k in keys),
     "the DAC audio VAE of HunyuanVideo-Foley (vae_128d_48k.pth), which decodes the latents this model "
     "makes; pick hunyuanvideo_foley.pth (XXL) or hunyuanvideo_foley_xl.pth (XL) here"),
    (lambda keys: any(k.startswith("vfeat_extractor.") for k in keys),
     "the Synchformer feature extractor of HunyuanVideo-Foley (synchformer_state_dict.pth); load it with "
     "load_synchformer (hyvideo_core.v2a.features), the Foley sync-feature encoder"),
    (lambda keys: "model.layers.0.self_attn.q_proj.weight" in keys,
     "a Llama text encoder; load it with the text-encoder loader"),
    (lambda keys: any(k.startswith("text_model.encoder.") for k in keys),
     "a CLIP/CLAP text encoder; load it with a text-encoder loader"),
)

# Fields a Foley state dict reveals (rope theta and the frame rate do not show in any shape).
_DETECTABLE = ("hidden_size", "heads_num", "triple_depth", "single_depth", "mlp_ratio", "audio_latent_dim",
               "visual_dim", "sync_dim", "text_dim", "sync_tokens_per_segment", "conv_mlp_hidden", "qkv_bias")


def describe_other_kind(keys) -> Optional[str]:
    """What a non-Foley weights file looks like, for errors (None when unrecognised)."""
    keys = set(keys)
    return next((what for test, what in _OTHER_KINDS if test(keys)), None)


def open_foley(path: str) -> TensorSource:
    """A native-key view of a Foley file (a known wrapper prefix such as ``model.`` stripped)."""
    source = open_weights(path)
    prefix = strip_prefix(source.keys(), KEY_PREFIXES)
    if prefix and not any(k == SENTINEL for k in source.keys()):
        source = RenamedView.without_prefix(source, prefix)
    return source


def derive_foley_config(source: TensorSource) -> Dict[str, object]:
    """Architecture fields read off the file's shapes."""
    keys = source.keys()
    if SENTINEL not in source:
        kind = describe_other_kind(keys)
        found = f"it is {kind}" if kind else f"found {len(keys)} keys such as {sorted(keys)[:4]}"
        raise UnknownCheckpointError(
            f"{source.path!r} is not a HunyuanVideo-Foley model (expected {SENTINEL!r} and the official "
            f"'triple_blocks.N.' / 'single_blocks.N.' keys); {found}.")
    needed = ("triple_blocks.0.audio_self_q_norm.weight", "triple_blocks.0.audio_mlp.fc1.weight",
              "visual_proj.w1.weight", "cond_in.linear_1.weight", "sync_in.0.weight", "sync_in.2.w1.weight",
              "sync_pos_emb")
    absent = [k for k in needed if k not in source]
    if absent:
        raise IncompatibleWeightsError(
            f"{source.path!r} looks like a HunyuanVideo-Foley model but lacks the tensors its architecture is "
            f"read from: {absent}. The file is incomplete; re-download hunyuanvideo_foley.pth / _xl.pth.")
    hidden, latent, _ = source.shape(SENTINEL)
    head_dim = source.shape("triple_blocks.0.audio_self_q_norm.weight")[0]
    return {
        "hidden_size": hidden,
        "heads_num": hidden // head_dim,
        "triple_depth": count_blocks(keys, "triple_blocks."),
        "single_depth": count_blocks(keys, "single_blocks."),
        "mlp_ratio": source.shape("triple_blocks.0.audio_mlp.fc1.weight")[0] / hidden,
        "audio_latent_dim": latent,
        "visual_dim": source.shape("visual_proj.w1.weight")[1],
        "sync_dim": source.shape("sync_in.0.weight")[1],
        "text_dim": source.shape("cond_in.linear_1.weight")[1],
        "sync_tokens_per_segment": source.shape("sync_pos_emb")[2],
        "conv_mlp_hidden": source.shape("sync_in.2.w1.weight")[0],
        "qkv_bias": "triple_blocks.0.audio_self_attn_qkv.bias" in source,
    }


def _fields(variant: FoleyVariant) -> Dict[str, object]:
    cfg = variant.model
    return {f: getattr(cfg, f) for f in _DETECTABLE}


def detect_foley_variant(source: TensorSource) -> FoleyVariant:
    """The registered Foley variant whose shapes the file has exactly."""
    derived = derive_foley_config(source)

    def differences(variant: FoleyVariant) -> Dict[str, tuple]:
        expected = _fields(variant)
        return {f: (expected[f], derived[f]) for f in _DETECTABLE if expected[f] != derived[f]}

    match = next((v for v in FOLEY_VARIANTS.values() if not differences(v)), None)
    if match is not None:
        return match
    closest = min(FOLEY_VARIANTS.values(), key=lambda v: len(differences(v)))
    diff = ", ".join(f"{f}: {exp} in {closest.name} vs {got} in the file"
                     for f, (exp, got) in differences(closest).items())
    raise UnknownCheckpointError(
        f"{source.path!r} is a HunyuanVideo-Foley-style model with no registered variant (derived {derived}). "
        f"Closest variant {closest.name!r} differs in {diff}. Known: {', '.join(FOLEY_VARIANTS)}. If this is a "
        f"new official release, add it to hyvideo_core/v2a/config.py.")


def load_foley(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
               attention_backend: Optional[str] = None) -> HunyuanVideoFoley:
    """Load a HunyuanVideo-Foley DiT.

    Args:
        path: ``hunyuanvideo_foley.pth`` / ``hunyuanvideo_foley_xl.pth`` (or ``.safetensors`` with the
            same keys, optionally under a ``model.``-style prefix).
        device: where the model runs.
        dtype: None keeps the file's dtype for the large weights and computes in float32 on CPU,
            bf16 on GPU; a dtype converts every weight to it and computes in it.
        attention_backend: "sdpa" (default), "reference", "flash_varlen", "sage"; an unavailable one
            falls back to sdpa with one log line.
    """
    device = torch.device(device)
    path = os.fspath(path)
    source = open_foley(path)
    variant = detect_foley_variant(source)
    with torch.device("meta"):
        model = HunyuanVideoFoley(variant.model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = describe_mismatch(expected, source.shapes())
    if problems:
        raise IncompatibleWeightsError(
            f"{path!r} matches Foley variant {variant.name!r} but its tensors do not fit: {problems}. The file is "
            f"incomplete or from a modified model; re-download hunyuanvideo_foley.pth / _xl.pth.")

    state, storage = {}, None
    for key in expected:
        tensor = source.get(key)
        if dtype is not None:
            tensor = tensor.to(dtype)
        if key.endswith("weight") and tensor.dim() >= 2:
            storage = storage or tensor.dtype
        state[key] = tensor.to(device)
    model.load_state_dict(state, strict=True, assign=True)

    compute = dtype or default_compute_dtype(device, storage or torch.float32)
    cast_weights_on_the_fly(model, compute)
    model.compute_dtype = compute
    model.attention_backend = resolve_backend(attention_backend, device)
    model.variant = variant.name
    model.eval().requires_grad_(False)
    log.info("loaded %s (%s weights, %s compute) from %s", variant.name, storage, compute, path)
    return model
