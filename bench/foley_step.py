"""Foley (video-to-audio) step time against a text-to-video step of a comparable size, in one process.

    python bench/foley_step.py                      # hidden 384, 4 triple/double + 6 single blocks, CPU
    python bench/foley_step.py --hidden 768 --repeat 5

Both models get the same width, the same number of blocks of each kind and the same head size (64),
random weights. The Foley forward runs a clip of ``--seconds`` (50 audio tokens/s through every block,
8 visual tokens/s through the triple blocks, 77 CLAP tokens as cross-attention keys); the text-to-video
forward runs the latent grid with about as many image tokens as the clip has audio tokens, plus 77 text
tokens in its joint attention. One Foley sampler step is two forwards (CFG, as released); a
guidance-distilled text-to-video step is one. Timings alternate the two (best of ``--repeat``), so load
from other processes hits both alike.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from memprobe import probe_config  # noqa: E402
from run import _time_pair  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--double", type=int, default=4, help="triple blocks (Foley) = double blocks (text-to-video)")
    p.add_argument("--single", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.v2a.config import FoleyConfig
    from hyvideo_core.v2a.model import HunyuanVideoFoley

    cfg = probe_config(args.hidden, args.double, args.single)
    fcfg = FoleyConfig(hidden_size=args.hidden, heads_num=cfg.heads_num, triple_depth=args.double,
                       single_depth=args.single)
    torch.manual_seed(0)
    t2v = HunyuanVideoTransformer(cfg).eval()
    torch.manual_seed(0)
    foley = HunyuanVideoFoley(fcfg).eval()

    la, lv, lt = int(args.seconds * 50), int(args.seconds * 8), 77
    segments = (int(args.seconds * 25) - 16) // 8 + 1
    side = round(math.sqrt(la / 5))                       # 5 latent frames of side x side patches ≈ la tokens
    latent = (5, 2 * side, 2 * side)
    image_tokens = 5 * side * side
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, lt, cfg.text_states_dim, generator=g)
    mask = torch.ones(1, lt, dtype=torch.int64)
    pooled = torch.randn(1, cfg.text_states_dim_2, generator=g)
    x_t2v = torch.randn(1, cfg.in_channels, *latent, generator=g)
    x_audio = torch.randn(1, fcfg.audio_latent_dim, la, generator=g)
    visual = torch.randn(1, lv, fcfg.visual_dim, generator=g)
    clap = torch.randn(1, lt, fcfg.text_dim, generator=g)
    sync = torch.randn(1, 8 * segments, fcfg.sync_dim, generator=g)
    t = torch.tensor([700.0])
    with torch.no_grad():
        t_foley, t_t2v = _time_pair(lambda: foley(x_audio, t, visual, clap, sync),
                                    lambda: t2v(x_t2v, t, text, mask, pooled, guidance=torch.tensor([6000.0])),
                                    repeat=args.repeat)
    print(f"hidden {args.hidden}, heads {cfg.heads_num}, {args.double} triple/double + {args.single} single blocks, "
          f"{args.threads} threads; Foley: {args.seconds:g} s clip = {la} audio + {lv} visual + {lt} text tokens; "
          f"text-to-video: latent {latent} = {image_tokens} image + {lt} text tokens")
    print(f"| forward | seconds |\n|---|---|\n| text-to-video | {t_t2v:.3f} |\n| Foley | {t_foley:.3f} |\n"
          f"| Foley / text-to-video (one forward each) | {t_foley / t_t2v:.3f}x |\n"
          f"| Foley step with CFG (2 forwards) / distilled text-to-video step | {2 * t_foley / t_t2v:.3f}x |")


if __name__ == "__main__":
    main()
