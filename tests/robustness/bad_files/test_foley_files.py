"""Files that are not a loadable Foley model, given to ``load_foley`` — and a Foley model given to the
video loaders: each a clear error naming what the file is, or which tensors are wrong, and what to
load instead."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from hyvideo_core import load_transformer, load_vae, save_transformer
from hyvideo_core.errors import (CheckpointError, IncompatibleWeightsError, UnknownCheckpointError,
                                 UnsafeCheckpointError)
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.v2a.config import FoleyConfig
from hyvideo_core.v2a.load import load_foley
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.vae import CausalVideoVAE, save_vae
from hyvideo_core.variants import get_variant

pytestmark = pytest.mark.robustness


def _foley_state(**overrides):
    cfg = FoleyConfig(**{**dict(hidden_size=32, heads_num=2, triple_depth=2, single_depth=2, audio_latent_dim=8,
                                visual_dim=16, sync_dim=12, text_dim=20), **overrides})
    return {k: v.clone() for k, v in HunyuanVideoFoley(cfg).state_dict().items()}


# -- files of another kind given to the Foley loader ------------------------------------------------------

def _video_transformer(path):
    save_transformer(HunyuanVideoTransformer(get_variant("tiny").transformer), path)


def _video_vae(path):
    save_vae(CausalVideoVAE(get_variant("tiny").vae), path)


def _dac_audio_vae(path):
    # the DAC-VAE's top-level layout (weight-norm convs of encoder/decoder, quant convs), as audiotools saves it
    state = {"encoder.block.0.weight_g": torch.ones(4, 1, 1), "encoder.block.0.weight_v": torch.ones(4, 1, 7),
             "quant_conv.weight": torch.ones(16, 8, 1), "post_quant_conv.weight": torch.ones(8, 8, 1),
             "decoder.model.0.weight_v": torch.ones(16, 8, 7)}
    torch.save({"state_dict": state, "metadata": {"kwargs": {"latent_dim": 8}}}, path)


def _synchformer(path):
    torch.save({"vfeat_extractor.patch_embed.proj.weight": torch.ones(4, 3, 2, 16, 16),
                "vfeat_extractor.pos_embed": torch.ones(1, 5, 4)}, path)


def _random_tensors(path):
    save_file({"a.weight": torch.ones(2, 2), "b.bias": torch.ones(2)}, str(path))


@pytest.mark.parametrize("write, name, message", [
    (_video_transformer, "t2v.safetensors", r"is not a HunyuanVideo-Foley model.*video transformer.*load_transformer"),
    (_video_vae, "vae.safetensors", r"is not a HunyuanVideo-Foley model.*video VAE; load it with load_vae"),
    (_dac_audio_vae, "vae_128d_48k.pth", r"DAC audio VAE of HunyuanVideo-Foley \(vae_128d_48k\.pth\).*pick "
                                         r"hunyuanvideo_foley\.pth"),
    (_synchformer, "synchformer_state_dict.pth", r"Synchformer feature extractor"),
    (_random_tensors, "other.safetensors", r"expected 'audio_embedder\.proj\.weight'.*found 2 keys such as"),
], ids=["video_transformer", "video_vae", "dac_audio_vae", "synchformer", "unrelated_tensors"])
def test_other_model_file_is_named(tmp_path, write, name, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(UnknownCheckpointError, match=message):
        load_foley(path)


# -- damaged or modified Foley files ----------------------------------------------------------------------

def _drop(key):
    def damage(state):
        del state[key]
    return damage


def _extra(state):
    state["repa_proj.0.weight"] = torch.zeros(4, 32)   # e.g. a training-only projector strict=False would hide


def _wrong_shape(state):
    state["final_layer.linear.bias"] = state["final_layer.linear.bias"][:3].clone()


def _wider(state):
    state.clear()
    state.update(_foley_state(hidden_size=48, heads_num=3))


@pytest.mark.parametrize("damage, error, message", [
    (_drop("single_blocks.1.linear2.w3.weight"), IncompatibleWeightsError,
     r"matches Foley variant 'foley-tiny' but its tensors do not fit: 1 missing \(e\.g\. "
     r"\['single_blocks\.1\.linear2\.w3\.weight'\]\)"),
    (_drop("final_layer.adaLN_modulation.1.weight"), IncompatibleWeightsError,
     r"1 missing \(e\.g\. \['final_layer\.adaLN_modulation\.1\.weight'\]\)"),
    (_extra, IncompatibleWeightsError, r"1 unexpected \(e\.g\. \['repa_proj\.0\.weight'\]\)"),
    (_wrong_shape, IncompatibleWeightsError, r"1 with the wrong shape \(e\.g\. \['final_layer\.linear\.bias: expected "
                                             r"\(8,\), found \(3,\)'\]\)"),
    (_drop("sync_in.0.weight"), IncompatibleWeightsError,
     r"lacks the tensors its architecture is read from: \['sync_in\.0\.weight'\]"),
    (_wider, UnknownCheckpointError, r"no registered variant.*Closest variant 'foley-tiny' differs in hidden_size: "
                                     r"32 in foley-tiny vs 48 in the file"),
], ids=["missing_block_tensor", "missing_inert_adaln", "unexpected_tensor", "wrong_shape", "missing_architecture_key",
        "unregistered_size"])
def test_damaged_foley_file_names_the_tensors(tmp_path, damage, error, message):
    state = _foley_state()
    damage(state)
    path = tmp_path / "hunyuanvideo_foley.pth"
    torch.save(state, path)
    with pytest.raises(error, match=message):
        load_foley(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "hunyuanvideo_foley.pth"
    with open(path, "wb") as fh:
        pickle.dump({"audio_embedder.proj.weight": _Payload()}, fh)
    with pytest.raises(UnsafeCheckpointError, match="needs arbitrary code execution"):
        load_foley(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "hunyuanvideo_foley.pth"
    torch.save(_foley_state(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_foley(path)


# -- a Foley file given to the video loaders --------------------------------------------------------------

@pytest.mark.parametrize("loader", [load_transformer, load_vae], ids=["video_transformer_loader", "video_vae_loader"])
def test_video_loaders_name_the_foley_loader(tmp_path, loader):
    path = tmp_path / "hunyuanvideo_foley.safetensors"
    save_file(_foley_state(), str(path))
    with pytest.raises(UnknownCheckpointError, match=r"HunyuanVideo-Foley video-to-audio model.*load_foley"):
        loader(path)
