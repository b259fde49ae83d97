"""VAE decode that does not die of out-of-memory: an automatic tile size from the free memory,
then a retry ladder (smaller spatial tiles, shorter temporal tiles, finally the CPU).

    video = safe_decode(vae, z)                     # tile="auto": pick from free memory
    video = safe_decode(vae, z, tile=settings)      # start from given settings, still retry

Only ``torch.OutOfMemoryError`` (and the CPU allocator's "can't allocate memory") trigger a
retry; any other error propagates. Each step is logged; ``attempts`` (a list) receives
``(device, TileSettings, "ok" | "oom")`` records when given.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import torch

from .tiling import TileSettings

log = logging.getLogger(__name__)

SPATIAL_LADDER = (512, 384, 256, 192, 128, 96, 64, 32)   # pixel tile edges tried, largest first
TEMPORAL_LADDER = (64, 32, 16, 8, 4)                     # pixel frames per temporal tile
SAFETY = 0.7                                             # fraction of free memory a tile may plan to use


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device`` (CUDA: driver's free + torch's cached; CPU: available RAM)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024


def tile_bytes(config, spatial: int, frames: int, dtype: torch.dtype = torch.float32) -> int:
    """Estimated peak bytes of decoding one (spatial x spatial x frames) pixel tile: the decoder's
    full-resolution stage holds ~8 feature maps of ``block_out_channels[0]`` channels (conv input,
    output, GroupNorm and SiLU temporaries, the causal pad, the up-sampled copy)."""
    elt = torch.empty(0, dtype=dtype).element_size()
    voxels = spatial * spatial * (frames + 1)
    return int(8 * config.block_out_channels[0] * voxels * elt)


def auto_tile(vae, free_bytes: Optional[int] = None) -> TileSettings:
    """The largest tile from the ladder whose estimate fits ``SAFETY`` x free memory (the official
    256 px / 64 frames when it fits; never more than the VAE's official tile)."""
    config = vae.config
    free = free_memory(vae.device) if free_bytes is None else free_bytes
    spatial = [s for s in SPATIAL_LADDER if s <= config.tile_sample_size] or [config.tile_sample_size]
    frames = [f for f in TEMPORAL_LADDER if f <= config.tile_sample_frames] or [config.tile_sample_frames]
    for f in frames:
        for s in spatial:
            if tile_bytes(config, s, f, vae.dtype) <= SAFETY * free:
                return TileSettings.with_overlap(config, s, f, config.tile_overlap)
    return TileSettings.with_overlap(config, spatial[-1], frames[-1], config.tile_overlap)


def ladder(vae, start: TileSettings) -> List[TileSettings]:
    """``start``, then halving the spatial tile down to 4x the compression, then the temporal."""
    config = vae.config
    s_min, t_min = 4 * config.spatial_compression, config.time_compression
    steps, s, t = [start], start.spatial_size, start.temporal_size
    while s // 2 >= s_min and (s // 2) % config.spatial_compression == 0:
        s //= 2
        steps.append(TileSettings.with_overlap(config, s, t, config.tile_overlap))
    while t // 2 >= t_min and (t // 2) % config.time_compression == 0:
        t //= 2
        steps.append(TileSettings.with_overlap(config, s, t, config.tile_overlap))
    return steps


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("out of memory" in str(exc).lower()
                                              or "can't allocate memory" in str(exc).lower())


def _clear(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def safe_decode(vae, z: torch.Tensor, tile="auto", callback=None, cpu_fallback: bool = True,
                attempts: Optional[list] = None) -> torch.Tensor:
    """``vae.decode`` with an automatic tile and an out-of-memory retry ladder."""
    device = torch.device(vae.device)
    start = auto_tile(vae) if tile == "auto" or tile is None else tile
    records: List[Tuple[str, TileSettings, str]] = attempts if attempts is not None else []
    last: Optional[BaseException] = None
    for settings in ladder(vae, start):
        try:
            video = vae.decode(z, tile=settings, callback=callback)
            records.append((str(device), settings, "ok"))
            return video
        except Exception as exc:  # noqa: BLE001 - only OOM is retried
            if not _is_oom(exc):
                raise
            records.append((str(device), settings, "oom"))
            log.warning("VAE decode out of memory with %d px / %d frame tiles on %s; retrying smaller",
                        settings.spatial_size, settings.temporal_size, device)
            last = exc
            _clear(device)
    if not cpu_fallback or device.type == "cpu":
        raise last
    log.warning("VAE decode does not fit on %s even with the smallest tiles; decoding on the CPU", device)
    vae.to("cpu")
    try:
        settings = ladder(vae, start)[0]
        video = vae.decode(z.to("cpu"), tile=settings, callback=callback)
        records.append(("cpu", settings, "ok"))
        return video
    finally:
        vae.to(device)
