"""The HunyuanVideo diffusion transformer (tech report §4.2, Fig. 8).

Video latents are patchified into image tokens, text hidden states pass a token refiner, and
both streams go through dual-stream then single-stream blocks under a conditioning vector
built from the timestep, the pooled CLIP vector and (for the CFG-distilled model) the
embedded guidance scale. Attribute names are the official checkpoint keys.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ..config import TransformerConfig
from ..errors import InputError
from .block_lists import blocks_of
from .blocks import DoubleStreamBlock, FinalLayer, SingleStreamBlock
from .embeddings import MLPEmbedder, PatchEmbed, TimestepEmbedder
from .extension import ForwardContext, check_extras, extensions_of, hooked, install_extension
from .layers import Conditioning
from .rope import rope_frequencies
from .token_refiner import SingleTokenRefiner
from .token_replace import TokenReplace


class HunyuanVideoTransformer(nn.Module):
    # The repeated block stacks the block loop runs, in order. Passes (offload, compile, step
    # caches, quantisation, gradient checkpointing) read these instead of literal names.
    BLOCK_LISTS = ("double_blocks", "single_blocks")
    # Other repeated blocks (gradient checkpointing wraps them too).
    AUX_BLOCK_LISTS = ("txt_in.individual_token_refiner.blocks",)
    # Extra inputs served by an extension that the model installs on first use.
    DEFAULT_EXTENSIONS = {"token_replace": TokenReplace}

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
        self.extensions: List = []          # see model/extension.py
        self.block_passes: List[BlockPass] = []  # wrappers of the block loop, first = outermost

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor,
                text_mask: Optional[torch.Tensor], text_states_2: torch.Tensor,
                guidance: Optional[torch.Tensor] = None, *, token_replace: bool = False,
                extras: Optional[Mapping[str, Any]] = None) -> torch.Tensor:
        """Velocity prediction.

        Args:
            x: (B, C_in, T, H, W) latents.
            t: (B,) timesteps on the 0..1000 scale.
            text_states: (B, L, D_text) LLM hidden states.
            text_mask: (B, L), 1 = real token, right-padded (None = all real).
            text_states_2: (B, D_pooled) pooled CLIP vector.
            guidance: (B,) embedded guidance × 1000; required by guidance-distilled models.
            token_replace: image-to-video with a clean first latent frame: its tokens are
                modulated as at t = 0 (and without guidance), the rest as usual
                (the same as ``extras={"token_replace": True}``).
            extras: named inputs of the installed extensions (audio features, reference latents…).
        Returns:
            (B, C_out, T, H, W) velocity.
        """
        self._check_inputs(x, t, text_states, text_mask, text_states_2, guidance)
        extras = dict(extras or {}, **({"token_replace": True} if token_replace else {}))
        self._install_default_extensions(extras)
        text_states, text_mask = drop_common_padding(text_states, text_mask)
        dtype = self.compute_dtype
        ctx = ForwardContext(self, self.token_grid(x.shape[2:]), t, self.vector_in(text_states_2.to(dtype)),
                             dtype, self.attention_backend, extras)

        # 1. conditioning vector: timestep + pooled CLIP (+ embedded guidance), then extensions
        ctx.cond = self.conditioning(ctx, guidance)

        # 2. tokens: patchified latents (+ extensions' tokens) and refined text
        img = self.image_tokens(ctx, x)
        txt = self.txt_in(text_states, t, text_mask, dtype, ctx.backend)
        ctx.mask = None if text_mask is None else torch.cat(
            [torch.ones(img.shape[:2], dtype=torch.bool, device=img.device), text_mask], dim=1)

        # 3. the blocks, through the installed block passes (step caches, …)
        img = run_block_passes(self, ctx, img, txt)

        # 4. final adaLN + projection of the latent tokens, back to the latent grid
        for ext in hooked(self, "before_final"):
            img = ext.before_final(ctx, img)
        return self.unpatchify(self.final_layer(img[:, ctx.prefix_tokens:], ctx.cond.vec), ctx.grid)

    def conditioning(self, ctx: ForwardContext, guidance: Optional[torch.Tensor]) -> Conditioning:
        vec = self.time_in(ctx.t, ctx.dtype) + ctx.pooled
        if self.guidance_in is not None:
            vec = vec + self.guidance_in(guidance, ctx.dtype)
        cond = Conditioning(vec)
        for ext in hooked(self, "condition"):
            cond = ext.condition(ctx, cond)
        return cond

    def image_tokens(self, ctx: ForwardContext, x: torch.Tensor) -> torch.Tensor:
        img = self.img_in(x.to(ctx.dtype))
        ctx.rope = self.rope(ctx.grid, x.device)
        for ext in hooked(self, "embed_tokens"):
            img = ext.embed_tokens(ctx, img)
        ctx.img_len = img.shape[1]
        return img

    def _install_default_extensions(self, extras: Mapping[str, Any]) -> None:
        for key in extras:
            kind = self.DEFAULT_EXTENSIONS.get(key)
            if kind is not None and not any(key in e.consumes for e in extensions_of(self)):
                install_extension(self, kind())
        check_extras(self, extras)

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


# A wrapper of the block loop (a step cache): (model, ctx, img, txt, inner) -> image tokens, where
# inner(ctx, img, txt) runs the rest of the loop (the next pass, or the blocks themselves).
BlockPass = Callable[..., torch.Tensor]


def run_block_passes(model: nn.Module, ctx: ForwardContext, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """The block loop through the model's block passes, the first installed outermost."""
    passes = getattr(model, "block_passes", [])

    def inner_from(i: int):
        if i == len(passes):
            return lambda c, a, b: run_blocks(model, c, a, b)
        return lambda c, a, b: passes[i](model, c, a, b, inner_from(i + 1))
    return inner_from(0)(ctx, img, txt)


def run_double_blocks(model: nn.Module, ctx: ForwardContext, img: torch.Tensor, txt: torch.Tensor,
                      start: int = 0, stop: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Double-stream blocks ``start..stop-1``, each followed by the extensions' ``after_double``."""
    blocks = blocks_of(model, model.BLOCK_LISTS[0])
    after = hooked(model, "after_double")
    for i in range(start, len(blocks) if stop is None else stop):
        img, txt = blocks[i](img, txt, ctx)
        for ext in after:
            img, txt = ext.after_double(ctx, i, img, txt)
    return img, txt


def run_blocks(model: nn.Module, ctx: ForwardContext, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """The block loop: dual-stream blocks (from ``ctx.block_start``), then single-stream blocks
    over [image | text], each followed by the extensions' hooks; returns the image tokens."""
    img, txt = run_double_blocks(model, ctx, img, txt, ctx.block_start)
    after = hooked(model, "after_single")
    joint = torch.cat([img, txt], dim=1)
    for i, block in enumerate(blocks_of(model, model.BLOCK_LISTS[1])):
        joint = block(joint, ctx)
        for ext in after:
            joint = ext.after_single(ctx, i, joint)
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
