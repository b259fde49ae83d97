"""Tiled encode/decode of the causal VAE: the official algorithm (spec official_t2v.md §4.4),
written as pure functions around an encode or decode callable.

A long or large input is cut into overlapping tiles; each tile goes through the model on its
own; neighbours are cross-faded over the overlap (``blend_v`` / ``blend_h`` / ``blend_t``) and
each tile keeps one stride of output. Temporal tiles carry one extra input frame in front; the
output frame it produces was computed as a causal "first frame" and is dropped for every tile
after the first.

Memory is bounded by the tile, not by the video: tiles are processed one at a time and written
straight into a preallocated output; only the overlap strips needed by the next blend are kept.
The results equal diffusers' tiled path configured with the same sizes and strides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from ..config import VaeConfig
from ..errors import InputError
from ..runtime.progress import ProgressCallback, ProgressEvent, report

TileFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileSettings:
    """Tile sizes in pixel space. A spatial tile is ``spatial_size`` px square and tiles start
    every ``spatial_stride`` px; a temporal tile spans ``temporal_size`` frames (+1 causal frame)
    and tiles start every ``temporal_stride`` frames. Overlap = size - stride, blended linearly."""

    spatial_size: int = 256
    spatial_stride: int = 192
    temporal_size: int = 64
    temporal_stride: int = 48
    spatial: bool = True
    temporal: bool = True

    @classmethod
    def official(cls, config: VaeConfig) -> "TileSettings":
        """The released pipeline's tiling (256 px / 64 frames, overlap 0.25 for the real VAE)."""
        return cls.with_overlap(config, config.tile_sample_size, config.tile_sample_frames,
                                config.tile_overlap)

    @classmethod
    def with_overlap(cls, config: VaeConfig, spatial_size: int, temporal_size: int,
                     overlap: float = 0.25, **flags: bool) -> "TileSettings":
        # The official code rounds the stride in latent units: int(latent_tile * (1 - overlap)).
        s, t = config.spatial_compression, config.time_compression
        return cls(spatial_size=spatial_size,
                   spatial_stride=s * int(spatial_size // s * (1 - overlap)),
                   temporal_size=temporal_size,
                   temporal_stride=t * int(temporal_size // t * (1 - overlap)), **flags)

    def check(self, config: VaeConfig) -> None:
        s, t = config.spatial_compression, config.time_compression
        for name, size, stride, unit in (("spatial", self.spatial_size, self.spatial_stride, s),
                                         ("temporal", self.temporal_size, self.temporal_stride, t)):
            if size <= 0 or stride <= 0 or stride > size or size % unit or stride % unit:
                raise InputError(
                    f"{name} tile size {size} / stride {stride} is not usable: expected "
                    f"0 < stride <= size, both multiples of {unit} (the VAE's {name} compression). "
                    f"Pick e.g. size {unit * 8}, stride {unit * 6}.")


@dataclass(frozen=True)
class Axis:
    """How one axis (space or time) is cut for one direction (encode or decode)."""

    in_tile: int                      # input elements per tile (time: incl. the causal frame)
    in_stride: int
    out_stride: int                   # output elements each tile keeps
    out_blend: int                    # output elements cross-faded with the previous tile
    out_length: Callable[[int], int]  # input length -> output length
    threshold: int                    # tile when the input is longer than this


def decode_axes(tiles: TileSettings, config: VaeConfig) -> tuple:
    s, t = config.spatial_compression, config.time_compression
    spatial = Axis(tiles.spatial_size // s, tiles.spatial_stride // s, tiles.spatial_stride,
                   tiles.spatial_size - tiles.spatial_stride, lambda n: n * s,
                   threshold=tiles.spatial_size // s)
    temporal = Axis(tiles.temporal_size // t + 1, tiles.temporal_stride // t, tiles.temporal_stride,
                    tiles.temporal_size - tiles.temporal_stride, lambda n: (n - 1) * t + 1,
                    threshold=tiles.temporal_size // t)
    return spatial, temporal


def encode_axes(tiles: TileSettings, config: VaeConfig) -> tuple:
    s, t = config.spatial_compression, config.time_compression
    spatial = Axis(tiles.spatial_size, tiles.spatial_stride, tiles.spatial_stride // s,
                   (tiles.spatial_size - tiles.spatial_stride) // s, lambda n: n // s,
                   threshold=tiles.spatial_size)
    temporal = Axis(tiles.temporal_size + 1, tiles.temporal_stride, tiles.temporal_stride // t,
                    (tiles.temporal_size - tiles.temporal_stride) // t, lambda n: (n - 1) // t + 1,
                    threshold=tiles.temporal_size)
    return spatial, temporal


@dataclass(frozen=True)
class TilingPlan:
    temporal: bool
    spatial: bool
    num_tiles: int


def plan(shape: torch.Size, tiles: Optional[TileSettings], spatial: Axis, temporal: Axis) -> TilingPlan:
    """The official dispatch: temporal tiles when the input is longer than one temporal tile,
    spatial tiles (inside each temporal tile) when H or W exceeds one spatial tile."""
    frames, height, width = shape[-3:]
    if tiles is None:
        return TilingPlan(False, False, 1)
    use_temporal = tiles.temporal and frames > temporal.threshold
    use_spatial = tiles.spatial and max(height, width) > spatial.threshold
    n_t = _count(frames, temporal.in_stride) if use_temporal else 1
    n_s = _count(height, spatial.in_stride) * _count(width, spatial.in_stride) if use_spatial else 1
    return TilingPlan(use_temporal, use_spatial, n_t * n_s)


def _count(length: int, stride: int) -> int:
    return len(range(0, length, stride))


class _Progress:
    def __init__(self, callback: Optional[ProgressCallback], stage: str, total: int) -> None:
        self.callback, self.stage, self.total, self.done = callback, stage, total, 0

    def step(self) -> None:
        self.done += 1
        report(self.callback, ProgressEvent(self.stage, self.done, self.total))


def run_tiled(fn: TileFn, x: torch.Tensor, tiling: TilingPlan, spatial: Axis, temporal: Axis,
              stage: str, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Apply ``fn`` to ``x`` (B, C, T, H, W) as ``tiling`` says, reporting after every tile."""
    progress = _Progress(callback, stage, tiling.num_tiles)

    def one_tile(chunk: torch.Tensor) -> torch.Tensor:
        out = fn(chunk)
        progress.step()
        return out

    def frames_fn(chunk: torch.Tensor) -> torch.Tensor:
        return spatial_tiled(one_tile, chunk, spatial) if tiling.spatial else one_tile(chunk)

    if tiling.temporal:
        return temporal_tiled(frames_fn, x, temporal)
    return frames_fn(x)


def temporal_tiled(fn: TileFn, x: torch.Tensor, axis: Axis) -> torch.Tensor:
    frames_in = x.shape[2]
    frames_out = axis.out_length(frames_in)
    out: Optional[torch.Tensor] = None
    tail: Optional[torch.Tensor] = None       # the previous tile's last out_blend frames
    for index, start in enumerate(range(0, frames_in, axis.in_stride)):
        tile = fn(x[:, :, start:start + axis.in_tile])
        if out is None:
            out = tile.new_empty(*tile.shape[:2], frames_out, *tile.shape[3:])
        if index == 0:
            offset, keep = 0, axis.out_stride + 1
        else:
            # Its first output frame was computed as a causal first frame: not a real frame here.
            tile = tile[:, :, 1:]
            offset, keep = 1 + index * axis.out_stride, axis.out_stride
            blend_t(tail, tile, axis.out_blend)
        keep = max(0, min(keep, tile.shape[2], frames_out - offset))
        out[:, :, offset:offset + keep] = tile[:, :, :keep]
        tail = tile[:, :, tile.shape[2] - axis.out_blend:].clone() if axis.out_blend else None
        del tile
    return out


def spatial_tiled(fn: TileFn, x: torch.Tensor, axis: Axis) -> torch.Tensor:
    height_in, width_in = x.shape[-2:]
    height_out, width_out = axis.out_length(height_in), axis.out_length(width_in)
    blend = axis.out_blend
    out: Optional[torch.Tensor] = None
    above: List[Optional[torch.Tensor]] = []  # bottom strip of each tile in the previous row
    for row, top in enumerate(range(0, height_in, axis.in_stride)):
        left: Optional[torch.Tensor] = None     # right strip of the previous tile in this row
        below: List[Optional[torch.Tensor]] = []
        for col, start in enumerate(range(0, width_in, axis.in_stride)):
            tile = fn(x[..., top:top + axis.in_tile, start:start + axis.in_tile])
            if out is None:
                out = tile.new_empty(*tile.shape[:3], height_out, width_out)
            if row > 0:
                blend_v(above[col], tile, blend)
            if col > 0:
                blend_h(left, tile, blend)
            y, x0 = row * axis.out_stride, col * axis.out_stride
            h = max(0, min(axis.out_stride, tile.shape[-2], height_out - y))
            w = max(0, min(axis.out_stride, tile.shape[-1], width_out - x0))
            out[..., y:y + h, x0:x0 + w] = tile[..., :h, :w]
            below.append(tile[..., tile.shape[-2] - blend:, :].clone() if blend else None)
            left = tile[..., tile.shape[-1] - blend:].clone() if blend else None
            del tile
        above = below
    return out


def _blend(a: Optional[torch.Tensor], b: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Cross-fade the first ``extent`` elements of ``b`` (in place) from the last ones of ``a``:
    ``b[i] = a[-E + i] * (1 - i/E) + b[i] * (i/E)`` with ``E = min(len a, len b, extent)``."""
    if a is None:
        return b
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent <= 0:
        return b
    ramp = torch.arange(extent, dtype=torch.float64) / extent
    shape = [1] * b.dim()
    shape[dim] = extent
    weight_b = ramp.to(b.dtype).to(b.device).view(shape)
    weight_a = (1 - ramp).to(b.dtype).to(b.device).view(shape)
    head = b.narrow(dim, 0, extent)
    head.copy_(a.narrow(dim, a.shape[dim] - extent, extent) * weight_a + head * weight_b)
    return b


def blend_v(a: Optional[torch.Tensor], b: torch.Tensor, extent: int) -> torch.Tensor:
    return _blend(a, b, extent, dim=-2)


def blend_h(a: Optional[torch.Tensor], b: torch.Tensor, extent: int) -> torch.Tensor:
    return _blend(a, b, extent, dim=-1)


def blend_t(a: Optional[torch.Tensor], b: torch.Tensor, extent: int) -> torch.Tensor:
    return _blend(a, b, extent, dim=-3)
