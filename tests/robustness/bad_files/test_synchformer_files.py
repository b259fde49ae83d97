"""Files that are not a loadable Synchformer, given to ``load_synchformer`` — and a Synchformer given to
the Foley and audio-VAE loaders: each a clear error naming what the file is (or which tensors are
wrong) and what to load instead; a missing file names what to download and where to put it."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from hyvideo_core import load_transformer, load_vae, save_transformer
from hyvideo_core.errors import (CheckpointError, IncompatibleWeightsError, UnknownCheckpointError,
                                 UnsafeCheckpointError)
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.v2a.audio_vae import load_audio_vae
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.features import FeatureModelMissingError
from hyvideo_core.v2a.features.synchformer import (SYNCHFORMER_CONFIGS, Synchformer, SynchformerConfig,
                                                   load_synchformer)
from hyvideo_core.v2a.load import load_foley
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.vae import CausalVideoVAE, save_vae
from hyvideo_core.variants import get_variant

pytestmark = pytest.mark.robustness

TINY = SYNCHFORMER_CONFIGS["synchformer-tiny"]


def _synch_state(cfg: SynchformerConfig = TINY):
    state = {k: v.clone() for k, v in Synchformer(cfg).state_dict().items()}
    # as in the official file: the unused 2-D patch embedding and the audio branch / classifier beside it
    state["vfeat_extractor.patch_embed.proj.weight"] = torch.zeros(cfg.embed_dim, 3, 16, 16)
    state["vfeat_extractor.patch_embed.proj.bias"] = torch.zeros(cfg.embed_dim)
    state["afeat_extractor.patch_embed.proj.weight"] = torch.zeros(2, 1, 16, 16)
    state["transformer.blocks.0.attn.key.weight"] = torch.zeros(2, 2)
    state["vproj.weight"] = torch.zeros(2, 2)
    return state


# -- files of another kind given to the Synchformer loader ----------------------------------------------

def _foley_dit(path):
    torch.save(HunyuanVideoFoley(FOLEY_VARIANTS["foley-tiny"].model).state_dict(), path)


def _dac_audio_vae(path):
    state = {"encoder.block.0.weight_g": torch.ones(4, 1, 1), "encoder.block.0.weight_v": torch.ones(4, 1, 7),
             "quant_conv.weight": torch.ones(16, 8, 1), "post_quant_conv.weight": torch.ones(8, 8, 1)}
    torch.save({"state_dict": state, "metadata": {"kwargs": {"latent_dim": 8}}}, path)


def _video_transformer(path):
    save_transformer(HunyuanVideoTransformer(get_variant("tiny").transformer), path)


def _video_vae(path):
    save_vae(CausalVideoVAE(get_variant("tiny").vae), path)


def _siglip_weights(path):
    save_file({"vision_model.embeddings.patch_embedding.weight": torch.ones(4, 3, 2, 2)}, str(path))


def _random_tensors(path):
    save_file({"a.weight": torch.ones(2, 2), "b.bias": torch.ones(2)}, str(path))


@pytest.mark.parametrize("write, name, message", [
    (_foley_dit, "hunyuanvideo_foley.pth", r"is not a Synchformer .*it is the HunyuanVideo-Foley DiT .*load_foley"),
    (_dac_audio_vae, "vae_128d_48k.pth", r"it is the DAC audio VAE of HunyuanVideo-Foley .*load_audio_vae"),
    (_video_transformer, "t2v.safetensors", r"it is a HunyuanVideo video transformer; load it with load_transformer"),
    (_video_vae, "vae.safetensors", r"it is the HunyuanVideo video VAE; load it with load_vae"),
    (_siglip_weights, "model.safetensors", r"it is a SigLIP/CLIP/CLAP encoder"),
    (_random_tensors, "other.safetensors", r"expected 'vfeat_extractor\.patch_embed_3d\.proj\.weight'.*found 2 keys "
                                           r"such as \['a\.weight', 'b\.bias'\]\. Pick synchformer_state_dict\.pth"),
], ids=["foley_dit", "dac_audio_vae", "video_transformer", "video_vae", "siglip_weights", "unrelated_tensors"])
def test_other_model_file_is_named(tmp_path, write, name, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(UnknownCheckpointError, match=message):
        load_synchformer(path)


# -- a Synchformer given to the other Foley loaders -------------------------------------------------------

@pytest.mark.parametrize("loader, message", [
    (load_foley, r"is not a HunyuanVideo-Foley model .*Synchformer feature extractor .*load_synchformer"),
    (load_audio_vae, r"is not the continuous DAC audio VAE .*Synchformer feature extractor .*load_synchformer"),
    (load_transformer, r"is not a HunyuanVideo transformer"),
    (load_vae, r"is not a HunyuanVideo VAE"),
], ids=["foley_loader", "audio_vae_loader", "video_transformer_loader", "video_vae_loader"])
def test_synchformer_given_to_other_loaders(tmp_path, loader, message):
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(_synch_state(), path)
    with pytest.raises(UnknownCheckpointError, match=message):
        loader(path)


# -- missing file ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["not_found", "a_folder"])
def test_missing_file_names_what_and_where(tmp_path, kind):
    path = tmp_path / "synchformer_state_dict.pth"
    if kind == "a_folder":
        path.mkdir()
    with pytest.raises(FeatureModelMissingError) as err:
        load_synchformer(path)
    text = str(err.value)
    assert "expected synchformer_state_dict.pth at" in text
    assert ("not found" if kind == "not_found" else "a folder, not a file") in text
    assert "tencent/HunyuanVideo-Foley" in text and "ComfyUI/models/foley/" in text


# -- damaged or modified Synchformer files ---------------------------------------------------------------

def _drop(key):
    def damage(state):
        del state[key]
    return damage


def _extra(state):
    state["vfeat_extractor.head.weight"] = torch.zeros(174, 12)   # a classifier head the feature model lacks


def _wrong_shape(state):
    state["vfeat_extractor.spatial_attn_agg.linear1.bias"] = torch.zeros(5)


def _wider(state):
    state.clear()
    state.update(_synch_state(SynchformerConfig("wider", embed_dim=24, depth=2, heads=2)))


def _no_pos_embed(state):
    del state["vfeat_extractor.pos_embed"]


@pytest.mark.parametrize("damage, error, message", [
    (_drop("vfeat_extractor.blocks.1.timeattn.qkv.weight"), IncompatibleWeightsError,
     r"is a synchformer-tiny file but its visual tensors do not fit: 1 missing \(e\.g\. "
     r"\['vfeat_extractor\.blocks\.1\.timeattn\.qkv\.weight'\]\)"),
    (_drop("vfeat_extractor.spatial_attn_agg.cls_token"), IncompatibleWeightsError,
     r"1 missing \(e\.g\. \['vfeat_extractor\.spatial_attn_agg\.cls_token'\]\)"),
    (_extra, IncompatibleWeightsError, r"1 unexpected \(e\.g\. \['vfeat_extractor\.head\.weight'\]\)"),
    (_wrong_shape, IncompatibleWeightsError, r"1 with the wrong shape \(e\.g\. \['vfeat_extractor\.spatial_attn_agg\."
                                             r"linear1\.bias: expected \(48,\), found \(5,\)'\]\)"),
    (_no_pos_embed, IncompatibleWeightsError, r"looks like a Synchformer but lacks \['vfeat_extractor\.pos_embed'\]"),
    (_wider, UnknownCheckpointError, r"a Synchformer of an unknown size \(derived \{'embed_dim': 24"),
], ids=["missing_block_tensor", "missing_pooling_token", "unexpected_tensor", "wrong_shape", "missing_pos_embed",
        "unregistered_size"])
def test_damaged_synchformer_file_names_the_tensors(tmp_path, damage, error, message):
    state = _synch_state()
    damage(state)
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(state, path)
    with pytest.raises(error, match=message):
        load_synchformer(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "synchformer_state_dict.pth"
    with open(path, "wb") as fh:
        pickle.dump({"vfeat_extractor.patch_embed_3d.proj.weight": _Payload()}, fh)
    with pytest.raises(UnsafeCheckpointError, match="needs arbitrary code execution"):
        load_synchformer(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(_synch_state(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_synchformer(path)


def test_intact_file_with_its_other_branches_loads(tmp_path):
    """The control: the same construction, undamaged, loads (so the cases above fail for their damage)."""
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(_synch_state(), path)
    assert load_synchformer(path).config.name == "synchformer-tiny"
