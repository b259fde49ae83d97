"""What the sampler feeds the model, as objects it calls instead of branches inside it.

* :class:`TextCondition` — one prompt's embeddings (LLM states, mask, pooled CLIP vector).
* :class:`Branch` — everything one model call gets besides the latents and the timestep: a
  text condition and named extra inputs for the model's extensions (audio features, …).
* Guidance — how one velocity is made from model calls: :class:`SingleBranch` (one call; the
  CFG-distilled model embeds its guidance), :class:`ClassifierFreeGuidance` (two calls,
  v = v_neg + s·(v_pos − v_neg)); an application may bring its own (e.g. a schedule of scales).
* Latent conditions — objects that shape the latents the sampler integrates:
  :meth:`initial` once, :meth:`model_input` and :meth:`extras` every call, :meth:`after_step`
  after every Euler step. :class:`FirstFrameCondition` is image-to-video's clean first frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..config import LATENT_CONCAT, TOKEN_REPLACE
from ..errors import InputError


@dataclass(frozen=True)
class TextCondition:
    states: torch.Tensor                 # (B, L, D_text)
    mask: Optional[torch.Tensor]         # (B, L), 1 = real token
    pooled: torch.Tensor                 # (B, D_pooled)

    @classmethod
    def of(cls, value: Union["TextCondition", Sequence]) -> "TextCondition":
        """From a TextCondition, a text encoder's PromptEmbeds (``text_states``, ``text_mask``, ``text_states_2``)
        or a (text_states, text_mask, text_states_2) triple."""
        if isinstance(value, TextCondition):
            return value
        if hasattr(value, "text_states"):
            return cls(value.text_states, value.text_mask, value.text_states_2)
        try:
            states, mask, pooled = value
        except (TypeError, ValueError):
            raise InputError("a text condition must be (text_states, text_mask, text_states_2) or a "
                             f"TextCondition; found {type(value).__name__}") from None
        return cls(states, mask, pooled)

    def to(self, device) -> "TextCondition":
        return TextCondition(self.states.to(device), None if self.mask is None else self.mask.to(device),
                             self.pooled.to(device))


@dataclass(frozen=True)
class Branch:
    """The inputs of one model call besides latents and timestep."""
    text: TextCondition
    extras: Mapping[str, Any] = field(default_factory=dict)


# One model call: (x, sigma, branch) -> float32 velocity.
ModelCall = Callable[[torch.Tensor, torch.Tensor, Branch], torch.Tensor]


class SingleBranch:
    """One model call per step (no guidance, or guidance embedded in the model)."""

    def __init__(self, positive: Branch):
        self.positive = positive

    def velocity(self, call: ModelCall, x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
        return call(x, sigma, self.positive)


class ClassifierFreeGuidance:
    """True CFG: v = v_neg + scale·(v_pos − v_neg); the negative may differ from the positive in
    any input (text, extras), not only the prompt."""

    def __init__(self, positive: Branch, negative: Branch, scale: float):
        self.positive, self.negative, self.scale = positive, negative, float(scale)

    def velocity(self, call: ModelCall, x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
        v = call(x, sigma, self.positive)
        v_neg = call(x, sigma, self.negative)
        return v_neg + self.scale * (v - v_neg)


def model_call(model, embedded_guidance: Optional[float], model_input: Callable[[torch.Tensor], torch.Tensor],
               extras: Callable[[], Mapping[str, Any]]) -> ModelCall:
    """The HunyuanVideo transformer as a :data:`ModelCall`: t = 1000σ, embedded guidance × 1000
    in the model's dtype (as released: bf16(6.0)·1000 rounds to 6016), float32 velocity out."""
    dtype = getattr(model, "compute_dtype", torch.float32)

    def call(x: torch.Tensor, sigma: torch.Tensor, branch: Branch) -> torch.Tensor:
        b = x.shape[0]
        t = (sigma * 1000).expand(b).float()
        guidance = None
        if embedded_guidance is not None and model.config.guidance_embed:
            guidance = torch.full((b,), float(embedded_guidance), dtype=dtype, device=x.device) * 1000
        named = {**extras(), **branch.extras}
        text = branch.text
        return model(model_input(x).to(dtype), t, text.states, text.mask, text.pooled, guidance,
                     **({"extras": named} if named else {})).float()
    return call


