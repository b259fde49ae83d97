"""Text-to-video: prompt -> text embeddings -> seeded noise -> flow-matching sampler -> VAE decode."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..runtime.progress import ProgressCallback
from ..sampling.loop import sample
from ..sampling.noise import latent_shape, make_noise

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
                  callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Generate one video; returns (1, 3, F, H, W) in [-1, 1] on the CPU."""
    from ..text_encoders import encode_prompt

    shape = latent_shape(request.frames, request.height, request.width, channels=transformer.config.in_channels)
    template = "video" if request.frames > 1 else "image"
    device = next(transformer.parameters()).device
    positive = encode_prompt(encoders, request.prompt, template=template).to(device)
    negative = None
    if request.cfg_scale > 1:
        neg = encode_prompt(encoders, request.negative_prompt or DEFAULT_NEGATIVE_PROMPT, template=template).to(device)
        negative = (neg.text_states, neg.text_mask, neg.text_states_2)
    noise = make_noise(shape, request.seed, device=device)
    latents = sample(transformer, noise, positive.text_states, positive.text_mask, positive.text_states_2,
                     steps=request.steps, shift=request.shift, embedded_guidance=request.embedded_guidance,
                     cfg_scale=request.cfg_scale, negative=negative, callback=callback)
    vae_device = next(vae.parameters()).device
    with torch.no_grad():
        video = vae.decode((latents / vae.scaling_factor).to(vae_device, vae.dtype), tile=request.tile, callback=callback)
    return video.float().cpu()
