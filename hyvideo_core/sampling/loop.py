"""The sampler: Euler integration of the flow-matching ODE from noise (σ=1) to data (σ=0).

Embedded guidance (the CFG-distilled model, tech report §5.1) costs one forward per step;
true classifier-free guidance with a negative prompt costs two.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import InputError
from ..runtime.options import StepCacheOptions, step_caching
from ..runtime.progress import ProgressCallback, ProgressEvent, report
from .schedules import flow_sigmas

Negative = Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample(model, noise: torch.Tensor, text_states: torch.Tensor, text_mask: Optional[torch.Tensor],
           text_states_2: torch.Tensor, *, steps: int, shift: float, embedded_guidance: Optional[float] = None,
           cfg_scale: float = 1.0, negative: Optional[Negative] = None,
           callback: Optional[ProgressCallback] = None, latents: Optional[torch.Tensor] = None,
           denoise: float = 1.0, image_latents: Optional[torch.Tensor] = None,
           condition: Optional[str] = None, i2v_stability: bool = True,
           step_cache: Optional[StepCacheOptions] = None) -> torch.Tensor:
    """Denoise ``noise`` (B, C, T, H, W) into scaled latents with ``steps`` Euler steps.

    Args:
        embedded_guidance: guidance scale fed to a guidance-distilled model (×1000 inside).
        cfg_scale: > 1 enables true CFG against ``negative`` = (text_states, text_mask, text_states_2).
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
    image = _ImageCondition.build(model, x, image_latents, condition, i2v_stability)
    if image is not None:
        x = image.initial(x)

    def velocity(sigma: torch.Tensor) -> torch.Tensor:
        if image is None:
            return predict_velocity(model, x, sigma, text_states, text_mask, text_states_2,
                                    embedded_guidance, cfg_scale, negative)
        return predict_velocity(model, image.model_input(x), sigma, text_states, text_mask, text_states_2,
                                embedded_guidance, cfg_scale, negative, token_replace=image.token_replace)

    with step_caching(model, step_cache, steps - first):
        for i in range(first, steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            v = velocity(sigma)
            denoised = x - sigma * v
            x = x + (sigma_next - sigma) * v
            if image is not None:
                x, denoised = image.after_step(x), image.after_step(denoised)
            report(callback, ProgressEvent("sample", i + 1 - first, steps - first, latents=x, denoised=denoised))
    return x


TOKEN_REPLACE = "token_replace"
LATENT_CONCAT = "latent_concat"


def image_condition(model, latent_channels: Optional[int] = None) -> str:
    """How ``model`` takes an image: ``"latent_concat"`` when its input width is 2C+1 (the
    33-channel release), else ``"token_replace"`` (the 16-channel release, T2V-shaped)."""
    cfg = model.config
    declared = getattr(cfg, "condition_type", None)
    if declared in (TOKEN_REPLACE, LATENT_CONCAT):
        return declared
    c_in = cfg.in_channels
    if latent_channels is not None and c_in == 2 * latent_channels + 1:
        return LATENT_CONCAT
    return TOKEN_REPLACE


class _ImageCondition:
    """The I2V bookkeeping of :func:`sample`: initial latents, model input and the clean frame 0."""

    def __init__(self, mode: str, image: torch.Tensor, stability: bool):
        self.mode = mode
        self.image = image            # (B, C, 1, h, w) float32
        self.stability = stability
        self.token_replace = mode == TOKEN_REPLACE
        self._concat: Optional[torch.Tensor] = None

    @classmethod
    def build(cls, model, x: torch.Tensor, image_latents: Optional[torch.Tensor], condition: Optional[str],
              stability: bool) -> Optional["_ImageCondition"]:
        cfg = model.config
        b, c, t, h, w = x.shape
        if image_latents is None:
            if getattr(cfg, "condition_type", None) == LATENT_CONCAT or cfg.in_channels == 2 * c + 1:
                raise InputError(
                    f"this is an image-to-video model (latent_concat, {cfg.in_channels} input channels = 2·{c}+1) "
                    f"but no image was given: pass image_latents= (an encoded image), or use a text-to-video model")
            return None
        mode = condition or image_condition(model, c)
        if mode not in (TOKEN_REPLACE, LATENT_CONCAT):
            raise InputError(f"condition must be {TOKEN_REPLACE!r} or {LATENT_CONCAT!r}; found {mode!r}")
        want = 2 * c + 1 if mode == LATENT_CONCAT else c
        if cfg.in_channels != want:
            hint = ("a 16-channel (token_replace / text-to-video) model" if mode == LATENT_CONCAT
                    else "a 33-channel model needs condition='latent_concat'")
            raise InputError(f"condition {mode!r} with {c}-channel latents needs a model with {want} input channels; "
                             f"this model ({getattr(model, 'variant', '?')}) has {cfg.in_channels} ({hint})")
        img = image_latents
        if img.dim() == 4:
            img = img.unsqueeze(2)
        if img.dim() != 5 or img.shape[1] != c or img.shape[3:] != x.shape[3:] or img.shape[0] not in (1, b):
            raise InputError(f"image_latents must be (B or 1, {c}, 1, {h}, {w}) to match latents {tuple(x.shape)}; "
                             f"found {tuple(image_latents.shape)}. Encode the image at the video's size.")
        img = img[:, :, :1].float().to(x.device).expand(b, -1, -1, -1, -1)
        return cls(mode, img, stability)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        if self.stability:   # official --i2v-stability; diffusers: latents * t + image * (1 - t), t = 0.999
            keep = torch.tensor(0.999, device=x.device)
            x = x * keep + self.image * (1 - keep)
        if self.token_replace:
            x = torch.cat([self.image, x[:, :, 1:]], dim=2)
        return x

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_replace:
            return x
        if self._concat is None:
            cond = torch.zeros_like(x)
            cond[:, :, :1] = self.image
            mask = torch.zeros_like(x[:, :1])
            mask[:, :, 0] = 1
            self._concat = torch.cat([cond, mask], dim=1)
        return torch.cat([x, self._concat], dim=1)

    def after_step(self, x: torch.Tensor) -> torch.Tensor:
        """token_replace: only frames 1.. move; frame 0 stays the clean image latent."""
        if self.token_replace:
            return torch.cat([self.image, x[:, :, 1:]], dim=2)
        return x


def predict_velocity(model, x: torch.Tensor, sigma: torch.Tensor, text_states, text_mask, text_states_2,
                     embedded_guidance: Optional[float], cfg_scale: float,
                     negative: Optional[Negative], *, token_replace: bool = False) -> torch.Tensor:
    """One guided velocity in float32: embedded guidance in the forward, true CFG around it.

    ``x`` is the full model input (for latent_concat: latents, image latent and mask already
    concatenated); ``token_replace`` is forwarded to the model (first frame modulated at t = 0)."""
    b = x.shape[0]
    dtype = getattr(model, "compute_dtype", torch.float32)
    t = (sigma * 1000).expand(b).float()
    guidance = None
    if embedded_guidance is not None and model.config.guidance_embed:
        # In the model's dtype, as released: bf16(6.0)·1000 rounds to 6016.
        guidance = torch.full((b,), float(embedded_guidance), dtype=dtype, device=x.device) * 1000
    model_in = x.to(dtype)
    extra = {"token_replace": True} if token_replace else {}
    v = model(model_in, t, text_states, text_mask, text_states_2, guidance, **extra).float()
    if cfg_scale > 1:
        neg_states, neg_mask, neg_pooled = negative
        v_neg = model(model_in, t, neg_states, neg_mask, neg_pooled, guidance, **extra).float()
        v = v_neg + cfg_scale * (v - v_neg)
    return v
