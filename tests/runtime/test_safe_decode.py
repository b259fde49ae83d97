"""VAE decode safety: automatic tile size and the out-of-memory retry ladder."""
import pytest
import torch

from hyvideo_core.config import VaeConfig
from hyvideo_core.vae import TileSettings
from hyvideo_core.vae.safe_decode import auto_tile, ladder, safe_decode, tile_bytes


class FakeVAE:
    """Decodes to zeros; raises OOM when a tile is larger than the 'device' allows."""

    def __init__(self, max_spatial=64, max_frames=64, device="cuda:0", cpu_ok=True):
        self.config = VaeConfig()
        self.device, self.dtype = torch.device("cpu") if device == "cpu" else device, torch.float32
        self.max_spatial, self.max_frames, self.cpu_ok = max_spatial, max_frames, cpu_ok
        self.calls = []

    def to(self, device):
        self.device = device
        return self

    def decode(self, z, tile=None, callback=None):
        self.calls.append((str(self.device), tile.spatial_size, tile.temporal_size))
        on_cpu = str(self.device) == "cpu"
        if not (on_cpu and self.cpu_ok) and (tile.spatial_size > self.max_spatial or
                                             tile.temporal_size > self.max_frames):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        b, _, t, h, w = z.shape
        return torch.zeros(b, 3, 4 * (t - 1) + 1, 8 * h, 8 * w)


def test_auto_tile_follows_free_memory():
    vae = FakeVAE()
    cfg = vae.config
    assert auto_tile(vae, free_bytes=10 ** 12) == TileSettings.official(cfg)   # plenty: the official tile
    small = auto_tile(vae, free_bytes=2 * 2 ** 30)
    assert small.spatial_size < 256 and tile_bytes(cfg, small.spatial_size, small.temporal_size) <= 0.7 * 2 * 2 ** 30
    assert auto_tile(vae, free_bytes=1).spatial_size == 32                       # nothing fits: the smallest


def test_ladder_shrinks_tiles_until_the_decode_fits():
    vae = FakeVAE(max_spatial=64, max_frames=64)
    z = torch.zeros(1, 16, 5, 32, 32)
    attempts = []
    video = safe_decode(vae, z, tile=TileSettings.official(vae.config), attempts=attempts)
    assert video.shape == (1, 3, 17, 256, 256)
    assert [c[1] for c in vae.calls] == [256, 128, 64]
    assert [a[2] for a in attempts] == ["oom", "oom", "ok"]


def test_temporal_then_cpu_fallback_and_other_errors_propagate():
    vae = FakeVAE(max_spatial=0, max_frames=0)        # nothing fits on the 'GPU'
    video = safe_decode(vae, torch.zeros(1, 16, 2, 8, 8), tile=TileSettings.official(vae.config))
    assert video.shape[1:3] == (3, 5)
    assert vae.calls[-1][0] == "cpu" and str(vae.device) == "cuda:0"  # moved back afterwards
    assert [c[2] for c in vae.calls[:-1]][-1] == 4                   # temporal tiles shrank too
    with pytest.raises(torch.OutOfMemoryError):
        safe_decode(FakeVAE(max_spatial=0, device="cpu", cpu_ok=False), torch.zeros(1, 16, 2, 8, 8))

    class Broken(FakeVAE):
        def decode(self, z, tile=None, callback=None):
            raise ValueError("not an OOM")
    with pytest.raises(ValueError):
        safe_decode(Broken(), torch.zeros(1, 16, 2, 8, 8))


def test_real_tiny_vae_same_as_decode_with_the_chosen_tile():
    from hyvideo_core.vae.autoencoder import CausalVideoVAE
    from hyvideo_core.variants import VARIANTS

    torch.manual_seed(0)
    vae = CausalVideoVAE(VARIANTS["tiny"].vae).eval()
    z = torch.randn(1, 4, 3, 12, 12)
    attempts = []
    out = safe_decode(vae, z, attempts=attempts)
    assert torch.equal(out, vae.decode(z, tile=attempts[-1][1]))
    assert ladder(vae, TileSettings.official(vae.config))[-1].spatial_size == 32
