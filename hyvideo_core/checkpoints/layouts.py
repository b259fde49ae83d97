"""Checkpoint layouts as declarative tables.

The native layout is the official Tencent key set (our module names), so official and
ComfyUI files load with an identity map. Every other layout is one table of :class:`Rule`
rows; reading (foreign -> native, lazily, one tensor at a time) and writing (native ->
foreign) are both generated from that table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..config import TransformerConfig
from .io import TensorSource


@dataclass(frozen=True)
class Rule:
    """``native`` module path <-> ``foreign`` module path(s); ``{i}`` stands for a block index.

    One foreign path is a rename. Several foreign paths mean the native tensor is their
    concatenation along dim 0 (fused q/k/v, or q/k/v/mlp in ``linear1``). ``swap_halves``
    marks a tensor stored as [b; a] abroad and [a; b] natively.
    """
    native: str
    foreign: Tuple[str, ...]
    swap_halves: bool = False


@dataclass(frozen=True)
class Layout:
    name: str
    rules: Tuple[Rule, ...]
    sentinels: Tuple[str, ...]      # keys whose presence identifies the layout

    def matches(self, keys) -> bool:
        keys = set(keys)
        return any(s in keys for s in self.sentinels)


def _pattern(path: str) -> re.Pattern:
    return re.compile("^" + re.escape(path).replace(r"\{i\}", r"(\d+)") + r"\.(weight|bias)$")


def _fill(path: str, index: Optional[str]) -> str:
    return path.replace("{i}", index) if index is not None else path


_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")

DIFFUSERS = Layout(
    name="diffusers",
    sentinels=("context_embedder.proj_in.weight", "x_embedder.proj.weight"),
    rules=(
        Rule("img_in.proj", ("x_embedder.proj",)),
        Rule("time_in.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("time_in.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("guidance_in.mlp.0", ("time_text_embed.guidance_embedder.linear_1",)),
        Rule("guidance_in.mlp.2", ("time_text_embed.guidance_embedder.linear_2",)),
        Rule("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
        Rule("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), swap_halves=True),
        # token refiner
        Rule("txt_in.input_embedder", ("context_embedder.proj_in",)),
        Rule("txt_in.t_embedder.mlp.0", ("context_embedder.time_text_embed.timestep_embedder.linear_1",)),
        Rule("txt_in.t_embedder.mlp.2", ("context_embedder.time_text_embed.timestep_embedder.linear_2",)),
        Rule("txt_in.c_embedder.linear_1", ("context_embedder.time_text_embed.text_embedder.linear_1",)),
        Rule("txt_in.c_embedder.linear_2", ("context_embedder.time_text_embed.text_embedder.linear_2",)),
        *(Rule(f"txt_in.individual_token_refiner.blocks.{{i}}.{n}",
               tuple(f"context_embedder.token_refiner.refiner_blocks.{{i}}.{f}" for f in fs))
          for n, fs in (("norm1", ("norm1",)), ("norm2", ("norm2",)), ("self_attn_qkv", _QKV),
                        ("self_attn_proj", ("attn.to_out.0",)), ("mlp.fc1", ("ff.net.0.proj",)),
                        ("mlp.fc2", ("ff.net.2",)), ("adaLN_modulation.1", ("norm_out.linear",)))),
        # double-stream blocks
        *(Rule(f"double_blocks.{{i}}.{n}", tuple(f"transformer_blocks.{{i}}.{f}" for f in fs))
          for n, fs in (
              ("img_mod.linear", ("norm1.linear",)), ("txt_mod.linear", ("norm1_context.linear",)),
              ("img_attn_qkv", _QKV), ("txt_attn_qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
              ("img_attn_q_norm", ("attn.norm_q",)), ("img_attn_k_norm", ("attn.norm_k",)),
              ("txt_attn_q_norm", ("attn.norm_added_q",)), ("txt_attn_k_norm", ("attn.norm_added_k",)),
              ("img_attn_proj", ("attn.to_out.0",)), ("txt_attn_proj", ("attn.to_add_out",)),
              ("img_mlp.fc1", ("ff.net.0.proj",)), ("img_mlp.fc2", ("ff.net.2",)),
              ("txt_mlp.fc1", ("ff_context.net.0.proj",)), ("txt_mlp.fc2", ("ff_context.net.2",)))),
        # single-stream blocks
        *(Rule(f"single_blocks.{{i}}.{n}", tuple(f"single_transformer_blocks.{{i}}.{f}" for f in fs))
          for n, fs in (("linear1", _QKV + ("proj_mlp",)), ("linear2", ("proj_out",)),
                        ("q_norm", ("attn.norm_q",)), ("k_norm", ("attn.norm_k",)),
                        ("modulation.linear", ("norm.linear",)))),
    ),
)

OFFICIAL = Layout(name="official", rules=(),
                  sentinels=("txt_in.individual_token_refiner.blocks.0.norm1.weight", "img_in.proj.weight"))

LAYOUTS: Dict[str, Layout] = {layout.name: layout for layout in (OFFICIAL, DIFFUSERS)}

# Prefixes that wrap the native keys in ComfyUI and training files; stripped before detection.
KEY_PREFIXES = ("model.diffusion_model.", "model.model.", "diffusion_model.", "model.", "transformer.", "net.")


def detect_layout(keys: Sequence[str]) -> Optional[Layout]:
    return next((layout for layout in (DIFFUSERS, OFFICIAL) if layout.matches(keys)), None)


# --------------------------------------------------------------------------------------------
# reading: a lazy native view of a foreign-layout source


def split_sizes(rule: Rule, native_rows: int, hidden_size: int) -> List[int]:
    """Rows of each foreign piece of a fused native tensor (a rule with several foreign paths), in
    order: ``linear1`` = q | k | v (``hidden_size`` each) | mlp_in (the rest); q | k | v evenly.
    Shared by the layout converter and the diffusers LoRA reader."""
    n = len(rule.foreign)
    if n == 4:  # linear1 = [q | k | v | mlp_in]
        return [hidden_size] * 3 + [native_rows - 3 * hidden_size]
    return [native_rows // n] * n


class NativeView(TensorSource):
    """Presents a foreign-layout source under native keys; tensors are converted on ``get``.

    Foreign keys that no rule claims pass through unchanged, so the loader reports them as
    unexpected keys instead of silently dropping them.
    """

    def __init__(self, source: TensorSource, layout: Layout):
        self.source, self.layout = source, layout
        self.path, self.metadata = source.path, source.metadata
        self._plan: Dict[str, Tuple[Rule, List[str]]] = {}
        compiled = [(rule, [_pattern(f) for f in rule.foreign]) for rule in layout.rules]
        claimed = set()
        for key in source.keys():
            for rule, patterns in compiled:
                hit = next(((j, m) for j, p in enumerate(patterns) if (m := p.match(key))), None)
                if hit is None:
                    continue
                j, m = hit
                index = m.group(1) if "{i}" in rule.native else None
                param = m.group(m.lastindex)
                native = f"{_fill(rule.native, index)}.{param}"
                parts = self._plan.setdefault(native, (rule, [None] * len(rule.foreign)))[1]
                parts[j] = key
                claimed.add(key)
                break
        for native, (rule, parts) in self._plan.items():
            if any(p is None for p in parts):
                # an incomplete fused group stays foreign-named so the error names the real keys
                for p in parts:
                    if p is not None:
                        claimed.discard(p)
        self._plan = {k: v for k, v in self._plan.items() if all(p is not None for p in v[1])}
        self._passthrough = [k for k in source.keys() if k not in claimed]

    def keys(self) -> List[str]:
        return list(self._plan) + self._passthrough

    def shape(self, key: str) -> Tuple[int, ...]:
        if key not in self._plan:
            return self.source.shape(key)
        shapes = [self.source.shape(p) for p in self._plan[key][1]]
        return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])

    def dtype(self, key: str) -> torch.dtype:
        return self.source.dtype(self._plan[key][1][0] if key in self._plan else key)

    def get(self, key: str) -> torch.Tensor:
        if key not in self._plan:
            return self.source.get(key)
        rule, parts = self._plan[key]
        tensor = torch.cat([self.source.get(p) for p in parts], 0) if len(parts) > 1 else self.source.get(parts[0])
        return _swap_halves(tensor) if rule.swap_halves else tensor

    def foreign_keys(self, native_key: str) -> List[str]:
        return list(self._plan[native_key][1]) if native_key in self._plan else [native_key]


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


# --------------------------------------------------------------------------------------------
# writing: native -> foreign


def from_native(state_dict: Mapping[str, torch.Tensor], layout: Layout,
                cfg: TransformerConfig) -> Dict[str, torch.Tensor]:
    """Convert a native (official-key) state dict to ``layout``; the inverse of :class:`NativeView`."""
    out: Dict[str, torch.Tensor] = {}
    compiled = [(rule, _pattern(rule.native)) for rule in layout.rules]
    for key, tensor in state_dict.items():
        for rule, pattern in compiled:
            m = pattern.match(key)
            if m is None:
                continue
            index = m.group(1) if "{i}" in rule.native else None
            param = m.group(m.lastindex)
            if rule.swap_halves:
                tensor = _swap_halves(tensor)
            pieces = (tensor.split(split_sizes(rule, tensor.shape[0], cfg.hidden_size), dim=0)
                      if len(rule.foreign) > 1 else (tensor,))
            for foreign, piece in zip(rule.foreign, pieces):
                out[f"{_fill(foreign, index)}.{param}"] = piece.contiguous()
            break
        else:
            out[key] = tensor
    return out


class RenamedView(TensorSource):
    """A source under new names: ``names`` maps each visible key to the source key behind it.
    Used to strip ComfyUI/training prefixes and to hide fp8 scale tensors."""

    def __init__(self, source: TensorSource, names: Mapping[str, str]):
        self.source, self._names = source, dict(names)
        self.path, self.metadata = source.path, source.metadata

    @classmethod
    def without_prefix(cls, source: TensorSource, prefix: str) -> "RenamedView":
        return cls(source, {k[len(prefix):]: k for k in source.keys() if k.startswith(prefix)})

    @classmethod
    def without_keys(cls, source: TensorSource, hidden) -> "RenamedView":
        hidden = set(hidden)
        return cls(source, {k: k for k in source.keys() if k not in hidden})

    def keys(self) -> List[str]:
        return list(self._names)

    def shape(self, key: str) -> Tuple[int, ...]:
        return self.source.shape(self._names[key])

    def dtype(self, key: str) -> torch.dtype:
        return self.source.dtype(self._names[key])

    def get(self, key: str) -> torch.Tensor:
        return self.source.get(self._names[key])

    def packed_tensors(self) -> Dict[str, object]:
        inner = self.source.packed_tensors()
        return {k: inner[v] for k, v in self._names.items() if v in inner}
