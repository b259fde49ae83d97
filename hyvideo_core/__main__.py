"""Command line: ``python -m hyvideo_core {generate,convert,info} …``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .errors import HyVideoError

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _dtype(name):
    import torch

    return None if name is None else getattr(torch, _DTYPES[name])


def cmd_convert(args) -> None:
    from .checkpoints.load import load_transformer, save_transformer

    model = load_transformer(args.input, dtype=_dtype(args.dtype))
    save_transformer(model, args.output, layout=args.layout, dtype=_dtype(args.dtype))
    print(f"wrote {args.output} ({model.variant}, {args.layout} layout)")


def cmd_info(args) -> None:
    from .checkpoints.detect import derive_config, detect_variant
    from .checkpoints.load import open_native

    source, scales, layout = open_native(args.path)
    spec = detect_variant(source)
    print(json.dumps({"variant": spec.name, "description": spec.description, "layout": layout,
                      "fp8_scaled_layers": len(scales), "tensors": len(source.keys()),
                      "derived": {k: str(v) for k, v in derive_config(source).items()}}, indent=2))


def cmd_generate(args) -> None:
    from .parallel.launch import distributed_from_env

    with distributed_from_env(args.dist_timeout) as rank:
        _generate(args, rank)


def _generate(args, rank) -> None:
    """One generation; ``rank`` is None for a single process, else this process's rank in a
    torchrun group: the transformer is parallelised, rank 0 encodes the prompt and broadcasts it,
    and only rank 0 writes files."""
    from .apps.t2v import VideoRequest, text_to_video
    from .checkpoints.load import load_transformer
    from .demo_models import DEMO_REQUEST_SETTINGS, ensure_demo_models
    from .text_encoders import load_text_encoders
    from .toy.model import toy_model_paths, toy_request
    from .vae import load_vae
    from .video_io import to_uint8_frames, write_mp4

    missing = [f"--{n.replace('_', '-')}" for n in ("vae", "text_encoder", "clip")
               if args.transformer and not getattr(args, n)]
    if missing:
        from .errors import InputError
        raise InputError(f"--transformer was given without {', '.join(missing)}; "
                         f"give all four model paths, or none to use the embedded model")
    # the embedded default: the trained toy model (hyvideo_core/toy), or the tiny random-weight model
    if args.transformer:
        paths, defaults = None, VideoRequest(prompt=args.prompt)
    elif args.model == "toy":
        paths, defaults = toy_model_paths(), toy_request()
    else:
        paths, defaults = ensure_demo_models(), VideoRequest(prompt="", **DEMO_REQUEST_SETTINGS)
    files = {"transformer": args.transformer or paths.transformer, "vae": args.vae or paths.vae,
             "text_encoder": args.text_encoder or paths.text_encoder, "clip": args.clip or paths.clip}
    device = args.device
    if rank is not None:
        from .parallel.launch import check_same_files

        check_same_files(files)
        if device == "cuda":
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    transformer = load_transformer(files["transformer"], device=device)
    vae = load_vae(files["vae"], device=device)
    # a parallel run encodes the prompt once, on rank 0
    encoders = (load_text_encoders(files["text_encoder"], files["clip"], device=device) if not rank else None)
    request = VideoRequest(
        prompt=args.prompt, frames=args.frames or defaults.frames, height=args.height or defaults.height,
        width=args.width or defaults.width, steps=args.steps or defaults.steps,
        shift=args.shift if args.shift is not None else defaults.shift,
        embedded_guidance=args.guidance if args.guidance is not None else defaults.embedded_guidance,
        cfg_scale=args.cfg, negative_prompt=args.negative, seed=args.seed)
    start = time.perf_counter()
    encode = None
    if rank is not None:
        from .parallel.vae_split import RankSharedDecoder

        encode = _parallel_setup(args, transformer, encoders, request)
        vae = RankSharedDecoder(vae)         # the decode's tiles shared out over the ranks

    def progress(event):
        print(f"\r{event.stage} {event.step}/{event.total}", end="", file=sys.stderr, flush=True)

    video = text_to_video(transformer, vae, encoders, request, callback=None if rank else progress, encode=encode)
    print(file=sys.stderr)
    if rank:
        return
    if args.save_tensor:
        from .checkpoints.load import write_safetensors_atomic

        write_safetensors_atomic({"video": video.contiguous()}, args.save_tensor)
    frames = to_uint8_frames(video[0])
    write_mp4(frames, args.out, fps=args.fps, metadata={"prompt": request.prompt, "seed": request.seed,
                                                         "steps": request.steps, "model": transformer.variant})
    print(f"wrote {args.out}: {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} @ {args.fps} fps "
          f"in {time.perf_counter() - start:.1f}s ({transformer.variant})")


def _parallel_setup(args, transformer, encoders, request):
    """Parallelise ``transformer`` over the torchrun group; returns the broadcasting encoder."""
    import torch.distributed as dist

    from dataclasses import replace

    from .parallel import ParallelConfig, parallelize
    from .parallel.launch import broadcast_tensors
    from .text_encoders import encode_prompt
    from .text_encoders.api import PromptEmbeds

    world, heads = dist.get_world_size(), transformer.config.heads_num
    if args.ulysses or args.ring or args.cfg_parallel:
        config = ParallelConfig(ulysses=args.ulysses or 1, ring=args.ring or 1, cfg=2 if args.cfg_parallel else 1)
    else:
        config = ParallelConfig.auto(world, heads, cfg=request.cfg_scale > 1)
    config = replace(config, shard_weights=args.shard_weights)
    parallelize(transformer, config)
    if dist.get_rank() == 0:
        print(f"parallel: {world} processes, Ulysses {config.ulysses} x ring {config.ring} x CFG {config.cfg}"
              f"{', weights sharded' if config.shard_weights else ''}", file=sys.stderr)

    def encode(prompt, template):
        def make():
            e = encode_prompt(encoders, prompt, template=template)
            return {"text_states": e.text_states, "text_mask": e.text_mask, "text_states_2": e.text_states_2}
        got = broadcast_tensors(make)
        return PromptEmbeds(got["text_states"], got["text_mask"], got["text_states_2"], prompts=(prompt,),
                            template=template)
    return encode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyvideo_core", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="text -> .mp4 (embedded default model unless paths are given)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--out", default="outputs/video.mp4")
    gen.add_argument("--negative", default=None)
    gen.add_argument("--frames", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--steps", type=int)
    gen.add_argument("--shift", type=float)
    gen.add_argument("--guidance", type=float, help="embedded guidance scale (distilled models)")
    gen.add_argument("--cfg", type=float, default=1.0, help="true CFG scale (> 1 runs a negative pass)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--fps", type=float, default=24.0)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--model", choices=["toy", "tiny-demo"], default="toy",
                     help="embedded model when no --transformer is given: the trained toy-world model (64x64x17, "
                          "prompts like 'a red circle moving left slowly on a dark background') or the tiny "
                          "random-weight demo")
    for name in ("transformer", "vae", "text-encoder", "clip"):
        gen.add_argument(f"--{name}", default=None, help=f"{name} weights (default: the embedded model)")
    gen.add_argument("--save-tensor", default=None, help="also write the decoded video (1, 3, F, H, W) in [-1, 1] "
                                                         "as .safetensors")
    par = gen.add_argument_group("several processes (launch with torchrun; default split: automatic)")
    par.add_argument("--ulysses", type=int, default=0, help="Ulysses degree (must divide the attention heads)")
    par.add_argument("--ring", type=int, default=0, help="ring degree")
    par.add_argument("--cfg-parallel", action="store_true", help="the two CFG branches on two halves of the ranks")
    par.add_argument("--shard-weights", action="store_true", help="each rank keeps ~1/N of the transformer's weights "
                                                                 "(FSDP2), so N smaller cards hold the model")
    par.add_argument("--dist-timeout", type=float, default=120.0,
                     help="seconds a rank waits for the others before failing (a rank died)")
    gen.set_defaults(func=cmd_generate)

    conv = sub.add_parser("convert", help="rewrite a transformer checkpoint in another layout")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--layout", choices=["official", "diffusers"], default="official")
    conv.add_argument("--dtype", choices=sorted(_DTYPES), default=None)
    conv.set_defaults(func=cmd_convert)

    info = sub.add_parser("info", help="detect a transformer file's variant and layout")
    info.add_argument("path")
    info.set_defaults(func=cmd_info)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except HyVideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
