"""Recognising text-encoder weight files and bringing them to one key layout.

Accepted inputs (the kind is detected from tensor names and shapes, never from file names):

* Hugging Face folders: ``config.json`` + ``*.safetensors`` (sharded or not) or
  ``pytorch_model*.bin``, as the official ``ckpts/text_encoder`` (llava-llama-3-8b language
  model saved as ``LlamaForCausalLM``: keys ``model.embed_tokens.weight``,
  ``model.layers.N.…``, ``model.norm.weight``, ``lm_head.weight``) and ``ckpts/text_encoder_2``
  (``openai/clip-vit-large-patch14``, a full ``CLIPModel``: ``text_model.…`` plus vision keys).
* ComfyUI single files: ``llava_llama3_fp16.safetensors`` (same ``model.``-prefixed Llama keys),
  ``llava_llama3_fp8_scaled.safetensors`` (fp8 e4m3 weights, a float32 ``<layer>.scale_weight``
  per linear layer, a ``scaled_fp8`` marker tensor) and ``clip_l.safetensors`` (``text_model.…``).
* GGUF LLMs (llama.cpp names), handled by :mod:`.gguf_llama`.

After normalisation, Llama keys are those of ``transformers.LlamaModel`` (no ``model.`` prefix)
and CLIP keys those of ``transformers.CLIPTextModel`` (``text_model.…``).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..checkpoints.io import TensorSource, open_weights
from ..errors import CheckpointError, IncompatibleWeightsError, UnknownCheckpointError
from .encoder_weights import CLIP_TEXT, LLAMA, LLAMA_SENTINEL, TextEncoderWeights, merged, renamed

logger = logging.getLogger(__name__)

CLIP_SENTINEL = "text_model.embeddings.token_embedding.weight"
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)

# llava-llama-3-8b language model (xtuner/llava-llama-3-8b-v1_1-transformers, text part).
# Hyper-parameters that shapes cannot tell (RoPE theta, norm eps) are the Llama-3 ones.
LLAVA_LLAMA3_8B_CONFIG: Dict[str, Any] = dict(
    vocab_size=128320, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, hidden_act="silu",
    max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0, attention_bias=False,
    mlp_bias=False, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128009,
)
# openai/clip-vit-large-patch14 text tower. eos_token_id=2 is what the released config says; it
# selects transformers' legacy pooling rule (argmax of the ids = the real EOS, id 49407).
CLIP_L_TEXT_CONFIG: Dict[str, Any] = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)


# --------------------------------------------------------------------------------------------
# Opening


def _hf_folder_sources(folder: Path) -> List[TensorSource]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"could not read {str(index)!r}: {exc}; expected a safetensors index "
                                  f"with a 'weight_map'. Re-download the model folder.") from exc
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise CheckpointError(
                f"the model folder {str(folder)!r} lists shards {missing} in model.safetensors.index.json "
                f"but they are not there (found {sorted(p.name for p in folder.glob('*.safetensors'))}). "
                f"Copy the missing shard files into the folder.")
        return [open_weights(folder / f) for f in files]
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(
            f"no weights in {str(folder)!r}: expected model.safetensors (or sharded model-*.safetensors "
            f"with model.safetensors.index.json, or pytorch_model*.bin) next to config.json. Found: "
            f"{sorted(p.name for p in folder.iterdir())[:12]}.")
    return [open_weights(f) for f in files]


def _folder_config(folder: Path) -> Optional[Dict[str, Any]]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not read {str(cfg)!r}: {exc}. Expected the model's JSON config.") from exc


def open_text_encoder_weights(path: str | os.PathLike, llm_config: Any = None) -> TextEncoderWeights:
    """Open a folder or file and recognise it as a Llama (LLM) or CLIP text encoder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"text encoder not found: {path!r}. Expected a Hugging Face model folder, a "
                              f".safetensors/.pt file or a .gguf file; check the path.")
    if os.path.isdir(path):
        folder = Path(path)
        raw = merged(_hf_folder_sources(folder), path)
        cfg = _folder_config(folder)
        weights = recognise(raw, path, layout="hf_folder")
        if cfg is not None:
            weights.config = config_from_json(cfg, weights.kind, path)
        elif weights.kind == LLAMA and llm_config is None:
            logger.warning("no config.json in %s; inferring the Llama config from tensor shapes", path)
    elif path.lower().endswith(".gguf"):
        from .gguf_llama import open_gguf_llm

        weights = open_gguf_llm(path)
    else:
        weights = recognise(open_weights(path), path, layout="single_file")
    if weights.kind == LLAMA and llm_config is not None:
        weights.config = config_from_json(llm_config if isinstance(llm_config, dict) else llm_config.to_dict(),
                                          LLAMA, path)
    if weights.config is None:
        weights.config = (infer_llama_config(weights.source) if weights.kind == LLAMA
                          else infer_clip_config(weights.source))
    check_shapes_against_config(weights)
    return weights


# --------------------------------------------------------------------------------------------
# Recognition


