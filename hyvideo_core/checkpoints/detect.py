"""Which variant a transformer file holds, read from tensor shapes and sentinel keys
(never from the file name)."""
from __future__ import annotations

import re
from dataclasses import asdict
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


def count_blocks(keys, prefix: str) -> int:
    """Blocks numbered ``prefix<i>.`` in ``keys``: the highest index + 1 (0 without any)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _shape(source: TensorSource, key: str, rank: int) -> tuple:
    """``key``'s shape, checked to have ``rank`` positive dimensions (a damaged file fails here, clearly)."""
    if key not in source:
        raise UnknownCheckpointError(
            f"{source.path!r} has 'img_in.proj.weight' but no {key!r}: it is an incomplete or modified "
            f"HunyuanVideo transformer; re-download or re-export it.")
    found = tuple(source.shape(key))
    if len(found) != rank or min(found, default=0) < 1:
        raise UnknownCheckpointError(
            f"{source.path!r}: tensor {key!r} has shape {found}, expected {rank} non-empty dimensions; the file "
            f"is damaged or not a HunyuanVideo transformer; re-download or re-export it.")
    return found


def derive_config(source: TensorSource) -> Dict[str, object]:
    """Architecture fields read off a native-layout source."""
    keys = source.keys()
    if "img_in.proj.weight" not in source:
        kind = next((what for key, what in _OTHER_KINDS if key in source), None)
        found = f"it looks like {kind}" if kind else f"found keys like {sorted(keys)[:5]}"
        raise UnknownCheckpointError(
            f"{source.path!r} is not a HunyuanVideo transformer (expected 'img_in.proj.weight' and the "
            f"official block keys); {found}.")
    hidden, in_ch, pt, ph, pw = _shape(source, "img_in.proj.weight", 5)
    q_norm = ("double_blocks.0.img_attn_q_norm.weight" if "double_blocks.0.img_attn_q_norm.weight" in source
              else "single_blocks.0.q_norm.weight")
    head_dim = _shape(source, q_norm, 1)[0]
    mlp_rows = (_shape(source, "double_blocks.0.img_mlp.fc1.weight", 2)[0]
                if "double_blocks.0.img_mlp.fc1.weight" in source
                else _shape(source, "single_blocks.0.linear1.weight", 2)[0] - 3 * hidden)
    final, text, pooled = (_shape(source, k, 2) for k in ("final_layer.linear.weight", "txt_in.input_embedder.weight",
                                                          "vector_in.in_layer.weight"))
    return {
        "in_channels": in_ch,
        "out_channels": final[0] // (pt * ph * pw),
        "hidden_size": hidden,
        "heads_num": hidden // head_dim,
        "double_depth": count_blocks(keys, "double_blocks."),
        "single_depth": count_blocks(keys, "single_blocks."),
        "refiner_depth": count_blocks(keys, "txt_in.individual_token_refiner.blocks."),
        "mlp_width_ratio": mlp_rows / hidden,
        "patch_size": (pt, ph, pw),
        "text_states_dim": text[1],
        "text_states_dim_2": pooled[1],
        "guidance_embed": "guidance_in.mlp.0.weight" in source,
        "qkv_bias": "double_blocks.0.img_attn_qkv.bias" in source or "single_blocks.0.linear1.bias" in source,
    }


def carries_app(source: TensorSource, spec: VariantSpec) -> bool:
    """Whether the file holds keys of the application modules of ``spec`` (e.g. avatar's adapters)."""
    if spec.app is None:
        return False
    prefixes = tuple(f"{m}." for m in spec.app.modules)
    return any(k.startswith(prefixes) for k in source.keys())


def detect_variant(source: TensorSource, hint: Optional[str] = None) -> VariantSpec:
    """The registered variant whose transformer matches the file's shapes exactly.

    A variant whose checkpoints carry an application's modules (avatar) matches only files that hold
    keys of those modules, and is then preferred over the plain variant of the same backbone.
    ``hint`` picks among variants that match equally (e.g. a toy model sharing a test shape)."""
    derived = derive_config(source)

    def differences(spec: VariantSpec) -> Dict[str, object]:
        cfg = asdict(spec.transformer)
        return {f: (cfg[f], derived[f]) for f in _DETECTABLE if tuple_or(cfg[f]) != tuple_or(derived[f])}

    matches = [spec for spec in VARIANTS.values()
               if not differences(spec) and (spec.app is None or carries_app(source, spec))]
    matches = [s for s in matches if s.app is not None] or matches
    if matches:
        return next((s for s in matches if s.name == hint), matches[0])
    without_app = next((s for s in VARIANTS.values() if not differences(s)), None)
    if without_app is not None:   # the backbone of an app variant, without the app's modules
        raise UnknownCheckpointError(
            f"{source.path!r} has the backbone of variant {without_app.name!r} but none of its "
            f"{without_app.app.app} modules ({', '.join(without_app.app.modules)}); the file lacks the "
            f"{without_app.app.app} weights. Use the complete checkpoint (load it with {without_app.app.loader}).")
    closest = min(VARIANTS.values(), key=lambda s: len(differences(s)))
    diff = ", ".join(f"{f}: {exp} in {closest.name} vs {got} in the file" for f, (exp, got) in differences(closest).items())
    raise UnknownCheckpointError(
        f"{source.path!r} is a HunyuanVideo-style transformer with no registered variant: derived "
        f"{derived}. Closest variant {closest.name!r} differs in {diff}. Known variants: "
        f"{', '.join(VARIANTS)}. If this is a new official release, add it to hyvideo_core/variants.py.")


def tuple_or(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value
