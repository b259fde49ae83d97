"""Reading and writing video files through imageio-ffmpeg (H.264 .mp4).

Frames are (F, H, W, 3) uint8. Writes go to a temporary file that is renamed into place
only when complete, so an interrupted or failed write never leaves a partial video.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Optional, Tuple

import numpy as np
import torch

from .errors import InputError


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8, rounded (the official code truncates)."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise InputError(f"expected one video of shape (3, F, H, W) in [-1, 1], found {tuple(video.shape)}")
    frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 24.0, quality: float = 8.0,
              metadata: Optional[dict] = None) -> str:
    """Encode (F, H, W, 3) uint8 frames as H.264 (yuv420p, playable everywhere).

    ``quality`` is imageio-ffmpeg's 0..10 scale (10 = best). ``metadata`` (e.g. prompt and
    workflow) is stored as JSON in the container's ``comment`` tag."""
    import imageio_ffmpeg

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"expected frames (F, H, W, 3) uint8, found {frames.shape} {frames.dtype}")
    f, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise InputError(f"H.264 needs even width and height, found {w}×{h}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".mp4", dir=directory)
    os.close(fd)
    extra = ["-movflags", "+faststart"]
    if metadata:
        extra += ["-metadata", "comment=" + json.dumps(metadata, separators=(",", ":"))]
    try:
        writer = imageio_ffmpeg.write_frames(tmp, (w, h), fps=fps, codec="libx264", quality=quality,
                                             pix_fmt_out="yuv420p", macro_block_size=1, output_params=extra)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_video(path: str | os.PathLike) -> Tuple[np.ndarray, float]:
    """Decode a video file to (F, H, W, 3) uint8 frames and its frame rate."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(os.fspath(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8), float(meta["fps"])



VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")


def load_frames(path: str | os.PathLike, *, skip_first: int = 0, every_nth: int = 1, max_frames: int = 0,
                four_n_plus_one: bool = False) -> Tuple[np.ndarray, float]:
    """Decode ``path`` and select frames: skip ``skip_first``, keep every ``every_nth``, at most
    ``max_frames`` (0 = all), optionally trimmed to the largest 4n+1 count the VAE accepts.
    Returns (F, H, W, 3) uint8 frames and the resulting frame rate."""
    if not os.path.isfile(path):
        raise InputError(f"video file not found: {os.fspath(path)!r}")
    if every_nth < 1 or skip_first < 0 or max_frames < 0:
        raise InputError(f"expected skip_first >= 0, every_nth >= 1, max_frames >= 0; found "
                         f"{skip_first}, {every_nth}, {max_frames}")
    frames, fps = read_video(path)
    frames = frames[skip_first::every_nth]
    if max_frames:
        frames = frames[:max_frames]
    if four_n_plus_one and len(frames):
        frames = frames[: (len(frames) - 1) // 4 * 4 + 1]
    if not len(frames):
        raise InputError(f"{os.fspath(path)!r}: no frames left after skipping {skip_first} and keeping every "
                         f"{every_nth}th; lower skip_first")
    return frames, fps / every_nth
