"""A tiled VAE decode split over 2 gloo ranks gives every rank the single-process video, bit for bit."""
from __future__ import annotations

import torch

from hyvideo_core.config import VaeConfig
from hyvideo_core.vae import CausalVideoVAE, TileSettings
from tests.parallel.ranks import run_ranks

CONFIG = VaeConfig(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
TILES = TileSettings(spatial_size=32, spatial_stride=16, temporal_size=8, temporal_stride=4)


def _vae_and_latents():
    torch.manual_seed(0)
    vae = CausalVideoVAE(CONFIG).eval()
    z = torch.randn(1, 4, 5, 8, 6, generator=torch.Generator().manual_seed(1))
    return vae, z


def split_worker(rank, world):
    from hyvideo_core.parallel.vae_split import RankSharedDecoder

    vae, z = _vae_and_latents()
    calls = []
    original = vae.decode_tile
    vae.decode_tile = lambda chunk: calls.append(1) or original(chunk)
    video = RankSharedDecoder(vae).decode(z, tile=TILES)
    return {"video": video, "tiles_here": torch.tensor([len(calls)])}


def test_split_decode_equals_one_process(tmp_path):
    vae, z = _vae_and_latents()
    with torch.no_grad():
        expected = vae.decode(z, tile=TILES)
    total = vae.tiling_plan(z.shape, TILES).num_tiles
    assert total >= 4
    results = run_ranks(split_worker, 2, tmp_path)
    for r in results:
        assert torch.equal(r["video"], expected)
    assert sorted(int(r["tiles_here"]) for r in results) == [total // 2, total - total // 2]   # shared out
