"""A stand-in for the released face detector ``det_align/detface.pt``, scripted and saved by the tests: the same
calling convention (RGB (1, 3, h, w) in 0..1 plus stride-8/16/32 cell grids) and output rows (1, N, 16) =
cx, cy, w, h, objectness, 5 landmarks, class score, in the input's pixels.

A "face" is a pure red rectangle (objectness 0.95) or a pure blue one (0.9); each comes with a copy shifted by one
pixel and less sure of itself (non-maximum suppression must drop it), and one huge box below the confidence
threshold sits in every output. The program checks the grids it is given (shapes, x before y)."""
import warnings
from typing import List

import numpy as np
import torch

from hyvideo_core.apps.avatar.face import load_face_detector


class FaceDetectorStandIn(torch.nn.Module):
    def forward(self, img: torch.Tensor, grids: List[torch.Tensor]) -> torch.Tensor:
        h, w = img.shape[2], img.shape[3]
        strides = [8, 16, 32]
        for k in range(3):
            g = grids[k]
            if g.shape[0] != 1 or g.shape[1] != 1 or g.shape[2] != h // strides[k] or g.shape[3] != w // strides[k] \
                    or g.shape[4] != 2:
                raise RuntimeError("grid of the wrong shape")
            if g.shape[3] > 1 and (float(g[0, 0, 0, 1, 0]) != 1.0 or float(g[0, 0, 0, 1, 1]) != 0.0):
                raise RuntimeError("grid cells must be (x, y)")
        n = grids[0].shape[2] * grids[0].shape[3]
        rows = torch.zeros(1, n, 16)
        rows[0, :, 4] = 0.1
        rows[0, :, 15] = 1.0
        r, g, b = img[0, 0], img[0, 1], img[0, 2]
        regions = [(r > 0.5) & (g < 0.5) & (b < 0.5), (b > 0.5) & (r < 0.5) & (g < 0.5)]
        sure = [0.95, 0.9]
        for k in range(2):
            found = torch.nonzero(regions[k])
            ys, xs = found[:, 0], found[:, 1]
            if ys.numel() > 0:
                x1, x2 = float(xs.min()), float(xs.max()) + 1.0
                y1, y2 = float(ys.min()), float(ys.max()) + 1.0
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                row = torch.tensor([cx, cy, x2 - x1, y2 - y1, sure[k],
                                    cx - 5, cy - 5, cx + 5, cy - 5, cx, cy, cx - 4, cy + 6, cx + 4, cy + 6, 1.0])
                rows[0, 2 * k] = row
                rows[0, 2 * k + 1] = row
                rows[0, 2 * k + 1, 0] = cx + 1.0
                rows[0, 2 * k + 1, 4] = sure[k] - 0.1
        rows[0, 4, 0] = w / 2.0
        rows[0, 4, 1] = h / 2.0
        rows[0, 4, 2] = float(w)
        rows[0, 4, 3] = float(h)
        rows[0, 4, 4] = 0.45
        return rows


def save_stand_in(path, module: torch.nn.Module = None) -> str:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
        torch.jit.save(torch.jit.script(module or FaceDetectorStandIn()), str(path))
    return str(path)


def trusted_stand_in(tmp_path):
    return load_face_detector(save_stand_in(tmp_path / "detface.pt"), trust_torchscript=True)


def picture(height, width, red=None, blue=None) -> np.ndarray:
    """(H, W, 3) uint8, dark grey, with a red and/or blue rectangle given as (x, y, w, h)."""
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    for box, colour in ((red, (230, 10, 10)), (blue, (10, 10, 230))):
        if box is not None:
            x, y, w, h = box
            image[y:y + h, x:x + w] = colour
    return image
