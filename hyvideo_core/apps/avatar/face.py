"""The avatar's face mask: where the audio adapters may move the picture (shared/spec/official_apps.md §B.4, §B.7).

:func:`face_mask_for` gives the mask at latent resolution, ``(1, H/8, W/8)`` in 0..1, from one of three sources,
in this order:

1. a mask the user drew (a ComfyUI MASK, ``(B, H', W')`` of any size with B = 1, or ``(H', W')``): resized
   bilinearly to the latent size;
2. the released face detector (``det_align/detface.pt``, see :func:`load_face_detector`): the largest face's box,
   enlarged ×3 around its centre and clamped to the image, rasterised at the image's resolution, then resized
   bilinearly to the latent size;
3. otherwise the whole frame, with one log line saying so and how to give a mask (the release also falls back to
   the whole frame when it finds no face).

As released (``get_facemask`` in the official ``audio_preprocessor.py`` and the resize in
``sample_inference_audio.py``): the box is rasterised as a 0/1 image at the reference image's size (the output
size: the release resizes the reference to it first), then ``interpolate(..., mode="bilinear")`` with
``align_corners=False`` and no antialiasing takes it to the latent size. The model later picks the value under
each token with nearest sampling (:class:`~hyvideo_core.apps.avatar.extension.AvatarExtension`).

The detector. The released ``detface.pt`` is a TorchScript program (a YOLOv5-style face detector with 5
landmarks). Loading TorchScript runs the program stored in the file, and this suite never runs code from a file it
reads unless the user says they trust that file: :func:`load_face_detector` refuses it unless
``trust_torchscript=True`` is passed or the environment has ``HVS_TRUST_TORCHSCRIPT=1``. (Reading its weights
without the program and running our own network would need the exact architecture, which only the program in the
file states; we do not ship one.) Its calling convention, as the official ``DetFace.detect`` uses it: the RGB image
resized (bilinear) so that its short side is 416, each side rounded up to a multiple of 32, as (1, 3, h, w) floats
in 0..1, plus for strides 8, 16 and 32 a grid (1, 1, h/s, w/s, 2) of cell (x, y) indices; it returns (1, N, 16)
rows ``cx, cy, w, h, objectness, 5 landmarks (x, y), class score`` in that input's pixels. Rows with objectness
and objectness × class score above 0.5 survive, then non-maximum suppression at IoU 0.45.
Differences from the release, on purpose: the largest face is the largest (the release's loop compares every
face with the first one only, so with three or more faces it can pick another); the resize to the detector's
input is torch's bilinear on the uint8 values rounded back to uint8 (the release uses OpenCV's fixed-point
bilinear: the pixels may differ by one level); a face box that rasterises to nothing counts as no face.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError, UnsafeCheckpointError

log = logging.getLogger(__name__)

BOX_ENLARGEMENT = 3.0            # the release's get_facemask(area=3.0)
LATENT_SCALE = 8                 # the VAE's spatial compression
DETECTOR_SHORT_SIDE = 416        # DetFace.inpSize
DETECTOR_MULTIPLE = 32
DETECTOR_STRIDES = (8, 16, 32)
DETECTOR_CONFIDENCE = 0.5
DETECTOR_NMS_IOU = 0.45
TRUST_ENV = "HVS_TRUST_TORCHSCRIPT"

MASK_HINT = "connect a MASK over the face (and the shoulders if they should move) to the avatar conditioning"
DETECTOR_HINT = "load the released face detector det_align/detface.pt"


@dataclass(frozen=True)
class Face:
    """One detected face in the pixels of the image given to the detector."""
    x: float                     # left
    y: float                     # top
    w: float
    h: float
    score: float
    landmarks: Tuple[Tuple[float, float], ...]   # eyes, nose, mouth corners (x, y)

    @property
    def area(self) -> float:
        return self.w * self.h


class FaceDetector:
    """A loaded face-detector program (see :func:`load_face_detector`)."""

    def __init__(self, program, path: str, device: torch.device):
        self.program, self.path, self.device = program, path, device
        self._grids: Optional[Tuple[Tuple[int, int], List[torch.Tensor]]] = None

    def detect(self, image) -> List[Face]:
        """The faces in ``image`` (ComfyUI IMAGE or (H, W, 3) uint8), best score first."""
        rgb = rgb_uint8(image)
        h0, w0 = rgb.shape[:2]
        h1, w1 = detector_input_size(h0, w0)
        pixels = rgb.permute(2, 0, 1)[None].float()
        if (h1, w1) != (h0, w0):
            pixels = F.interpolate(pixels, size=(h1, w1), mode="bilinear", align_corners=False).round().clamp(0, 255)
        pixels = (pixels / 255).to(self.device)
        try:
            with torch.no_grad():
                rows = self.program(pixels, self._grid_list(h1, w1))
        except Exception as exc:  # noqa: BLE001 - whatever the program raises, the file is the cause
            raise CheckpointError(f"the face detector {self.path!r} failed on a {w1}x{h1} input ({_last_line(exc)}); "
                                  f"is it the released det_align/detface.pt? Give a MASK instead.") from exc
        if not isinstance(rows, torch.Tensor) or rows.dim() != 3 or rows.shape[0] != 1 or rows.shape[2] < 16:
            found = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
            raise CheckpointError(f"the face detector {self.path!r} returned {found}; expected (1, N, 16) rows "
                                  f"(box, objectness, 5 landmarks, class score) like det_align/detface.pt. Give a "
                                  f"MASK instead, or the released detector file.")
        return _faces_from_rows(rows[0].detach().float().cpu(), w0 / w1, h0 / h1)

    def largest_face(self, image) -> Optional[Face]:
        faces = self.detect(image)
        return max(faces, key=lambda f: f.area) if faces else None

    def _grid_list(self, h: int, w: int) -> List[torch.Tensor]:
        if self._grids is None or self._grids[0] != (h, w):
            grids = []
            for stride in DETECTOR_STRIDES:
                ys, xs = torch.meshgrid(torch.arange(h // stride), torch.arange(w // stride), indexing="ij")
                grids.append(torch.stack((xs, ys), dim=2)[None, None].float().to(self.device))
            self._grids = ((h, w), grids)
        return self._grids[1]


def detector_input_size(height: int, width: int) -> Tuple[int, int]:
    """The detector's input size: short side 416, each side rounded up to a multiple of 32 (as released)."""
    r = DETECTOR_SHORT_SIDE / min(height, width)
    up = lambda n: int(n * r + DETECTOR_MULTIPLE - 1) // DETECTOR_MULTIPLE * DETECTOR_MULTIPLE
    return up(height), up(width)


