"""Malformed sizes and arguments through the public API end in InputError saying what was expected,
never in a bare ValueError / ZeroDivisionError / RuntimeError from deep inside; large metadata and
long videos are handled without limits or waste."""
import json
import os
import tracemalloc

import numpy as np
import pytest
import torch

import hyvideo_core as hv

from tests.robustness.checks import ffmpeg_children, wait_until

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def tiny():
    from hyvideo_core import get_variant
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.vae import CausalVideoVAE

    torch.manual_seed(0)
    spec = get_variant("tiny")
    model = HunyuanVideoTransformer(spec.transformer).eval()
    model.variant = "tiny"
    return model, CausalVideoVAE(spec.vae).eval(), spec


def _text(spec, batch=1, length=4):
    cfg = spec.transformer
    return (torch.randn(batch, length, cfg.text_states_dim), torch.ones(batch, length, dtype=torch.long),
            torch.randn(batch, cfg.text_states_dim_2))


def _sample(tiny, noise, text=None, **kw):
    from hyvideo_core import sample

    model, _, spec = tiny
    kw.setdefault("steps", 1)
    kw.setdefault("shift", 3.0)
    kw.setdefault("embedded_guidance", 6.0)
    return sample(model, noise, *(text or _text(spec)), **kw)


def _latents(*shape):
    return torch.randn(*shape)


