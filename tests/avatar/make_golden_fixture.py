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

* ``schedule.<case>.*``: the official pipeline's denoising loop (``HunyuanVideoAudioPipeline.__call__``, 50 steps,
  cfg 7.5, flow shift 5) run for a long clip (``long``: 305 audio frames, three circular windows per step) and a
  one-window clip (``short``: 129 frames). A recording transformer stands in for the DiT: for every model call it
  reads the loop's own variables from the calling frame (step ``i``, ``index_start``, ``idx_list``,
  ``idx_list_audio``, the guidance scale, the face-mask strength, which prompt the unconditional branch got,
  ``is_cache``) and returns the closed-form velocity :func:`stand_in_velocity`; the stand-in VAE records the
  latents the loop hands to ``decode``. Recorded: those per-call values, the buffer lengths, the initial latents,
  the audio (one number per frame: the pipeline only slices frames) and the final latents.

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

5. The pipeline module imports ``hymm_sp.vae.autoencoder_kl_causal_3d`` and ``hymm_sp.text_encoder`` only for an
   ``isinstance`` check and annotations (their real imports pull in loguru, decord, LLaVA, ...): stand-in modules
   with empty ``AutoencoderKLCausal3D`` / ``TextEncoder`` classes take their place. The pipeline object is made
   with ``__new__`` (no ``DiffusionPipeline`` registration of stand-in components; its execution device is the CPU
   and ``maybe_free_model_hooks``, which frees offload hooks it never got, does nothing) and runs in float32
   (``precision fp32``, autocast off); its text encoders are stand-ins giving the positive prompt states of +1
   and the negative prompt -1.

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
    # a spec, so that libraries probing with importlib.util.find_spec (diffusers does) see a module, not an error
    package.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None, is_package=True)
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


# ----------------------------------------------------------------------------------------------
# the official pipeline loop, recorded


def stand_in_velocity(x, text_states, audio, face_mask):
    """The recording transformer's output: a closed form of the latents (B, C, 33, h, w), the prompt states, the
    audio windows (B, 129, ...) and the face mask, so that every input of a call shows in the result."""
    b = x.shape[0]
    a = audio.float().reshape(b, audio.shape[1], -1).mean(-1)                     # (B, 129)
    a = torch.cat([a[:, :1].expand(-1, 3), a], dim=1).reshape(b, -1, 4).mean(-1)  # (B, 33): 4 frames per latent
    text = text_states.float().reshape(b, -1).mean(-1)
    strength = face_mask.float().reshape(b, -1).amax(-1)
    return (-0.3 * x.float() + 0.05 * text[:, None, None, None, None]
            + 0.1 * strength[:, None, None, None, None] * a[:, None, :, None, None])


