"""The HunyuanVideo sampler: the shifted flow-matching schedule, integrated with Euler
(:mod:`.euler`) from noise (σ=1) to data (σ=0).

Embedded guidance (the CFG-distilled model, tech report §5.1) costs one forward per step;
true classifier-free guidance with a negative prompt costs two. What the model is fed is built
from condition objects (:mod:`.conditions`): text branches, a guidance rule, latent conditions
such as image-to-video's first frame.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch

from ..config import LATENT_CONCAT, TOKEN_REPLACE
from ..errors import InputError
from ..runtime.options import StepCacheOptions, step_caching
from ..runtime.progress import ProgressCallback
from .conditions import (Branch, Conditions, FirstFrameCondition, LatentCondition, TextCondition, as_branch,
                         guidance_for, image_condition, model_call)
from .euler import euler
from .schedules import flow_sigmas

Negative = Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]

__all__ = ("sample", "image_condition", "TOKEN_REPLACE", "LATENT_CONCAT", "Negative")


@torch.no_grad()
def sample(model, noise: torch.Tensor, text_states: torch.Tensor, text_mask: Optional[torch.Tensor],
           text_states_2: torch.Tensor, *, steps: int, shift: float, embedded_guidance: Optional[float] = None,
           cfg_scale: float = 1.0, negative: Optional[Negative] = None,
           callback: Optional[ProgressCallback] = None, latents: Optional[torch.Tensor] = None,
           denoise: float = 1.0, image_latents: Optional[torch.Tensor] = None,
           condition: Optional[str] = None, i2v_stability: bool = True,
           step_cache: Optional[StepCacheOptions] = None, extras: Optional[Mapping[str, Any]] = None,
           conditions: Sequence[LatentCondition] = (), guidance=None) -> torch.Tensor:
    """Denoise ``noise`` (B, C, T, H, W) into scaled latents with ``steps`` Euler steps.

    Args:
        embedded_guidance: guidance scale fed to a guidance-distilled model (×1000 inside).
        cfg_scale: > 1 enables true CFG against ``negative`` = (text_states, text_mask, text_states_2)
            (or a :class:`~.conditions.Branch` whose extras differ from the positive's).
        callback: called after every step with a :class:`ProgressEvent`; raise
            :class:`~hyvideo_core.errors.Interrupted` from it to stop.
        latents, denoise: video-to-video — start from ``latents`` noised to the schedule's
            σ at ``denoise`` (1.0 = pure noise, ignore ``latents``).
        image_latents: image-to-video — the clean image latent (B or 1, C, 1, h, w), scaled like
            ``noise``. ``condition`` is chosen from the model when None (:func:`image_condition`):
            ``"token_replace"`` keeps latent frame 0 equal to the image latent (never stepped; its
            tokens are modulated at t = 0), ``"latent_concat"`` feeds
            ``cat([x, image latent at frame 0 + zeros, mask], dim=1)`` to a 2C+1-channel model.
        i2v_stability: start from 0.999·noise + 0.001·image latent (over all frames), the
            official ``--i2v-stability``; diffusers' I2V pipeline always does this.
        step_cache: TeaCache / First-Block-Cache installed for this run only
            (:class:`~hyvideo_core.runtime.options.StepCacheOptions`).
        extras: named inputs for the model's extensions, given to every call.
        conditions: more latent conditions (:class:`~.conditions.LatentCondition`), after the image's.
        guidance: a guidance object (``.velocity(call, x, sigma, step)``) replacing the one built
            from ``cfg_scale`` / ``negative`` (e.g. an application's schedule of scales), or a
            factory ``f(positive, negative, cfg_scale)`` returning one (``ParallelRun.guidance``).
    Returns:
        float32 latents in the model's (scaled) latent space.
    """
    if not isinstance(noise, torch.Tensor) or noise.dim() != 5 or min(noise.shape) < 1:
        found = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise InputError(f"noise must be a non-empty (B, C, T, H, W) tensor, found {found}; make it with "
                         f"make_noise(latent_shape(...), seed)")
    if latents is not None and tuple(latents.shape) != tuple(noise.shape):
        raise InputError(f"latents {tuple(latents.shape)} must have the noise's shape {tuple(noise.shape)} "
                         f"(same batch, frames and size)")
    for name, value in (("cfg_scale", cfg_scale), ("embedded_guidance", embedded_guidance)):
        if value is not None and not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value}")
    if not 0.0 < denoise <= 1.0:
        raise InputError(f"denoise must be in (0, 1], got {denoise}")
    positive = Branch(TextCondition(text_states, text_mask, text_states_2), dict(extras or {}))
    guidance = guidance or getattr(model, "default_guidance", None)   # set by passes such as parallelize
    if guidance is None:
        guidance = guidance_for(positive, as_branch(negative), cfg_scale)
    elif not hasattr(guidance, "velocity"):     # a factory, e.g. a parallel run's CFG-parallel rule
        guidance = guidance(positive, as_branch(negative), cfg_scale)
    sigmas = flow_sigmas(steps, shift).to(noise.device)
    first = steps - max(1, round(steps * denoise)) if latents is not None and denoise < 1.0 else 0
    x = noise.float()
    if first:
        x = (1 - sigmas[first]) * latents.float() + sigmas[first] * x
    image = FirstFrameCondition.build(model, x, image_latents, condition, i2v_stability)
    latent_conditions = Conditions(([image] if image is not None else []) + list(conditions))
    x = latent_conditions.initial(x)
    call = model_call(model, embedded_guidance, latent_conditions.model_input, latent_conditions.extras)

    with step_caching(model, step_cache, steps - first):
        return euler(x, sigmas, lambda x, sigma, i: guidance.velocity(call, x, sigma, i), first=first,
                     after_step=latent_conditions.after_step if latent_conditions.parts else None,
                     callback=callback)

