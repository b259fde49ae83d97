"""The HunyuanVideo diffusion transformer (tech report §4.2, Fig. 8).

Video latents are patchified into image tokens, text hidden states pass a token refiner, and
both streams go through dual-stream then single-stream blocks under a conditioning vector
built from the timestep, the pooled CLIP vector and (for the CFG-distilled model) the
embedded guidance scale. Attribute names are the official checkpoint keys.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..config import TransformerConfig
from ..errors import InputError
from .blocks import DoubleStreamBlock, FinalLayer, SingleStreamBlock
from .embeddings import MLPEmbedder, PatchEmbed, TimestepEmbedder
from .layers import Conditioning
from .rope import rope_frequencies
from .token_refiner import SingleTokenRefiner


class HunyuanVideoTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.img_in = PatchEmbed(cfg.patch_size, cfg.in_channels, d)
        self.txt_in = SingleTokenRefiner(cfg)
        self.time_in = TimestepEmbedder(d)
        self.vector_in = MLPEmbedder(cfg.text_states_dim_2, d)
        self.guidance_in = TimestepEmbedder(d) if cfg.guidance_embed else None
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(cfg) for _ in range(cfg.double_depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(cfg) for _ in range(cfg.single_depth))
        self.final_layer = FinalLayer(cfg)
        # Run-time settings, changed by loaders and passes, never part of the state dict.
        self.compute_dtype: torch.dtype = torch.float32
        self.attention_backend: Optional[str] = None
        self.variant: Optional[str] = None
        self._rope_cache: Dict[Tuple, torch.Tensor] = {}
        self.block_runner: Optional[BlockRunner] = None  # None = run_blocks

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor,
                text_mask: Optional[torch.Tensor], text_states_2: torch.Tensor,
                guidance: Optional[torch.Tensor] = None, *, token_replace: bool = False) -> torch.Tensor:
        """Velocity prediction.

        Args:
            x: (B, C_in, T, H, W) latents.
            t: (B,) timesteps on the 0..1000 scale.
            text_states: (B, L, D_text) LLM hidden states.
            text_mask: (B, L), 1 = real token, right-padded (None = all real).
            text_states_2: (B, D_pooled) pooled CLIP vector.
            guidance: (B,) embedded guidance × 1000; required by guidance-distilled models.
            token_replace: image-to-video with a clean first latent frame: its tokens are
                modulated as at t = 0 (and without guidance), the rest as usual.
        Returns:
            (B, C_out, T, H, W) velocity.
        """
        self._check_inputs(x, t, text_states, text_mask, text_states_2, guidance)
        dtype, backend = self.compute_dtype, self.attention_backend
        text_states, text_mask = drop_common_padding(text_states, text_mask)

        # 1. conditioning vector: timestep + pooled CLIP (+ embedded guidance)
        pooled = self.vector_in(text_states_2.to(dtype))
        vec = self.time_in(t, dtype) + pooled
        if self.guidance_in is not None:
            vec = vec + self.guidance_in(guidance, dtype)
        grid = self.token_grid(x.shape[2:])
        cond = Conditioning(vec)
        if token_replace:
            cond = Conditioning(vec, self.time_in(torch.zeros_like(t), dtype) + pooled, grid[1] * grid[2])

        # 2. tokens: patchified latents and refined text
        img = self.img_in(x.to(dtype))
        txt = self.txt_in(text_states, t, text_mask, dtype, backend)
        rope = self.rope(grid, x.device)
        mask = None if text_mask is None else torch.cat(
            [torch.ones(img.shape[:2], dtype=torch.bool, device=img.device), text_mask], dim=1)

        # 3. the blocks (a pass such as step caching may replace the runner)
        img = (self.block_runner or run_blocks)(self, img, txt, cond, rope, mask, backend)

        # 4. final adaLN + projection of the image tokens, back to the latent grid
        return self.unpatchify(self.final_layer(img, vec), grid)

    def token_grid(self, latent_thw) -> Tuple[int, int, int]:
        return tuple(n // p for n, p in zip(latent_thw, self.config.patch_size))

    def rope(self, grid: Tuple[int, int, int], device: torch.device) -> torch.Tensor:
        key = (grid, str(device))
        if key not in self._rope_cache:
            self._rope_cache.clear()  # one resolution at a time is the common case; keep memory flat
            self._rope_cache[key] = rope_frequencies(grid, self.config.rope_axes, self.config.rope_theta, device)
        return self._rope_cache[key]

    def unpatchify(self, tokens: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """(B, t·h·w, C·pt·ph·pw) with channel slowest -> (B, C, t·pt, h·ph, w·pw)."""
        (t, h, w), (pt, ph, pw) = grid, self.config.patch_size
        b, c = tokens.shape[0], self.config.out_channels
        out = tokens.reshape(b, t, h, w, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return out.reshape(b, c, t * pt, h * ph, w * pw)

    def _check_inputs(self, x, t, text_states, text_mask, text_states_2, guidance) -> None:
        cfg = self.config
        if x.dim() != 5 or x.shape[1] != cfg.in_channels:
            raise InputError(f"x: expected latents of shape (B, {cfg.in_channels}, T, H, W), "
                             f"found {tuple(x.shape)}")
        bad = [n for n, p in zip(x.shape[2:], cfg.patch_size) if n % p]
        if bad:
            raise InputError(f"x: latent (T, H, W) = {tuple(x.shape[2:])} must be divisible by the patch "
                             f"size {cfg.patch_size}; pick a width/height that is a multiple of 16 pixels")
        b = x.shape[0]
        if t.shape != (b,):
            raise InputError(f"t: expected shape ({b},) timesteps on the 0..1000 scale, found {tuple(t.shape)}")
        if text_states.dim() != 3 or text_states.shape[0] != b or text_states.shape[2] != cfg.text_states_dim:
            raise InputError(f"text_states: expected (B={b}, L, {cfg.text_states_dim}), found "
                             f"{tuple(text_states.shape)}; is the text encoder the one this model was trained with?")
        if text_mask is not None and text_mask.shape != text_states.shape[:2]:
            raise InputError(f"text_mask: expected {tuple(text_states.shape[:2])}, found {tuple(text_mask.shape)}")
        if text_states_2.shape != (b, cfg.text_states_dim_2):
            raise InputError(f"text_states_2: expected pooled vector ({b}, {cfg.text_states_dim_2}), "
                             f"found {tuple(text_states_2.shape)}")
        if cfg.guidance_embed and guidance is None:
            raise InputError("guidance: this is a guidance-distilled model; pass the embedded guidance "
                             "scale × 1000, e.g. torch.full((B,), 6000.0)")
        if guidance is not None and cfg.guidance_embed and guidance.shape != (b,):
            raise InputError(f"guidance: expected shape ({b},), found {tuple(guidance.shape)}")


BlockRunner = Callable[..., torch.Tensor]


def run_blocks(model: HunyuanVideoTransformer, img: torch.Tensor, txt: torch.Tensor, cond: Conditioning,
               rope, mask: Optional[torch.Tensor], backend: Optional[str]) -> torch.Tensor:
    """Dual-stream blocks, then single-stream blocks over [image | text]; returns the image tokens."""
    for block in model.double_blocks:
        img, txt = block(img, txt, cond, rope, mask, backend)
    joint = torch.cat([img, txt], dim=1)
    for block in model.single_blocks:
        joint = block(joint, cond, rope, img.shape[1], mask, backend)
    return joint[:, : img.shape[1]]


def drop_common_padding(text_states: torch.Tensor, text_mask: Optional[torch.Tensor]):
    """Cut the padding columns shared by the whole batch (all of it for batch 1).

    Padded text never influences real tokens, so this is exact and saves attention work; it
    also drops the mask entirely when nothing is left padded.
    """
    if text_mask is None:
        return text_states, None
    mask = text_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise InputError("text_mask must be right-padded (1s then 0s in each row); found a 1 after a 0")
    keep = max(1, int(mask.sum(dim=1).max()))
    text_states, mask = text_states[:, :keep], mask[:, :keep]
    return text_states, (None if bool(mask.all()) else mask)
