"""HunyuanVideo engine: plain PyTorch, never imports ComfyUI.

Public API (shared/DESIGN.md §2.1, documented in the README)::

    from hyvideo_core import load_transformer, load_vae, sample
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it; imported on first use so `import hyvideo_core` stays cheap
# (ComfyUI start-up time) and free of side effects.
_EXPORTS = {
    "load_transformer": "hyvideo_core.checkpoints.load",
    "save_transformer": "hyvideo_core.checkpoints.load",
    "load_vae": "hyvideo_core.vae.load",
    "sample": "hyvideo_core.sampling.loop",
    "make_noise": "hyvideo_core.sampling.noise",
    "flow_sigmas": "hyvideo_core.sampling.schedules",
    "latent_shape": "hyvideo_core.sampling.noise",
    "get_variant": "hyvideo_core.variants",
    "VARIANTS": "hyvideo_core.variants",
    "available_backends": "hyvideo_core.attention",
    "HyVideoError": "hyvideo_core.errors",
    "Interrupted": "hyvideo_core.errors",
    "ProgressEvent": "hyvideo_core.runtime.progress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hyvideo_core' has no attribute {name!r}")