def _prefix_of(keys: List[str], sentinel: str) -> Optional[str]:
    hits = [k[: -len(sentinel)] for k in keys if k.endswith(sentinel)]
    return min(hits, key=len) if hits else None


def describe_other_model(keys: List[str]) -> Optional[str]:
    """A sentence naming what a non-text-encoder file is, or None."""
    joined = "\n".join(keys[:5000])
    if re.search(r"(^|\.)double_blocks\.\d+\.|(^|\.)img_in\.proj\.|(^|\.)txt_in\.individual_token_refiner", joined, re.M):
        return ("a HunyuanVideo transformer (DiT) checkpoint; load it with load_transformer "
                "(ComfyUI: models/diffusion_models)")
    if re.search(r"(^|\.)transformer_blocks\.\d+\..*attn|(^|\.)x_embedder\.", joined, re.M):
        return "a diffusion transformer checkpoint (diffusers layout); load it with load_transformer"
    if re.search(r"(^|\.)(decoder\.conv_in|decoder\.up_blocks|encoder\.down_blocks|post_quant_conv|"
                 r"decoder\.up\.\d|encoder\.down\.\d)", joined, re.M):
        return "a VAE checkpoint; load it with load_vae (ComfyUI: models/vae)"
    if re.search(r"(^|\.)encoder\.block\.\d+\.layer\.", joined, re.M):
        return "a T5 encoder, which HunyuanVideo does not use"
    if re.search(r"(^|\.)vision_model\.embeddings\.", joined, re.M):
        return "a CLIP vision tower without the text tower (ComfyUI: models/clip_vision)"
    return None


def recognise(source: TensorSource, path: str, layout: str) -> TextEncoderWeights:
    keys = source.keys()
    prefix = _prefix_of(keys, CLIP_SENTINEL)
    if prefix is not None:
        mapping = {k[len(prefix):]: k for k in keys
                   if k.startswith(prefix + "text_model.") and not k.endswith("position_ids")}
        return TextEncoderWeights(CLIP_TEXT, "hf_folder" if layout == "hf_folder" else "comfyui_clip",
                                  renamed(source, mapping), None, path)
    key_set = set(keys)
    prefix = _prefix_of([k for k in keys if k[: -len(LLAMA_SENTINEL)] + "embed_tokens.weight" in key_set],
                        LLAMA_SENTINEL)
    if prefix is not None:
        return _recognise_llama(source, keys, prefix, path, layout)
    other = describe_other_model(keys)
    if other:
        raise UnknownCheckpointError(
            f"{path!r} is {other}, not a text encoder. Expected the llava-llama-3-8b language model "
            f"(tensor 'model.layers.0.self_attn.q_proj.weight') or CLIP-L "
            f"('text_model.embeddings.token_embedding.weight'). Pick the text-encoder files "
            f"(ComfyUI: models/text_encoders/llava_llama3_fp16.safetensors and clip_l.safetensors).")
    raise UnknownCheckpointError(
        f"{path!r} is not a recognised text encoder: expected a Llama LLM (a key ending in "
        f"'{LLAMA_SENTINEL}') or a CLIP text model ('{CLIP_SENTINEL}'); found {len(keys)} tensors such as "
        f"{keys[:5]}. Use the llava-llama-3-8b text encoder and CLIP-L files.")


def _recognise_llama(source: TensorSource, keys: List[str], prefix: str, path: str,
                     layout: str) -> TextEncoderWeights:
    mapping: Dict[str, str] = {}
    scales: Dict[str, str] = {}
    for k in keys:
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        if name.endswith(".scale_weight"):
            scales[name[: -len(".scale_weight")]] = k
        elif name.endswith(".scale_input") or name == "scaled_fp8" or name.endswith("rotary_emb.inv_freq"):
            continue
        elif name.startswith(("layers.", "embed_tokens.", "norm.")):
            mapping[name] = k
    dropped = [k for k in keys if k.startswith("lm_head.") or not k.startswith(prefix)]
    if dropped:
        logger.debug("ignoring %d tensors not used for encoding (e.g. %s)", len(dropped), dropped[:3])
    is_fp8 = bool(scales) or any(source.dtype(old) in FP8_DTYPES for old in mapping.values())
    fp8_scales = {}
    if is_fp8:
        for name, old in mapping.items():
            if source.dtype(old) in FP8_DTYPES and name.endswith(".weight"):
                layer = name[: -len(".weight")]
                scale_key = scales.get(layer)
                fp8_scales[layer] = (source.get(scale_key).float().reshape(()) if scale_key
                                     else torch.ones((), dtype=torch.float32))
        layout = "comfyui_fp8_scaled" if layout != "hf_folder" else layout
    elif layout != "hf_folder":
        layout = "comfyui_llm"
    return TextEncoderWeights(LLAMA, layout, renamed(source, mapping), None, path, fp8_scales=fp8_scales)


# --------------------------------------------------------------------------------------------
# Configs