class LatentCondition:
    """Base of the latent conditions: changes nothing."""

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extras(self) -> Dict[str, Any]:
        return {}

    def after_step(self, x: torch.Tensor) -> torch.Tensor:
        return x


def image_condition(model, latent_channels: Optional[int] = None) -> str:
    """How ``model`` takes an image: ``"latent_concat"`` when its input width is 2C+1 (the
    33-channel release), else ``"token_replace"`` (the 16-channel release, T2V-shaped)."""
    cfg = model.config
    declared = getattr(cfg, "condition_type", None)
    if declared in (TOKEN_REPLACE, LATENT_CONCAT):
        return declared
    if latent_channels is not None and cfg.in_channels == 2 * latent_channels + 1:
        return LATENT_CONCAT
    return TOKEN_REPLACE


class FirstFrameCondition(LatentCondition):
    """Image-to-video: the clean image latent is the first latent frame.

    ``token_replace``: latent frame 0 stays the image latent (never stepped) and the model's
    token-replacement extension modulates its tokens at t = 0. ``latent_concat``: the model input
    is ``cat([x, image latent at frame 0 + zeros, mask], dim=1)`` for a 2C+1-channel model.
    ``stability``: start from 0.999·noise + 0.001·image latent (official ``--i2v-stability``)."""

    def __init__(self, mode: str, image: torch.Tensor, stability: bool):
        self.mode = mode
        self.image = image            # (B, C, 1, h, w) float32
        self.stability = stability
        self._concat: Optional[torch.Tensor] = None

    @classmethod
    def build(cls, model, x: torch.Tensor, image_latents: Optional[torch.Tensor], condition: Optional[str],
              stability: bool) -> Optional["FirstFrameCondition"]:
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

    @property
    def token_replace(self) -> bool:
        return self.mode == TOKEN_REPLACE

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

    def extras(self) -> Dict[str, Any]:
        return {"token_replace": True} if self.token_replace else {}

    def after_step(self, x: torch.Tensor) -> torch.Tensor:
        """token_replace: only frames 1.. move; frame 0 stays the clean image latent."""
        if self.token_replace:
            return torch.cat([self.image, x[:, :, 1:]], dim=2)
        return x


class Conditions(LatentCondition):
    """Several latent conditions applied in order (model inputs and extras composed)."""

    def __init__(self, parts: Sequence[LatentCondition]):
        self.parts = list(parts)

    def initial(self, x):
        for p in self.parts:
            x = p.initial(x)
        return x

    def model_input(self, x):
        for p in self.parts:
            x = p.model_input(x)
        return x

    def extras(self):
        out: Dict[str, Any] = {}
        for p in self.parts:
            out.update(p.extras())
        return out

    def after_step(self, x):
        for p in self.parts:
            x = p.after_step(x)
        return x


def as_branch(value: Union[Branch, TextCondition, Sequence, None]) -> Optional[Branch]:
    if value is None or isinstance(value, Branch):
        return value
    return Branch(TextCondition.of(value))


def guidance_for(positive: Branch, negative: Optional[Branch], cfg_scale: float):
    if cfg_scale > 1:
        if negative is None:
            raise InputError(f"cfg_scale {cfg_scale} > 1 needs negative=(text_states, text_mask, text_states_2)")
        return ClassifierFreeGuidance(positive, negative, cfg_scale)
    return SingleBranch(positive)


__all__: Tuple[str, ...] = (
    "TextCondition", "Branch", "SingleBranch", "ClassifierFreeGuidance", "model_call", "LatentCondition",
    "FirstFrameCondition", "Conditions", "image_condition", "as_branch", "guidance_for")
