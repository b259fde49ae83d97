"""Synchformer features feeding the Foley DiT end to end, on the tiny sizes with the official weights
of both golden fixtures: a video (file, or an IMAGE batch with its frame rate) -> 25 fps frames ->
our Synchformer -> (1, 8·S, D) tokens -> ``sample_audio_latents`` of the tiny Foley model, whose sync
width is the tiny Synchformer's."""
import numpy as np
import pytest
import torch

from hyvideo_core.v2a.features import (SYNCH_FPS, encode_sync_frames, load_synchformer, sample_image_batch,
                                       sample_video_file, sync_duration_seconds, sync_segment_count)
from hyvideo_core.v2a.load import load_foley
from hyvideo_core.v2a.sample import FoleyConditions, sample_audio_latents
from tests.v2a import test_golden_parity as foley_golden
from tests.v2a import test_synchformer_parity as synch_golden
from tests.v2a.tiny_feature_models import write_test_video


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foley_models")
    synch = load_synchformer(synch_golden.official_file(synch_golden._fixture(), folder / "synchformer_state_dict.pth"))
    tensors, _ = foley_golden._fixture()
    torch.save({k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}, folder / "foley.pth")
    foley = load_foley(folder / "foley.pth")
    assert foley.config.sync_dim == synch.config.embed_dim
    return synch, foley


def _sample(foley, sync, seconds, seed=0):
    cfg = foley.config
    gen = torch.Generator().manual_seed(seed)
    la = int(seconds * cfg.audio_frame_rate)                      # the release: int(duration * 50)
    noise = torch.randn(1, cfg.audio_latent_dim, la, generator=gen)
    visual = torch.randn(1, int(seconds * 8), cfg.visual_dim, generator=gen)
    text, negative = torch.randn(2, 1, 5, cfg.text_dim, generator=gen)
    with torch.no_grad():
        return sample_audio_latents(foley, noise, FoleyConditions(visual, sync, text), negative, steps=3,
                                    cfg_scale=4.5)


def test_video_file_to_audio_latents(models, tmp_path):
    synch, foley = models
    path = write_test_video(tmp_path / "clip.mp4", seconds=1.2, fps=30, size=24)
    frames, _ = sample_video_file(path, (8, SYNCH_FPS))
    sync_frames = frames[float(SYNCH_FPS)]
    assert sync_frames.shape[0] == 30                          # 1.2 s at 25 fps
    sync = encode_sync_frames(synch, sync_frames)
    assert sync.shape == (1, 8 * sync_segment_count(30), 12) == (1, 16, 12)   # 2 segments; 6 frames left over
    seconds = sync_duration_seconds(sync_frames.shape[0])
    latents = _sample(foley, sync, seconds)
    assert latents.shape == (1, 8, 60) and torch.isfinite(latents).all()
    # the sync features steer the audio: the learned "no video" features give other latents
    empty = _sample(foley, foley.empty_sync_features(1, sync.shape[1]).clone(), seconds)
    assert (latents - empty).abs().max() > 1e-2


def test_image_batch_with_its_frame_rate(models):
    """A ComfyUI IMAGE batch at 50 fps is resampled to 25 fps (every 2nd frame) before encoding."""
    synch, foley = models
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((64, 20, 28, 3), dtype=np.float32))
    at_25 = sample_image_batch(images, 50, SYNCH_FPS)
    torch.testing.assert_close(at_25, images[::2])
    sync = encode_sync_frames(synch, at_25)
    assert sync.shape == (1, 24, 12)
    torch.testing.assert_close(sync, encode_sync_frames(synch, (images[::2] * 255).round().to(torch.uint8).numpy()))
    latents = _sample(foley, sync, sync_duration_seconds(32))
    assert latents.shape == (1, 8, 64) and torch.isfinite(latents).all()


@pytest.mark.parametrize("n, segments", [(16, 1), (23, 1), (24, 2), (250, 30), (375, 45)],
                         ids=["one_segment", "one_and_a_bit", "two", "ten_seconds", "fifteen_seconds"])
def test_segment_count_is_the_releases(n, segments):
    """S = (T - 16) // 8 + 1; 10 s at 25 fps gives 30 segments = 240 tokens (spec §C.7)."""
    assert sync_segment_count(n) == segments
