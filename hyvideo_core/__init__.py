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
    "load_transformer": ".checkpoints.load",
    "save_transformer": ".checkpoints.load",
    "load_vae": ".vae.load",
    "load_foley": ".v2a.load",
    "sample": ".sampling.loop",
    "make_noise": ".sampling.noise",
    "flow_sigmas": ".sampling.schedules",
    "latent_shape": ".sampling.noise",
    "load_text_encoders": ".text_encoders.api",
    "encode_prompt": ".text_encoders.api",
    "PromptEmbeds": ".text_encoders.api",
    "rewrite_prompt": ".prompt_rewrite.rewrite",
    "text_to_video": ".apps.t2v",
    "VideoRequest": ".apps.t2v",
    "load_avatar_transformer": ".apps.avatar",
    "image_to_video": ".apps.i2v",
    "I2VRequest": ".apps.i2v",
    "load_image_encoder": ".text_encoders.llava_image",
    "encode_image_prompt": ".text_encoders.llava_image",
    "get_variant": ".variants",
    "VARIANTS": ".variants",
    "available_backends": ".attention",
    "HyVideoError": ".errors",
    "Interrupted": ".errors",
    "ProgressEvent": ".runtime.progress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'hyvideo_core' has no attribute {name!r}")
