"""Which variant a transformer file holds, read from tensor shapes and sentinel keys
(never from the file name)."""
from __future__ import annotations

import re
from dataclasses import asdict, fields
from typing import Dict, Optional

from ..config import VariantSpec
from ..errors import UnknownCheckpointError
from ..variants import VARIANTS
from .io import TensorSource

# Fields a state dict reveals; rope axes and theta do not show in any shape.
_DETECTABLE = ("in_channels", "out_channels", "hidden_size", "heads_num", "double_depth", "single_depth",
               "refiner_depth", "mlp_width_ratio", "patch_size", "text_states_dim", "text_states_dim_2",
               "guidance_embed", "qkv_bias")

# Sentinels of files that are not a HunyuanVideo transformer, for a precise error.
_OTHER_KINDS = (
    ("decoder.conv_in.conv.weight", "a HunyuanVideo VAE; load it with the VAE loader"),
    ("decoder.conv_in.weight", "a VAE; load it with a VAE loader"),
    ("model.layers.0.self_attn.q_proj.weight", "a Llama text encoder; load it with the text-encoder loader"),
    ("text_model.encoder.layers.0.mlp.fc1.weight", "a CLIP text encoder; load it with the text-encoder loader"),
    ("double_blocks.0.img_attn.qkv.weight", "a Flux-style transformer, not HunyuanVideo"),
    ("blocks.0.self_attn.q.weight", "a Wan transformer, not HunyuanVideo"),
    ("audio_embedder.proj.weight", "a HunyuanVideo-Foley video-to-audio model; load it with "
                                   "hyvideo_core.v2a.load_foley (the Foley model loader)"),
)


def _count_blocks(keys, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def derive_config(source: TensorSource) -> Dict[str, object]:
    """Architecture fields read off a native-layout source."""
    keys = source.keys()
    if "img_in.proj.weight" not in source:
        kind = next((what for key, what in _OTHER_KINDS if key in source), None)
        found = f"it looks like {kind}" if kind else f"found keys like {sorted(keys)[:5]}"
        raise UnknownCheckpointError(
            f"{source.path!r} is not a HunyuanVideo transformer (expected 'img_in.proj.weight' and the "
            f"official block keys); {found}.")
    hidden, in_ch, pt, ph, pw = source.shape("img_in.proj.weight")
    head_dim = source.shape("double_blocks.0.img_attn_q_norm.weight")[0] if "double_blocks.0.img_attn_q_norm.weight" in source \
        else source.shape("single_blocks.0.q_norm.weight")[0]
    mlp_rows = (source.shape("double_blocks.0.img_mlp.fc1.weight")[0] if "double_blocks.0.img_mlp.fc1.weight" in source
                else source.shape("single_blocks.0.linear1.weight")[0] - 3 * hidden)
    return {
        "in_channels": in_ch,
        "out_channels": source.shape("final_layer.linear.weight")[0] // (pt * ph * pw),
        "hidden_size": hidden,
        "heads_num": hidden // head_dim,
        "double_depth": _count_blocks(keys, "double_blocks."),
        "single_depth": _count_blocks(keys, "single_blocks."),
        "refiner_depth": _count_blocks(keys, "txt_in.individual_token_refiner.blocks."),
        "mlp_width_ratio": mlp_rows / hidden,
        "patch_size": (pt, ph, pw),
        "text_states_dim": source.shape("txt_in.input_embedder.weight")[1],
        "text_states_dim_2": source.shape("vector_in.in_layer.weight")[1],
        "guidance_embed": "guidance_in.mlp.0.weight" in source,
        "qkv_bias": "double_blocks.0.img_attn_qkv.bias" in source or "single_blocks.0.linear1.bias" in source,
    }


def detect_variant(source: TensorSource, hint: Optional[str] = None) -> VariantSpec:
    """The registered variant whose transformer matches the file's shapes exactly.

    ``hint`` picks among variants that match equally (e.g. a toy model sharing a test shape)."""
    derived = derive_config(source)

    def differences(spec: VariantSpec) -> Dict[str, object]:
        cfg = asdict(spec.transformer)
        return {f: (cfg[f], derived[f]) for f in _DETECTABLE if tuple_or(cfg[f]) != tuple_or(derived[f])}

    matches = [spec for spec in VARIANTS.values() if not differences(spec)]
    if matches:
        return next((s for s in matches if s.name == hint), matches[0])
    closest = min(VARIANTS.values(), key=lambda s: len(differences(s)))
    diff = ", ".join(f"{f}: {exp} in {closest.name} vs {got} in the file" for f, (exp, got) in differences(closest).items())
    raise UnknownCheckpointError(
        f"{source.path!r} is a HunyuanVideo-style transformer with no registered variant: derived "
        f"{derived}. Closest variant {closest.name!r} differs in {diff}. Known variants: "
        f"{', '.join(VARIANTS)}. If this is a new official release, add it to hyvideo_core/variants.py.")


def tuple_or(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value
