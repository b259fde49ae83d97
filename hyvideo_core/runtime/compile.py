"""Regional ``torch.compile``: compile each transformer block in place (``nn.Module.compile``),
so the 60 identical blocks share one compiled graph, compile time stays small, and state-dict
keys are unchanged. Apply it after quantisation passes; block swap hooks stay outside the graph.
"""
from __future__ import annotations

import importlib.util
import logging
import shutil
from typing import Optional

import torch

from ..model.block_lists import all_blocks

log = logging.getLogger(__name__)


def compile_unavailable(device: torch.device | str = "cpu") -> Optional[str]:
    """None if torch.compile's inductor backend can build kernels for ``device``, else why not."""
    device = torch.device(device)
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "inductor needs a C++ compiler (g++/clang++) for CPU kernels"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "inductor needs triton for CUDA kernels (pip install triton)"
    return None


def compile_blocks(model, mode: Optional[str] = None, dynamic: Optional[bool] = None,
                   backend: str = "inductor") -> int:
    """Compile every block of ``model``'s declared block stacks in place; returns how many."""
    n = 0
    for block in all_blocks(model):
        block.compile(backend=backend, mode=mode, dynamic=dynamic)
        n += 1
    log.info("torch.compile (%s, mode=%s) applied to %d blocks", backend, mode, n)
    return n
