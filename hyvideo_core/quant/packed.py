"""The loader's entry to weights that stay quantised in memory (GGUF today).

``packed_tensors(source)`` lists a source's packed tensors (empty for ordinary files), and
``attach_packed_weights(model, packed, device)`` installs them with the GGUF class-swap pass.
Kept separate so that loading a plain file never imports the GGUF machinery.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn


def packed_tensors(source) -> Dict[str, object]:
    from ..checkpoints.layouts import RenamedView

    base = source
    while isinstance(base, RenamedView):
        base = base.source
    if type(base).__name__ != "GGUFSource":
        return {}
    from .gguf.source import packed_tensors as gguf_packed

    return gguf_packed(source)


def attach_packed_weights(model: nn.Module, packed: Dict[str, object], device: torch.device | str) -> None:
    if packed:
        from .gguf.layers import attach_packed_weights as attach

        attach(model, packed, device)
