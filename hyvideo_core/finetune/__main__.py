"""``python -m hyvideo_core.finetune {cache,train}``.

    python -m hyvideo_core.finetune cache --source DIR|toy:N[:SEED] --vae VAE.safetensors \\
        --text-encoder LLM_DIR --clip CLIP_DIR --buckets 17x64x64 33x128x96 --out CACHE_DIR
    python -m hyvideo_core.finetune train --config train.yaml [--steps 500 --lr 1e-4 ...]
    accelerate launch --num_processes 2 --cpu -m hyvideo_core.finetune train --config train.yaml

Every field of ``TrainConfig`` is a ``--flag`` (underscores or dashes); the config file is YAML
or JSON with the same names; flags override the file.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from ..errors import HyVideoError, InputError


def _read_config(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {path!r} does not exist")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise InputError(f"config file {path!r} must hold a mapping of option names to values")
    return data


def _train_parser(sub) -> None:
    from .trainer import TrainConfig

    p = sub.add_parser("train", help="train (full or LoRA) on a cache")
    p.add_argument("--config", help="YAML or JSON file with TrainConfig fields")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("lora_targets", "betas", "distill_guidance"):
            p.add_argument(flag, dest=f.name, nargs="+", default=argparse.SUPPRESS,
                           type=str if f.name == "lora_targets" else float)
        elif f.type in ("bool",) or isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                           default=argparse.SUPPRESS)
        elif isinstance(f.default, int) and not isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, type=lambda s: None if s.lower() == "none" else int(s),
                           default=argparse.SUPPRESS)
        elif isinstance(f.default, float) or "float" in str(f.type):
            p.add_argument(flag, dest=f.name, type=lambda s: None if s.lower() == "none" else float(s),
                           default=argparse.SUPPRESS)
        else:
            p.add_argument(flag, dest=f.name, type=lambda s: None if s.lower() == "none" else s,
                           default=argparse.SUPPRESS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyvideo_core.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="encode clips into latents + text embeddings")
    c.add_argument("--source", required=True, help="folder of videos with .txt captions, or toy:N[:SEED]")
    c.add_argument("--vae", required=True)
    c.add_argument("--text-encoder", required=True, help="LLM text encoder (folder or file)")
    c.add_argument("--clip", required=True, help="CLIP text encoder (folder or file)")
    c.add_argument("--buckets", nargs="+", default=["17x64x64"], help="FRAMESxHEIGHTxWIDTH ...")
    c.add_argument("--out", required=True)
    c.add_argument("--template", default="video")
    c.add_argument("--skip-short", action="store_true", help="skip clips shorter than every bucket instead of failing")
    _train_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "cache":
            from ..text_encoders import load_text_encoders
            from ..vae import load_vae
            from ..toy.clip_source import open_clip_source
            from .data import cache_dataset, encoders_text_fn, parse_buckets

            buckets = parse_buckets(args.buckets)
            clips = open_clip_source(args.source, buckets)   # a misspelt toy:N fails before the models load
            vae = load_vae(args.vae)
            enc = load_text_encoders(args.text_encoder, args.clip)
            m = cache_dataset(args.out, clips, vae, encoders_text_fn(enc, args.template), buckets,
                              skip_short=args.skip_short)
            print(f"cached {len(m['entries'])} clips into {args.out} (skipped {m['skipped']})")
            return 0
        from .trainer import TrainConfig, train

        values = _read_config(args.config) if args.config else {}
        values.update({k: v for k, v in vars(args).items() if k not in ("command", "config")})
        result = train(TrainConfig.from_dict(values))
        if result.losses and result.checkpoint:   # main process only
            print(f"trained to step {result.step}: loss {result.losses[0]:.5f} -> {result.losses[-1]:.5f}; "
                  f"checkpoint {result.checkpoint}")
        return 0
    except HyVideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
