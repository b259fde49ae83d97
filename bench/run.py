"""Speed and memory: our engine vs diffusers on the same weights and inputs, in one command.

    python bench/run.py            # CPU-sized suite (prints a table of ratios; ~5 min on 2 cores)
    python bench/run.py --gpu      # real 13B config, random bf16 weights, 544x960x61 and 720x1280x129
    python bench/run.py --gpu --tiny   # the --gpu code path on a tiny config (CPU dry run)

Memory numbers come from fresh subprocesses (bench/memprobe.py, peak RSS via VmHWM reset).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from memprobe import probe_config, run_probe  # noqa: E402

MB = 2 ** 20


def _register(name, cfg):
    from hyvideo_core.config import VariantSpec
    from hyvideo_core.variants import VARIANTS

    VARIANTS[name] = VariantSpec(name, "bench", cfg, is_test_variant=True)


def _time_pair(ours, theirs, repeat=7):
    """Best-of-``repeat`` seconds for two callables run alternately after one warm-up each, so a
    burst of load from other processes hits both sides alike (the minimum is the least disturbed run)."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeat):
        for fn, acc in ((ours, a), (theirs, b)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return min(a), min(b)


def _time(fn, repeat=3):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(cfg, latent, text_len=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_channels, *latent, generator=g)
    text = torch.randn(1, text_len, cfg.text_states_dim, generator=g)
    mask = torch.ones(1, text_len, dtype=torch.int64)
    pooled = torch.randn(1, cfg.text_states_dim_2, generator=g)
    return x, torch.tensor([700.0]), text, mask, pooled, torch.tensor([6000.0])


def dit_forward(rows, tmp, hidden, double, single, latent):
    from hyvideo_core import load_transformer
    from tests.reference_models import diffusers_forward, diffusers_transformer, official_state_dict, save

    cfg = probe_config(hidden, double, single)
    _register("bench-dit", cfg)
    ref = diffusers_transformer(cfg)
    path = save(official_state_dict(ref), os.path.join(tmp, "dit.safetensors"))
    inputs = _inputs(cfg, latent)
    tokens = latent[0] * latent[1] * latent[2] // 4
    for dtype in (torch.float32, torch.bfloat16):
        ours = load_transformer(path, dtype=dtype)
        theirs = copy.deepcopy(ref).to(dtype)   # Module.to is in place: keep ref in float32
        cast = tuple(t.to(dtype) if t.is_floating_point() and t.dim() > 1 else t for t in inputs)
        with torch.no_grad():
            t_ours, t_ref = _time_pair(lambda: ours(*cast), lambda: diffusers_forward(theirs, *cast))
            err = (ours(*cast).float() - diffusers_forward(theirs, *cast).float()).abs().max().item()
        rows.append((f"DiT forward {str(dtype)[6:]} (hidden {hidden}, {double}+{single} blocks, {tokens} img tokens)",
                     f"{t_ours:.3f} s", f"{t_ref:.3f} s", f"{t_ours / t_ref:.2f}x", f"max |diff| {err:.1e}"))
    return cfg, ref, path


def full_sample(rows, cfg, ref, path, latent, steps=4):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    from hyvideo_core import load_transformer, sample

    ref = ref.float()
    model = load_transformer(path)
    x, _, text, mask, pooled, _ = _inputs(cfg, latent)
    vae = AutoencoderKLHunyuanVideo(latent_channels=16, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                    norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4)
    pipe = HunyuanVideoPipeline(tokenizer=None, text_encoder=None, transformer=ref, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None)
    result = {}

    def ours():
        result["ours"] = sample(model, x, text, mask, pooled, steps=steps, shift=7.0, embedded_guidance=6.0)

    def theirs():
        result["theirs"] = pipe(prompt_embeds=text, pooled_prompt_embeds=pooled, prompt_attention_mask=mask,
                                latents=x.clone(), height=latent[1] * 8, width=latent[2] * 8,
                                num_frames=4 * (latent[0] - 1) + 1, num_inference_steps=steps, guidance_scale=6.0,
                                output_type="latent").frames

    with torch.no_grad():
        t_ours, t_ref = _time_pair(ours, theirs, repeat=2)
    got, exp = result["ours"], result["theirs"]
    rows.append((f"full sample, {steps} steps", f"{t_ours:.2f} s", f"{t_ref:.2f} s", f"{t_ours / t_ref:.2f}x",
                 f"max |diff| {(got - exp.float()).abs().max().item():.1e}"))


def vae_decode(rows, latent=(5, 16, 16)):
    args = ["--latent", *map(str, latent)]
    ours, theirs = run_probe("vae", "--impl", "ours", *args), run_probe("vae", "--impl", "diffusers", *args)
    po, pt = ours["peak"] - ours["base"], theirs["peak"] - theirs["base"]
    rows.append((f"tiled VAE decode time (latent {latent}, 64px/16f tiles)", f"{ours['seconds']:.2f} s",
                 f"{theirs['seconds']:.2f} s", f"{ours['seconds'] / theirs['seconds']:.2f}x", ""))
    rows.append(("tiled VAE decode peak RSS above baseline", f"{po / MB:.0f} MiB", f"{pt / MB:.0f} MiB",
                 f"{po / pt:.2f}x", ""))


def gguf_rows(rows, tmp, hidden=768, double=6, single=12):
    # Large enough that weights, not the ~25 MiB a Python+torch process carries anyway, set the peak.
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize as np_dequantize

    from hyvideo_core import load_transformer
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.quant.gguf import GGUFSource, write_gguf
    from tests.reference_models import save

    cfg = probe_config(hidden, double, single)
    _register("bench-probe", cfg)
    torch.manual_seed(0)
    state = {k: v.to(torch.bfloat16) for k, v in HunyuanVideoTransformer(cfg).state_dict().items()}
    bf16 = save(state, os.path.join(tmp, "bf16.safetensors"))
    q8 = write_gguf(state, os.path.join(tmp, "q8.gguf"), qtype="Q8_0")
    reg = f"{hidden},{double},{single}"
    a = run_probe("load", bf16, "--register", reg, "--forward")
    b = run_probe("load", q8, "--register", reg, "--forward")
    pa, pb = a["peak"] - a["base"], b["peak"] - b["base"]
    rows.append((f"load + 1 forward peak RSS, Q8_0 GGUF vs bf16 safetensors ({os.path.getsize(q8) // MB} vs "
                 f"{os.path.getsize(bf16) // MB} MiB files)", f"{pb / MB:.0f} MiB", f"{pa / MB:.0f} MiB",
                 f"{pb / pa:.2f}x", "target <= 0.6x"))
    src = GGUFSource(q8)
    deq = {k: torch.from_numpy(np.array(np_dequantize(np.asarray(src._entries[k].tensor.data), Q[src.qtype(k)]),
                                        dtype=np.float32).reshape(src.shape(k))) if src.is_quantized(k)
           else src.get(k).float() for k in src.keys()}
    ref = load_transformer(save(deq, os.path.join(tmp, "deq.safetensors")))
    model, orig = load_transformer(q8), load_transformer(bf16)
    inputs = _inputs(cfg, (3, 16, 16))
    with torch.no_grad():
        y, y_ref, y_orig = model(*inputs), ref(*inputs), orig(*inputs)
    scale = y_ref.abs().max().item()
    rows.append(("Q8_0 output vs dequantized reference (max |diff| / max |ref|)",
                 f"{(y - y_ref).abs().max().item() / scale:.1e}", "", "", f"vs bf16 weights: "
                 f"{(y - y_orig).abs().max().item() / y_orig.abs().max().item():.1e}"))


def block_swap(rows):
    base = ["--hidden", "384", "--double", "3", "--single", "6"]
    full, swap = run_probe("blockswap", *base, "--swap", "0", "0"), run_probe("blockswap", *base, "--swap", "2", "5")
    measured, predicted = full["peak"] - swap["peak"], full["predicted_peak"] - swap["predicted_peak"]
    rows.append(("block swap 2/3 double + 5/6 single (disk store): peak RSS saving", f"{measured / MB:.1f} MiB",
                 f"plan {predicted / MB:.1f} MiB", f"{measured / predicted:.2f}x", swap["describe"]))


def caching(rows, tmp, steps=20):
    from hyvideo_core import load_transformer, sample
    from hyvideo_core.runtime.caching import apply_first_block_cache, apply_teacache, psnr
    from hyvideo_core.variants import VARIANTS
    from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

    cfg = VARIANTS["tiny"].transformer
    model = load_transformer(save(official_state_dict(diffusers_transformer(cfg)), os.path.join(tmp, "tiny.safetensors")))
    _, _, text, mask, pooled, _ = dit_inputs(cfg, batch=1)
    noise = torch.randn(1, cfg.in_channels, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    run = lambda: sample(model, noise, text, mask, pooled, steps=steps, shift=7.0, embedded_guidance=6.0)  # noqa
    reference = run()
    for name, apply, th in (("TeaCache", apply_teacache, 0.1), ("TeaCache", apply_teacache, 0.15),
                            ("FBCache", apply_first_block_cache, 0.1), ("FBCache", apply_first_block_cache, 0.2)):
        cache = apply(model, th, num_steps=steps)
        out = run()
        rows.append((f"{name} {th} on tiny random model, {steps} steps",
                     f"{cache.stats.full} full / {cache.stats.cached} cached", "", "",
                     f"PSNR vs uncached {psnr(out, reference):.1f} dB"))
        cache.remove()


def gpu(tiny: bool):
    """Real 13B config, random bf16 weights: per-step time, MFU vs 790 TFLOP/s, peak memory, vs diffusers."""
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.variants import VARIANTS
    from tests.reference_models import diffusers_forward, diffusers_transformer

    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    cfg = VARIANTS["tiny" if tiny else "t2v-720p-cfgdistill"].transformer
    sizes = [(16, 32, 5), (16, 48, 9)] if tiny else [(544, 960, 61), (720, 1280, 129)]
    dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        ours = HunyuanVideoTransformer(cfg).to(dtype).eval().requires_grad_(False)
    ours.compute_dtype, ours.attention_backend = dtype, ("flash_varlen" if device.type == "cuda" else "sdpa")
    from hyvideo_core.attention import resolve_backend

    ours.attention_backend = resolve_backend(ours.attention_backend, device)
    with torch.device(device):
        theirs = diffusers_transformer(cfg).to(dtype)
    from hyvideo_core.checkpoints.layouts import DIFFUSERS, from_native

    theirs.load_state_dict(from_native(ours.state_dict(), DIFFUSERS, cfg))
    d, depth = cfg.hidden_size, cfg.double_depth + cfg.single_depth
    block_params = sum(p.numel() for p in ours.double_blocks.parameters()) + \
        sum(p.numel() for p in ours.single_blocks.parameters())
    print(f"device {device}, backend {ours.attention_backend}; h x w x frames | ours s/step | diffusers s/step | "
          f"ratio | MFU ours | peak GiB ours / diffusers")
    for h, w, f in sizes:
        latent = ((f - 1) // 4 + 1, h // 8, w // 8)
        x, t, text, mask, pooled, g = _inputs(cfg, latent, text_len=256)
        x, text, pooled, g = (v.to(device, dtype) for v in (x, text, pooled, g))
        t, mask = t.to(device), mask.to(device)
        tokens = latent[0] * latent[1] * latent[2] // 4 + 256
        flops = 2 * block_params * tokens + depth * 4 * tokens * tokens * d
        res = []
        for name, fn in (("ours", lambda: ours(x, t, text, mask, pooled, g)),
                         ("diffusers", lambda: diffusers_forward(theirs, x, t, text, mask, pooled, g))):
            if device.type == "cuda":
                torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                sec = _time(lambda: (fn(), torch.cuda.synchronize() if device.type == "cuda" else None), repeat=2)
            peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
            res.append((sec, peak))
        print(f"{h}x{w}x{f} | {res[0][0]:.2f} | {res[1][0]:.2f} | {res[0][0] / res[1][0]:.2f}x | "
              f"{flops / res[0][0] / 790e12:.1%} | {res[0][1]:.1f} / {res[1][1]:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--tiny", action="store_true", help="with --gpu: dry run on a tiny config")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--double", type=int, default=3)
    p.add_argument("--single", type=int, default=6)
    p.add_argument("--latent", type=int, nargs=3, default=[9, 16, 24])
    p.add_argument("--only", nargs="+", choices=["dit", "sample", "gguf", "swap", "cache", "vae"],
                   help="run only these parts (default: all)")
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.gpu:
        return gpu(args.tiny)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        want = set(args.only or ["dit", "sample", "gguf", "swap", "cache", "vae"])
        cfg, ref, path = dit_forward(rows, tmp, args.hidden, args.double, args.single, args.latent)
        if "sample" in want:
            full_sample(rows, cfg, ref, path, args.latent)
        if "gguf" in want:
            gguf_rows(rows, tmp)
        if "swap" in want:
            block_swap(rows)
        if "cache" in want:
            caching(rows, tmp)
        if "vae" in want:
            vae_decode(rows)
    print("| measurement | ours | diffusers / reference | ratio | note |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
