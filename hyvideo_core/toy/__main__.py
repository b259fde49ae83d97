"""``python -m hyvideo_core.toy report`` — how good is the toy model?

Prints prompt adherence on held-out prompts (the image-analysis yardstick of
``hyvideo_core.toy.evaluate``), VAE reconstruction PSNR on held-out clips, and time per clip.

    python -m hyvideo_core.toy report [--weights DIR] [--prompts 20] [--steps 16] [--teacher]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

WEIGHTS = Path(__file__).resolve().parent / "weights"


def load_toy(weights: Path, teacher: bool = False):
    from ..checkpoints.load import load_transformer
    from ..errors import InputError
    from ..text_encoders import load_text_encoders
    from ..vae import load_vae

    name = "transformer_teacher.safetensors" if teacher else "transformer.safetensors"
    needed = [weights / name, weights / "vae.safetensors", weights / "text_encoder", weights / "text_encoder_2"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise InputError(f"toy weights missing: {missing}; train them with `python scripts/train_toy.py all`")
    return (load_transformer(weights / name, variant="toy-teacher" if teacher else "toy"), load_vae(weights / "vae.safetensors"),
            load_text_encoders(weights / "text_encoder", weights / "text_encoder_2"))


@torch.no_grad()
def generate(transformer, vae, encoders, prompt: str, seed: int = 0, frames: int = 17, height: int = 64, width: int = 64,
             steps: int = 16, shift: float = 3.0, guidance: float = 4.0) -> torch.Tensor:
    """One clip (1, 3, F, H, W) in [-1, 1]. Distilled models get ``guidance`` embedded; a model
    without guidance embedding runs true CFG at ``guidance`` with the empty prompt as negative."""
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


def vae_psnr(vae, n: int = 8, seed: int = 7) -> float:
    from .world import ToyWorld

    vals = []
    with torch.no_grad():
        for clip in ToyWorld(seed, split="heldout").clips(n):
            x = clip.tensor()[None]
            y = vae.decode(vae.encode(x, tile=False), tile=False)
            qa, qb = ((x + 1) * 127.5).round(), ((y.clamp(-1, 1) + 1) * 127.5).round()
            vals.append(10 * math.log10(255 ** 2 / max(float(((qa - qb) ** 2).mean()), 1e-10)))
    return float(np.mean(vals))


def report(args) -> int:
    from .evaluate import chance_adherence, score_clip, summarise
    from .world import heldout_prompts

    torch.set_num_threads(args.threads)
    transformer, vae, encoders = load_toy(Path(args.weights), args.teacher)
    prompts = heldout_prompts()
    prompts = [prompts[i] for i in np.linspace(0, len(prompts) - 1, args.prompts).astype(int)]
    scores, t0 = [], time.time()
    for i, p in enumerate(prompts):
        video = generate(transformer, vae, encoders, p, seed=i, steps=args.steps, shift=args.shift, guidance=args.guidance)
        scores.append(score_clip(video, p))
    per_clip = (time.time() - t0) / len(prompts)
    s = summarise(scores)
    print(f"model: {'teacher (true CFG)' if args.teacher else 'guidance-distilled student'}, {args.steps} steps, "
          f"shift {args.shift}, guidance {args.guidance}, 17x64x64, {len(prompts)} held-out prompts")
    for line in s.lines():
        print(line)
    print(f"  (chance level: {100 * chance_adherence():.1f}%)")
    print(f"VAE reconstruction PSNR on held-out clips: {vae_psnr(vae):.2f} dB")
    print(f"time per clip: {per_clip:.2f} s ({torch.get_num_threads()} CPU threads)")
    return 0


def main(argv=None) -> int:
    from ..errors import HyVideoError

    p = argparse.ArgumentParser(prog="python -m hyvideo_core.toy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="prompt adherence, VAE PSNR, time per clip")
    r.add_argument("--weights", default=str(WEIGHTS))
    r.add_argument("--prompts", type=int, default=20)
    r.add_argument("--steps", type=int, default=16)
    r.add_argument("--shift", type=float, default=3.0)
    r.add_argument("--guidance", type=float, default=4.0)
    r.add_argument("--teacher", action="store_true", help="score the CFG teacher instead of the distilled student")
    r.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    try:
        return report(args)
    except HyVideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
