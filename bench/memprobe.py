"""Peak-RSS probes, each meant to run in a fresh subprocess (used by bench/run.py and tests).

The kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs right before the
measured call, so a number is the peak of that call alone. glibc is told to serve every
allocation >= 64 KiB with mmap (MALLOC_MMAP_THRESHOLD_, set by :func:`run_probe`), so freed
weights really leave the process and the numbers are not blurred by heap fragmentation.

    python bench/memprobe.py blockswap --hidden 384 --double 3 --single 6 --swap 2 5
    python bench/memprobe.py load PATH
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> int:
    """Reset VmHWM to the current RSS; returns the current RSS in bytes."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kb("VmRSS") * 1024


def peak() -> int:
    return _status_kb("VmHWM") * 1024


def run_probe(*args: str, timeout: int = 600) -> dict:
    """Run this file with ``args`` in a fresh interpreter; returns its JSON result."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"probe {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_config(hidden: int, double: int, single: int):
    from hyvideo_core.config import TransformerConfig

    heads = hidden // 64 if hidden % 64 == 0 else hidden // 48
    head_dim = hidden // heads
    a = (head_dim // 4) // 2 * 2
    b = (head_dim - a) // 2 // 2 * 2
    return TransformerConfig(in_channels=16, out_channels=16, hidden_size=hidden, heads_num=heads,
                             double_depth=double, single_depth=single, refiner_depth=2, mlp_width_ratio=4.0,
                             patch_size=(1, 2, 2), rope_axes=(head_dim - 2 * b, b, b), rope_theta=256.0,
                             text_states_dim=hidden, text_states_dim_2=hidden // 2, guidance_embed=True)


def blockswap(args) -> dict:
    import torch

    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.runtime.offload import enable_block_swap, plan_for

    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = probe_config(args.hidden, args.double, args.single)
    model = HunyuanVideoTransformer(cfg).eval().requires_grad_(False)
    x = torch.randn(1, 16, 1, 8, 8)
    inputs = (x, torch.tensor([500.0]), torch.randn(1, 8, cfg.text_states_dim), None,
              torch.randn(1, cfg.text_states_dim_2), torch.tensor([6000.0]))
    plan = plan_for(model, *args.swap, prefetch=False)
    if args.swap != [0, 0]:
        enable_block_swap(model, plan, device="cpu", store="disk")
    with torch.no_grad():
        model(*inputs)               # warm-up: rope tables, allocator, lazy init
        base = reset_peak()
        model(*inputs)
    return {"peak": peak(), "base": base, "predicted_peak": plan.predicted_peak_bytes,
            "swapped": plan.swapped_bytes, "in_flight": plan.in_flight_bytes, "describe": plan.describe()}


def load(args) -> dict:
    import torch

    from hyvideo_core import load_transformer

    torch.set_num_threads(2)
    base = reset_peak()
    t0 = time.perf_counter()
    model = load_transformer(args.path)
    seconds = time.perf_counter() - t0
    if args.forward:
        cfg = model.config
        with torch.no_grad():
            model(torch.randn(1, cfg.in_channels, 1, 4, 4), torch.tensor([500.0]),
                  torch.randn(1, 4, cfg.text_states_dim), None, torch.randn(1, cfg.text_states_dim_2),
                  torch.tensor([6000.0]) if cfg.guidance_embed else None)
    gc.collect()
    return {"peak": peak(), "base": base, "rss_after": _status_kb("VmRSS") * 1024, "seconds": seconds,
            "variant": model.variant}


def vae(args) -> dict:
    """Tiled decode of a mid-size random VAE, ours or diffusers', with the same tiles."""
    import tempfile

    import torch

    from hyvideo_core.config import VaeConfig

    torch.set_num_threads(2)
    channels = tuple(int(c) for c in args.channels.split(","))
    torch.manual_seed(0)
    from diffusers import AutoencoderKLHunyuanVideo

    ref = AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=channels,
                                    layers_per_block=1, norm_num_groups=8, spatial_compression_ratio=8,
                                    temporal_compression_ratio=4, mid_block_add_attention=True).eval()
    s, st, t, tt = args.tile
    if args.impl == "ours":
        from hyvideo_core.config import VariantSpec
        from hyvideo_core.vae import TileSettings, load_vae, save_vae
        from hyvideo_core.variants import VARIANTS

        VARIANTS["bench-vae"] = VariantSpec("bench-vae", "bench", probe_config(64, 1, 1), is_test_variant=True,
                                            vae=VaeConfig(latent_channels=16, block_out_channels=channels,
                                                          layers_per_block=1, norm_num_groups=8))

        path = os.path.join(tempfile.mkdtemp(), "vae.safetensors")
        save_vae(ref, path)
        del ref
        model = load_vae(path)
        # The loader memory-maps the file; fault every weight page in before the baseline, as the
        # diffusers model's weights are resident already, so the peak measures decoding alone.
        for tensor in model.state_dict().values():
            tensor.sum()
        settings = TileSettings(spatial_size=s, spatial_stride=st, temporal_size=t, temporal_stride=tt)
        decode = lambda z: model.decode(z, tile=settings)  # noqa: E731
    else:
        ref.enable_tiling(tile_sample_min_height=s, tile_sample_min_width=s, tile_sample_min_num_frames=t,
                          tile_sample_stride_height=st, tile_sample_stride_width=st, tile_sample_stride_num_frames=tt)
        decode = lambda z: ref.decode(z).sample  # noqa: E731
    z = torch.randn(1, 16, *args.latent, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = reset_peak()
        t0 = time.perf_counter()
        out = decode(z)
        seconds = time.perf_counter() - t0
    result = {"peak": peak(), "base": base, "seconds": seconds, "shape": list(out.shape)}
    if args.save:
        torch.save(out, args.save)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("blockswap")
    b.add_argument("--hidden", type=int, default=384)
    b.add_argument("--double", type=int, default=3)
    b.add_argument("--single", type=int, default=6)
    b.add_argument("--swap", type=int, nargs=2, default=[0, 0])
    ld = sub.add_parser("load")
    ld.add_argument("path")
    ld.add_argument("--register", default=None, help="hidden,double,single of a probe config to register")
    ld.add_argument("--forward", action="store_true", help="also run one small forward (touches every weight)")
    v = sub.add_parser("vae")
    v.add_argument("--impl", choices=["ours", "diffusers"], required=True)
    v.add_argument("--channels", default="32,32,64,64")
    v.add_argument("--latent", type=int, nargs=3, default=[9, 24, 24])
    v.add_argument("--tile", type=int, nargs=4, default=[64, 48, 16, 12])
    v.add_argument("--save", default=None)
    args = p.parse_args(argv)
    if args.cmd == "load" and args.register:
        from hyvideo_core.config import VariantSpec
        from hyvideo_core.variants import VARIANTS

        h, d, s = (int(v) for v in args.register.split(","))
        VARIANTS["bench-probe"] = VariantSpec("bench-probe", "bench", probe_config(h, d, s), is_test_variant=True)
    print(json.dumps({"blockswap": blockswap, "load": load, "vae": vae}[args.cmd](args)))


if __name__ == "__main__":
    main()
