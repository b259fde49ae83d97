"""Face-mask inputs that do not fit: each a clear InputError saying what was expected and what was found."""
import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar.face import face_mask_for
from hyvideo_core.errors import InputError

pytestmark = pytest.mark.robustness

IMAGE = np.zeros((64, 64, 3), np.uint8)


@pytest.mark.parametrize("mask, message", [
    (torch.ones(2, 64, 64), r"one ComfyUI MASK \(1, H, W\) or \(H, W\), found shape \(2, 64, 64\) \(a batch"),
    (torch.ones(1, 1, 64, 64), r"found shape \(1, 1, 64, 64\) \(drop the channel axis\)"),
    (torch.ones(64), r"found shape \(64,\)"),
    (torch.ones(1, 0, 64), r"the mask is empty \(shape \(1, 0, 64\)\)"),
    (torch.full((1, 8, 8), float("nan")), r"NaN or infinite"),
    (torch.full((1, 8, 8), 255.0), r"expected values 0\.\.1, found 255\.\.255; divide a 0\.\.255 mask by 255"),
    (torch.full((1, 8, 8), -0.5), r"found -0\.5\.\.-0\.5; clamp it to 0\.\.1"),
    (torch.ones(1, 8, 8, dtype=torch.uint8), r"expected values 0\.\.1 \(floats\), found torch\.uint8"),
    ([[1.0, 0.0]], r"expected a ComfyUI MASK tensor \(1, H, W\) of values 0\.\.1, found list"),
], ids=["batch-of-2", "channel-axis", "1d", "empty", "nan", "0-255", "negative", "uint8", "list"])
def test_bad_mask_is_a_clear_error(mask, message):
    with pytest.raises(InputError, match=message):
        face_mask_for(IMAGE, mask=mask)


@pytest.mark.parametrize("image, size, message", [
    (np.zeros((2, 64, 64, 3), np.uint8), None, r"one RGB image .* found shape \(2, 64, 64, 3\)"),
    (np.zeros((64, 64, 4), np.uint8), None, r"found shape \(64, 64, 4\); pick one image .* drop an alpha channel"),
    ("face.png", None, r"expected a ComfyUI IMAGE tensor .* found str"),
    (torch.zeros(64, 64, 3, dtype=torch.int32), None, r"expected floats in 0\.\.1 or uint8, found torch\.int32"),
    (None, None, r"give size=\(H, W\)"),
    (IMAGE, (4, 64), r"at least 8 pixels each, found \(4, 64\)"),
    (IMAGE, "big", r"size: expected \(height, width\) in pixels, found 'big'"),
], ids=["image-batch", "rgba", "path-string", "int32", "no-image-no-size", "tiny-size", "size-string"])
def test_bad_image_or_size_is_a_clear_error(image, size, message):
    with pytest.raises(InputError, match=message):
        face_mask_for(image, size=size)


def test_detector_without_image_is_a_clear_error(tmp_path):
    from tests.avatar.face_fixtures import trusted_stand_in

    with pytest.raises(InputError, match=r"the face detector needs the reference image; pass image="):
        face_mask_for(None, detector=trusted_stand_in(tmp_path), size=(64, 64))
