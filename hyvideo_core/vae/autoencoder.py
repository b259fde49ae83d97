"""The causal 3D VAE of HunyuanVideo ("884-16c": 4x time, 8x8 space, 16 latent channels).

Encoder: causal conv in -> down blocks (resnets + strided causal conv) -> mid block (resnet,
frame-causal attention, resnet) -> norm, SiLU, conv out -> quant_conv -> posterior moments; the
latents are the posterior mode (the mean). Decoder: post_quant_conv -> the mirror image with
first-frame-special up-sampling. Spec: shared/spec/official_t2v.md §4; module names equal the
official / diffusers state-dict keys.

``encode`` / ``decode`` are the public entry points (shared/DESIGN.md §2.1); both tile by the
official rules unless told otherwise (see ``tiling.py``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..config import VaeConfig
from ..errors import InputError
from ..runtime.progress import ProgressCallback
from .blocks import NORM_EPS, DownBlock, GroupNorm, MidBlock, UpBlock, silu
from .causal_conv import CausalConv3d
from .tiling import TileSettings, TilingPlan, decode_axes, encode_axes, plan, run_tiled

TileArg = Union[None, bool, TileSettings]


def resampling_factors(config: VaeConfig) -> Tuple[Tuple[int, int, int], ...]:
    """(t, h, w) factor of block i (encoder down block i = decoder up block i, both counted from
    the image side for the encoder and from the latent side for the decoder).

    Space is resampled in the first log2(spatial) blocks, time in the log2(time) blocks before
    the last one: for the real VAE blocks 0-2 are spatial and blocks 1-2 temporal.
    """
    n = len(config.block_out_channels)
    spatial_steps = int(math.log2(config.spatial_compression))
    time_steps = int(math.log2(config.time_compression))
    factors = []
    for i in range(n):
        s = 2 if i < spatial_steps else 1
        t = 2 if (n - 1 - time_steps <= i < n - 1) else 1
        factors.append((t, s, s))
    if (math.prod(f[1] for f in factors) != config.spatial_compression
            or math.prod(f[0] for f in factors) != config.time_compression):
        raise InputError(
            f"VAE config with {n} blocks cannot give spatial x{config.spatial_compression} / "
            f"time x{config.time_compression} compression; expected power-of-two ratios with "
            f"log2(ratio) < number of blocks (the released VAE: 4 blocks, x8 / x4).")
    return tuple(factors)


class Encoder(nn.Module):
    def __init__(self, config: VaeConfig) -> None:
        super().__init__()
        channels = config.block_out_channels
        groups = config.norm_num_groups
        self.conv_in = CausalConv3d(config.in_channels, channels[0], 3)
        self.down_blocks = nn.ModuleList(
            DownBlock(channels[max(i - 1, 0)], channels[i], config.layers_per_block, groups, factor)
            for i, factor in enumerate(resampling_factors(config)))
        self.mid_block = MidBlock(channels[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = GroupNorm(groups, channels[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(channels[-1], 2 * config.latent_channels, 3)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(video)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VaeConfig) -> None:
        super().__init__()
        channels = tuple(reversed(config.block_out_channels))
        groups = config.norm_num_groups
        self.conv_in = CausalConv3d(config.latent_channels, channels[0], 3)
        self.mid_block = MidBlock(channels[0], groups, config.mid_block_add_attention)
        # The decoder has one resnet more per block than the encoder (official layout).
        self.up_blocks = nn.ModuleList(
            UpBlock(channels[max(i - 1, 0)], channels[i], config.layers_per_block + 1, groups, factor)
            for i, factor in enumerate(resampling_factors(config)))
        self.conv_norm_out = GroupNorm(groups, channels[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(channels[-1], config.out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid_block(h)
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(silu(self.conv_norm_out(h)))


class CausalVideoVAE(nn.Module):
    """HunyuanVideo's causal video VAE. ``encode`` gives raw latents (posterior mode, not scaled);
    ``decode`` takes raw latents. Multiply / divide by ``scaling_factor`` outside."""

    def __init__(self, config: VaeConfig = VaeConfig()) -> None:
        super().__init__()
        self._config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(config.latent_channels, config.latent_channels, 1)

    @property
    def config(self) -> VaeConfig:
        return self._config

    @property
    def scaling_factor(self) -> float:
        return self._config.scaling_factor

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.post_quant_conv.weight.device

    # -- one tile ---------------------------------------------------------------------------

    def encode_tile(self, video: torch.Tensor) -> torch.Tensor:
        """Encoder + quant_conv on one tile; returns the posterior mean (its mode)."""
        moments = self.quant_conv(self.encoder(video))
        # logvar (the other half) is not needed for the mode; blending is per channel, so
        # tiling the mean alone gives the same mean as tiling the moments.
        return moments[:, :self._config.latent_channels].contiguous()

    def decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    # -- public API -------------------------------------------------------------------------

    def encode(self, video: torch.Tensor, tile: TileArg = None,
               callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """video (B, 3, F, H, W) in [-1, 1], F = 4n+1, H and W multiples of 8 -> raw latents
        (B, C_lat, n+1, H/8, W/8). ``tile``: None = official rules, False = never, or settings."""
        self._check_video(video)
        video = video.to(device=self.device, dtype=self.dtype)
        return self._run_tiled(self.encode_tile, video, tile, "encode", callback)

    def encode_moments(self, video: torch.Tensor, tile: TileArg = None,
                       callback: Optional[ProgressCallback] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the latent distribution, each (B, C_lat, n+1, H/8, W/8), for recipes that sample
        from it (the avatar's reference latent, as released) rather than take its mode. Tiles blend the moments,
        as the official tiled encoder does."""
        self._check_video(video)
        video = video.to(device=self.device, dtype=self.dtype)
        moments = self._run_tiled(lambda v: self.quant_conv(self.encoder(v)), video, tile, "encode", callback)
        return moments[:, :self._config.latent_channels], moments[:, self._config.latent_channels:]

    def decode(self, z: torch.Tensor, tile: TileArg = None,
               callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """raw latents (B, C_lat, T, h, w) -> video (B, 3, 4(T-1)+1, 8h, 8w), roughly in [-1, 1].
        ``tile``: None = official rules, False = never, or :class:`TileSettings`."""
        self._check_latents(z)
        z = z.to(device=self.device, dtype=self.dtype)
        return self._run_tiled(self.decode_tile, z, tile, "decode", callback)

    def tiling_plan(self, shape: Tuple[int, ...], tile: TileArg = None,
                    direction: str = "decode") -> TilingPlan:
        """Which axes ``encode``/``decode`` would tile for an input of ``shape``, and how many tiles."""
        return self._plan(shape, tile, direction)[0]

    # -- helpers ----------------------------------------------------------------------------

    def _plan(self, shape: Tuple[int, ...], tile: TileArg, direction: str):
        if direction not in ("encode", "decode"):
            raise InputError(f"direction must be 'encode' or 'decode', found {direction!r}.")
        settings = self._tile_settings(tile)
        axes = decode_axes if direction == "decode" else encode_axes
        spatial, temporal = axes(settings or TileSettings(), self._config)
        return plan(torch.Size(shape), settings, spatial, temporal), spatial, temporal

    def _run_tiled(self, fn, x: torch.Tensor, tile: TileArg, direction: str,
                   callback: Optional[ProgressCallback]) -> torch.Tensor:
        tiling, spatial, temporal = self._plan(x.shape, tile, direction)
        with self._grad_mode():
            return run_tiled(fn, x, tiling, spatial, temporal, direction, callback)

    def _tile_settings(self, tile: TileArg) -> Optional[TileSettings]:
        if tile is None or tile is True:
            return TileSettings.official(self._config)
        if tile is False:
            return None
        if isinstance(tile, TileSettings):
            tile.check(self._config)
            return tile
        raise InputError(
            f"tile must be None (official automatic tiling), False (no tiling) or a TileSettings; "
            f"found {type(tile).__name__}.")

    def _grad_mode(self):
        return contextlib.nullcontext() if self.training else torch.no_grad()

    def _check_video(self, video: torch.Tensor) -> None:
        cfg = self._config
        if not isinstance(video, torch.Tensor) or video.dim() != 5:
            found = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise InputError(
                f"VAE encode expects a video tensor (B, {cfg.in_channels}, F, H, W); found {found}. "
                f"For a batch of images (B, C, H, W) add a frame axis with x.unsqueeze(2).")
        _, channels, frames, height, width = video.shape
        if min(video.shape) < 1:
            raise InputError(f"VAE encode got an empty video of shape {tuple(video.shape)}; it needs at least one "
                             f"frame of at least {cfg.spatial_compression}x{cfg.spatial_compression} pixels.")
        if channels != cfg.in_channels:
            raise InputError(
                f"VAE encode expects {cfg.in_channels} colour channels in dim 1 of (B, C, F, H, W); "
                f"found {channels} (shape {tuple(video.shape)}). Convert to RGB and put channels "
                f"before frames (ComfyUI IMAGE is (F, H, W, C): use x.permute(3, 0, 1, 2)[None]).")
        t = cfg.time_compression
        if (frames - 1) % t:
            lower = (frames - 1) // t * t + 1
            raise InputError(
                f"VAE encode needs {t}n+1 frames (1, {t + 1}, {2 * t + 1}, ...); found {frames}. "
                f"Trim to {lower} or pad to {lower + t} frames.")
        s = cfg.spatial_compression
        if height % s or width % s:
            raise InputError(
                f"VAE encode needs height and width that are multiples of {s}; found {height}x{width}. "
                f"Resize or crop to {height // s * s}x{width // s * s}.")

    def _check_latents(self, z: torch.Tensor) -> None:
        cfg = self._config
        if not isinstance(z, torch.Tensor) or z.dim() != 5:
            found = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(
                f"VAE decode expects latents (B, {cfg.latent_channels}, T, H/8, W/8); found {found}. "
                f"A single-frame latent still needs its frame axis: z.unsqueeze(2).")
        if z.shape[1] != cfg.latent_channels:
            raise InputError(
                f"VAE decode expects {cfg.latent_channels} latent channels, found {z.shape[1]} "
                f"(shape {tuple(z.shape)}). These latents come from a different model or VAE; "
                f"use the VAE they were made with.")
        if min(z.shape) < 1:
            raise InputError(f"VAE decode got empty latents of shape {tuple(z.shape)}.")
