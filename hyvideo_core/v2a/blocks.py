"""The two block kinds of the Foley DiT (shared/spec/official_apps.md §C.1).

* :class:`TripleStreamBlock` ("triple": audio, visual and text). Audio and visual tokens are
  both updated: a joint self-attention over [visual; audio] with the interleaved audio/visual
  rotary embedding, then a cross-attention of both to the text tokens (which are never updated),
  then per-stream GELU MLPs. Modulated by the timestep vector only. qkv layout "(K H D)".
* :class:`SingleStreamBlock`: audio only, modulated per token (Synchformer features + timestep),
  with a kernel-3 convolutional output projection and SwiGLU conv FFN. qkv layout "(H D K)":
  q, k and v are interleaved channel by channel, unlike everywhere else.

Attribute names are the official checkpoint keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ..model.layers import MLP, Modulation, ModulationOut, RMSNorm, layer_norm
from ..model.rope import apply_rope
from .config import FoleyConfig
from .layers import ConvSwiGLU, DefaultEpsRMSNorm, TokenConv1d, nearest_exact_index

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FoleyStep:
    """What every block of one forward pass shares."""
    vec: torch.Tensor            # (B, H) timestep vector: the triple blocks' modulation input
    token_cond: Optional[torch.Tensor]  # (B, La, H) per-audio-frame modulation input of the single blocks
    rope_interleaved: torch.Tensor      # (2·La, D/2) rotations of the interleaved audio/visual sequence
    rope_audio: torch.Tensor     # (La, D/2) positions 0..La-1 (single blocks, audio cross-attention queries)
    rope_visual: torch.Tensor    # (Lv, D/2) positions 0..Lv-1 (visual cross-attention queries)
    rope_text: torch.Tensor      # (Lt, D/2) positions 0..Lt-1 (text cross-attention keys)
    attention: Attention


def split_khd(qkv: torch.Tensor, heads: int, parts: int = 3) -> Tuple[torch.Tensor, ...]:
    """"B L (K H D)" -> K tensors (B, L, H, D): [q | k | v] blocks, each H heads of D channels."""
    b, length, _ = qkv.shape
    return qkv.view(b, length, parts, heads, -1).unbind(2)


def split_hdk(qkv: torch.Tensor, heads: int) -> Tuple[torch.Tensor, ...]:
    """"B L (H D K)" -> q, k, v (B, L, H, D): channel 3·(h·D + d) + k holds part k of head h, dim d."""
    b, length, _ = qkv.shape
    return qkv.view(b, length, heads, -1, 3).unbind(-1)


def interleaved_rope(audio: torch.Tensor, visual: torch.Tensor, rope: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The interleaved audio/visual rotary embedding of the joint self-attention.

    The released model resizes the visual sequence to the audio length (nearest-exact), interleaves
    the two as (a0, v0, a1, v1, …), rotates with positions 0..2·La−1, splits them again and resizes
    the visual part back to Lv. Per token that is: audio token i at position 2i; visual token j
    becomes the rotated copy of visual token ``up[down[j]]`` at position 2·down[j]+1, with ``up``
    (La -> Lv) and ``down`` (Lv -> La) the nearest-exact index maps. When Lv ≤ La, ``up[down[j]]``
    is j; when Lv > La some visual tokens are replaced by a neighbour's copy, as in the release.
    """
    la, lv = audio.shape[1], visual.shape[1]
    audio = apply_rope(audio, rope[0::2])
    if lv != la:
        down = nearest_exact_index(lv, la, visual.device)
        up = nearest_exact_index(la, lv, visual.device)
        return audio, apply_rope(visual[:, up[down]], rope[1::2][down])
    return audio, apply_rope(visual, rope[1::2])


