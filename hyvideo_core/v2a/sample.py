"""Sampling audio latents with the Foley DiT: the shared Euler loop and classifier-free guidance.

Released settings (shared/spec/official_apps.md §C.4): flow matching from σ = 1 to 0 with no
shift, 50 Euler steps, CFG 4.5. The unconditional branch differs from the conditional one in
every input: the negative prompt's CLAP states (default "noisy, harsh") and the model's learned
empty visual and sync features in place of the video's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import InputError
from ..runtime.progress import ProgressCallback
from ..sampling.conditions import Branch, ModelCall, TextCondition, guidance_for
from ..sampling.euler import euler
from ..sampling.schedules import flow_sigmas
from .model import HunyuanVideoFoley


@dataclass(frozen=True)
class FoleyConditions:
    """One branch's inputs besides the latents and the timestep."""
    visual_features: torch.Tensor   # (B, Lv, D_visual) SigLIP2 frame features at 8 fps
    sync_features: torch.Tensor     # (B, 8·S, D_sync) Synchformer tokens
    text_states: torch.Tensor       # (B, Lt, D_text) CLAP token states

    def as_branch(self) -> Branch:
        # CLAP token states take the text slot; the Foley model has no mask and no pooled vector.
        return Branch(TextCondition(self.text_states, None, None),
                      {"visual_features": self.visual_features, "sync_features": self.sync_features})


def unconditional(model: HunyuanVideoFoley, cond: FoleyConditions, negative_text_states: torch.Tensor) -> FoleyConditions:
    """The CFG negative: the learned empty video features (same lengths as the video's) and the
    negative prompt's text states."""
    b = cond.visual_features.shape[0]
    if negative_text_states.shape[0] == 1 and b > 1:
        negative_text_states = negative_text_states.expand(b, -1, -1)
    return FoleyConditions(model.empty_visual_features(b, cond.visual_features.shape[1]),
                           model.empty_sync_features(b, cond.sync_features.shape[1]), negative_text_states)


def foley_call(model: HunyuanVideoFoley) -> ModelCall:
    """The Foley DiT as a :data:`ModelCall`: t = 1000σ, float32 velocity out."""
    def call(x: torch.Tensor, sigma: torch.Tensor, branch: Branch) -> torch.Tensor:
        t = (sigma * 1000).expand(x.shape[0]).float()
        return model(x, t, branch.extras["visual_features"], branch.text.states, branch.extras["sync_features"]).float()
    return call


def sample_audio_latents(model: HunyuanVideoFoley, noise: torch.Tensor, cond: FoleyConditions,
                         negative_text_states: Optional[torch.Tensor] = None, *, steps: int = 50,
                         shift: float = 1.0, cfg_scale: float = 4.5,
                         callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Euler-integrate (B, C_latent, La) ``noise`` to audio latents (float32, unscaled: the DAC-VAE
    decodes them as they are). ``cfg_scale`` > 1 needs ``negative_text_states`` (B or 1, Lt', D_text)."""
    if noise.dim() != 3 or noise.shape[1] != model.config.audio_latent_dim:
        raise InputError(f"noise must be (B, {model.config.audio_latent_dim}, La) audio latents; "
                         f"found {tuple(noise.shape)}")
    positive = cond.as_branch()
    negative = None
    if cfg_scale > 1:
        if negative_text_states is None:
            raise InputError(f"cfg_scale {cfg_scale} > 1 needs negative_text_states (the CLAP states of the "
                             f"negative prompt, by default 'noisy, harsh')")
        negative = unconditional(model, cond, negative_text_states).as_branch()
    guidance = guidance_for(positive, negative, cfg_scale)
    call = foley_call(model)
    sigmas = flow_sigmas(steps, shift).to(noise.device)
    return euler(noise.float(), sigmas, lambda x, sigma, i: guidance.velocity(call, x, sigma, i),
                 callback=callback, stage="foley")
