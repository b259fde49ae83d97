"""The loader's entry to weights that stay quantised in memory (GGUF today).

A source lists its packed tensors itself (``TensorSource.packed_tensors``, empty for ordinary
files); ``attach_packed_weights(model, packed, device)`` installs them with the GGUF class-swap
pass. Kept separate so that loading a plain file never imports the GGUF machinery.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn


def attach_packed_weights(model: nn.Module, packed: Dict[str, object], device: torch.device | str) -> None:
    if packed:
        from .gguf.layers import attach_packed_weights as attach

        attach(model, packed, device)
