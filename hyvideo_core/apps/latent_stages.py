"""The stages both recipes (text-to-video, image-to-video) and the ComfyUI sampler node chain:
raw VAE-space latents through the flow-matching sampler, and raw latents through the VAE decoder."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..config import SamplerDefaults
from ..errors import InputError
from ..runtime.options import StepCacheOptions
from ..runtime.progress import ProgressCallback
from ..sampling.loop import sample
from ..sampling.noise import make_noise


@dataclass(frozen=True)
class SamplerOptions(SamplerDefaults):
    """A variant's sampler defaults plus what changes per run."""
    seed: int = 0
    denoise: float = 1.0
    step_cache: Optional[StepCacheOptions] = None


def sample_latents(model, positive, latents: torch.Tensor, options: SamplerOptions, *, scaling_factor: float,
                   negative=None, callback: Optional[ProgressCallback] = None,
                   image_latents: Optional[torch.Tensor] = None, condition: Optional[str] = None,
                   i2v_stability: bool = True) -> torch.Tensor:
    """Raw VAE-space latents in and out (ComfyUI's LATENT convention), scaled inside.

    ``latents`` gives the shape (and, with ``denoise`` < 1, the video to start from);
    ``positive`` / ``negative`` are PromptEmbeds, broadcast over the latent batch; ``image_latents``
    (raw) and ``condition`` make it image-to-video (see :func:`hyvideo_core.sampling.loop.sample`)."""
    device = next(model.parameters()).device
    b, c = latents.shape[:2]
    expected = (model.config.in_channels - 1) // 2 if condition == "latent_concat" else model.config.in_channels
    if c != expected:
        raise InputError(f"latents have {c} channels but the model ({model.variant}) expects "
                         f"{expected}; make the empty latent with this model's VAE")
    noise = make_noise(latents.shape, options.seed, device=device)
    start = latents.to(device).float() * scaling_factor if options.denoise < 1 else None
    out = sample(model, noise, *batch_embeds(positive, b, device), steps=options.steps, shift=options.shift,
                 embedded_guidance=options.embedded_guidance, cfg_scale=options.cfg_scale,
                 negative=batch_embeds(negative, b, device) if negative is not None and options.cfg_scale > 1 else None,
                 callback=callback, latents=start, denoise=options.denoise, step_cache=options.step_cache,
                 image_latents=None if image_latents is None else image_latents.to(device).float() * scaling_factor,
                 condition=condition, i2v_stability=i2v_stability)
    return out / scaling_factor


def batch_embeds(embeds, batch: int, device):
    """(text_states, text_mask, text_states_2) of PromptEmbeds on ``device``, one prompt broadcast to ``batch``."""
    e = embeds.to(device)
    if e.text_states.shape[0] == batch:
        return e.text_states, e.text_mask, e.text_states_2
    if e.text_states.shape[0] != 1:
        raise InputError(f"{e.text_states.shape[0]} prompts for a batch of {batch} latents; expected 1 or {batch}")
    return e.text_states.expand(batch, -1, -1), e.text_mask.expand(batch, -1), e.text_states_2.expand(batch, -1)


def decode_latents(vae, raw_latents: torch.Tensor, *, tile=None,
                   callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """VAE-decode raw latents on the VAE's device; returns float32 video on the CPU."""
    with torch.no_grad():
        return vae.decode(raw_latents.to(vae.device, vae.dtype), tile=tile, callback=callback).float().cpu()
