"""The sampler: Euler integration of the flow-matching ODE from noise (σ=1) to data (σ=0).

Embedded guidance (the CFG-distilled model, tech report §5.1) costs one forward per step;
true classifier-free guidance with a negative prompt costs two.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import InputError
from ..runtime.progress import ProgressCallback, ProgressEvent, report
from .schedules import flow_sigmas

Negative = Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample(model, noise: torch.Tensor, text_states: torch.Tensor, text_mask: Optional[torch.Tensor],
           text_states_2: torch.Tensor, *, steps: int, shift: float, embedded_guidance: Optional[float] = None,
           cfg_scale: float = 1.0, negative: Optional[Negative] = None,
           callback: Optional[ProgressCallback] = None, latents: Optional[torch.Tensor] = None,
           denoise: float = 1.0) -> torch.Tensor:
    """Denoise ``noise`` (B, C, T, H, W) into scaled latents with ``steps`` Euler steps.

    Args:
        embedded_guidance: guidance scale fed to a guidance-distilled model (×1000 inside).
        cfg_scale: > 1 enables true CFG against ``negative`` = (text_states, text_mask, text_states_2).
        callback: called after every step with a :class:`ProgressEvent`; raise
            :class:`~hyvideo_core.errors.Interrupted` from it to stop.
        latents, denoise: video-to-video — start from ``latents`` noised to the schedule's
            σ at ``denoise`` (1.0 = pure noise, ignore ``latents``).
    Returns:
        float32 latents in the model's (scaled) latent space.
    """
    if cfg_scale > 1 and negative is None:
        raise InputError(f"cfg_scale {cfg_scale} > 1 needs negative=(text_states, text_mask, text_states_2)")
    if not 0.0 < denoise <= 1.0:
        raise InputError(f"denoise must be in (0, 1], got {denoise}")
    sigmas = flow_sigmas(steps, shift).to(noise.device)
    first = steps - max(1, round(steps * denoise)) if latents is not None and denoise < 1.0 else 0
    x = noise.float()
    if first:
        x = (1 - sigmas[first]) * latents.float() + sigmas[first] * x

    def velocity(sigma: torch.Tensor) -> torch.Tensor:
        return predict_velocity(model, x, sigma, text_states, text_mask, text_states_2,
                                embedded_guidance, cfg_scale, negative)

    for i in range(first, steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        v = velocity(sigma)
        denoised = x - sigma * v
        x = x + (sigma_next - sigma) * v
        report(callback, ProgressEvent("sample", i + 1 - first, steps - first, latents=x, denoised=denoised))
    return x


def predict_velocity(model, x: torch.Tensor, sigma: torch.Tensor, text_states, text_mask, text_states_2,
                     embedded_guidance: Optional[float], cfg_scale: float,
                     negative: Optional[Negative]) -> torch.Tensor:
    """One guided velocity in float32: embedded guidance in the forward, true CFG around it."""
    b = x.shape[0]
    dtype = getattr(model, "compute_dtype", torch.float32)
    t = (sigma * 1000).expand(b).float()
    guidance = None
    if embedded_guidance is not None and model.config.guidance_embed:
        # In the model's dtype, as released: bf16(6.0)·1000 rounds to 6016.
        guidance = torch.full((b,), float(embedded_guidance), dtype=dtype, device=x.device) * 1000
    model_in = x.to(dtype)
    v = model(model_in, t, text_states, text_mask, text_states_2, guidance).float()
    if cfg_scale > 1:
        neg_states, neg_mask, neg_pooled = negative
        v_neg = model(model_in, t, neg_states, neg_mask, neg_pooled, guidance).float()
        v = v_neg + cfg_scale * (v - v_neg)
    return v
