"""Bad sound given to write_mp4 (Save Video's AUDIO input): a clear InputError before anything is written,
an earlier video of the same name kept, no ffmpeg process left."""
import re

import numpy as np
import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.video_io import write_mp4
from tests.robustness.checks import ffmpeg_children, wait_until

pytestmark = pytest.mark.robustness

FRAMES = np.zeros((5, 16, 16, 3), np.uint8)
CASES = {
    "not_a_pair": (np.zeros((1, 100), np.float32), "expected (samples"),
    "nan_samples": ((np.full((1, 1600), np.nan, np.float32), 16000), "NaN"),
    "infinite_samples": ((np.full((2, 1600), np.inf, np.float32), 16000), "NaN or infinite"),
    "nine_channels": ((np.zeros((9, 1600), np.float32), 16000), "1 to 8 channels"),
    "three_dims": ((np.zeros((1, 2, 1600), np.float32), 16000), "1 to 8 channels"),
    "zero_rate": ((np.zeros((1, 1600), np.float32), 0), "sample rate"),
    "float_rate": ((np.zeros((1, 1600), np.float32), 16000.5), "sample rate"),
    "bool_rate": ((np.zeros((1, 1600), np.float32), True), "sample rate"),
    "huge_rate": ((np.zeros((1, 1600), np.float32), 10_000_000), "sample rate"),
    "tensor_nan": ((torch.full((1, 1600), float("nan")), 16000), "NaN"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_sound_for_a_video_is_a_clear_error(tmp_path, name):
    audio, says = CASES[name]
    target = tmp_path / "video.mp4"
    target.write_bytes(b"the earlier video")
    with pytest.raises(InputError, match=re.escape(says)):
        write_mp4(FRAMES, target, fps=25, audio=audio)
    assert target.read_bytes() == b"the earlier video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
    assert wait_until(lambda: not ffmpeg_children(), 5), ffmpeg_children()