def _faces_from_rows(rows: torch.Tensor, sx: float, sy: float) -> List[Face]:
    keep = rows[:, 4] > DETECTOR_CONFIDENCE
    rows = rows[keep]
    score = rows[:, 4] * rows[:, 15:].max(dim=1).values      # objectness x best class score
    rows, score = rows[score > DETECTOR_CONFIDENCE], score[score > DETECTOR_CONFIDENCE]
    if rows.shape[0] == 0:
        return []
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    faces = []
    for i in _nms(boxes, score, DETECTOR_NMS_IOU):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        points = rows[i, 5:15].reshape(5, 2)
        faces.append(Face(x1 * sx, y1 * sy, x2 * sx - x1 * sx, y2 * sy - y1 * sy, float(score[i]),
                          tuple((float(px) * sx, float(py) * sy) for px, py in points)))
    return faces


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> List[int]:
    """Greedy non-maximum suppression: indices kept, best score first; a box overlapping a kept one by more
    than ``iou`` goes."""
    order = torch.argsort(scores, descending=True, stable=True)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.numel():
        i, rest = int(order[0]), order[1:]
        kept.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    return kept


def load_face_detector(path: str | os.PathLike, *, trust_torchscript: Optional[bool] = None,
                       device: str | torch.device = "cpu") -> FaceDetector:
    """Load the released face detector ``det_align/detface.pt`` (a TorchScript program).

    Refused (:class:`~hyvideo_core.errors.UnsafeCheckpointError`) unless the user trusts the file:
    ``trust_torchscript=True``, or, when it is None, the environment variable ``HVS_TRUST_TORCHSCRIPT=1``.
    The file's layout is checked first without running anything."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"face detector file {path!r} not found: expected the released det_align/detface.pt "
                         f"(from tencent/HunyuanVideo-Avatar); or leave the detector out and {MASK_HINT}")
    _check_torchscript_archive(path)
    trusted = trust_torchscript if trust_torchscript is not None else \
        os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if not trusted:
        raise UnsafeCheckpointError(
            f"{path!r} is a TorchScript program: loading it runs the code stored in the file, which this suite does "
            f"not do for a file you have not said you trust. If it is the released det_align/detface.pt from a "
            f"source you trust, pass trust_torchscript=True (the avatar node's 'trust detector file' switch) or set "
            f"the environment variable {TRUST_ENV}=1; otherwise {MASK_HINT} instead.")
    device = torch.device(device)
    try:
        with warnings.catch_warnings():   # the released file is TorchScript: the deprecation is not for the user
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
            program = torch.jit.load(path, map_location=device)
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails anywhere in the loader
        raise CheckpointError(f"could not load the face detector {path!r} ({_last_line(exc)}): the file is damaged "
                              f"or not the released det_align/detface.pt; re-download it, or give a MASK "
                              f"instead.") from exc
    program.eval()
    log.info("face detector %s loaded as trusted TorchScript (sha256 %s)", path, _sha256(path))
    return FaceDetector(program, path, device)


def _check_torchscript_archive(path: str) -> None:
    """A TorchScript file is a zip holding ``<name>/code/…`` (the program) and ``<name>/data.pkl``; anything else
    (a bare weights file, a damaged download) is named as such before any loader touches it."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path!r} is not a TorchScript face detector (not a zip archive: {exc}); expected the "
                              f"released det_align/detface.pt. Re-download it, or give a MASK instead.") from exc
    has_code = any("/code/" in n or n.startswith("code/") for n in names)
    has_data = any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)
    if not (has_code and has_data):
        what = "weights without a program (a torch.save file)" if has_data else "no TorchScript program"
        raise CheckpointError(f"{path!r} is not a TorchScript face detector: it holds {what}. Expected the released "
                              f"det_align/detface.pt; or give a MASK instead.")


