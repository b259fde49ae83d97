import pytest
import torch

from hyvideo_core.variants import VARIANTS

TINY_VAE = VARIANTS["tiny"].vae


def diffusers_tiny_vae():
    """diffusers' own test VAE (spec diffusers_parity.md §2.1), seeded, eval mode."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=TINY_VAE.latent_channels,
        block_out_channels=TINY_VAE.block_out_channels, layers_per_block=TINY_VAE.layers_per_block,
        norm_num_groups=TINY_VAE.norm_num_groups, scaling_factor=TINY_VAE.scaling_factor,
        spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True,
    ).eval()


@pytest.fixture(scope="session")
def tiny_vae_file(tmp_path_factory):
    """A tiny VAE in the official layout on disk, plus the diffusers model it came from."""
    from hyvideo_core.vae import save_vae

    reference = diffusers_tiny_vae()
    path = tmp_path_factory.mktemp("vae") / "tiny_vae.safetensors"
    save_vae(reference, path)
    return path, reference


@pytest.fixture(scope="session")
def tiny_vae(tiny_vae_file):
    from hyvideo_core.vae import load_vae

    return load_vae(tiny_vae_file[0])
