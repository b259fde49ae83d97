"""Frames for the Foley feature models at their own rates: 8 fps for SigLIP2, 25 fps for Synchformer.

The release (shared/spec/official_apps.md §C.2, ``get_frames_av``) resamples by time: output
frame k (at k / fps seconds) is the first source frame whose time is at or after k / fps, so a
frame is repeated when the target rate is higher and skipped when it is lower. Frames later than
``max_seconds`` (15 s in the release) are not used. Source frame i is taken to lie at i / source_fps
(imageio-ffmpeg decodes to a constant rate).

Memory stays bounded for any input length: a video file is decoded frame by frame and only the
picked frames are kept; decoding stops at ``max_seconds``. So a 10-minute file costs what its
first 15 seconds cost.

A single image is refused, not treated as a still clip: the Foley model times sounds from motion
(Synchformer needs at least 16 frames at 25 fps) and its duration comes from the frame count, so
one frame gives 0.04 s of audio. Repeat the image into a clip of the wanted length to make one.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from ...errors import InputError
from ... import video_io

MAX_SECONDS = 15.0           # the release's end_sec
SYNCH_FPS = 25               # Synchformer's frame rate
SEGMENT_FRAMES = 16          # frames per Synchformer segment (0.64 s at 25 fps)
SEGMENT_STRIDE = 8           # frames between segment starts: segments overlap by half
MAX_SECONDS_LIMIT = 60.0     # what a caller may ask for; keeps the kept frames bounded
_TIME_SLACK = 1e-9           # k / fps and i / source_fps are equal at whole seconds; float error must not split them


def _check_rates(source_fps: float, target_fps: Sequence[float], max_seconds: float) -> None:
    if not (isinstance(source_fps, (int, float)) and math.isfinite(source_fps) and source_fps > 0):
        raise InputError(f"the source frame rate must be a positive number of frames per second; found {source_fps!r}")
    for fps in target_fps:
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"target frame rates must be positive; found {fps!r}")
    if not (0 < max_seconds <= MAX_SECONDS_LIMIT):
        raise InputError(f"max_seconds must be in (0, {MAX_SECONDS_LIMIT:g}] (the release uses {MAX_SECONDS:g}); "
                         f"found {max_seconds!r}")


def _refuse_short(n_frames: int, what: str) -> None:
    if n_frames == 0:
        raise InputError(f"{what} has no frames; Foley needs a video (at least 2 frames, and 0.64 s for its "
                         f"sync features)")
    if n_frames == 1:
        raise InputError(f"{what} is a single image (1 frame); Foley needs a video. To make sound for a still, "
                         f"repeat the image into a clip of the wanted duration (e.g. RepeatImageBatch) and give "
                         f"its frame rate")


class _Picker:
    """Streams source frames in order and keeps, per target rate, the frames the release picks."""

    def __init__(self, source_fps: float, target_fps: Sequence[float], max_seconds: float):
        self.source_fps, self.targets, self.max_seconds = float(source_fps), list(target_fps), max_seconds
        self.next_tick = [0] * len(self.targets)
        self.kept: List[List[int]] = [[] for _ in self.targets]

    def offer(self, index: int) -> Tuple[bool, List[int]]:
        """(past the end, how many times frame ``index`` is used at each target rate)."""
        time = index / self.source_fps
        if time > self.max_seconds + _TIME_SLACK:
            return True, []
        counts = []
        for j, fps in enumerate(self.targets):
            n = 0
            while self.next_tick[j] / fps <= time + _TIME_SLACK:
                self.next_tick[j] += 1
                n += 1
            counts.append(n)
        return False, counts


def sync_segment_count(n_frames: int) -> int:
    """How many 16-frame segments (stride 8) the release cuts from ``n_frames`` frames at 25 fps:
    (T - 16) // 8 + 1; frames after the last whole segment are not encoded (they still count in
    the audio duration, T / 25 s)."""
    if n_frames < SEGMENT_FRAMES:
        raise InputError(f"Synchformer needs at least {SEGMENT_FRAMES} frames at {SYNCH_FPS} fps "
                         f"({SEGMENT_FRAMES / SYNCH_FPS:.2f} s of video); found {n_frames}. Give a longer clip "
                         f"(sample it with target fps {SYNCH_FPS})")
    return (n_frames - SEGMENT_FRAMES) // SEGMENT_STRIDE + 1


def pick_indices(n_frames: int, source_fps: float, target_fps: float,
                 max_seconds: float = MAX_SECONDS) -> List[int]:
    """Source frame index for each output frame at ``target_fps`` (the release's rule, above)."""
    _check_rates(source_fps, [target_fps], max_seconds)
    picker = _Picker(source_fps, [target_fps], max_seconds)
    out: List[int] = []
    for i in range(n_frames):
        done, counts = picker.offer(i)
        if done:
            break
        out.extend([i] * counts[0])
    return out


def sample_image_batch(images: Union[torch.Tensor, np.ndarray], source_fps: float, target_fps: float,
                       max_seconds: float = MAX_SECONDS) -> Union[torch.Tensor, np.ndarray]:
    """Frames of an (N, H, W, 3) image batch (e.g. a ComfyUI IMAGE) at ``target_fps``, same type and
    dtype; the batch plays at ``source_fps``."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected an image batch (N, H, W, 3); found shape {tuple(images.shape)}")
    _refuse_short(int(images.shape[0]), "the image batch")
    index = pick_indices(int(images.shape[0]), source_fps, target_fps, max_seconds)
    if isinstance(images, torch.Tensor):
        return images[torch.tensor(index, dtype=torch.long, device=images.device)]
    return images[np.asarray(index, dtype=np.int64)]


def _check_video_file(path: str) -> None:
    if not os.path.isfile(path):
        raise InputError(f"video file not found: {path!r}")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path!r} is empty (0 bytes); give a video file (e.g. H.264 .mp4)")


def sample_video_file(path: Union[str, os.PathLike], target_fps: Sequence[float] = (8.0, 25.0),
                      max_seconds: float = MAX_SECONDS) -> Tuple[Dict[float, np.ndarray], float]:
    """Decode ``path`` once and return {target fps: (T, H, W, 3) uint8 frames} and the source frame
    rate. Only picked frames are held; decoding stops past ``max_seconds``."""
    path = os.fspath(path)
    targets = [float(f) for f in target_fps]
    _check_video_file(path)
    kept: List[List[np.ndarray]] = [[] for _ in targets]
    decoded = 0
    with video_io.decoded_frames(path) as (frames, source_fps, _):
        _check_rates(source_fps, targets, max_seconds)
        picker = _Picker(source_fps, targets, max_seconds)
        for index, frame in enumerate(frames):
            decoded += 1
            done, counts = picker.offer(index)
            if done:
                break
            for j, n in enumerate(counts):
                # the same array object is repeated, so a repeated frame costs no extra memory until stacked
                kept[j].extend([frame] * n)
    _refuse_short(decoded, f"video {path!r}")
    return {fps: np.stack(frames_at) for fps, frames_at in zip(targets, kept)}, source_fps
