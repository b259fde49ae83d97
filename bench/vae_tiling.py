"""Benchmark: memory and time of the VAE's tiled decode for N and 2N latent frames.

Not a test: it asserts nothing, it prints a table. Each case runs in a fresh subprocess that
builds the VAE (random weights, seed 0), then measures peak resident memory above the
baseline just before the call: the kernel's peak-RSS counter (VmHWM) is reset through
/proc/self/clear_refs right before decoding, so the number is the true high-water mark of the
decode itself (output tensor included), not of imports or model construction.

The same subprocess then decodes untiled (after another reset) for the peak contrast and the
tiled-vs-untiled max abs difference. With random weights that difference is O(1): GroupNorm
statistics are per tile (shared/spec/diffusers_parity.md §2.4), so it shows the order of
magnitude only.

    python bench/vae_tiling.py                 # N = 33 latent frames (129 px frames) at 64x64 px
    python bench/vae_tiling.py --frames 17 --size 96 --spatial-tile 64
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


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")                       # resets VmHWM to the current RSS
    return _rss_kb("VmRSS")


def run_case(args: argparse.Namespace) -> dict:
    sys.path.insert(0, ROOT)
    import torch

    from hyvideo_core.config import VaeConfig
    from hyvideo_core.vae import CausalVideoVAE, TileSettings

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = VaeConfig(block_out_channels=tuple(args.channels), layers_per_block=2,
                       norm_num_groups=args.groups)
    vae = CausalVideoVAE(config).eval()
    tiles = TileSettings.official(config)
    if args.spatial_tile:
        tiles = TileSettings.with_overlap(config, args.spatial_tile, config.tile_sample_frames)
    latent = args.size // 8
    z = torch.randn(1, config.latent_channels, args.case, latent, latent)
    plan = vae.tiling_plan(z.shape, tiles)

    base = _reset_peak()
    start = time.perf_counter()
    tiled = vae.decode(z, tile=tiles)
    tiled_s = time.perf_counter() - start
    tiled_peak = _rss_kb("VmHWM") - base

    result = dict(latent_frames=args.case, frames=tiled.shape[2], size=args.size,
                  tiles=plan.num_tiles, tiled_s=tiled_s, tiled_peak_mb=tiled_peak / 1024,
                  output_mb=tiled.numel() * tiled.element_size() / 2**20)
    if not args.skip_untiled:
        base = _reset_peak()
        start = time.perf_counter()
        untiled = vae.decode(z, tile=False)
        result.update(untiled_s=time.perf_counter() - start,
                      untiled_peak_mb=(_rss_kb("VmHWM") - base) / 1024,
                      max_abs_diff=(tiled - untiled).abs().max().item())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=33, help="N latent frames (also runs 2N)")
    parser.add_argument("--size", type=int, default=64, help="pixel height = width")
    parser.add_argument("--channels", type=int, nargs=4, default=[32, 64, 128, 128])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spatial-tile", type=int, default=0,
                        help="pixel spatial tile (overlap 0.25); default: the official 256")
    parser.add_argument("--skip-untiled", action="store_true")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case is not None:
        print(json.dumps(run_case(args)))
        return

    rows = []
    for case in (args.frames, 2 * args.frames):
        cmd = [sys.executable, os.path.abspath(__file__), "--case", str(case)] + sys.argv[1:]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))

    print(f"VAE block_out={tuple(args.channels)} layers_per_block=2 groups={args.groups}, "
          f"{args.size}x{args.size} px, {args.threads} threads, official temporal tiles "
          f"(64 frames, stride 48){', spatial ' + str(args.spatial_tile) if args.spatial_tile else ''}")
    header = (f"{'latents':>7} {'frames':>6} {'tiles':>5} {'tiled s':>8} {'tiled peak MB':>13} "
              f"{'output MB':>9} {'untiled s':>9} {'untiled peak MB':>15} {'max|tiled-untiled|':>18}")
    print(header)
    for r in rows:
        print(f"{r['latent_frames']:>7} {r['frames']:>6} {r['tiles']:>5} {r['tiled_s']:>8.1f} "
              f"{r['tiled_peak_mb']:>13.1f} {r['output_mb']:>9.1f} {r.get('untiled_s', float('nan')):>9.1f} "
              f"{r.get('untiled_peak_mb', float('nan')):>15.1f} {r.get('max_abs_diff', float('nan')):>18.3g}")
    ratio = rows[1]["tiled_peak_mb"] / rows[0]["tiled_peak_mb"]
    verdict = "holds" if ratio <= 1.2 else "DOES NOT hold"
    print(f"2x frames peak within 20% of 1x: {verdict} (tiled peak ratio 2N/N = {ratio:.3f})")


if __name__ == "__main__":
    main()
