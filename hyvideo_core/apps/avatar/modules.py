"""The HunyuanVideo-Avatar modules, under the checkpoint's own key names
(shared/spec/official_apps.md §B.1-§B.5).

=========================  ==================================================================
``ref_in``                 patch embedding of the reference video latent (same shape as ``img_in``)
``before_proj``            Linear(D, D) on those tokens, added to every video token
``audio_proj``             :class:`AudioProjection`: one video frame's Whisper window -> 4 tokens
``motion_exp``             4 expression-motion values, each embedded to D/4, concatenated to D
``motion_pose``            4 head-pose-motion values, the same way
``fps_proj``               the frame rate, embedded like a timestep, to D
``audio_adapter_blocks.j`` :class:`FaceAudioAdapter` after the j-th listed double block
=========================  ==================================================================
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ...config import AvatarConfig, TransformerConfig
from ...errors import InputError
from ...model.embeddings import PatchEmbed, TimestepEmbedder

# How many motion values each motion embedder takes (their D/4 embeddings are concatenated to D).
MOTION_VALUES = 4


class AudioProjection(nn.Module):
    """One video frame's Whisper window (``audio_window`` frames x ``whisper_layers`` hidden states x
    ``whisper_dim``) flattened -> ReLU MLP -> ``tokens_per_frame`` tokens of width D, LayerNorm'ed
    (AudioProjNet2 in the release; LayerNorm eps 1e-5, affine)."""

    def __init__(self, avatar: AvatarConfig, hidden_size: int):
        super().__init__()
        self.tokens, self.hidden_size = avatar.tokens_per_frame, hidden_size
        self.window_shape = (avatar.audio_window, avatar.whisper_layers, avatar.whisper_dim)
        flat = avatar.audio_window * avatar.whisper_layers * avatar.whisper_dim
        self.proj1 = nn.Linear(flat, avatar.audio_hidden)
        self.proj2 = nn.Linear(avatar.audio_hidden, avatar.audio_hidden)
        self.proj3 = nn.Linear(avatar.audio_hidden, avatar.tokens_per_frame * hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, F, window, layers, channels) -> (B, F, tokens_per_frame, D)."""
        b, f = windows.shape[:2]
        h = F.relu(self.proj1(windows.reshape(b * f, -1)))
        h = F.relu(self.proj2(h))
        return self.norm(self.proj3(h).reshape(b, f, self.tokens, self.hidden_size))


class FaceAudioAdapter(nn.Module):
    """Single-head cross-attention from each latent frame's video tokens to that frame's audio tokens
    (PerceiverAttentionCA in the release; its ``heads`` argument is unused there, so it has none here).

    q = to_q(norm2(video)), k, v = to_kv(norm1(audio)); q and k are each scaled by d^-1/4 before the
    product (the release's fp16-safe form of d^-1/2) and the softmax runs in float32. Only 16 keys per
    query, so this is plain math rather than an attention backend. ``to_out`` is zero-initialised in
    the release: an untrained adapter changes nothing."""

    def __init__(self, hidden_size: int, dim: int):
        super().__init__()
        self.dim = dim
        self.norm1 = nn.LayerNorm(hidden_size)   # audio tokens
        self.norm2 = nn.LayerNorm(hidden_size)   # video tokens
        self.to_q = nn.Linear(hidden_size, dim, bias=False)
        self.to_kv = nn.Linear(hidden_size, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, hidden_size, bias=False)
        nn.init.zeros_(self.to_out.weight)

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """audio (B, T, N_audio, D), video (B, T, N_video, D) -> update (B, T, N_video, D)."""
        q = self.to_q(self.norm2(video))
        k, v = self.to_kv(self.norm1(audio)).chunk(2, dim=-1)
        scale = self.dim ** -0.25
        weights = (q * scale) @ (k * scale).transpose(-2, -1)
        weights = weights.float().softmax(dim=-1).to(weights.dtype)
        return self.to_out(weights @ v)


def embed_motion(embedder: TimestepEmbedder, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, MOTION_VALUES) scalars, each embedded as a timestep to D/4, concatenated to (B, D)."""
    return embedder(values.reshape(-1), dtype).reshape(values.shape[0], -1)


def avatar_modules(cfg: TransformerConfig, avatar: AvatarConfig) -> Dict[str, nn.Module]:
    """The avatar module groups, by checkpoint prefix (built on whatever device is current)."""
    d = cfg.hidden_size
    if d % MOTION_VALUES:
        raise InputError(f"hidden size {d} must be divisible by {MOTION_VALUES} for the motion embedders")
    return {
        "ref_in": PatchEmbed(cfg.patch_size, cfg.in_channels, d),
        "before_proj": nn.Linear(d, d),
        "audio_proj": AudioProjection(avatar, d),
        "motion_exp": TimestepEmbedder(d // MOTION_VALUES),
        "motion_pose": TimestepEmbedder(d // MOTION_VALUES),
        "fps_proj": TimestepEmbedder(d),
        "audio_adapter_blocks": nn.ModuleList(FaceAudioAdapter(d, avatar.adapter_dim)
                                              for _ in avatar.adapter_after),
    }