def _last_line(exc: BaseException) -> str:
    """The gist of an error: TorchScript puts its own traceback first and the cause last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- masks -------------------------------------------------------------------------------------------

def rgb_uint8(image) -> torch.Tensor:
    """A ComfyUI IMAGE ((1, H, W, 3) or (H, W, 3) floats in 0..1) or an (H, W, 3) uint8 array -> (H, W, 3) uint8."""
    original = image
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image: expected a ComfyUI IMAGE tensor (1, H, W, 3) or an (H, W, 3) uint8 array, found "
                         f"{type(original).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image: expected one RGB image (1, H, W, 3) or (H, W, 3), found shape {tuple(image.shape)}; "
                         f"pick one image of a batch (and drop an alpha channel) before the avatar conditioning")
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise InputError(f"image: expected floats in 0..1 or uint8, found {image.dtype}")
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8)


def face_box_mask(height: int, width: int, face: Face, enlargement: float = BOX_ENLARGEMENT) -> torch.Tensor:
    """(height, width) 0/1: the face box enlarged around its centre and clamped to the image, with the
    release's rounding (floor-halved sizes and centre, truncated corners)."""
    x1, y1 = face.x, face.y
    x2, y2 = x1 + face.w, y1 + face.h
    ww, hh = (x2 - x1) * enlargement, (y2 - y1) * enlargement
    cx, cy = (x2 + x1) // 2, (y2 + y1) // 2
    left, top = max(cx - ww // 2, 0), max(cy - hh // 2, 0)
    right, bottom = min(cx + ww // 2, width), min(cy + hh // 2, height)
    mask = torch.zeros(height, width)
    mask[max(int(top), 0):max(int(bottom), 0), max(int(left), 0):max(int(right), 0)] = 1.0
    return mask


def face_mask_for(image=None, mask=None, detector: Optional[FaceDetector] = None,
                  size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The avatar's face mask at latent resolution: (1, H/8, W/8) float32 in 0..1 (module docstring).

    image: the reference as the model sees it (ComfyUI IMAGE or (H, W, 3) uint8), needed by the detector;
    mask: a ComfyUI MASK (1, H', W') / (H', W') of any size, used as given when present; detector: from
    :func:`load_face_detector`; size: the output's (H, W) in pixels, default the image's."""
    height, width = _output_size(size, image, mask)
    latent = (height // LATENT_SCALE, width // LATENT_SCALE)
    if mask is not None:
        return _resize(_check_mask(mask), latent)
    if detector is not None:
        if image is None:
            raise InputError("face_mask_for: the face detector needs the reference image; pass image=")
        rgb = rgb_uint8(image)
        face = detector.largest_face(rgb)
        box = None if face is None else face_box_mask(rgb.shape[0], rgb.shape[1], face)
        if box is not None and bool(box.any()):
            return _resize(box, latent)
        log.warning("face mask: no face found in the reference image, so the audio drives the whole frame; to "
                    "confine it, %s", MASK_HINT)
    else:
        log.info("face mask: none given and no face detector loaded, so the audio drives the whole frame (as the "
                 "release does without a face); to confine it, %s, or %s", MASK_HINT, DETECTOR_HINT)
    return torch.ones(1, *latent)


def _output_size(size, image, mask) -> Tuple[int, int]:
    if size is None:
        if image is None:
            raise InputError("face_mask_for: give size=(H, W), the output's pixels, or the reference image")
        h, w = rgb_uint8(image).shape[:2]
        return int(h), int(w)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size: expected (height, width) in pixels, found {size!r}") from None
    if h < LATENT_SCALE or w < LATENT_SCALE:
        raise InputError(f"size: expected (height, width) of at least {LATENT_SCALE} pixels each, found {(h, w)}")
    return h, w


def _check_mask(mask) -> torch.Tensor:
    """A ComfyUI MASK -> (H', W') float32 in 0..1."""
    original = mask
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"face mask: expected a ComfyUI MASK tensor (1, H, W) of values 0..1, found "
                         f"{type(original).__name__}")
    shape = tuple(mask.shape)
    if mask.dim() == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.dim() != 2:
        hint = (" (a batch of masks: pick the one for the reference image)" if len(shape) == 3 else
                " (drop the channel axis)" if len(shape) == 4 else "")
        raise InputError(f"face mask: expected one ComfyUI MASK (1, H, W) or (H, W), found shape {shape}{hint}")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise InputError(f"face mask: the mask is empty (shape {shape}); draw a mask over the face or leave it out")
    if mask.dtype == torch.bool:
        mask = mask.float()
    if not mask.is_floating_point():
        raise InputError(f"face mask: expected values 0..1 (floats), found {mask.dtype}; divide a 0..255 mask by 255")
    mask = mask.float()
    if not bool(torch.isfinite(mask).all()):
        raise InputError(f"face mask: found NaN or infinite values (shape {shape}); expected values 0..1")
    low, high = float(mask.min()), float(mask.max())
    if low < 0 or high > 1:
        raise InputError(f"face mask: expected values 0..1, found {low:g}..{high:g}; "
                         f"{'divide a 0..255 mask by 255' if high > 1 else 'clamp it to 0..1'}")
    return mask


def _resize(mask: torch.Tensor, latent: Tuple[int, int]) -> torch.Tensor:
    """(H', W') -> (1, h, w): bilinear, align_corners=False, no antialiasing (the release's interpolate)."""
    if tuple(mask.shape) == latent:
        return mask[None].clone()
    return F.interpolate(mask[None, None], size=latent, mode="bilinear", align_corners=False)[0]


def latent_size(height: int, width: int) -> Tuple[int, int]:
    """The mask's (h, w) for an output of ``height`` x ``width`` pixels."""
    return height // LATENT_SCALE, width // LATENT_SCALE