def config_from_json(cfg: Dict[str, Any], kind: str, path: str) -> Any:
    from transformers import CLIPTextConfig, LlamaConfig

    cfg = dict(cfg)
    if kind == LLAMA:
        if cfg.get("model_type") in ("llava", "llava_next") and "text_config" in cfg:
            cfg = dict(cfg["text_config"])
        if cfg.get("model_type", "llama") != "llama":
            raise IncompatibleWeightsError(
                f"{path!r}: config.json says model_type {cfg.get('model_type')!r}; expected 'llama' (the "
                f"llava-llama-3-8b language model). Use the HunyuanVideo text_encoder folder.")
        cfg.pop("model_type", None)
        cfg.pop("architectures", None)
        return LlamaConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    if cfg.get("model_type") == "clip" or "text_config" in cfg:
        cfg = dict(cfg.get("text_config") or {})
        # transformers fills missing text_config fields from CLIPTextConfig defaults (the CLIP-B ones);
        # the released CLIP-L config lists them all.
    cfg.pop("model_type", None)
    cfg.pop("architectures", None)
    return CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})


def _count_layers(keys: List[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


def infer_llama_config(source: TensorSource) -> Any:
    """Llama config from tensor shapes, with Llama-3 values for what shapes cannot tell."""
    from transformers import LlamaConfig

    shapes = {k: source.shape(k) for k in source.keys()}
    vocab, hidden = shapes["embed_tokens.weight"]
    layers = _count_layers(list(shapes), r"layers\.(\d+)\.")
    intermediate = shapes["layers.0.mlp.gate_proj.weight"][0]
    q_out = shapes["layers.0.self_attn.q_proj.weight"][0]
    kv_out = shapes["layers.0.self_attn.k_proj.weight"][0]
    known = LLAVA_LLAMA3_8B_CONFIG
    if (hidden, intermediate, q_out, kv_out) == (known["hidden_size"], known["intermediate_size"], 4096, 1024):
        head_dim = known["head_dim"]
    else:
        head_dim = next((d for d in (128, 64, 32, 16) if q_out % d == 0 and kv_out % d == 0), None)
        if head_dim is None:
            raise IncompatibleWeightsError(
                f"cannot infer the attention head size of {source.path!r} (q_proj out {q_out}, k_proj out "
                f"{kv_out}); pass llm_config= a config.json dict with num_attention_heads.")
    cfg = dict(known, vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
               num_hidden_layers=layers, num_attention_heads=q_out // head_dim,
               num_key_value_heads=kv_out // head_dim, head_dim=head_dim,
               attention_bias="layers.0.self_attn.q_proj.bias" in shapes)
    if vocab <= known["bos_token_id"]:  # not the Llama-3 vocabulary: its special ids do not apply
        cfg.update(bos_token_id=None, eos_token_id=None)
    return LlamaConfig(**cfg)


def infer_clip_config(source: TensorSource) -> Any:
    from transformers import CLIPTextConfig

    shapes = {k: source.shape(k) for k in source.keys()}
    vocab, hidden = shapes["text_model.embeddings.token_embedding.weight"]
    positions = shapes["text_model.embeddings.position_embedding.weight"][0]
    layers = _count_layers(list(shapes), r"text_model\.encoder\.layers\.(\d+)\.")
    intermediate = shapes["text_model.encoder.layers.0.mlp.fc1.weight"][0]
    return CLIPTextConfig(**dict(CLIP_L_TEXT_CONFIG, vocab_size=vocab, hidden_size=hidden,
                                 max_position_embeddings=positions, num_hidden_layers=layers,
                                 intermediate_size=intermediate, num_attention_heads=max(1, hidden // 64)))


def check_shapes_against_config(weights: TextEncoderWeights) -> None:
    """Fail early, naming the first tensors that do not fit the config."""
    cfg = weights.config
    src = weights.source
    if weights.kind == LLAMA:
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        expected = {
            "embed_tokens.weight": (cfg.vocab_size, cfg.hidden_size),
            "layers.0.self_attn.q_proj.weight": (cfg.num_attention_heads * head_dim, cfg.hidden_size),
            "layers.0.self_attn.k_proj.weight": (cfg.num_key_value_heads * head_dim, cfg.hidden_size),
            "layers.0.mlp.gate_proj.weight": (cfg.intermediate_size, cfg.hidden_size),
        }
    else:
        expected = {
            "text_model.embeddings.token_embedding.weight": (cfg.vocab_size, cfg.hidden_size),
            "text_model.encoder.layers.0.mlp.fc1.weight": (cfg.intermediate_size, cfg.hidden_size),
        }
    bad = [(k, shp, src.shape(k) if k in src else None) for k, shp in expected.items()
           if k not in src or tuple(src.shape(k)) != shp]
    if bad:
        k, want, got = bad[0]
        raise IncompatibleWeightsError(
            f"{weights.path!r} does not match its config: tensor {k!r} expected shape {want}, found "
            f"{got if got is not None else 'no such tensor'}. The weights and config.json come from "
            f"different models; re-download the folder or pass the right llm_config.")
