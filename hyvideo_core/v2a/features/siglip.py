"""SigLIP2 frame features for Foley, through transformers' own SigLIP vision model.

The release (shared/spec/official_apps.md §C.2) encodes frames sampled at 8 fps with
``google/siglip2-base-patch16-512``: each frame is resized to 512×512 (PIL bilinear, no crop,
aspect ratio not kept), scaled to [0, 1] and normalised with mean = std = 0.5; the feature is the
model's ``get_image_features``, i.e. the vision tower's pooled (attention-pooling head) output,
768-d, with no projection and no L2 normalisation. That checkpoint is a fixed-resolution SigLIP
model (``model_type: siglip``); the NaFlex SigLIP2 variants need patch masks and are refused.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

from ...errors import CheckpointError, InputError
from .model_folders import quiet_loading_report, read_model_type, refuse_missing_weights, require_model_folder

SIGLIP_REPO = "google/siglip2-base-patch16-512"
SIGLIP_FPS = 8
FIXED_RESOLUTION_TYPES = ("siglip", "siglip_vision_model")

FrameArray = Union[np.ndarray, torch.Tensor]


def load_siglip_vision(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device="cpu"):
    """The vision tower of a SigLIP / SigLIP2 (fixed-resolution) folder as transformers'
    ``SiglipVisionModel`` in eval mode; only local files are read."""
    from transformers import SiglipVisionModel

    folder = require_model_folder(path, what="SigLIP2 vision model (Foley visual features)", repo=SIGLIP_REPO,
                                  comfy_folder="clip_vision")
    model_type = read_model_type(folder)
    if model_type not in FIXED_RESOLUTION_TYPES:
        raise CheckpointError(f"{folder}: expected a fixed-resolution SigLIP model (config model_type one of "
                              f"{FIXED_RESOLUTION_TYPES}, as {SIGLIP_REPO} is); found {model_type!r}. NaFlex "
                              f"SigLIP2 checkpoints are not what HunyuanVideo-Foley was trained with")
    with quiet_loading_report():
        model, info = SiglipVisionModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                        dtype=dtype, output_loading_info=True)
    refuse_missing_weights(info, folder, "SigLIP2 vision model")
    return model.to(device).eval()


def _as_uint8_video(frames: FrameArray) -> np.ndarray:
    """(T, H, W, 3) or (B, T, H, W, 3) uint8, or floats in [0, 1] (ComfyUI IMAGE) -> uint8 numpy."""
    if isinstance(frames, torch.Tensor):
        if frames.is_floating_point():
            frames = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        frames = frames.cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        if not np.issubdtype(frames.dtype, np.floating):
            raise InputError(f"frames must be uint8 or floats in [0, 1]; found {frames.dtype}")
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    if frames.ndim not in (4, 5) or frames.shape[-1] != 3:
        raise InputError(f"frames must be (T, H, W, 3) or (B, T, H, W, 3) RGB; found {frames.shape}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.shape[1] == 0:
        raise InputError("no frames to encode: the video is empty (0 frames); give at least one frame")
    return frames


def preprocess_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, S, S) float32 as the release prepares them for SigLIP2."""
    from PIL import Image

    out = np.empty((len(frames), image_size, image_size, 3), np.float32)
    for i, frame in enumerate(frames):
        resized = Image.fromarray(np.ascontiguousarray(frame)).resize((image_size, image_size), Image.BILINEAR)
        out[i] = np.asarray(resized, dtype=np.float32)
    pixels = torch.from_numpy(out).permute(0, 3, 1, 2)
    return (pixels / 255.0 - 0.5) / 0.5


@torch.inference_mode()
def encode_frames(model, frames: FrameArray, *, batch_size: int = 16) -> torch.Tensor:
    """SigLIP2 features of frames already sampled at 8 fps: (B, T, D) float32 (D = 768 for the
    release's model). ``frames`` is (T, H, W, 3) or (B, T, H, W, 3), uint8 or floats in [0, 1].
    At most ``batch_size`` frames are resized and encoded at once, so memory stays bounded."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; found {batch_size}")
    video = _as_uint8_video(frames)
    b, t = video.shape[:2]
    flat = video.reshape(b * t, *video.shape[2:])
    param = next(model.parameters())
    size = int(model.config.image_size)
    pooled = []
    for start in range(0, len(flat), batch_size):
        pixels = preprocess_frames(flat[start:start + batch_size], size).to(param.device, param.dtype)
        pooled.append(model(pixel_values=pixels).pooler_output.float().cpu())
    return torch.cat(pooled).view(b, t, -1)
