"""Tiling choice, user tile settings, progress and interruption, bounded tile sizes."""
import pytest
import torch

from hyvideo_core.config import VaeConfig
from hyvideo_core.errors import InputError, Interrupted
from hyvideo_core.vae import CausalVideoVAE, TileSettings
from hyvideo_core.vae.tiling import blend_h, blend_t, blend_v

from .conftest import TINY_VAE


def real_vae():
    with torch.device("meta"):
        return CausalVideoVAE(VaeConfig())


def test_official_settings_for_the_real_vae():
    assert TileSettings.official(VaeConfig()) == TileSettings(256, 192, 64, 48)
    assert TileSettings.official(TINY_VAE) == TileSettings(64, 48, 16, 12)


@pytest.mark.parametrize("shape, temporal, spatial, tiles", [
    ((1, 16, 33, 90, 160), True, True, 3 * 4 * 7),     # 129 frames 720p: 3 temporal x 4x7 spatial
    ((1, 16, 16, 32, 32), False, False, 1),            # exactly one tile: untiled
    ((1, 16, 17, 32, 32), True, False, 2),             # one latent frame too many
    ((1, 16, 9, 33, 32), False, True, 2 * 2),          # only H over the tile
])
def test_tile_none_follows_the_official_dispatch(shape, temporal, spatial, tiles):
    plan = real_vae().tiling_plan(shape, None, "decode")
    assert (plan.temporal, plan.spatial, plan.num_tiles) == (temporal, spatial, tiles)


def test_encode_dispatch_and_tile_false():
    vae = real_vae()
    plan = vae.tiling_plan((1, 3, 129, 720, 1280), None, "encode")
    assert plan.temporal and plan.spatial
    assert vae.tiling_plan((1, 3, 65, 256, 256), None, "encode").temporal      # 65 > 64 frames
    assert not vae.tiling_plan((1, 3, 61, 256, 256), None, "encode").temporal
    off = vae.tiling_plan((1, 3, 129, 720, 1280), False, "encode")
    assert (off.temporal, off.spatial, off.num_tiles) == (False, False, 1)


class Recorder:
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def __call__(self, event):
        self.events.append(event)
        if self.stop_at is not None and event.step == self.stop_at:
            raise Interrupted("stop")


def spy_tiles(vae, method):
    """Record the input shape of every tile the VAE actually runs."""
    seen = []
    inner = getattr(vae, method)

    def wrapper(x):
        seen.append(tuple(x.shape))
        return inner(x)

    setattr(vae, method, wrapper)
    return seen


def test_tile_false_never_tiles(tiny_vae):
    vae = CausalVideoVAE(TINY_VAE).eval()
    vae.load_state_dict(tiny_vae.state_dict())
    seen = spy_tiles(vae, "decode_tile")
    recorder = Recorder()
    video = vae.decode(torch.randn(1, 4, 9, 12, 16), tile=False, callback=recorder)
    assert video.shape == (1, 3, 33, 96, 128)
    assert seen == [(1, 4, 9, 12, 16)]
    assert [(e.stage, e.step, e.total) for e in recorder.events] == [("decode", 1, 1)]


def test_tile_none_tiles_temporally_for_long_latents(tiny_vae):
    seen = spy_tiles(tiny_vae, "decode_tile")
    try:
        video = tiny_vae.decode(torch.randn(1, 4, 9, 4, 4))   # tiny official: 4 latent frames / tile
    finally:
        del tiny_vae.decode_tile
    assert video.shape == (1, 3, 33, 32, 32)
    assert seen == [(1, 4, 5, 4, 4), (1, 4, 5, 4, 4), (1, 4, 3, 4, 4)]


