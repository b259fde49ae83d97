"""Record the golden fixture of the Foley DiT from the official HunyuanVideo-Foley code.

    python tests/v2a/make_golden_fixture.py /path/to/HunyuanVideo-Foley [--commit HASH] [--out FILE]

The official repository (github.com/Tencent-Hunyuan/HunyuanVideo-Foley) is read from a local
checkout or export; nothing of it is copied into this project. The script builds the official
``HunyuanVideoFoley`` at the test size of our ``foley-tiny`` variant, on CPU in float32, fills
every parameter with seeded random values (so that the zero-initialised modulation, final layer
and learned empty features all take part), and records into ``foley_golden.safetensors``
(float32, < 2 MB):

* ``state.<key>``: the official state dict (our model must load it with an identity map);
* ``fwd_a.*`` / ``fwd_b.*``: inputs and output of one forward pass each. ``fwd_a``: batch 2,
  25 audio frames, 4 visual frames (visual resized up in the interleaved RoPE), 16 sync tokens
  resampled up to 25. ``fwd_b``: 6 audio frames, 9 visual frames (more visual than audio frames:
  the release's down-and-up resize replaces some visual tokens by neighbours), 24 sync tokens
  resampled down;
* ``dac_state.<key>``: the official continuous ``DAC`` (the audio VAE) at a tiny size
  (``DAC_KWARGS``, also in the metadata), every parameter seeded;
* ``dac.*``: its encoder's Gaussian (mean, clamped log-variance) of a waveform, and its decoding
  of random latents;
* ``sample.*``: the official ``denoise_process`` (its scheduler: Euler, shift 1 from the released
  YAML's ``sample_flow_shift``; CFG 4.5 with the learned empty features and a negative prompt's
  states), 3 steps, batch 1, with the tiny DAC as its audio decoder: the initial noise it drew,
  the features, the latents it passed to the decoder and the waveform it returned.

The metadata names the official commit, torch version and tiny configuration.

Stand-in modules. ``hunyuanvideo_foley/utils/model_utils.py`` (home of ``denoise_process``) imports
packages at module level that the denoising loop never uses; the script puts these stand-ins into
``sys.modules`` before importing it, each one only satisfying an import (they go in after the real
``hifi_foley`` module, and with it diffusers and transformers, has been imported, so no installed
package sees them while probing which optional packages exist):

* ``loguru`` -> an object whose ``logger`` methods do nothing (model_utils only logs);
* ``torchvision``, ``torchvision.transforms``, ``torchvision.transforms.v2`` -> empty modules
  (used by the feature-extraction preprocessing in ``load_model``, not by ``denoise_process``);
* ``audiotools`` (with ``audiotools.ml``, ``audiotools.core``) -> ``AudioSignal``, ``STFTParams``
  and ``ml.Accelerator`` placeholders that are never called, and ``ml.BaseModel`` = a plain
  ``torch.nn.Module`` subclass with the class lists ``INTERN`` / ``EXTERN`` that the package's
  ``__init__`` appends to. The DAC modules import audiotools for file I/O, the discriminator,
  losses and ``BaseModel.load``/``save`` (torch.package); the network itself (encoder, decoder,
  quant convs, ``get_delay``) is plain torch and runs unpatched;
* ``argbind`` -> ``bind(...)`` returning the function unchanged (decorators of the DAC command line);
* ``hunyuanvideo_foley.models.synchformer`` -> a module with a placeholder ``Synchformer``
  (the real one imports torchaudio, timm, omegaconf; not used by ``denoise_process``).

``hunyuanvideo_foley/models/hifi_foley.py`` (the DiT) and the scheduler are the real official
modules, unpatched, and so is ``hunyuanvideo_foley/models/dac_vae/model/dac.py``; their own imports
(diffusers, einops, transformers, numpy) are the installed packages.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "foley_golden.safetensors"
SEED = 20261216

# The official constructor arguments at the size of hyvideo_core's "foley-tiny" variant; every
# other switch as in configs/hunyuanvideo-foley-{xxl,xl}.yaml.
TINY_KWARGS = {
    "depth_triple_blocks": 2, "depth_single_blocks": 2, "hidden_size": 32, "num_heads": 2,
    "mlp_ratio": 4, "mlp_act_type": "gelu_tanh", "qkv_bias": True, "qk_norm": True, "qk_norm_type": "rms",
    "attn_mode": "torch", "embedder_type": "default", "interleaved_audio_visual_rope": True,
    "enable_learnable_empty_visual_feat": True, "sync_modulation": False, "add_sync_feat_to_audio": True,
    "cross_attention": True, "use_attention_mask": False, "condition_projection": "linear",
    "sync_feat_dim": 12, "condition_dim": 20, "clip_dim": 16, "audio_vae_latent_dim": 8, "audio_frame_rate": 50,
    "patch_size": 1, "rope_dim_list": None, "rope_theta": 10000, "text_length": 77, "clip_length": 64,
    "sync_length": 192,
}
DIFFUSION = {"denoise_type": "flow", "flow_path_type": "linear", "flow_predict_type": "velocity",
             "flow_reverse": True, "flow_solver": "euler", "sample_flow_shift": 1.0, "sample_use_flux_shift": False,
             "flux_base_shift": 0.5, "flux_max_shift": 1.15}
SAMPLE_STEPS, SAMPLE_CFG, SAMPLE_SECONDS = 3, 4.5, 0.5
# The official DAC's constructor arguments at test size: the released file's structure (continuous,
# channels doubling per encoder stride, halving per decoder stride) with latent_dim = the tiny DiT's.
DAC_KWARGS = {"encoder_dim": 4, "encoder_rates": [2, 3], "latent_dim": 8, "decoder_dim": 16, "decoder_rates": [3, 2],
              "sample_rate": 48000, "continuous": True}


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def install_audio_stand_ins() -> None:
    class _NeverCalled:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("audiotools stand-in called: the fixture must not reach audiotools")

    class BaseModel(torch.nn.Module):
        INTERN: list = []
        EXTERN: list = []

    audiotools = _module("audiotools", AudioSignal=_NeverCalled, STFTParams=_NeverCalled)
    audiotools.ml = _module("audiotools.ml", BaseModel=BaseModel, Accelerator=_NeverCalled)
    audiotools.core = _module("audiotools.core")
    audiotools.core.util = _module("audiotools.core.util")
    _module("argbind", bind=lambda *args, **kwargs: (lambda fn: fn))


def install_pipeline_stand_ins() -> None:
    class _Logger:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    _module("loguru", logger=_Logger())
    tv = _module("torchvision")
    tv.transforms = _module("torchvision.transforms")
    tv.transforms.v2 = _module("torchvision.transforms.v2")

    class Synchformer:  # placeholder: not used by denoise_process
        pass

    _module("hunyuanvideo_foley.models.synchformer", Synchformer=Synchformer)


def official_commit(source: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{source} is not a git checkout: pass --commit with the official commit it was exported from")


def seeded_parameters(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random: weights ~ N(0, 1/fan_in), biases N(0, 0.1²), norm scales 1 + N(0, 0.1²),
    the learned features and positions N(0, 1) like real features; for the DAC, weight-norm magnitudes
    0.2..0.6 per channel and Snake frequencies 0.5..1.5."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("weight_g"):
                p.copy_(0.2 + 0.4 * torch.rand(p.shape, generator=gen))
            elif name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.dim() >= 2 and not name.startswith(("empty_", "sync_pos_emb")):
                p.copy_(noise / (p[0].numel() ** 0.5))
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("official", type=Path, help="checkout or export of Tencent-Hunyuan/HunyuanVideo-Foley")
    parser.add_argument("--commit", help="the official commit (read with git when the folder is a checkout)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    commit = official_commit(args.official, args.commit)
    record = build_records(args.official)
    from safetensors.torch import save_file

    metadata = {"official_repo": "Tencent-Hunyuan/HunyuanVideo-Foley", "official_commit": commit,
                "torch": torch.__version__, "seed": str(SEED), "tiny_kwargs": json.dumps(TINY_KWARGS),
                "dac_kwargs": json.dumps(DAC_KWARGS),
                "sample": json.dumps({"steps": SAMPLE_STEPS, "cfg": SAMPLE_CFG, "seconds": SAMPLE_SECONDS,
                                      "shift": DIFFUSION["sample_flow_shift"]}),
                "made_by": "tests/v2a/make_golden_fixture.py"}
    save_file({k: v.contiguous() for k, v in record.items()}, str(args.out), metadata=metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) from official commit {commit}")


def build_records(official: Path) -> dict:
    torch.set_num_threads(1)
    sys.path.insert(0, str(official))
    # The DiT module first, with the real installed packages only (diffusers and transformers read
    # which optional packages exist when they are first imported, before any stand-in is present).
    from hunyuanvideo_foley.models.hifi_foley import HunyuanVideoFoley
    from hunyuanvideo_foley.utils.config_utils import AttributeDict

    install_audio_stand_ins()
    from hunyuanvideo_foley.models.dac_vae.model.dac import DAC

    install_pipeline_stand_ins()
    from hunyuanvideo_foley.utils.model_utils import denoise_process

    cfg = AttributeDict({"model_config": {"model_kwargs": TINY_KWARGS}, "diffusion_config": DIFFUSION})
    model = HunyuanVideoFoley(cfg).eval()
    seeded_parameters(model, SEED)
    record = {f"state.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(SEED + 1)
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    c, dv, ds, dt = (TINY_KWARGS[k] for k in ("audio_vae_latent_dim", "clip_dim", "sync_feat_dim", "condition_dim"))

    with torch.no_grad():
        for case, (b, la, lv, ls, lt, t) in {"fwd_a": (2, 25, 4, 16, 7, [937.5, 120.25]),
                                             "fwd_b": (1, 6, 9, 24, 3, [500.0])}.items():
            inputs = {"x": rand(b, c, la), "t": torch.tensor(t), "visual": rand(b, lv, dv), "sync": rand(b, ls, ds),
                      "text": rand(b, lt, dt)}
            out = model(x=inputs["x"], t=inputs["t"], clip_feat=inputs["visual"].clone(), cond=inputs["text"],
                        sync_feat=inputs["sync"].clone(), return_dict=False)
            record |= {f"{case}.{k}": v for k, v in inputs.items()} | {f"{case}.out": out}

    dac = DAC(**DAC_KWARGS).eval()
    seeded_parameters(dac, SEED + 3)
    record |= {f"dac_state.{k}": v.detach().clone() for k, v in dac.state_dict().items()}
    with torch.no_grad():
        audio = torch.tanh(rand(2, 1, 24 * 6))          # 24 latent frames at hop 6
        posterior = dac.encode(audio)[0]
        latents = rand(2, DAC_KWARGS["latent_dim"], 17)
        record |= {"dac.audio": audio, "dac.mean": posterior.mean, "dac.logvar": posterior.logvar,
                   "dac.latents": latents, "dac.decoded": dac.decode(latents)}

    la = int(SAMPLE_SECONDS * TINY_KWARGS["audio_frame_rate"])
    visual, sync = rand(1, 4, dv), rand(1, 16, ds)
    text, negative = rand(1, 6, dt), rand(1, 6, dt)
    seen = {}

    def first_call(module, args, kwargs):
        seen.setdefault("noise", kwargs["x"][:1].clone())

    class DecoderRecorder:
        """The tiny DAC, recording the latents denoise_process hands it."""
        sample_rate = dac.sample_rate

        def decode(self, latents):
            seen["latents"] = latents.clone()
            return dac.decode(latents)

    model.register_forward_pre_hook(first_call, with_kwargs=True)
    model_dict = AttributeDict({"foley_model": model, "dac_model": DecoderRecorder(), "device": torch.device("cpu")})
    torch.manual_seed(SEED + 2)
    waveform, _ = denoise_process(AttributeDict({"siglip2_feat": visual, "syncformer_feat": sync}),
                    AttributeDict({"text_feat": text, "uncond_text_feat": negative}), SAMPLE_SECONDS, model_dict, cfg,
                    guidance_scale=SAMPLE_CFG, num_inference_steps=SAMPLE_STEPS)
    assert seen["noise"].shape == (1, c, la), seen["noise"].shape
    record |= {"sample.noise": seen["noise"], "sample.visual": visual, "sample.sync": sync, "sample.text": text,
               "sample.negative_text": negative, "sample.out": seen["latents"].float(), "sample.audio": waveform}
    return record


if __name__ == "__main__":
    main()
