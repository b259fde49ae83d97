"""Visual features of a whole video of any length with bounded memory, for the long-audio sampler.

``sample_video_file`` keeps every picked frame (fine for the release's 15 s, capped at 60 s); a
10-minute video would hold thousands of frames. Here the file is decoded once and the picked
frames are encoded as they arrive: SigLIP2 every ``chunk_seconds`` of 8 fps frames, Synchformer
every ``chunk_seconds`` of 25 fps frames in whole segments, keeping only the frames the next
segment still needs (segments overlap by 8 frames). Both encoders treat frames / segments
independently, so the result equals encoding the whole clip at once.
"""
from __future__ import annotations

import os
from typing import List, Tuple, Union

import numpy as np
import torch

from .. import video_io
from ..errors import InputError
from .features.frames import (SEGMENT_FRAMES, SEGMENT_STRIDE, SYNCH_FPS, _check_video_file, _Picker, _refuse_short,
                              sync_segment_count)
from .features.siglip import SIGLIP_FPS, encode_frames
from .features.synchformer import encode_sync_frames, sync_duration_seconds


def encode_long_video(path: Union[str, os.PathLike], siglip, synchformer, *, chunk_seconds: float = 10.0
                      ) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """(SigLIP2 features (1, T8, D), Synchformer tokens (1, 8·S, D), duration in seconds = T25 / 25
    as the release computes it) of the whole video at ``path``. At most ``chunk_seconds`` of picked
    frames per rate (plus 8 frames of segment overlap) are held at once."""
    path = os.fspath(path)
    if not (chunk_seconds >= 1.0):
        raise InputError(f"chunk_seconds must be at least 1 s (a Synchformer segment is 0.64 s); found {chunk_seconds!r}")
    _check_video_file(path)
    chunk8, chunk25 = int(chunk_seconds * SIGLIP_FPS), int(chunk_seconds * SYNCH_FPS)
    visual: List[torch.Tensor] = []
    sync: List[torch.Tensor] = []
    held8: List[np.ndarray] = []
    held25: List[np.ndarray] = []
    total25 = decoded = 0

    def flush_sync() -> None:
        nonlocal held25
        if len(held25) < SEGMENT_FRAMES:
            return
        segments = sync_segment_count(len(held25))
        sync.append(encode_sync_frames(synchformer, np.stack(held25)))
        held25 = held25[segments * SEGMENT_STRIDE:]          # the next segment starts here

    with video_io.decoded_frames(path) as (frames, source_fps, _):
        picker = _Picker(source_fps, (float(SIGLIP_FPS), float(SYNCH_FPS)), float("inf"))
        for index, frame in enumerate(frames):
            decoded += 1
            _, (n8, n25) = picker.offer(index)
            held8.extend([frame] * n8)
            held25.extend([frame] * n25)
            total25 += n25
            if len(held8) >= chunk8:
                visual.append(encode_frames(siglip, np.stack(held8)))
                held8 = []
            if len(held25) >= chunk25 + SEGMENT_STRIDE:
                flush_sync()
    _refuse_short(decoded, f"video {path!r}")
    if held8:
        visual.append(encode_frames(siglip, np.stack(held8)))
    flush_sync()
    if not sync:
        sync_segment_count(total25)   # raises: shorter than one segment
    return torch.cat(visual, dim=1), torch.cat(sync, dim=1), sync_duration_seconds(total25)
