"""The shipped toy model: load it, generate a clip from a prompt, and score it on held-out prompts.

Shared by ``python -m hyvideo_core.toy report`` / ``claims`` and the regression tests.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from .evaluate import AdherenceSummary, score_clip, summarise
from .world import ToyWorld, heldout_prompts

WEIGHTS = Path(__file__).resolve().parent / "weights"
STUDENT_FILE = "transformer.safetensors"
TEACHER_FILE = "transformer_teacher.safetensors"


def toy_model_paths(weights: Path = WEIGHTS):
    """The shipped toy model's files as :class:`~hyvideo_core.demo_models.DemoModelPaths`."""
    from ..demo_models import DemoModelPaths

    weights = Path(weights)
    return DemoModelPaths(transformer=str(weights / STUDENT_FILE), vae=str(weights / "vae.safetensors"),
                          text_encoder=str(weights / "text_encoder"), clip=str(weights / "text_encoder_2"))


def toy_request(prompt: str = ""):
    """The toy model's native request: 17 x 64 x 64 with the variant's sampler defaults."""
    from ..apps.t2v import VideoRequest
    from ..variants import get_variant

    d = get_variant("toy").sampler
    return VideoRequest(prompt=prompt, frames=17, height=64, width=64, steps=d.steps, shift=d.shift,
                        embedded_guidance=d.embedded_guidance)


def load_toy(weights: Path = WEIGHTS, teacher: bool = False):
    """(transformer, vae, encoders) of the toy model in ``weights``; ``teacher`` picks the CFG
    teacher instead of the guidance-distilled student."""
    from ..checkpoints.load import load_transformer
    from ..errors import InputError
    from ..text_encoders import load_text_encoders
    from ..vae import load_vae

    weights = Path(weights)
    name = TEACHER_FILE if teacher else STUDENT_FILE
    needed = [weights / name, weights / "vae.safetensors", weights / "text_encoder", weights / "text_encoder_2"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise InputError(f"toy weights missing: {missing}; train them with `python scripts/train_toy.py all`")
    # dtype float32: the teacher ships in bf16 to fit the size budget; compute stays fp32 on CPU
    transformer = load_transformer(weights / name, variant="toy-teacher" if teacher else "toy", dtype=torch.float32)
    return (transformer, load_vae(weights / "vae.safetensors"),
            load_text_encoders(weights / "text_encoder", weights / "text_encoder_2"))


@torch.no_grad()
def generate(transformer, vae, encoders, prompt: str, seed: int = 0, frames: int = 17, height: int = 64, width: int = 64,
             steps: int = 16, shift: float = 3.0, guidance: float = 4.0) -> torch.Tensor:
    """One clip (1, 3, F, H, W) in [-1, 1]. Distilled models get ``guidance`` embedded (one forward
    per step); a model without guidance embedding runs true CFG at ``guidance`` with the empty prompt
    as negative (two forwards per step)."""
    from ..sampling.loop import sample
    from ..sampling.noise import latent_shape, make_noise
    from ..text_encoders import encode_prompt

    pos = encode_prompt(encoders, prompt, template="video", max_length=32)
    noise = make_noise(latent_shape(frames, height, width, channels=transformer.config.in_channels), seed, device="cpu")
    if transformer.config.guidance_embed:
        z = sample(transformer, noise, pos.text_states, pos.text_mask, pos.text_states_2, steps=steps, shift=shift,
                   embedded_guidance=guidance)
    else:
        neg = encode_prompt(encoders, "", template="video", max_length=32)
        z = sample(transformer, noise, pos.text_states, pos.text_mask, pos.text_states_2, steps=steps, shift=shift,
                   cfg_scale=guidance, negative=(neg.text_states, neg.text_mask, neg.text_states_2))
    return vae.decode(z / vae.scaling_factor, tile=False).float()


def evaluation_prompts(n: int) -> List[str]:
    """``n`` held-out prompts spread evenly over the fixed held-out set."""
    prompts = heldout_prompts()
    return [prompts[i] for i in np.linspace(0, len(prompts) - 1, min(n, len(prompts))).astype(int)]


@dataclass
class ModelScore:
    summary: AdherenceSummary      # over every clip
    seconds_per_clip: float
    per_clip: List[float]          # adherence per prompt (mean over its seeds), in prompt order: for paired comparisons


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple:
    """Mean of ``a - b`` over the same prompts and seeds, and its 95 % half-width (normal approx.)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    return float(d.mean()), half


def score_model(transformer, vae, encoders, prompts: Sequence[str], steps: int = 16, shift: float = 3.0,
                guidance: float = 4.0, seeds: int = 1) -> ModelScore:
    """Generate ``seeds`` clips per prompt (prompt ``i``, seed ``k`` uses noise seed ``i + k * len(prompts)``)
    and score them with the yardstick. Seeds of one prompt are averaged before pairing, since
    they are not independent samples of the prompt set."""
    scores, per_prompt, t0 = [], [], time.perf_counter()
    for i, p in enumerate(prompts):
        mine = [score_clip(generate(transformer, vae, encoders, p, seed=i + k * len(prompts), steps=steps,
                                    shift=shift, guidance=guidance), p) for k in range(seeds)]
        scores += mine
        per_prompt.append(float(np.mean([x.adherence for x in mine])))
    return ModelScore(summarise(scores), (time.perf_counter() - t0) / max(1, len(scores)), per_prompt)


def vae_psnr(vae, n: int = 8, seed: int = 7) -> float:
    """Mean PSNR (dB, uint8 scale) of VAE round trips of ``n`` held-out clips."""
    vals = []
    with torch.no_grad():
        for clip in ToyWorld(seed, split="heldout").clips(n):
            x = clip.tensor()[None]
            y = vae.decode(vae.encode(x, tile=False), tile=False)
            qa, qb = ((x + 1) * 127.5).round(), ((y.clamp(-1, 1) + 1) * 127.5).round()
            vals.append(10 * math.log10(255 ** 2 / max(float(((qa - qb) ** 2).mean()), 1e-10)))
    return float(np.mean(vals))