class RecordingTransformer:
    def __init__(self, in_channels: int):
        self.config = SimpleNamespace(in_channels=in_channels)
        self.calls, self.cache_out = [], None

    def __call__(self, x, t, ref_latents=None, text_states=None, text_mask=None, text_states_2=None, freqs_cos=None,
                 freqs_sin=None, guidance=None, return_dict=True, is_cache=False, **kwargs):
        loop = sys._getframe(1).f_locals          # the pipeline's __call__: what its loop computed for this call
        pipe = loop["self"]
        negative = loop["negative_prompt_embeds"][0]
        uncond_text = text_states[0]
        if not (torch.equal(uncond_text, negative) or torch.equal(uncond_text, loop["prompt_embeds"][0])):
            raise SystemExit("the unconditional branch got neither prompt")
        self.calls.append(dict(
            step=loop["i"], index_start=loop["index_start"], latents=list(loop["idx_list"]),
            audio=list(loop["idx_list_audio"]), scale=float(pipe._guidance_scale),
            mask_scale=float(kwargs["face_mask"].amax() / loop["face_masks"].amax()),
            negative_prompt=bool(torch.equal(uncond_text, negative)), full=not is_cache, timestep=float(t[0])))
        b, _, f, h, w = x.shape
        tokens = (f + 1) * (h // 2) * (w // 2) + text_states.shape[1]
        self.cache_out = torch.zeros(b, tokens, 3072)   # the loop's frame cache reads this (hidden 3072 literal)
        return {"x": stand_in_velocity(x, text_states, kwargs["audio_prompts"], kwargs["face_mask"])}


class StandInTextEncoder:
    dtype = torch.float32

    def __init__(self, positive: str, shape):
        self.positive, self.shape = positive, shape

    def text2tokens(self, text, data_type="video"):
        text = text if isinstance(text, str) else text[0]
        return {"input_ids": torch.zeros(1, 1, dtype=torch.long), "attention_mask": torch.ones(1, 1), "text": text}

    def encode(self, inputs, data_type="video", **kwargs):
        sign = 1.0 if inputs["text"] == self.positive else -1.0
        states = torch.full((1, *self.shape), sign)
        mask = torch.ones(1, self.shape[0], dtype=torch.long) if len(self.shape) == 2 else None
        return SimpleNamespace(hidden_state=states, attention_mask=mask)


class RecordingVae:
    config = SimpleNamespace(scaling_factor=1.0)

    def __init__(self):
        self.decoded = None

    def decode(self, latents, return_dict=False, generator=None):
        self.decoded = latents.detach().clone()
        b, _, f, h, w = latents.shape
        return (torch.zeros(b, 3, f, h * 8, w * 8),)


def import_official_pipeline():
    vae_package, vae_module = types.ModuleType("hymm_sp.vae"), types.ModuleType("hymm_sp.vae.autoencoder_kl_causal_3d")
    vae_module.AutoencoderKLCausal3D = type("AutoencoderKLCausal3D", (), {})
    vae_package.__path__, vae_package.autoencoder_kl_causal_3d = [], vae_module
    text_module = types.ModuleType("hymm_sp.text_encoder")
    text_module.TextEncoder = type("TextEncoder", (), {})
    sys.modules.update({"hymm_sp.vae": vae_package, "hymm_sp.vae.autoencoder_kl_causal_3d": vae_module,
                        "hymm_sp.text_encoder": text_module})
    from hymm_sp.diffusion.pipelines.pipeline_hunyuan_video_audio import HunyuanVideoAudioPipeline
    from hymm_sp.diffusion.schedulers import FlowMatchDiscreteScheduler

    class CpuPipeline(HunyuanVideoAudioPipeline):
        _execution_device = torch.device("cpu")

        def maybe_free_model_hooks(self):   # no offload hooks were installed; diffusers' version needs registration
            pass

    return CpuPipeline, FlowMatchDiscreteScheduler


def record_pipeline(pipeline_cls, scheduler_cls, audio_frames: int, in_channels: int, seed: int):
    from diffusers.configuration_utils import FrozenDict

    prompt, negative = "a person talks to the camera", "Aerial view, low quality"
    pipe = pipeline_cls.__new__(pipeline_cls)
    transformer, vae = RecordingTransformer(in_channels), RecordingVae()
    for name, value in dict(vae=vae, transformer=transformer, scheduler=scheduler_cls(shift=5.0, reverse=True,
                            solver="euler"), text_encoder=StandInTextEncoder(prompt, (6, 8)),
                            text_encoder_2=StandInTextEncoder(prompt, (4,)), vae_scale_factor=8,
                            args=SimpleNamespace(precision="fp32", vae_precision="fp32", val_disable_autocast=True),
                            _progress_bar_config={"disable": True}, _internal_dict=FrozenDict()).items():
        object.__setattr__(pipe, name, value)
    gen = torch.Generator().manual_seed(seed)
    buffer = (audio_frames // 128 + 1) * 32 + 1
    latents = torch.randn(1, in_channels, buffer, 2, 2, generator=gen)
    audio = torch.randn(1, audio_frames, 1, 1, 1, generator=gen)
    pipe(prompt=prompt, ref_latents=torch.zeros(1, in_channels, 33, 2, 2), uncond_ref_latents=None,
         pixel_value_llava=torch.zeros(1, 3, 4, 4), uncond_pixel_value_llava=torch.zeros(1, 3, 4, 4),
         face_masks=torch.full((1, 1, 1, 2, 2), 0.8), audio_prompts=audio,
         uncond_audio_prompts=torch.zeros_like(audio[:, :129]), motion_exp=torch.full((1, 4), 30),
         motion_pose=torch.full((1, 4), 25), fps=torch.tensor([25.0], dtype=torch.float64), height=16, width=16,
         frame=129, num_inference_steps=50, guidance_scale=7.5, negative_prompt=negative,
         generator=torch.Generator().manual_seed(seed), latents=latents.clone(), output_type="pt",
         freqs_cis=(None, None), vae_ver="884-16c-hy0801", enable_tiling=False, n_tokens=34, cpu_offload=0)
    calls = transformer.calls
    as_ints = lambda key: torch.tensor([c[key] for c in calls], dtype=torch.int32)
    return {
        "step": as_ints("step"), "index_start": as_ints("index_start"), "latent_index": as_ints("latents"),
        "audio_index": as_ints("audio"), "full": as_ints("full"), "negative_prompt": as_ints("negative_prompt"),
        "scale": torch.tensor([c["scale"] for c in calls], dtype=torch.float64),
        "mask_scale": torch.tensor([c["mask_scale"] for c in calls], dtype=torch.float64),
        "timestep": torch.tensor([c["timestep"] for c in calls], dtype=torch.float64),
        "initial_latents": latents, "audio": audio, "final_latents": vae.decoded,
    }


def source_arguments(argv, description: str, default_out: Path) -> argparse.Namespace:
    """--source (an exported official tree), --commit (its full hash) and --out, checked."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", required=True, type=Path, help="exported HunyuanVideo-Avatar tree (holds hymm_sp/)")
    parser.add_argument("--commit", required=True, help="the official commit the tree was exported from")
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        parser.error(f"--commit must be a full 40-hex commit hash, found {args.commit!r}")
    if not (args.source / "hymm_sp" / "modules" / "models_audio.py").is_file():
        parser.error(f"{args.source} does not hold hymm_sp/modules/models_audio.py (the official avatar source)")
    return args


def main(argv=None) -> int:
    args = source_arguments(argv, __doc__.splitlines()[0], DEFAULT_OUT)

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

    pipeline_cls, scheduler_cls = import_official_pipeline()
    for case, frames in (("long", 305), ("short", 129)):
        recorded = record_pipeline(pipeline_cls, scheduler_cls, frames, cfg.in_channels, seed=3)
        tensors |= {f"schedule.{case}.{k}": v.contiguous() for k, v in recorded.items()}
        print(f"schedule.{case}: {len(recorded['step'])} model calls, final latents "
              f"{tuple(recorded['final_latents'].shape)}")

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