def test_user_tile_settings_are_honoured(tiny_vae):
    tiles = TileSettings(spatial_size=32, spatial_stride=16, temporal_size=8, temporal_stride=4)
    seen = spy_tiles(tiny_vae, "decode_tile")
    recorder = Recorder()
    try:
        video = tiny_vae.decode(torch.randn(1, 4, 5, 6, 4), tile=tiles, callback=recorder)
    finally:
        del tiny_vae.decode_tile
    assert video.shape == (1, 3, 17, 48, 32)
    # temporal tiles of 2+1 latents every latent frame, each cut into 3 x 2 spatial tiles of <= 4x4
    assert len(seen) == 5 * 3 * 2 == recorder.events[-1].total
    assert max(s[2] for s in seen) == 3 and max(s[3] for s in seen) == 4 and max(s[4] for s in seen) == 4
    assert [e.step for e in recorder.events] == list(range(1, 31))


def test_user_tile_settings_can_switch_off_one_axis(tiny_vae):
    tiles = TileSettings(64, 48, 16, 12, temporal=False)
    plan = tiny_vae.tiling_plan((1, 4, 9, 12, 16), tiles, "decode")
    assert (plan.temporal, plan.spatial) == (False, True)


def test_interrupt_stops_between_tiles(tiny_vae):
    seen = spy_tiles(tiny_vae, "decode_tile")
    recorder = Recorder(stop_at=2)
    try:
        with pytest.raises(Interrupted):
            tiny_vae.decode(torch.randn(1, 4, 13, 4, 4), callback=recorder)
    finally:
        del tiny_vae.decode_tile
    assert len(seen) == 2
    # 13 latents, stride 3: tiles start at 0, 3, 6, 9, 12 (the official loop keeps the 1-latent tail)
    assert recorder.events[-1].step == 2 and recorder.events[-1].total == 5


def test_encode_reports_progress_per_tile(tiny_vae):
    recorder = Recorder()
    latents = tiny_vae.encode(torch.rand(1, 3, 33, 16, 16) * 2 - 1, callback=recorder)
    assert latents.shape == (1, 4, 9, 2, 2)
    assert [(e.stage, e.step) for e in recorder.events] == [("encode", i) for i in (1, 2, 3)]


def test_no_graph_is_kept_in_eval_mode(tiny_vae):
    z = torch.randn(1, 4, 2, 2, 2, requires_grad=True)
    assert not tiny_vae.decode(z).requires_grad


@pytest.mark.parametrize("bad", [
    TileSettings(60, 48, 16, 12),     # spatial size not a multiple of 8
    TileSettings(64, 72, 16, 12),     # stride > size
    TileSettings(64, 48, 16, 10),     # temporal stride not a multiple of 4
    TileSettings(64, 0, 16, 12),
])
def test_bad_tile_settings_are_rejected(tiny_vae, bad):
    with pytest.raises(InputError, match="tile size"):
        tiny_vae.decode(torch.randn(1, 4, 2, 2, 2), tile=bad)


def test_tile_argument_type_is_checked(tiny_vae):
    with pytest.raises(InputError, match="TileSettings"):
        tiny_vae.decode(torch.randn(1, 4, 2, 2, 2), tile=256)


def test_blend_is_the_official_linear_ramp():
    a = torch.full((1, 1, 4, 4, 4), 2.0)
    b = torch.zeros(1, 1, 4, 4, 4)
    blend_t(a, b, 2)
    assert b[0, 0, :, 0, 0].tolist() == [2.0, 1.0, 0.0, 0.0]
    b = torch.zeros(1, 1, 1, 4, 4)
    blend_v(a[:, :, :1], b, 8)           # extent clipped to the tile length
    assert b[0, 0, 0, :, 0].tolist() == [2.0, 1.5, 1.0, 0.5]
    b = torch.zeros(1, 1, 1, 4, 4)
    blend_h(a[:, :, :1, :, :1], b, 4)    # a only 1 wide: E = 1, b[0] = a[-1]
    assert b[0, 0, 0, 0].tolist() == [2.0, 0.0, 0.0, 0.0]
    assert blend_t(None, b, 4) is b
