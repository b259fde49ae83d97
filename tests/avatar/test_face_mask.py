"""The avatar face mask: a drawn MASK resized, the detector's largest face enlarged x3 as released, and the
whole frame with one log line when neither gives a face; the TorchScript detector only with the user's trust."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyvideo_core.apps.avatar.face import (Face, detector_input_size, face_box_mask, face_mask_for,
                                           load_face_detector)
from hyvideo_core.errors import UnsafeCheckpointError
from tests.avatar.face_fixtures import picture, save_stand_in, trusted_stand_in

LOGGER = "hyvideo_core.apps.avatar.face"


def profile(n, halves, ones):
    p = torch.zeros(n)
    p[list(ones)] = 1.0
    p[list(halves)] = 0.5
    return p


def test_detected_face_gives_the_box_enlarged_three_times_at_latent_size(tmp_path, caplog):
    detector = trusted_stand_in(tmp_path)
    image = picture(416, 416, red=(180, 150, 40, 50))       # 416 px: the detector sees the image as it is
    faces = detector.detect(image)
    assert [(f.x, f.y, f.w, f.h) for f in faces] == [(180.0, 150.0, 40.0, 50.0)]   # duplicate and weak box gone
    assert faces[0].score == pytest.approx(0.95)
    assert faces[0].landmarks[2] == (200.0, 175.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        mask = face_mask_for(image, detector=detector, size=(416, 416))
    assert not [r for r in caplog.records if r.name == LOGGER]
    # x3 around the centre (200, 175): rows 100..249, columns 140..259 at 416 px. Bilinear to 52 x 52 samples
    # source rows 8i+3 and 8i+4 half and half: latent row 12 straddles the top edge, 13..30 are inside.
    rows = profile(52, [12], range(13, 31))
    cols = profile(52, [17, 32], range(18, 32))
    assert mask.shape == (1, 52, 52) and mask.dtype == torch.float32
    assert torch.equal(mask[0], rows[:, None] * cols[None, :])


def test_box_is_clamped_to_the_image_with_the_released_rounding():
    box = face_box_mask(40, 60, Face(x=1.5, y=30.0, w=9.0, h=8.0, score=1.0, landmarks=()))
    # x: centre (1.5 + 10.5)//2 = 6, width 27, half 13 -> max(-7, 0)..19; y: centre 34, half 12 -> 22..min(46, 40)
    expected = torch.zeros(40, 60)
    expected[22:40, 0:19] = 1
    assert torch.equal(box, expected)


def test_the_largest_face_wins_over_the_surest(tmp_path):
    detector = trusted_stand_in(tmp_path)
    image = picture(416, 416, red=(20, 20, 30, 30), blue=(200, 180, 90, 100))
    faces = detector.detect(image)
    assert [round(f.score, 3) for f in faces] == [0.95, 0.9]          # red is surer, blue is larger
    assert detector.largest_face(image) == faces[1]
    mask = face_mask_for(image, detector=detector, size=(416, 416))
    assert torch.equal(mask, F.interpolate(face_box_mask(416, 416, faces[1])[None, None], size=(52, 52),
                                           mode="bilinear", align_corners=False)[0])
    assert float(mask[0, 3, 3]) == 0.0                                  # the red face's corner is outside


def test_detector_sees_the_image_at_its_released_input_size(tmp_path):
    assert detector_input_size(416, 416) == (416, 416)
    assert detector_input_size(240, 360) == (416, 640)       # 360 * 416/240 = 624 -> 640
    assert detector_input_size(704, 768) == (416, 480)       # 768 * 416/704 = 453.8 -> 480
    assert detector_input_size(1080, 1920) == (416, 768)     # 1920 * 416/1080 = 739.6 -> 768
    detector = trusted_stand_in(tmp_path)
    (face,) = detector.detect(picture(240, 360, red=(100, 60, 40, 40)))
    # found at 416 x 640 and mapped back to the image's pixels (edges blur by a pixel in the resize)
    assert face.x == pytest.approx(100, abs=1.5) and face.y == pytest.approx(60, abs=1.5)
    assert face.w == pytest.approx(40, abs=2) and face.h == pytest.approx(40, abs=2)


def test_comfyui_image_tensor_is_accepted(tmp_path):
    detector = trusted_stand_in(tmp_path)
    array = picture(416, 416, red=(180, 150, 40, 50))
    image = torch.from_numpy(array).float()[None] / 255                  # ComfyUI IMAGE (1, H, W, 3)
    assert torch.equal(face_mask_for(image, detector=detector), face_mask_for(array, detector=detector))


def test_no_face_found_gives_the_whole_frame_and_one_warning(tmp_path, caplog):
    detector = trusted_stand_in(tmp_path)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        mask = face_mask_for(picture(416, 320), detector=detector, size=(416, 320))
    assert torch.equal(mask, torch.ones(1, 52, 40))
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "no face found" in records[0].getMessage() and "MASK" in records[0].getMessage()


def test_no_mask_and_no_detector_gives_the_whole_frame_and_one_log_line(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        mask = face_mask_for(picture(64, 96))
    assert torch.equal(mask, torch.ones(1, 8, 12))
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert "whole frame" in records[0].getMessage()
    assert "MASK" in records[0].getMessage() and "detface.pt" in records[0].getMessage()


def test_a_mask_of_another_size_is_resized_bilinearly():
    drawn = torch.rand(1, 104, 80)
    mask = face_mask_for(mask=drawn, size=(416, 320))                   # latent 52 x 40: exactly half the mask
    # bilinear at exactly half size (align_corners=False) averages each 2 x 2 block
    assert torch.allclose(mask, F.avg_pool2d(drawn[None], 2)[0], atol=1e-6)
    small = torch.zeros(13, 10)
    small[:, :5] = 1.0
    up = face_mask_for(mask=small, size=(416, 320))
    assert up.shape == (1, 52, 40)
    assert torch.all(up[0, :, :18] == 1) and torch.all(up[0, :, 22:] == 0)
    assert torch.all(up[0, :, 18:22].diff(dim=1) < 0)                   # a bilinear ramp across the edge
    same = torch.rand(1, 52, 40)
    assert torch.equal(face_mask_for(mask=same, size=(416, 320)), same)


def test_a_given_mask_wins_over_the_detector(tmp_path, caplog):
    detector = trusted_stand_in(tmp_path)
    image = picture(416, 416, red=(180, 150, 40, 50))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        mask = face_mask_for(image, mask=torch.zeros(1, 416, 416), detector=detector)
    assert torch.equal(mask, torch.zeros(1, 52, 52))
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_the_torchscript_detector_is_refused_unless_trusted(tmp_path, monkeypatch):
    path = save_stand_in(tmp_path / "detface.pt")
    monkeypatch.delenv("HVS_TRUST_TORCHSCRIPT", raising=False)
    calls = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    with pytest.raises(UnsafeCheckpointError, match=r"TorchScript program: loading it runs the code") as info:
        load_face_detector(path)
    assert "trust_torchscript=True" in str(info.value) and "HVS_TRUST_TORCHSCRIPT=1" in str(info.value)
    assert "MASK" in str(info.value)
    monkeypatch.setenv("HVS_TRUST_TORCHSCRIPT", "1")
    with pytest.raises(UnsafeCheckpointError):
        load_face_detector(path, trust_torchscript=False)                # an explicit no beats the environment
    assert calls == []                                                   # refused before the program was opened
    detector = load_face_detector(path)                                  # the environment's yes
    assert calls and detector.detect(picture(416, 416, red=(10, 10, 20, 20)))


def test_detector_loads_on_the_device_asked_for(tmp_path):
    detector = load_face_detector(save_stand_in(tmp_path / "d.pt"), trust_torchscript=True, device="cpu")
    assert detector.device == torch.device("cpu")
    assert isinstance(detector.largest_face(np.zeros((32, 32, 3), np.uint8)), type(None))
