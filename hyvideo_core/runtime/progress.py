"""Progress reporting and interruption without importing ComfyUI.

Long-running engine calls (sampling, tiled decode) call ``callback(event)`` after every unit
of work. A callback reports progress, can show a preview from ``event.latents``, and stops
the work by raising :class:`hyvideo_core.errors.Interrupted`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch


@dataclass(frozen=True)
class ProgressEvent:
    stage: str                      # "sample" or "decode" / "encode"
    step: int                       # 1-based index of the unit just finished
    total: int
    latents: Optional[torch.Tensor] = None   # current latents while sampling (preview source)
    denoised: Optional[torch.Tensor] = None  # x0 estimate while sampling


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def report(callback: Optional[ProgressCallback], event: ProgressEvent) -> None:
    if callback is not None:
        callback(event)
