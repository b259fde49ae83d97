"""Frames the Synchformer sync-feature encoder cannot use: each a clear error saying what was expected,
what was found and what to do next."""
import numpy as np
import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.v2a.features.synchformer import SYNCHFORMER_CONFIGS, Synchformer, encode_sync_frames

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def model():
    return Synchformer(SYNCHFORMER_CONFIGS["synchformer-tiny"]).eval()


@pytest.mark.parametrize("frames, message", [
    (np.zeros((15, 8, 8, 3), np.uint8), r"Synchformer needs at least 16 frames at 25 fps \(0\.64 s of video\); "
                                         r"found 15\. Give a longer clip"),
    (np.zeros((0, 8, 8, 3), np.uint8), r"needs at least 16 frames .*found 0"),
    (np.zeros((16, 8, 8), np.uint8), r"frames must be one clip \(T, H, W, 3\) RGB at 25 fps; found shape \(16, 8, 8\)"),
    (np.zeros((2, 16, 8, 8, 3), np.uint8), r"must be one clip \(T, H, W, 3\).*found shape \(2, 16, 8, 8, 3\)"),
    (np.zeros((16, 8, 8, 4), np.uint8), r"must be one clip \(T, H, W, 3\) RGB.*found shape \(16, 8, 8, 4\)"),
    (np.zeros((16, 0, 8, 3), np.uint8), r"frames have no pixels \(height x width 0x8\)"),
    (np.zeros((16, 8, 8, 3), np.int64), r"frames must be uint8 or floats in \[0, 1\]; found int64"),
], ids=["fifteen_frames", "no_frames", "grey", "batch_of_clips", "rgba", "zero_height", "int64"])
def test_bad_frames(model, frames, message):
    with pytest.raises(InputError, match=message):
        encode_sync_frames(model, frames)


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, True], ids=["zero", "negative", "fraction", "bool"])
def test_bad_batch_size(model, batch_size):
    with pytest.raises(InputError, match=r"batch_size must be an integer >= 1"):
        encode_sync_frames(model, torch.zeros(16, 8, 8, 3), batch_size=batch_size)

