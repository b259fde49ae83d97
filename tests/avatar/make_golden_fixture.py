"""Record the golden avatar fixture from the official HunyuanVideo-Avatar code (CPU, float32).

    python tests/avatar/make_golden_fixture.py --source /tmp/hva --commit <40-hex commit> \
        [--out tests/avatar/golden_avatar.safetensors]

``--source`` is an exported tree of github.com/Tencent-Hunyuan/HunyuanVideo-Avatar (the folder that holds
``hymm_sp/``), for example ``git --git-dir=<mirror> archive HEAD -- hymm_sp | tar -x -C /tmp/hva``; ``--commit``
is the commit it was exported from (written into the fixture's metadata and checked by the test). Nothing of
the official code is copied into this repository: the script imports it from ``--source`` at run time.

It builds the official ``HYVideoDiffusionTransformer`` (audio) at the ``tiny-avatar`` sizes of our variant
registry, fills every parameter from a seeded generator (the released init zeroes several layers, which would
hide mistakes), runs its forward on seeded inputs and records, into one ``.safetensors`` file:

* ``state.<key>``: the official model's whole state dict (its own key names: loading it into our model with
  an identity map is part of the test);
* ``<case>.input.<name>`` / ``<case>.output``: the forward's inputs and the velocity it returns, for two cases:
  ``cfg_pair`` (batch 2: the second prompt right-padded, distinct motion/fps values, a one-frame face mask with
  values in 0..1) and ``per_frame_mask`` (batch 1, a face mask given for every latent frame);
* ``audio_proj.input`` / ``audio_proj.output``: the model's ``AudioProjNet2`` on the ``cfg_pair`` audio windows.

RoPE tables are what the official pipeline passes (``get_nd_rotary_pos_embed_new`` with
``concat_dict={'mode': 'timecat', 'bias': -1}``, theta 256); they are inputs of the official forward only (ours
computes its own), so they are not recorded.

Stand-ins and patches (the official code needs CUDA/flash-attn and builds only at hidden size 3072, §G of
shared/spec/official_apps.md); each is the least needed to run it on CPU at test size:

1. ``flash_attn`` is put in ``sys.modules`` (after diffusers was imported and found none) as a stand-in whose ``flash_attn_interface.flash_attn_varlen_func``
   is a pure-torch varlen attention: softmax(q k^T / sqrt(d)) v within each ``cu_seqlens`` segment. The other
   ``flash_attn`` names are absent, so ``attn_layers``'s own ``try/except ImportError`` takes its non-flash path.
2. ``DISABLE_SP=1`` is set before the import, as the official single-GPU scripts do, so the forward calls that
   varlen attention directly (no sequence-parallel communication).
3. ``hymm_sp/modules/parallel_states.py``: ``get_cu_seqlens`` allocates with ``device="cuda"``; patched to
   ``device=text_mask.device``.
4. ``hymm_sp/modules/models_audio.py``, literal sizes of the 13B model, replaced by the tiny variant's:
   ``AudioProjNet2(..., channels=384, intermediate_dim=1024, output_dim=3072, ...)`` -> the variant's Whisper
   width, audio MLP width and ``self.hidden_size``; ``PerceiverAttentionCA(dim=3072, dim_head=1024, heads=33)``
   -> ``dim=self.hidden_size, dim_head=<adapter_dim>``; ``self.double_stream_list = [1, 3, ..., 19]`` -> the
   variant's ``adapter_after``; the three ``3072`` literals in the forward's reshapes -> ``self.hidden_size``.
   The structural literals (10-frame windows, 5 hidden states, 4 tokens per frame, 16 tokens per latent frame)
   are left as released, and the script checks that the variant uses the same values.

The patches are applied to the source text while importing (an import hook); each must match exactly as often
as listed, so a changed official file stops the script instead of being patched wrongly.
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import math
import os
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "avatar" / "golden_avatar.safetensors"
VARIANT = "tiny-avatar"
SEED = 20250616


# ----------------------------------------------------------------------------------------------
# stand-ins and source patches


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, *args, **kwargs):
    """flash_attn_varlen_func on CPU: (total, H, D) packed sequences, attention within each segment."""
    out = torch.empty_like(q)
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for (q0, q1), (k0, k1) in zip(zip(bounds_q, bounds_q[1:]), zip(bounds_k, bounds_k[1:])):
        if q1 == q0:
            continue
        qs, ks, vs = (t.transpose(0, 1)[None] for t in (q[q0:q1], k[k0:k1], v[k0:k1]))   # (1, H, L, D)
        out[q0:q1] = F.scaled_dot_product_attention(qs, ks, vs)[0].transpose(0, 1)
    return out


def install_flash_attn_stand_in() -> None:
    package = types.ModuleType("flash_attn")
    package.__path__ = []
    interface = types.ModuleType("flash_attn.flash_attn_interface")
    interface.flash_attn_varlen_func = varlen_attention
    package.flash_attn_interface = interface
    sys.modules["flash_attn"] = package
    sys.modules["flash_attn.flash_attn_interface"] = interface


def source_patches(avatar, hidden_literal: str = "3072"):
    """module name -> [(old, new, expected count)]."""
    adapters = list(avatar.adapter_after)
    return {
        "hymm_sp.modules.parallel_states": [
            ('device="cuda"', "device=text_mask.device", 1),
        ],
        "hymm_sp.modules.models_audio": [
            ("AudioProjNet2(seq_len=10, blocks=5, channels=384, intermediate_dim=1024, output_dim=3072, "
             "context_tokens=4)",
             f"AudioProjNet2(seq_len=10, blocks=5, channels={avatar.whisper_dim}, "
             f"intermediate_dim={avatar.audio_hidden}, output_dim=self.hidden_size, context_tokens=4)", 1),
            ("PerceiverAttentionCA(dim=3072, dim_head=1024, heads=33)",
             f"PerceiverAttentionCA(dim=self.hidden_size, dim_head={avatar.adapter_dim}, heads=33)", 1),
            ("self.double_stream_list = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]",
             f"self.double_stream_list = {adapters}", 1),
            (f"view(bsz, ot, -1, {hidden_literal})", "view(bsz, ot, -1, self.hidden_size)", 1),
            (f"view(bsz, ot, 16, {hidden_literal})", "view(bsz, ot, 16, self.hidden_size)", 1),
            (f"view(bsz, -1, {hidden_literal})", "view(bsz, -1, self.hidden_size)", 1),
        ],
    }


class PatchingLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, patches):
        super().__init__(fullname, path)
        self.patches = patches

    def get_code(self, fullname):   # never a cached .pyc: always the patched source
        text = self.get_data(self.path).decode("utf-8")
        for old, new, count in self.patches:
            found = text.count(old)
            if found != count:
                raise SystemExit(f"{self.path}: expected {count} occurrence(s) of {old!r} to patch, found {found}; "
                                 f"the official file changed, review the patches in {__file__}")
            text = text.replace(old, new)
        return compile(text, self.path, "exec", dont_inherit=True)


class PatchingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, source: Path, patches):
        self.source, self.patches = source, patches

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.patches:
            return None
        file = self.source.joinpath(*fullname.split(".")).with_suffix(".py")
        return importlib.util.spec_from_file_location(
            fullname, file, loader=PatchingLoader(fullname, str(file), self.patches[fullname]))


def import_official(source: Path, avatar):
    # diffusers probes for flash_attn when first imported; let it see that there is none before the stand-in
    import diffusers.configuration_utils  # noqa: F401
    import diffusers.models  # noqa: F401

    os.environ["DISABLE_SP"] = "1"
    install_flash_attn_stand_in()
    sys.meta_path.insert(0, PatchingFinder(source, source_patches(avatar)))
    sys.path.insert(0, str(source))
    # the model first: importing hymm_sp.helpers first runs into the official package's import circle
    from hymm_sp.modules.models_audio import HYVideoDiffusionTransformer
    from hymm_sp.helpers import get_nd_rotary_pos_embed_new
    return HYVideoDiffusionTransformer, get_nd_rotary_pos_embed_new


# ----------------------------------------------------------------------------------------------
# model, weights, inputs


def build_official(cls, cfg):
    args = SimpleNamespace(text_projection="single_refiner", text_states_dim=cfg.text_states_dim,
                           use_attention_mask=True, text_states_dim_2=cfg.text_states_dim_2)
    model = cls(args, patch_size=list(cfg.patch_size), in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                hidden_size=cfg.hidden_size, mlp_width_ratio=cfg.mlp_width_ratio, num_heads=cfg.heads_num,
                depth_double_blocks=cfg.double_depth, depth_single_blocks=cfg.single_depth,
                rope_dim_list=list(cfg.rope_axes), qkv_bias=cfg.qkv_bias, guidance_embed=cfg.guidance_embed)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif p.dim() == 1:            # norm scales
                p.copy_(1.0 + 0.1 * noise)
            else:                         # 1/sqrt(fan-in) keeps every layer's output near unit scale
                p.copy_(noise / math.sqrt(p[0].numel()))
    return model.eval()


def make_inputs(cfg, avatar, batch: int, latent_frames: int, height: int, width: int, mask_frames: int,
                seed: int):
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen)
    text_len = 12
    mask = torch.ones(batch, text_len, dtype=torch.int64)
    if batch > 1:
        mask[1:, 7:] = 0
    frames = avatar.audio_frames(latent_frames)
    return {
        "x": randn(batch, cfg.in_channels, latent_frames, height, width),
        "t": torch.tensor([937.5, 250.0][:batch]),
        "ref_latents": randn(batch, cfg.in_channels, latent_frames, height, width),
        "text_states": randn(batch, text_len, cfg.text_states_dim),
        "text_mask": mask,
        "text_states_2": randn(batch, cfg.text_states_dim_2),
        "audio_prompts": randn(batch, frames, avatar.audio_window, avatar.whisper_layers, avatar.whisper_dim),
        "face_mask": torch.rand(batch, 1, mask_frames, height, width, generator=gen),
        "motion_exp": torch.tensor([[30, 30, 30, 30], [5, 17, 42, 64]][:batch], dtype=torch.int64),
        "motion_pose": torch.tensor([[25, 25, 25, 25], [3, 11, 29, 50]][:batch], dtype=torch.int64),
        "fps": torch.tensor([25.0, 12.5][:batch], dtype=torch.float64),   # the pipeline passes float64
    }


def official_forward(model, rope_fn, cfg, inputs):
    _, _, frames, height, width = inputs["x"].shape
    grid = [frames // cfg.patch_size[0], height // cfg.patch_size[1], width // cfg.patch_size[2]]
    cos, sin = rope_fn(list(cfg.rope_axes), grid, theta=cfg.rope_theta, use_real=True, theta_rescale_factor=1,
                       concat_dict={"mode": "timecat", "bias": -1})
    with torch.no_grad():
        return model(inputs["x"], inputs["t"], ref_latents=inputs["ref_latents"], text_states=inputs["text_states"],
                     text_mask=inputs["text_mask"], text_states_2=inputs["text_states_2"], freqs_cos=cos,
                     freqs_sin=sin, guidance=None, return_dict=True, motion_exp=inputs["motion_exp"],
                     motion_pose=inputs["motion_pose"], fps=inputs["fps"], audio_prompts=inputs["audio_prompts"],
                     face_mask=inputs["face_mask"])["x"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="exported HunyuanVideo-Avatar tree (holds hymm_sp/)")
    parser.add_argument("--commit", required=True, help="the official commit the tree was exported from")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        parser.error(f"--commit must be a full 40-hex commit hash, found {args.commit!r}")
    if not (args.source / "hymm_sp" / "modules" / "models_audio.py").is_file():
        parser.error(f"{args.source} does not hold hymm_sp/modules/models_audio.py (the official avatar source)")

    sys.path.insert(0, str(REPO))
    from hyvideo_core.variants import VARIANTS
    from safetensors.torch import save_file

    spec = VARIANTS[VARIANT]
    cfg, avatar = spec.transformer, spec.app.config
    released = dict(audio_window=10, whisper_layers=5, tokens_per_frame=4, frames_per_latent=4)
    differs = {k: getattr(avatar, k) for k, v in released.items() if getattr(avatar, k) != v}
    if differs:
        raise SystemExit(f"variant {VARIANT} must keep the released structural sizes {released}; it has {differs}")

    torch.manual_seed(0)
    cls, rope_fn = import_official(args.source.resolve(), avatar)
    model = build_official(cls, cfg)

    tensors = {f"state.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    cases = {
        "cfg_pair": make_inputs(cfg, avatar, batch=2, latent_frames=3, height=8, width=12, mask_frames=1, seed=1),
        "per_frame_mask": make_inputs(cfg, avatar, batch=1, latent_frames=2, height=6, width=8, mask_frames=2, seed=2),
    }
    for case, inputs in cases.items():
        out = official_forward(model, rope_fn, cfg, inputs)
        tensors |= {f"{case}.input.{k}": v.contiguous() for k, v in inputs.items()}
        tensors[f"{case}.output"] = out.contiguous()
        print(f"{case}: output {tuple(out.shape)}, |out| mean {out.abs().mean():.4f}")
    with torch.no_grad():
        audio_in = cases["cfg_pair"]["audio_prompts"]
        tensors["audio_proj.input"] = audio_in.clone()
        tensors["audio_proj.output"] = model.audio_proj(audio_in).contiguous()

    metadata = {"official_repo": "Tencent-Hunyuan/HunyuanVideo-Avatar", "official_commit": args.commit,
                "variant": VARIANT, "seed": str(SEED), "torch": torch.__version__,
                "made_by": "tests/avatar/make_golden_fixture.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