class TripleStreamBlock(nn.Module):
    # Modulation chunks (each (B, H)): shift, scale, gate for 1. self-attention, 2. text
    # cross-attention, 3. MLP.
    SELF, CROSS, MLP_ = 0, 3, 6

    def __init__(self, cfg: FoleyConfig):
        super().__init__()
        d, head_dim, bias = cfg.hidden_size, cfg.head_dim, cfg.qkv_bias
        self.heads = cfg.heads_num
        self.audio_mod = Modulation(d, factor=9)
        self.v_cond_mod = Modulation(d, factor=9)
        # 1. joint self-attention
        self.audio_self_attn_qkv = nn.Linear(d, 3 * d, bias=bias)
        self.audio_self_q_norm, self.audio_self_k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
        self.audio_self_proj = nn.Linear(d, d, bias=bias)
        self.v_cond_attn_qkv = nn.Linear(d, 3 * d, bias=bias)
        self.v_cond_attn_q_norm, self.v_cond_attn_k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
        self.v_cond_self_proj = nn.Linear(d, d, bias=bias)
        # 2. cross-attention to the text tokens
        self.audio_cross_q = nn.Linear(d, d, bias=bias)
        self.v_cond_cross_q = nn.Linear(d, d, bias=bias)
        self.text_cross_kv = nn.Linear(d, 2 * d, bias=bias)
        self.audio_cross_q_norm = RMSNorm(head_dim)
        self.v_cond_cross_q_norm = RMSNorm(head_dim)
        self.text_cross_k_norm = RMSNorm(head_dim)
        self.audio_cross_proj = nn.Linear(d, d, bias=bias)
        self.v_cond_cross_proj = nn.Linear(d, d, bias=bias)
        # 3. MLPs
        self.audio_mlp = MLP(d, cfg.mlp_hidden, nn.GELU(approximate="tanh"))
        self.v_cond_mlp = MLP(d, cfg.mlp_hidden, nn.GELU(approximate="tanh"))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, text: torch.Tensor,
                step: FoleyStep) -> Tuple[torch.Tensor, torch.Tensor]:
        a_mod, v_mod = self.audio_mod(step.vec), self.v_cond_mod(step.vec)
        audio, visual = self.joint_self_attention(audio, visual, a_mod, v_mod, step)
        audio, visual = self.text_cross_attention(audio, visual, text, a_mod, v_mod, step)
        audio = audio + a_mod.gate(self.audio_mlp(a_mod.modulate(layer_norm(audio), self.MLP_).to(audio.dtype)),
                                   self.MLP_ + 2)
        visual = visual + v_mod.gate(self.v_cond_mlp(v_mod.modulate(layer_norm(visual), self.MLP_).to(visual.dtype)),
                                     self.MLP_ + 2)
        return audio, visual

    def joint_self_attention(self, audio, visual, a_mod: ModulationOut, v_mod: ModulationOut, step: FoleyStep):
        a_q, a_k, a_v = split_khd(self.audio_self_attn_qkv(a_mod.modulate(layer_norm(audio), self.SELF)
                                                           .to(audio.dtype)), self.heads)
        v_q, v_k, v_v = split_khd(self.v_cond_attn_qkv(v_mod.modulate(layer_norm(visual), self.SELF)
                                                       .to(visual.dtype)), self.heads)
        a_q, a_k = self.audio_self_q_norm(a_q), self.audio_self_k_norm(a_k)
        v_q, v_k = self.v_cond_attn_q_norm(v_q), self.v_cond_attn_k_norm(v_k)
        a_q, v_q = interleaved_rope(a_q, v_q, step.rope_interleaved)
        a_k, v_k = interleaved_rope(a_k, v_k, step.rope_interleaved)
        lv = visual.shape[1]
        attn = step.attention(torch.cat([v_q, a_q], 1), torch.cat([v_k, a_k], 1), torch.cat([v_v, a_v], 1)).flatten(2)
        audio = audio + a_mod.gate(self.audio_self_proj(attn[:, lv:]), self.SELF + 2)
        visual = visual + v_mod.gate(self.v_cond_self_proj(attn[:, :lv]), self.SELF + 2)
        return audio, visual

    def text_cross_attention(self, audio, visual, text, a_mod: ModulationOut, v_mod: ModulationOut, step: FoleyStep):
        b, lv = audio.shape[0], visual.shape[1]
        a_q = self.audio_cross_q(a_mod.modulate(layer_norm(audio), self.CROSS).to(audio.dtype))
        v_q = self.v_cond_cross_q(v_mod.modulate(layer_norm(visual), self.CROSS).to(visual.dtype))
        a_q = apply_rope(self.audio_cross_q_norm(a_q.view(b, a_q.shape[1], self.heads, -1)), step.rope_audio)
        v_q = apply_rope(self.v_cond_cross_q_norm(v_q.view(b, lv, self.heads, -1)), step.rope_visual)
        t_k, t_v = split_khd(self.text_cross_kv(text), self.heads, parts=2)
        t_k = apply_rope(self.text_cross_k_norm(t_k), step.rope_text)
        attn = step.attention(torch.cat([v_q, a_q], 1), t_k, t_v).flatten(2)
        audio = audio + a_mod.gate(self.audio_cross_proj(attn[:, lv:]), self.CROSS + 2)
        visual = visual + v_mod.gate(self.v_cond_cross_proj(attn[:, :lv]), self.CROSS + 2)
        return audio, visual


class SingleStreamBlock(nn.Module):
    """Audio tokens only; every modulation chunk is per token (B, La, H)."""

    def __init__(self, cfg: FoleyConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.heads_num
        self.modulation = Modulation(d, factor=6)
        self.linear_qkv = nn.Linear(d, 3 * d, bias=True)
        self.q_norm = DefaultEpsRMSNorm(cfg.head_dim)
        self.k_norm = DefaultEpsRMSNorm(cfg.head_dim)
        self.linear1 = TokenConv1d(d, d, kernel_size=3, padding=1)   # attention output projection
        self.linear2 = ConvSwiGLU(d, cfg.conv_mlp_hidden, kernel_size=3)

    def forward(self, x: torch.Tensor, step: FoleyStep) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(step.token_cond).chunks
        h = (layer_norm(x, eps=1e-5) * (1 + scale1.float()) + shift1.float()).to(x.dtype)
        q, k, v = split_hdk(self.linear_qkv(h), self.heads)
        q = apply_rope(self.q_norm(q), step.rope_audio)
        k = apply_rope(self.k_norm(k), step.rope_audio)
        x = x + self.linear1(step.attention(q, k, v.contiguous()).flatten(2)) * gate1
        h = (layer_norm(x, eps=1e-5) * (1 + scale2.float()) + shift2.float()).to(x.dtype)
        return x + self.linear2(h) * gate2


class FinalLayer(nn.Module):
    """LayerNorm then a linear projection to the latent channels.

    The released model's adaLN here never acts: its ``modulate`` drops shift and scale unless
    they are (B, H), and at this point the conditioning is per token (B, La, H), so the output
    is ``linear(LN(x))`` (spec §E.11, confirmed by perturbing the weights). ``adaLN_modulation``
    is kept so the checkpoint's keys load and are accounted for, and is deliberately not applied.
    """

    def __init__(self, cfg: FoleyConfig):
        super().__init__()
        d = cfg.hidden_size
        self.linear = nn.Linear(d, cfg.audio_latent_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(layer_norm(x).to(x.dtype))
