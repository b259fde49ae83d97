"""HunyuanVideo-Foley: a 1-D flow-matching DiT that turns video (and a prompt) into audio latents
(tech report §7; the release differs from the report, see shared/spec/official_apps.md §C.9).

Audio latents (DAC-VAE, 50 frames/s) become audio tokens; SigLIP2 frame features (8 fps) become
visual tokens; CLAP token states become text tokens; Synchformer features (25 fps video) are
resampled to one vector per audio frame, added to the audio tokens and used as the single
blocks' per-token modulation. Attribute names are the official checkpoint keys.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..attention import attention
from ..errors import InputError
from ..model.embeddings import TextProjection, TimestepEmbedder
from .blocks import FinalLayer, FoleyStep, SingleStreamBlock, TripleStreamBlock
from .config import FoleyConfig
from .layers import AudioEmbed, ConvSwiGLU, SwiGLU, resample_tokens, rope_1d


class HunyuanVideoFoley(nn.Module):
    # The repeated block stacks, in execution order, read by the passes (block swap, compile,
    # fp8, caches) instead of literal names.
    BLOCK_LISTS = ("triple_blocks", "single_blocks")

    def __init__(self, cfg: FoleyConfig):
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.audio_embedder = AudioEmbed(cfg.audio_latent_dim, d)
        self.visual_proj = SwiGLU(cfg.visual_dim, d, d)
        self.cond_in = TextProjection(cfg.text_dim, d)
        self.time_in = TimestepEmbedder(d)
        self.sync_in = nn.Sequential(nn.Linear(cfg.sync_dim, d), nn.SiLU(), ConvSwiGLU(d, cfg.conv_mlp_hidden, 1))
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, cfg.sync_tokens_per_segment, cfg.sync_dim))
        self.triple_blocks = nn.ModuleList(TripleStreamBlock(cfg) for _ in range(cfg.triple_depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(cfg) for _ in range(cfg.single_depth))
        self.final_layer = FinalLayer(cfg)
        # Learned "no video" features: the unconditional branch of classifier-free guidance sees
        # these repeated over the frames instead of the SigLIP2 / Synchformer features.
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, cfg.visual_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, cfg.sync_dim))
        # Run-time settings, set by the loader and the passes; not part of the state dict.
        self.compute_dtype: torch.dtype = torch.float32
        self.attention_backend: Optional[str] = None
        self.variant: Optional[str] = None

    def forward(self, x: torch.Tensor, t: torch.Tensor, visual_features: torch.Tensor,
                text_states: torch.Tensor, sync_features: torch.Tensor) -> torch.Tensor:
        """Velocity prediction (the official ``forward(x, t, clip_feat, cond, sync_feat)``).

        Args:
            x: (B, C_latent, La) audio latents.
            t: (B,) timesteps on the 0..1000 scale.
            visual_features: (B, Lv, D_visual) SigLIP2 features of the frames at 8 fps.
            text_states: (B, Lt, D_text) CLAP token states (padding tokens included: no mask).
            sync_features: (B, 8·S, D_sync) Synchformer tokens of S 16-frame segments at 25 fps.
        Returns:
            (B, C_latent, La) float velocity in the compute dtype.
        """
        self.check_inputs(x, t, visual_features, text_states, sync_features)
        dtype = self.compute_dtype
        la = x.shape[2]

        # 1. conditioning: the timestep vector and one Synchformer vector per audio frame
        vec = self.time_in(t, dtype)
        sync = self.sync_per_audio_frame(sync_features.to(dtype), la)

        # 2. tokens: audio (+ sync features), visual, text
        audio = self.audio_embedder(x.to(dtype)) + sync
        visual = self.visual_proj(visual_features.to(dtype))
        text = self.cond_in(text_states.to(dtype))
        step = self.step_context(vec, sync, la, visual.shape[1], text.shape[1], x.device)

        # 3. triple blocks: audio and visual streams, text via cross-attention
        for block in self.triple_blocks:
            audio, visual = block(audio, visual, text, step)

        # 4. single blocks: audio only, modulated per frame by sync features + timestep
        for block in self.single_blocks:
            audio = block(audio, step)

        # 5. final projection (its adaLN is inert in the release: see FinalLayer)
        return self.final_layer(audio).transpose(1, 2)

    def sync_per_audio_frame(self, sync_features: torch.Tensor, audio_frames: int) -> torch.Tensor:
        """(B, 8·S, D_sync) -> (B, La, H): a learned position per token within its segment, the
        ``sync_in`` projection, then nearest-exact resampling to the audio frame rate."""
        b, n, c = sync_features.shape
        seg = self.config.sync_tokens_per_segment
        per_segment = sync_features.view(b, n // seg, seg, c) + self.sync_pos_emb.to(sync_features.dtype)
        return resample_tokens(self.sync_in(per_segment.view(b, n, c)), audio_frames)

    def step_context(self, vec: torch.Tensor, sync: torch.Tensor, la: int, lv: int, lt: int,
                     device: torch.device) -> FoleyStep:
        cfg = self.config
        rope = lambda n: rope_1d(n, cfg.head_dim, cfg.rope_theta, device)  # noqa: E731
        backend = self.attention_backend
        return FoleyStep(vec=vec, token_cond=sync + vec[:, None], rope_interleaved=rope(2 * la),
                         rope_audio=rope(la), rope_visual=rope(lv), rope_text=rope(lt),
                         attention=lambda q, k, v: attention(q, k, v, backend=backend))

    def empty_visual_features(self, batch: int, frames: int) -> torch.Tensor:
        """(batch, frames, D_visual): the learned "no video" SigLIP2 features."""
        return self.empty_clip_feat.expand(batch, frames, -1)

    def empty_sync_features(self, batch: int, tokens: int) -> torch.Tensor:
        """(batch, tokens, D_sync): the learned "no video" Synchformer features."""
        return self.empty_sync_feat.expand(batch, tokens, -1)

    def check_inputs(self, x, t, visual_features, text_states, sync_features) -> None:
        cfg = self.config
        b = x.shape[0] if x.dim() == 3 else None
        expected = {
            "x": (x, 3, cfg.audio_latent_dim, "(B, C_latent, La) audio latents"),
            "visual_features": (visual_features, 3, cfg.visual_dim, "(B, Lv, D) SigLIP2 frame features"),
            "text_states": (text_states, 3, cfg.text_dim, "(B, Lt, D) CLAP token states"),
            "sync_features": (sync_features, 3, cfg.sync_dim, "(B, 8·S, D) Synchformer tokens"),
        }
        for name, (tensor, dims, channels, what) in expected.items():
            axis = 1 if name == "x" else 2
            if tensor.dim() != dims or tensor.shape[axis] != channels or tensor.shape[0] != b:
                raise InputError(f"{name} must be {what} with D = {channels} and batch {b}; "
                                 f"found shape {tuple(tensor.shape)}")
            if tensor.shape[1 if name != "x" else 2] == 0:
                raise InputError(f"{name} is empty (length 0); found shape {tuple(tensor.shape)}")
        seg = cfg.sync_tokens_per_segment
        if sync_features.shape[1] % seg:
            raise InputError(f"sync_features must hold whole Synchformer segments of {seg} tokens; found "
                             f"{sync_features.shape[1]} tokens")
        if t.dim() != 1 or t.shape[0] != b:
            raise InputError(f"t must be (B,) = ({b},) timesteps on the 0..1000 scale; found {tuple(t.shape)}")
