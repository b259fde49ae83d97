"""Building the two text-encoder networks from recognised weights.

The networks are ``transformers.LlamaModel`` and ``transformers.CLIPTextModel``, built on the
``meta`` device and filled tensor by tensor (no full-precision copy of the file in memory).

The LLM is built *truncated*: HunyuanVideo uses ``hidden_states[-(skip+1)]`` (skip = 2), the
un-normalised output of decoder layer ``N-1-skip``. Running only the first ``N-skip`` layers
and replacing the final norm by identity gives exactly that tensor, and the skipped layers are
never loaded (about 0.9 GB less for the 8B model in fp16).
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
from torch import nn

from ..errors import IncompatibleWeightsError, InputError
from ..quant.fp8 import is_fp8_linear, prepare_fp8_linears, quantize_fp8
from .encoder_weights import LLAMA, TextEncoderWeights

logger = logging.getLogger(__name__)

LLAMA_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class LlmTextEncoder(nn.Module):
    """Llama language model returning ``hidden_states[-(skip_layers+1)]`` for every token."""

    def __init__(self, model: nn.Module, skip_layers: int, apply_final_norm: bool, full_layers: int):
        super().__init__()
        self.model = model
        self.skip_layers = skip_layers
        self.apply_final_norm = apply_final_norm
        self.full_layers = full_layers

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state


class ClipTextEncoder(nn.Module):
    """CLIP text tower returning ``pooler_output`` (final-LayerNorm state at the EOS token).

    The pooled position follows transformers' ``CLIPTextTransformer`` rule: with
    ``eos_token_id == 2`` (the released CLIP-L config) the highest token id, else the first
    ``eos_token_id``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def _load_into(model: nn.Module, weights: TextEncoderWeights, dtype: torch.dtype, fp8_layers: set,
               name_map=lambda n: n) -> None:
    """Fill a meta-device module from ``weights.source``; fp8 layers keep fp8 storage + scale."""
    src = weights.source
    state = {}
    expected = model.state_dict()
    missing = []
    for name, meta in expected.items():
        layer, _, leaf = name.rpartition(".")
        if leaf == "scale_weight" and layer in fp8_layers:
            continue
        key = name_map(name)
        if key not in src:
            missing.append(key)
            continue
        if tuple(src.shape(key)) != tuple(meta.shape):
            raise IncompatibleWeightsError(
                f"{weights.path!r}: tensor {key!r} has shape {tuple(src.shape(key))}, expected "
                f"{tuple(meta.shape)} for this config. The file and its config disagree; re-export the "
                f"file or pass the right llm_config.")
        t = src.get(key)
        if layer in fp8_layers and leaf == "weight":
            if t.dtype == torch.float8_e4m3fn and layer in weights.fp8_scales:
                state[f"{layer}.scale_weight"] = weights.fp8_scales[layer].float().reshape(())
                state[name] = t
            else:
                if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                    t = t.float() * weights.fp8_scales.get(layer, torch.ones(())).float()
                q, scale = quantize_fp8(t)
                state[name], state[f"{layer}.scale_weight"] = q, scale
            continue
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            t = t.float() * weights.fp8_scales.get(layer, torch.ones(())).float()
        state[name] = t.to(dtype)
    if missing:
        raise IncompatibleWeightsError(
            f"{weights.path!r} lacks {len(missing)} tensors the text encoder needs, e.g. {missing[:4]}. "
            f"Expected a complete {'llava-llama-3-8b language model' if weights.kind == LLAMA else 'CLIP-L text model'}"
            f"; the file is truncated or a different model. Re-download it.")
    model.load_state_dict(state, strict=True, assign=True)


def build_llm(weights: TextEncoderWeights, *, dtype: torch.dtype, fp8: bool, skip_layers: int = 2,
              apply_final_norm: bool = False, attn_implementation: str = "sdpa") -> LlmTextEncoder:
    from transformers import LlamaModel

    cfg = copy.deepcopy(weights.config)
    full = cfg.num_hidden_layers
    if not 0 <= skip_layers < full:
        raise InputError(f"hidden_state_skip_layer must be in [0, {full - 1}] for this {full}-layer LLM; "
                         f"found {skip_layers}. HunyuanVideo uses 2.")
    cfg.num_hidden_layers = full - skip_layers
    cfg.use_cache = False
    cfg._attn_implementation = attn_implementation
    keep_norm = skip_layers == 0 or apply_final_norm
    with torch.device("meta"):
        model = LlamaModel(cfg)
    if not keep_norm:
        model.norm = nn.Identity()
    fp8_layers = set()
    if fp8:
        fp8_layers = {f"layers.{i}.{lin}" for i in range(cfg.num_hidden_layers) for lin in LLAMA_LINEARS}
        prepare_fp8_linears(model, fp8_layers)
    _load_into(model, weights, dtype, fp8_layers)
    with torch.device("cpu"):  # the RoPE frequencies are a non-persistent buffer: rebuild off meta
        model.rotary_emb = type(model.rotary_emb)(config=cfg)
    _check_no_meta(model, weights.path)
    model.eval().requires_grad_(False)
    return LlmTextEncoder(model, skip_layers, apply_final_norm, full)


def build_clip(weights: TextEncoderWeights, *, dtype: torch.dtype,
               attn_implementation: str = "sdpa") -> ClipTextEncoder:
    from transformers import CLIPTextModel

    cfg = copy.deepcopy(weights.config)
    cfg._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = CLIPTextModel(cfg)
    # transformers 4.x nests the tower under ``text_model``; 5.x puts it at the top level.
    nested = any(k.startswith("text_model.") for k in model.state_dict())
    _load_into(model, weights, dtype, set(), name_map=(lambda n: n) if nested else (lambda n: "text_model." + n))
    emb = model.text_model.embeddings if nested else model.embeddings
    emb.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings).expand((1, -1)),
                        persistent=False)
    _check_no_meta(model, weights.path)
    model.eval().requires_grad_(False)
    return ClipTextEncoder(model)


def _check_no_meta(model: nn.Module, path: str) -> None:
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise IncompatibleWeightsError(f"{path!r}: tensors {left[:4]} were not filled while loading; "
                                       f"the file is incomplete for this model.")


def fp8_linear_count(module: nn.Module) -> int:
    return sum(is_fp8_linear(m) for m in module.modules())
