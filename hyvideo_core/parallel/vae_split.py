"""VAE decoding shared out over the ranks of a parallel run: the tiles of one tiled decode are
decoded round-robin on the ranks, exchanged (each tile broadcast by the rank that made it), and
blended on every rank exactly as a single process blends them, so the video is identical.

The tile order comes from the tiler itself: a first pass over the latents with a tile function
that only records each tile's input (and returns zeros of the tile's output shape) lists the
tiles; the last pass hands the tiler the decoded tiles in that same order.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.distributed as dist

from ..runtime.progress import ProgressCallback, ProgressEvent, report
from ..vae.tiling import run_tiled


def decode_across_ranks(vae, z: torch.Tensor, tile=None, callback: Optional[ProgressCallback] = None,
                        group=None) -> torch.Tensor:
    """``vae.decode(z, tile)`` with its tiles split over the ranks of ``group`` (default: all);
    every rank returns the whole video. Without torch.distributed, or with a single tile, this
    is ``vae.decode``."""
    world = dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1
    tiling, spatial, temporal = vae._plan(z.shape, tile, "decode")
    if world == 1 or tiling.num_tiles < 2:
        return vae.decode(z, tile=tile, callback=callback)
    vae._check_latents(z)
    z = z.to(device=vae.device, dtype=vae.dtype)
    rank = dist.get_rank(group)

    inputs: List[torch.Tensor] = []

    def record(chunk: torch.Tensor) -> torch.Tensor:
        inputs.append(chunk)
        t, h, w = chunk.shape[2:]
        return chunk.new_zeros(chunk.shape[0], vae.config.out_channels, temporal.out_length(t),
                               spatial.out_length(h), spatial.out_length(w))

    with torch.no_grad():
        run_tiled(record, z, tiling, spatial, temporal, "plan")
        outputs: List[Optional[torch.Tensor]] = [None] * len(inputs)
        mine = [k for k in range(len(inputs)) if k % world == rank]
        for n, k in enumerate(mine, 1):
            outputs[k] = vae.decode_tile(inputs[k]).contiguous()
            report(callback, ProgressEvent("decode", n, len(mine)))
        for k, chunk in enumerate(inputs):
            if outputs[k] is None:
                t, h, w = chunk.shape[2:]
                outputs[k] = chunk.new_empty(chunk.shape[0], vae.config.out_channels, temporal.out_length(t),
                                             spatial.out_length(h), spatial.out_length(w))
            src = k % world if group is None else dist.get_global_rank(group, k % world)
            dist.broadcast(outputs[k], src, group=group)
        ordered = iter(outputs)
        return run_tiled(lambda chunk: next(ordered), z, tiling, spatial, temporal, "decode")


class RankSharedDecoder:
    """A VAE whose ``decode`` is :func:`decode_across_ranks`; everything else is the VAE's."""

    def __init__(self, vae, group=None):
        self._vae, self._group = vae, group

    def decode(self, z: torch.Tensor, tile=None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        return decode_across_ranks(self._vae, z, tile=tile, callback=callback, group=self._group)

    def __getattr__(self, name):
        return getattr(self._vae, name)
