"""Before/after: this checkout's engine against an earlier commit's, on the same weights and inputs.

    python bench/engine_ab.py --before 6669d69          # the commit before the extension seam
    python bench/engine_ab.py --before HEAD~3 --rounds 5

The earlier commit is checked out once into ``bench/out/engine-<rev>`` (a git worktree). Each
round runs one fresh process per engine, alternately (A B A B …), so load from other processes
hits both sides alike (the paired after/before ratio of each round is reported too); each process times bench/run.py's "ours" workloads — the DiT forward in
float32 and bfloat16 and a 4-step sample — with the public API only (``load_transformer``,
``sample``), the median of ``--repeat`` calls. The table gives the minimum over rounds and after/before.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args) -> None:
    sys.path.insert(0, args.root)
    import torch

    import hyvideo_core
    from hyvideo_core import load_transformer, sample

    if not os.path.abspath(hyvideo_core.__file__).startswith(os.path.abspath(args.root) + os.sep):
        raise SystemExit(f"imported {hyvideo_core.__file__}, not the engine under {args.root}")

    from memprobe import probe_config
    from run import _register, _time   # bench/run.py's variant registration and timer (median after a warm-up)

    _register("bench-ab", probe_config(args.hidden, args.double, args.single))

    torch.set_num_threads(args.threads)
    cfg_latent = tuple(args.latent)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_transformer(args.weights, dtype=dtype, variant="bench-ab")
        g = torch.Generator().manual_seed(1)
        c = model.config
        x = torch.randn(1, c.in_channels, *cfg_latent, generator=g).to(dtype)
        text = torch.randn(1, 64, c.text_states_dim, generator=g).to(dtype)
        mask = torch.ones(1, 64, dtype=torch.int64)
        pooled = torch.randn(1, c.text_states_dim_2, generator=g).to(dtype)
        t, guidance = torch.tensor([700.0]), torch.tensor([6000.0])
        name = str(dtype)[6:]
        with torch.no_grad():
            out[f"DiT forward {name}"] = _time(lambda: model(x, t, text, mask, pooled, guidance), args.repeat)
            if dtype == torch.float32:
                out["4-step sample float32"] = _time(lambda: sample(model, x.float(), text, mask, pooled, steps=4,
                                                                    shift=7.0, embedded_guidance=6.0), 2)
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="6669d69", help="the earlier commit (default: before the extension seam)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--double", type=int, default=3)
    p.add_argument("--single", type=int, default=6)
    p.add_argument("--latent", type=int, nargs=3, default=[9, 16, 24])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    before = os.path.join(ROOT, "bench", "out", f"engine-{rev}")
    if not os.path.isdir(before):
        subprocess.run(["git", "worktree", "add", "--detach", before, rev], cwd=ROOT, check=True,
                       capture_output=True)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
    from memprobe import probe_config
    from tests.reference_models import diffusers_transformer, official_state_dict, save

    results = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        weights = save(official_state_dict(diffusers_transformer(probe_config(args.hidden, args.double, args.single))),
                       os.path.join(tmp, "dit.safetensors"))
        for _ in range(args.rounds):
            for side, root in (("before", before), ("after", ROOT)):
                cmd = [sys.executable, os.path.abspath(__file__), "--child", "--root", root, "--weights", weights,
                       "--repeat", str(args.repeat), "--threads", str(args.threads), "--hidden", str(args.hidden),
                       "--double", str(args.double), "--single", str(args.single),
                       "--latent", *map(str, args.latent)]
                done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{side} engine failed:\n{done.stderr[-3000:]}")
                results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    tokens = args.latent[0] * args.latent[1] * args.latent[2] // 4
    print(f"hidden {args.hidden}, {args.double}+{args.single} blocks, {tokens} image tokens, {args.threads} threads, "
          f"{args.rounds} rounds; before = {rev}, after = working tree")
    print("| measurement | before (min) | after (min) | after / before (min) | after / before (median of rounds) |\n"
          "|---|---|---|---|---|")
    for key in results["after"][0]:
        b = min(r[key] for r in results["before"])
        a = min(r[key] for r in results["after"])
        paired = statistics.median(ra[key] / rb[key] for ra, rb in zip(results["after"], results["before"]))
        print(f"| {key} | {b:.3f} s | {a:.3f} s | {a / b:.3f}x | {paired:.3f}x |")


if __name__ == "__main__":
    main()
