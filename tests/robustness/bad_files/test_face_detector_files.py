"""Face-detector files that are not the released TorchScript detector (or not trusted): refused with a clear
error before anything in them runs, or, for a trusted program that misbehaves, a clear error when it is used."""
import zipfile

import numpy as np
import pytest
import torch

from hyvideo_core.apps.avatar.face import face_mask_for, load_face_detector
from hyvideo_core.errors import CheckpointError, InputError, UnsafeCheckpointError
from tests.avatar.face_fixtures import FaceDetectorStandIn, save_stand_in

pytestmark = pytest.mark.robustness


class ReturnsBoxesOnly(torch.nn.Module):
    def forward(self, img: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(1, 10, 4)


class Raises(torch.nn.Module):
    def forward(self, img: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("boom inside the detector")


def _random_bytes(tmp_path):
    path = tmp_path / "detface.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _state_dict(tmp_path):
    path = tmp_path / "detface.pt"
    torch.save(FaceDetectorStandIn().state_dict() | {"w": torch.ones(3)}, str(path))
    return path


def _truncated(tmp_path):
    whole = save_stand_in(tmp_path / "whole.pt")
    path = tmp_path / "detface.pt"
    data = open(whole, "rb").read()
    path.write_bytes(data[: len(data) // 2])
    return path


def _zip_without_program(tmp_path):
    path = tmp_path / "detface.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("detface/readme.txt", "not a model")
    return path


@pytest.mark.parametrize("make, error, message", [
    (lambda p: p / "missing.pt", InputError, r"face detector file .*missing\.pt' not found: expected the released"),
    (_random_bytes, CheckpointError, r"is not a TorchScript face detector \(not a zip archive"),
    (_truncated, CheckpointError, r"is not a TorchScript face detector \(not a zip archive"),
    (_state_dict, CheckpointError, r"holds weights without a program \(a torch\.save file\)"),
    (_zip_without_program, CheckpointError, r"holds no TorchScript program"),
], ids=["missing", "random-bytes", "truncated", "state-dict", "zip-without-program"])
def test_not_a_detector_file_is_named_as_such(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        load_face_detector(make(tmp_path), trust_torchscript=True)


def test_untrusted_program_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("HVS_TRUST_TORCHSCRIPT", raising=False)
    with pytest.raises(UnsafeCheckpointError, match=r"HVS_TRUST_TORCHSCRIPT=1"):
        load_face_detector(save_stand_in(tmp_path / "detface.pt"))


@pytest.mark.parametrize("module, message", [
    (ReturnsBoxesOnly(), r"returned \(1, 10, 4\); expected \(1, N, 16\) rows"),
    (Raises(), r"failed on a 416x416 input \(.*RuntimeError: boom inside the detector\)"),
], ids=["wrong-output", "raises"])
def test_trusted_program_that_misbehaves_is_a_clear_error(tmp_path, module, message):
    detector = load_face_detector(save_stand_in(tmp_path / "detface.pt", module), trust_torchscript=True)
    with pytest.raises(CheckpointError, match=message):
        face_mask_for(np.zeros((64, 64, 3), np.uint8), detector=detector)
