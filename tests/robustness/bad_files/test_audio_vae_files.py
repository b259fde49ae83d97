"""Audio VAE files that ``load_audio_vae`` cannot use: unexpected or inconsistent metadata, another model,
missing tensors, code in the pickle — each a clear error saying what was expected."""
import pytest
import torch
from safetensors.torch import save_file

from hyvideo_core.errors import CheckpointError, IncompatibleWeightsError, UnknownCheckpointError, UnsafeCheckpointError
from hyvideo_core.v2a.audio_vae import DacConfig, DacVae, load_audio_vae
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.vae import CausalVideoVAE, save_vae
from hyvideo_core.variants import get_variant

pytestmark = pytest.mark.robustness

KWARGS = {"encoder_dim": 4, "encoder_rates": [2, 3], "latent_dim": 8, "decoder_dim": 16, "decoder_rates": [3, 2],
          "sample_rate": 48000, "continuous": True}


def _state():
    cfg = DacConfig(4, (2, 3), 8, 16, (3, 2), 48000)
    return {k: v.clone() for k, v in DacVae(cfg).state_dict().items()}


def _save(path, state=None, metadata="default"):
    meta = {"kwargs": dict(KWARGS)} if metadata == "default" else metadata
    torch.save({"state_dict": _state() if state is None else state, "metadata": meta}, path)


@pytest.mark.parametrize("metadata, message", [
    ({"kwargs": {**KWARGS, "hop": 6}}, r"unexpected constructor arguments in its metadata: \['hop'\]"),
    ({"kwargs": {**KWARGS, "continuous": False}}, r"continuous=False; this is a quantised \(codebook\) DAC"),
    ({"kwargs": {**KWARGS, "latent_dim": 128}}, r"metadata says latent_dim=128 but the tensors have 8"),
    ({"kwargs": {**KWARGS, "decoder_rates": [2, 3]}}, r"metadata says decoder_rates=\[2, 3\] but the tensors have \(3, 2\)"),
    ({"kwargs": {**KWARGS, "sample_rate": "48k"}}, r"metadata sample_rate='48k'; expected an integer"),
    ({"kwargs": {**KWARGS, "sample_rate": 0}}, r"metadata sample_rate=0; expected an integer"),
    (["kwargs"], r"metadata must be a dict with a 'kwargs' dict"),
    ({"kwargs": [1, 2]}, r"metadata must be a dict with a 'kwargs' dict"),
], ids=["unknown_argument", "quantised_dac", "latent_dim_disagrees", "rates_disagree", "sample_rate_text",
        "sample_rate_zero", "metadata_list", "kwargs_list"])
def test_unexpected_metadata(tmp_path, metadata, message):
    path = tmp_path / "vae_128d_48k.pth"
    _save(path, metadata=metadata)
    with pytest.raises(UnknownCheckpointError, match=message):
        load_audio_vae(path)


def test_bad_json_in_safetensors_header(tmp_path):
    path = tmp_path / "vae.safetensors"
    save_file(_state(), str(path), metadata={"dac_kwargs": "{not json"})
    with pytest.raises(UnknownCheckpointError, match="'dac_kwargs' metadata is not JSON"):
        load_audio_vae(path)


def _foley_dit(path):
    torch.save(HunyuanVideoFoley(FOLEY_VARIANTS["foley-tiny"].model).state_dict(), path)


def _video_vae(path):
    save_vae(CausalVideoVAE(get_variant("tiny").vae), str(path))


@pytest.mark.parametrize("write, name, message", [
    (_foley_dit, "hunyuanvideo_foley.pth", r"not the continuous DAC audio VAE.*it is the HunyuanVideo-Foley DiT; "
                                            r"load it with load_foley"),
    (_video_vae, "vae.safetensors", r"not the continuous DAC audio VAE.*it is the HunyuanVideo video VAE"),
], ids=["foley_dit", "video_vae"])
def test_other_model_file_is_named(tmp_path, write, name, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(UnknownCheckpointError, match=message):
        load_audio_vae(path)


def _drop(key):
    def damage(state):
        del state[key]
    return damage


@pytest.mark.parametrize("damage, error, message", [
    (_drop("decoder.model.2.block.3.block.3.weight_v"), IncompatibleWeightsError,
     r"tensors do not fit: 1 missing \(e\.g\. \['decoder\.model\.2\.block\.3\.block\.3\.weight_v'\]\)"),
    (_drop("encoder.block.2.block.4.weight_v"), IncompatibleWeightsError,
     r"lacks 'encoder\.block\.2\.block\.4\.weight_v', which its architecture is read from"),
], ids=["missing_decoder_tensor", "missing_architecture_tensor"])
def test_damaged_audio_vae(tmp_path, damage, error, message):
    state = _state()
    damage(state)
    path = tmp_path / "vae_128d_48k.pth"
    _save(path, state=state)
    with pytest.raises(error, match=message):
        load_audio_vae(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_code_in_the_metadata_is_refused(tmp_path):
    path = tmp_path / "vae_128d_48k.pth"
    torch.save({"state_dict": _state(), "metadata": {"kwargs": KWARGS, "hook": _Payload()}}, path)
    with pytest.raises(UnsafeCheckpointError, match="needs arbitrary code execution"):
        load_audio_vae(path)


def test_missing_file_names_what_to_get(tmp_path):
    with pytest.raises(CheckpointError, match=r"audio VAE file not found.*vae_128d_48k\.pth"):
        load_audio_vae(tmp_path / "absent.pth")
