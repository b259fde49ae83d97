"""Numerical parity with diffusers' AutoencoderKLHunyuanVideo (recipe: diffusers_parity.md §7.2)."""
import pytest
import torch

from hyvideo_core.vae import TileSettings

pytestmark = pytest.mark.parity


def assert_close(ours: torch.Tensor, reference: torch.Tensor, rel: float = 1e-5) -> None:
    # fp32 rounding grows through the random tiny decoder (groups of 2 channels); scale the bound
    # by the output magnitude (values reach ~5).
    assert ours.shape == reference.shape
    bound = rel * max(1.0, reference.abs().max().item())
    err = (ours - reference).abs().max().item()
    assert err <= bound, f"max abs diff {err:.3g} > {bound:.3g}"


@pytest.fixture
def reference(tiny_vae_file):
    model = tiny_vae_file[1]
    model.disable_tiling()
    model.use_framewise_encoding = model.use_framewise_decoding = False
    return model


@pytest.mark.parametrize("frames", [9, 1])
def test_encode_matches_posterior_mode(tiny_vae, reference, frames):
    video = torch.rand(1, 3, frames, 32, 48) * 2 - 1
    with torch.no_grad():
        expected = reference.encode(video).latent_dist.mode()
    latents = tiny_vae.encode(video, tile=False)
    assert latents.shape == (1, 4, (frames - 1) // 4 + 1, 4, 6)
    assert_close(latents, expected, rel=1e-6)


def test_decode_untiled(tiny_vae, reference):
    z = torch.randn(1, 4, 3, 4, 6)
    with torch.no_grad():
        expected = reference.decode(z).sample
    video = tiny_vae.decode(z, tile=False)
    assert video.shape == (1, 3, 9, 32, 48)
    assert_close(video, expected)


def test_tiled_encode_and_decode_match_diffusers_tiled(tiny_vae, reference):
    reference.use_framewise_encoding = reference.use_framewise_decoding = True   # its temporal tiler
    reference.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64,
                            tile_sample_min_num_frames=16, tile_sample_stride_height=48,
                            tile_sample_stride_width=48, tile_sample_stride_num_frames=12)
    tiles = TileSettings(spatial_size=64, spatial_stride=48, temporal_size=16, temporal_stride=12)
    video = torch.rand(1, 3, 33, 96, 128) * 2 - 1

    with torch.no_grad():
        expected_latents = reference.encode(video).latent_dist.mode()
    latents = tiny_vae.encode(video, tile=tiles)
    assert tiny_vae.tiling_plan(video.shape, tiles, "encode").temporal
    assert_close(latents, expected_latents, rel=1e-6)

    with torch.no_grad():
        expected_video = reference.decode(latents).sample
    decoded = tiny_vae.decode(latents, tile=tiles)
    plan = tiny_vae.tiling_plan(latents.shape, tiles, "decode")
    assert plan.temporal and plan.spatial
    assert decoded.shape == (1, 3, 33, 96, 128)
    assert_close(decoded, expected_video)


def test_official_tiles_equal_diffusers_configured_alike(tiny_vae, reference):
    """tile=None uses the config's official sizes (tiny: 64 px / 16 frames, overlap 0.25)."""
    reference.use_framewise_decoding = True
    reference.enable_tiling(64, 64, 16, 48, 48, 12)
    z = torch.randn(1, 4, 7, 10, 6)
    with torch.no_grad():
        expected = reference.decode(z).sample
    assert_close(tiny_vae.decode(z), expected)
