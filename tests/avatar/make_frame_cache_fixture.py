"""Record the frame-cache golden fixture from the official HunyuanVideo-Avatar model (CPU, float32).

    python tests/avatar/make_frame_cache_fixture.py --source /tmp/hva --commit <40-hex commit> \
        [--out tests/avatar/golden_frame_cache.safetensors]

Same official model, weights and patches as ``make_golden_fixture.py`` (whose helpers this imports; its state is
``state.*`` of ``golden_avatar.safetensors``): its forward runs the ``cfg_pair`` inputs in full (``is_cache=False``,
which stores the last single block's input in ``model.cache_out``), then a second call on other latents at another
timestep with ``is_cache=True`` (only the last single block runs, on ``cache_out``). Recorded: that second call's
inputs and output. Nothing of the official code is copied here; it is imported from ``--source`` at run time.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_golden_fixture as golden  # noqa: E402

DEFAULT_OUT = HERE / "golden_frame_cache.safetensors"


def forward(model, rope_fn, cfg, inputs, is_cache: bool):
    _, _, frames, height, width = inputs["x"].shape
    grid = [frames // cfg.patch_size[0], height // cfg.patch_size[1], width // cfg.patch_size[2]]
    cos, sin = rope_fn(list(cfg.rope_axes), grid, theta=cfg.rope_theta, use_real=True, theta_rescale_factor=1,
                       concat_dict={"mode": "timecat", "bias": -1})
    with torch.no_grad():
        return model(inputs["x"], inputs["t"], ref_latents=inputs["ref_latents"], text_states=inputs["text_states"],
                     text_mask=inputs["text_mask"], text_states_2=inputs["text_states_2"], freqs_cos=cos,
                     freqs_sin=sin, guidance=None, return_dict=True, is_cache=is_cache,
                     motion_exp=inputs["motion_exp"], motion_pose=inputs["motion_pose"], fps=inputs["fps"],
                     audio_prompts=inputs["audio_prompts"], face_mask=inputs["face_mask"])["x"]


def main(argv=None) -> int:
    args = golden.source_arguments(argv, __doc__.splitlines()[0], DEFAULT_OUT)
    sys.path.insert(0, str(golden.REPO))
    from safetensors.torch import save_file

    from hyvideo_core.variants import VARIANTS

    spec = VARIANTS[golden.VARIANT]
    cfg, avatar = spec.transformer, spec.app.config
    torch.manual_seed(0)
    cls, rope_fn = golden.import_official(args.source.resolve(), avatar)
    model = golden.build_official(cls, cfg)
    first = golden.make_inputs(cfg, avatar, batch=2, latent_frames=3, height=8, width=12, mask_frames=1, seed=1)
    second = dict(first)
    gen = torch.Generator().manual_seed(4)
    second["x"] = torch.randn(first["x"].shape, generator=gen)          # the latents moved on: ignored when cached
    second["t"] = torch.tensor([812.5, 125.0])
    forward(model, rope_fn, cfg, first, is_cache=False)
    out = forward(model, rope_fn, cfg, second, is_cache=True)
    tensors = {f"cached.input.{k}": v.contiguous() for k, v in second.items()}
    tensors["cached.output"] = out.contiguous()
    metadata = {"official_repo": "Tencent-Hunyuan/HunyuanVideo-Avatar", "official_commit": args.commit,
                "variant": golden.VARIANT, "seed": str(golden.SEED), "torch": torch.__version__,
                "first_call": "cfg_pair of golden_avatar.safetensors",
                "made_by": "tests/avatar/make_frame_cache_fixture.py"}
    tmp = args.out.with_name(args.out.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.1f} kB): cached output {tuple(out.shape)}, "
          f"|out| mean {out.abs().mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