# name -> (call(tiny), what the message must say)
CASES = {
    "latent_shape-zero-time-compression": (lambda t: hv.latent_shape(5, 64, 64, time_compression=0),
                                           "time_compression must be a positive"),
    "latent_shape-zero-spatial-compression": (lambda t: hv.latent_shape(5, 64, 64, spatial_compression=0),
                                              "spatial_compression must be a positive"),
    "latent_shape-zero-batch": (lambda t: hv.latent_shape(5, 64, 64, batch=0), "batch must be a positive"),
    "latent_shape-negative-channels": (lambda t: hv.latent_shape(5, 64, 64, channels=-4),
                                       "channels must be a positive"),
    "latent_shape-text-frames": (lambda t: hv.latent_shape("17", 64, 64), "frames must be a positive whole"),
    "latent_shape-fractional-frames": (lambda t: hv.latent_shape(5.5, 64, 64), "frames must be a positive whole"),
    "make_noise-negative-size": (lambda t: hv.make_noise((1, 4, -1, 8, 8), 0), "noise shape"),
    "flow_sigmas-fractional-steps": (lambda t: hv.flow_sigmas(2.5, 3.0), "steps must be a whole"),
    "flow_sigmas-nan-shift": (lambda t: hv.flow_sigmas(4, float("nan")), "shift must be a positive"),
    "sample-noise-without-batch-axis": (lambda t: _sample(t, _latents(4, 2, 4, 4)), r"noise must be a non-empty \(B, C, T, H, W\)"),
    "sample-no-frames": (lambda t: _sample(t, _latents(1, 4, 0, 4, 4)), "noise must be a non-empty"),
    "sample-empty-batch": (lambda t: _sample(t, _latents(0, 4, 2, 4, 4), _text(t[2], 0)), "noise must be a non-empty"),
    "sample-latents-of-another-shape": (lambda t: _sample(t, _latents(1, 4, 2, 4, 4), steps=4, latents=_latents(1, 4, 3, 4, 4),
                                                          denoise=0.5), "must have the noise's shape"),
    "sample-nan-guidance": (lambda t: _sample(t, _latents(1, 4, 2, 4, 4), embedded_guidance=float("nan")),
                            "embedded_guidance must be a finite"),
    "sample-zero-steps": (lambda t: _sample(t, _latents(1, 4, 2, 4, 4), steps=0), "steps must be"),
    "sample-text-batch-mismatch": (lambda t: _sample(t, _latents(2, 4, 2, 4, 4), _text(t[2], 3)), "expected \\(B=2"),
    "vae-encode-zero-height": (lambda t: t[1].encode(torch.randn(1, 3, 5, 0, 32)), "empty video"),
    "vae-encode-empty-batch": (lambda t: t[1].encode(torch.randn(0, 3, 5, 32, 32)), "empty video"),
    "vae-encode-no-frames": (lambda t: t[1].encode(torch.randn(1, 3, 0, 32, 32)), "empty video"),
    "vae-decode-empty-batch": (lambda t: t[1].decode(torch.randn(0, 4, 1, 4, 4)), "empty latents"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_sizes_raise_input_error(tiny, case):
    from hyvideo_core.errors import InputError

    call, message = CASES[case]
    with pytest.raises(InputError, match=message):
        call(tiny)


def _frames(n=2, h=16, w=16, dtype=np.uint8):
    return np.zeros((n, h, w, 3), dtype)


BAD_WRITES = {
    "no-frames": (dict(frames=_frames(0)), "at least one frame"),
    "empty-generator": (dict(frames=iter([])), "at least one frame"),
    "zero-height": (dict(frames=_frames(h=0)), "positive even width and height"),
    "odd-width": (dict(frames=_frames(w=15)), "even width and height"),
    "float-frames": (dict(frames=_frames(dtype=np.float32)), "uint8"),
    "fps-zero": (dict(fps=0), "fps must be a positive"),
    "fps-nan": (dict(fps=float("nan")), "fps must be a positive"),
    "quality-above-10": (dict(quality=11), "quality must be between 0 and 10"),
    "metadata-not-json": (dict(metadata={"node": object()}), "JSON-serialisable"),
}


@pytest.mark.parametrize("case", sorted(BAD_WRITES))
def test_bad_video_writes(tmp_path, case):
    from hyvideo_core.errors import InputError
    from hyvideo_core.video_io import write_mp4

    kwargs, message = BAD_WRITES[case]
    kwargs = dict(dict(frames=_frames()), **kwargs)
    with pytest.raises(InputError, match=message):
        write_mp4(kwargs.pop("frames"), tmp_path / "v.mp4", **kwargs)
    assert os.listdir(tmp_path) == [] and wait_until(lambda: not ffmpeg_children())


def test_a_one_megabyte_workflow_is_stored_and_read_back(tmp_path):
    """ComfyUI workflows of hundreds of KB are common; before, one over ~128 KiB broke ffmpeg's command
    line (E2BIG) and the rendered video was lost. Every character ffmetadata treats specially is in it."""
    from hyvideo_core.video_io import read_metadata, read_video, write_mp4

    rng = np.random.default_rng(0)
    alphabet = list("abc =;#\\\n\r\t\"'{}[]é漢字🎬") + ["\\=", "\\;", "\\\\"]
    nodes = ["".join(rng.choice(alphabet, 200)) for _ in range(5000)]
    metadata = {"prompt": "a red circle; #1 = best \\o/", "workflow": json.dumps({"nodes": nodes})}
    assert len(json.dumps(metadata)) > 1_000_000
    frames = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    write_mp4(frames, tmp_path / "v.mp4", metadata=metadata)
    assert read_metadata(tmp_path / "v.mp4") == metadata
    assert read_video(tmp_path / "v.mp4")[0].shape == frames.shape


def test_frame_load_cap_stops_decoding_early(tmp_path):
    """LoadVideo with frame_load_cap = 4 on a 120-frame video holds a few frames, not the whole video
    twice (the earlier decoder kept all 120 frames, then a stacked copy: ~240 frames' worth)."""
    from hyvideo_core.video_io import load_frames, write_mp4

    frames = np.random.default_rng(0).integers(0, 255, (120, 64, 64, 3), dtype=np.uint8)
    write_mp4(frames, tmp_path / "long.mp4")
    tracemalloc.start()
    try:
        got, _ = load_frames(tmp_path / "long.mp4", skip_first=2, every_nth=2, max_frames=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.shape == (4, 64, 64, 3)
    assert peak < 30 * frames[0].nbytes, f"peak {peak} bytes = {peak / frames[0].nbytes:.0f} frames"
    assert wait_until(lambda: not ffmpeg_children())


BAD_SELECTIONS = {
    "every-nth-zero": (dict(every_nth=0), "every_nth >= 1"),
    "negative-skip": (dict(skip_first=-1), "skip_first >= 0"),
    "negative-cap": (dict(max_frames=-2), "max_frames >= 0"),
    "skip-past-the-end": (dict(skip_first=50), "no frames left"),
}


@pytest.mark.parametrize("case", sorted(BAD_SELECTIONS))
def test_bad_frame_selection(tmp_path, case):
    from hyvideo_core.errors import InputError
    from hyvideo_core.video_io import load_frames, write_mp4

    write_mp4(_frames(9), tmp_path / "v.mp4")
    kwargs, message = BAD_SELECTIONS[case]
    with pytest.raises(InputError, match=message):
        load_frames(tmp_path / "v.mp4", **kwargs)
