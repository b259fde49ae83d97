"""Avatar step time against a text-to-video step at the same token count, in one process.

    python bench/avatar_step.py                      # hidden 384, 4 double + 6 single blocks, CPU
    python bench/avatar_step.py --hidden 768 --latent 9 16 24

Both models share the backbone config (no guidance embedding, as in the avatar release); the avatar
model carries the avatar modules at the released proportions (an audio adapter after every second
double block; adapter width = hidden/3, audio projection width = hidden/3, 4 tokens per frame,
Whisper-tiny windows). The avatar forward runs on T latent frames plus its prepended reference frame;
the text-to-video forward on T + 1 latent frames, so both push the same tokens through the blocks.
Timings alternate the two (best of ``--repeat``), so load from other processes hits both alike.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from memprobe import probe_config  # noqa: E402
from run import _time_pair  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--double", type=int, default=4)
    p.add_argument("--single", type=int, default=6)
    p.add_argument("--latent", type=int, nargs=3, default=[9, 16, 24])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from hyvideo_core.apps.avatar import AvatarExtension
    from hyvideo_core.config import AvatarConfig
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.model.extension import install_extension

    cfg = replace(probe_config(args.hidden, args.double, args.single), guidance_embed=False)
    avatar = AvatarConfig(whisper_dim=384, whisper_layers=5, audio_window=10, audio_hidden=args.hidden // 3,
                          tokens_per_frame=4, adapter_dim=args.hidden // 3,
                          adapter_after=tuple(range(1, args.double, 2)))
    torch.manual_seed(0)
    t2v = HunyuanVideoTransformer(cfg).eval()
    torch.manual_seed(0)
    talking = HunyuanVideoTransformer(cfg).eval()
    ext = install_extension(talking, AvatarExtension(cfg, avatar))
    with torch.no_grad():
        for block in ext.modules()["audio_adapter_blocks"]:
            block.to_out.weight.normal_(0, 0.02)      # released zero-init would make the adapters no-ops

    t, h, w = args.latent
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 64, cfg.text_states_dim, generator=g)
    mask = torch.ones(1, 64, dtype=torch.int64)
    pooled = torch.randn(1, cfg.text_states_dim_2, generator=g)
    step = torch.tensor([700.0])
    x_avatar = torch.randn(1, cfg.in_channels, t, h, w, generator=g)
    x_t2v = torch.randn(1, cfg.in_channels, t + 1, h, w, generator=g)
    extras = {"ref_latents": torch.randn(1, cfg.in_channels, t, h, w, generator=g),
              "audio_windows": torch.randn(1, avatar.audio_frames(t), 10, 5, 384, generator=g)}
    with torch.no_grad():
        t_avatar, t_t2v = _time_pair(lambda: talking(x_avatar, step, text, mask, pooled, extras=extras),
                                     lambda: t2v(x_t2v, step, text, mask, pooled), repeat=args.repeat)
    tokens = (t + 1) * h * w // 4
    print(f"hidden {args.hidden}, {args.double}+{args.single} blocks, adapters after double blocks "
          f"{avatar.adapter_after}, {tokens} image tokens + 64 text tokens, {args.threads} threads")
    print(f"| step | seconds |\n|---|---|\n| text-to-video ({t + 1} latent frames) | {t_t2v:.3f} |\n"
          f"| avatar ({t} latent frames + reference frame, audio adapters) | {t_avatar:.3f} |\n"
          f"| avatar / text-to-video | {t_avatar / t_t2v:.3f}x |")


if __name__ == "__main__":
    main()
