"""Text-to-video: prompt -> text embeddings -> seeded noise -> flow-matching sampler -> VAE decode."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..runtime.progress import ProgressCallback
from ..sampling.noise import latent_shape
from .latent_stages import SamplerOptions, decode_latents, sample_latents

# The released negative prompt (used for true CFG when none is given).
DEFAULT_NEGATIVE_PROMPT = ("Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, "
                           "bad hands, bad teeth, bad eyes, bad limbs, distortion")


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    frames: int = 129
    height: int = 720
    width: int = 1280
    steps: int = 50
    shift: float = 7.0
    embedded_guidance: Optional[float] = 6.0
    cfg_scale: float = 1.0
    negative_prompt: Optional[str] = None
    seed: int = 0
    tile: object = None          # VAE decode tiling: None = automatic, False = off, or TileSettings


def text_to_video(transformer, vae, encoders, request: VideoRequest,
                  callback: Optional[ProgressCallback] = None, encode=None) -> torch.Tensor:
    """Generate one video; returns (1, 3, F, H, W) in [-1, 1] on the CPU. ``encode(prompt,
    template)`` replaces ``encode_prompt(encoders, ...)`` (a parallel run encodes once and broadcasts)."""
    from ..text_encoders import encode_prompt

    encode = encode or (lambda prompt, template: encode_prompt(encoders, prompt, template=template))
    template = "video" if request.frames > 1 else "image"
    positive = encode(request.prompt, template)
    negative = (encode(request.negative_prompt or DEFAULT_NEGATIVE_PROMPT, template)
                if request.cfg_scale > 1 else None)
    empty = torch.zeros(latent_shape(request.frames, request.height, request.width,
                                     channels=transformer.config.in_channels))
    options = SamplerOptions(steps=request.steps, shift=request.shift, embedded_guidance=request.embedded_guidance,
                             cfg_scale=request.cfg_scale, seed=request.seed)
    raw = sample_latents(transformer, positive, empty, options, scaling_factor=vae.scaling_factor,
                         negative=negative, callback=callback)
    return decode_latents(vae, raw, tile=request.tile, callback=callback)
