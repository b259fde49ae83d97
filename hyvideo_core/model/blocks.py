"""The two transformer block kinds of HunyuanVideo (tech report §4.2, "dual-stream to
single-stream"): double-stream blocks keep image and text weights apart and meet only in a
joint attention; single-stream blocks run one fused attention+MLP over the joint sequence."""
from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
from torch import nn

from ..config import TransformerConfig
from .layers import MLP, Modulation, ModulationOut, RMSNorm, layer_norm, modulate
from .rope import apply_rope

if TYPE_CHECKING:
    from .extension import ForwardContext


def split_heads(qkv: torch.Tensor, heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L, 3·H·D) fused projection -> q, k, v of shape (B, L, H, D); layout [q | k | v]."""
    b, length, _ = qkv.shape
    return qkv.view(b, length, 3, heads, -1).unbind(2)


class DoubleStreamBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d, heads = cfg.hidden_size, cfg.heads_num
        self.heads = heads
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", Modulation(d, factor=6))
            setattr(self, f"{stream}_attn_qkv", nn.Linear(d, 3 * d, bias=cfg.qkv_bias))
            setattr(self, f"{stream}_attn_q_norm", RMSNorm(cfg.head_dim))
            setattr(self, f"{stream}_attn_k_norm", RMSNorm(cfg.head_dim))
            setattr(self, f"{stream}_attn_proj", nn.Linear(d, d))
            setattr(self, f"{stream}_mlp", MLP(d, cfg.mlp_hidden, nn.GELU(approximate="tanh")))

    def _project_qkv(self, stream: str, x: torch.Tensor, mod: ModulationOut):
        h = mod.modulate(layer_norm(x), 0).to(x.dtype)
        q, k, v = split_heads(getattr(self, f"{stream}_attn_qkv")(h), self.heads)
        return getattr(self, f"{stream}_attn_q_norm")(q), getattr(self, f"{stream}_attn_k_norm")(k), v

    def forward(self, img: torch.Tensor, txt: torch.Tensor, ctx: "ForwardContext") -> Tuple[torch.Tensor, torch.Tensor]:
        # adaLN chunks: shift1, scale1, gate1 (attention), shift2, scale2, gate2 (MLP)
        img_mod, txt_mod = self.img_mod(ctx.cond), self.txt_mod(ctx.cond.vec)

        # 1. per-stream q/k/v with RMS q/k norm; RoPE on image tokens only
        img_q, img_k, img_v = self._project_qkv("img", img, img_mod)
        img_q, img_k = apply_rope(img_q, ctx.rope), apply_rope(img_k, ctx.rope)
        txt_q, txt_k, txt_v = self._project_qkv("txt", txt, txt_mod)

        # 2. joint attention over [image tokens | text tokens]
        attn = ctx.attention(torch.cat([img_q, txt_q], 1), torch.cat([img_k, txt_k], 1),
                             torch.cat([img_v, txt_v], 1)).flatten(2)
        img_attn, txt_attn = attn[:, : img.shape[1]], attn[:, img.shape[1]:]

        # 3. gated residuals: attention projection, then modulated MLP
        img = img + img_mod.gate(self.img_attn_proj(img_attn), 2)
        img = img + img_mod.gate(self.img_mlp(img_mod.modulate(layer_norm(img), 3).to(img.dtype)), 5)
        txt = txt + txt_mod.gate(self.txt_attn_proj(txt_attn), 2)
        txt = txt + txt_mod.gate(self.txt_mlp(txt_mod.modulate(layer_norm(txt), 3).to(txt.dtype)), 5)
        return img, txt


class SingleStreamBlock(nn.Module):
    """linear1 fuses q, k, v and the MLP input; linear2 fuses the attention output
    projection and the MLP output."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.heads_num
        self.hidden_size = d
        self.mlp_hidden = cfg.mlp_hidden
        self.linear1 = nn.Linear(d, 3 * d + cfg.mlp_hidden)
        self.linear2 = nn.Linear(d + cfg.mlp_hidden, d)
        self.q_norm = RMSNorm(cfg.head_dim)
        self.k_norm = RMSNorm(cfg.head_dim)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(d, factor=3)

    def forward(self, x: torch.Tensor, ctx: "ForwardContext") -> torch.Tensor:
        mod = self.modulation(ctx.cond)  # shift, scale, gate
        img_len = ctx.img_len
        h = mod.modulate(layer_norm(x), 0).to(x.dtype)
        qkv, mlp_in = self.linear1(h).split([3 * self.hidden_size, self.mlp_hidden], dim=-1)
        q, k, v = split_heads(qkv, self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        q[:, :img_len] = apply_rope(q[:, :img_len], ctx.rope)   # q, k are fresh tensors from the norms
        k[:, :img_len] = apply_rope(k[:, :img_len], ctx.rope)
        attn = ctx.attention(q, k, v).flatten(2)
        return x + mod.gate(self.linear2(torch.cat([attn, self.mlp_act(mlp_in)], -1)), 2)


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear projection to patch pixels."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        pt, ph, pw = cfg.patch_size
        self.linear = nn.Linear(d, pt * ph * pw * cfg.out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        return self.linear(modulate(layer_norm(x), shift, scale).to(x.dtype))
