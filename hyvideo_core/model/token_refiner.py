"""The token refiner (``txt_in``): projects LLM hidden states to the model width and refines
them with a few self-attention blocks conditioned on the timestep and the mean text vector
(tech report §4.3: the decoder-only MLLM's causal features get bidirectional context here)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..attention import attention
from ..config import TransformerConfig
from .blocks import split_heads
from .embeddings import TextProjection, TimestepEmbedder
from .layers import MLP


class IndividualTokenRefinerBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.heads_num
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attn_qkv = nn.Linear(d, 3 * d, bias=cfg.qkv_bias)
        self.self_attn_proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLP(d, cfg.mlp_hidden, nn.SiLU())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))  # gates only

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: Optional[torch.Tensor],
                backend: Optional[str]) -> torch.Tensor:
        gate_msa, gate_mlp = self.adaLN_modulation(c).chunk(2, dim=-1)
        q, k, v = split_heads(self.self_attn_qkv(self.norm1(x)), self.heads)
        x = x + self.self_attn_proj(attention(q, k, v, mask=mask, backend=backend).flatten(2)) * gate_msa[:, None]
        return x + self.mlp(self.norm2(x)) * gate_mlp[:, None]


class IndividualTokenRefiner(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.blocks = nn.ModuleList(IndividualTokenRefinerBlock(cfg) for _ in range(cfg.refiner_depth))


class SingleTokenRefiner(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.input_embedder = nn.Linear(cfg.text_states_dim, d)
        self.t_embedder = TimestepEmbedder(d)
        self.c_embedder = TextProjection(cfg.text_states_dim, d)
        self.individual_token_refiner = IndividualTokenRefiner(cfg)

    def forward(self, text_states: torch.Tensor, t: torch.Tensor, text_mask: Optional[torch.Tensor],
                dtype: torch.dtype, backend: Optional[str] = None) -> torch.Tensor:
        c = self.t_embedder(t, dtype) + self.c_embedder(masked_mean(text_states, text_mask).to(dtype))
        x = self.input_embedder(text_states.to(dtype))
        attn_mask = None
        if text_mask is not None:
            attn_mask = text_mask[:, None, :, None] & text_mask[:, None, None, :]
            attn_mask[:, :, :, 0] = True  # every query may see key 0, so padded rows are not all -inf
        for block in self.individual_token_refiner.blocks:
            x = block(x, c, attn_mask, backend)
        return x


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over real tokens, in float32. An all-padding row gives zeros rather than NaN."""
    if mask is None:
        return x.float().mean(dim=1)
    m = mask.float().unsqueeze(-1)
    return (x.float() * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
