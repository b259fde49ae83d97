"""Visual features of a whole long video, encoded as the frames stream in: equal to encoding the whole
clip at once, with only a chunk of frames held (tiny random SigLIP, the tiny Synchformer of the golden
fixture, real H.264 files from imageio-ffmpeg's ffmpeg)."""
import tracemalloc

import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.v2a.features import encode_frames, encode_sync_frames, load_synchformer, sample_video_file
from hyvideo_core.v2a.features.siglip import load_siglip_vision
from hyvideo_core.v2a.long_features import encode_long_video
from tests.v2a import test_synchformer_parity as synch_golden
from tests.v2a.tiny_feature_models import IMAGE_SIZE, save_tiny_siglip, write_test_video


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_features")
    save_tiny_siglip(folder / "siglip")
    synch = load_synchformer(synch_golden.official_file(synch_golden._fixture(), folder / "synchformer_state_dict.pth"))
    return load_siglip_vision(folder / "siglip"), synch


def test_streamed_features_equal_the_whole_clip_encoded_at_once(encoders, tmp_path):
    siglip, synch = encoders
    path = write_test_video(tmp_path / "clip.mp4", seconds=5, fps=24, size=IMAGE_SIZE)
    frames, _ = sample_video_file(path, (8, 25))
    with torch.no_grad():
        visual, sync, seconds = encode_long_video(path, siglip, synch, chunk_seconds=1.0)
        whole_visual, whole_sync = encode_frames(siglip, frames[8.0]), encode_sync_frames(synch, frames[25.0])
    assert seconds == frames[25.0].shape[0] / 25
    assert visual.shape == whole_visual.shape and sync.shape == whole_sync.shape
    torch.testing.assert_close(visual, whole_visual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sync, whole_sync, atol=1e-5, rtol=1e-5)


def _peak_while_encoding(encoders, path, chunk_seconds):
    siglip, synch = encoders
    tracemalloc.start()
    try:
        with torch.no_grad():
            result = encode_long_video(path, siglip, synch, chunk_seconds=chunk_seconds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("seconds", [pytest.param(20, id="20s"), pytest.param(70, id="70s", marks=pytest.mark.slow)])
def test_a_long_video_holds_only_a_chunk_of_frames(encoders, tmp_path, seconds):
    """Past sample_video_file's 60 s cap (slow case) the whole file is read while ~1 s of frames per
    rate is held."""
    path = write_test_video(tmp_path / "long.mp4", seconds=seconds, fps=25, size=IMAGE_SIZE)
    (visual, sync, duration), peak = _peak_while_encoding(encoders, path, 1.0)
    assert duration == seconds and visual.shape[1] == 8 * seconds
    assert sync.shape[1] == 8 * ((25 * seconds - 16) // 8 + 1)
    all_frames = 33 * seconds * IMAGE_SIZE * IMAGE_SIZE * 3
    assert peak < all_frames / 4, f"peak {peak / 1e6:.2f} MB against {all_frames / 1e6:.2f} MB of frames"


def test_shorter_than_one_segment_is_refused(encoders, tmp_path):
    siglip, synch = encoders
    path = write_test_video(tmp_path / "short.mp4", seconds=0.4, fps=25, size=IMAGE_SIZE)
    with pytest.raises(InputError, match="Synchformer needs at least 16 frames"):
        encode_long_video(path, siglip, synch)
