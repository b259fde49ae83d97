"""The Foley audio VAE (DAC-style, continuous) against the official code through the golden fixture
(tests/v2a/foley_golden.safetensors; see make_golden_fixture.py): encoder Gaussian and decoder at
1e-4 in float32, the official 3-step sample decoded to a waveform, and chunked decoding."""
import json
from pathlib import Path

import pytest
import torch
from tests.golden_files import read_fixture

from hyvideo_core.v2a.audio_vae import load_audio_vae, save_audio_vae
from hyvideo_core.v2a.load import load_foley
from hyvideo_core.v2a.sample import FoleyConditions, sample_audio_latents

FIXTURE = Path(__file__).resolve().parent / "foley_golden.safetensors"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return read_fixture(FIXTURE)


def _state(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def vae(golden, tmp_path_factory):
    """Written as audiotools saves the released vae_128d_48k.pth: state dict + metadata kwargs."""
    tensors, metadata = golden
    path = tmp_path_factory.mktemp("dac") / "vae_tiny.pth"
    torch.save({"state_dict": _state(tensors, "dac_state."), "metadata": {"kwargs": json.loads(metadata["dac_kwargs"])}},
               path)
    return load_audio_vae(path)


def test_constructor_arguments_come_from_the_file(vae, golden):
    kwargs = json.loads(golden[1]["dac_kwargs"])
    cfg = vae.config
    assert (cfg.encoder_dim, list(cfg.encoder_rates), cfg.latent_dim, cfg.decoder_dim, list(cfg.decoder_rates),
            cfg.sample_rate) == tuple(kwargs[k] for k in ("encoder_dim", "encoder_rates", "latent_dim", "decoder_dim",
                                                          "decoder_rates", "sample_rate"))
    assert cfg.hop_length == 6


def test_encoder_gaussian_matches_official(vae, golden):
    tensors, _ = golden
    with torch.no_grad():
        mean, logvar = vae.encode_distribution(tensors["dac.audio"])
    torch.testing.assert_close(mean, tensors["dac.mean"], rtol=0, atol=TOL)
    torch.testing.assert_close(logvar, tensors["dac.logvar"], rtol=0, atol=TOL)
    assert tensors["dac.mean"].abs().mean() > 0.05


def test_decoder_matches_official(vae, golden):
    tensors, _ = golden
    with torch.no_grad():
        audio = vae.decode(tensors["dac.latents"])
    torch.testing.assert_close(audio, tensors["dac.decoded"], rtol=0, atol=TOL)
    assert tensors["dac.decoded"].abs().mean() > 0.05


def test_sample_to_waveform_matches_official_pipeline(vae, golden, tmp_path):
    """The official denoise_process with this DiT and this DAC: latents, then the waveform it returns."""
    tensors, _ = golden
    path = tmp_path / "foley.pth"
    torch.save(_state(tensors, "state."), path)
    model = load_foley(path)
    g = lambda name: tensors[f"sample.{name}"]  # noqa: E731
    with torch.no_grad():
        latents = sample_audio_latents(model, g("noise"), FoleyConditions(g("visual"), g("sync"), g("text")),
                                       g("negative_text"), steps=3, shift=1.0, cfg_scale=4.5)
        audio = vae.decode(latents)
    torch.testing.assert_close(audio, g("audio"), rtol=0, atol=TOL)


@pytest.mark.parametrize("chunk", [4, 20])
def test_chunked_decode_equals_whole_decode(vae, chunk):
    torch.manual_seed(1)
    z = torch.randn(2, vae.config.latent_dim, 61)
    with torch.no_grad():
        whole = vae.decode(z)
        chunked = vae.decode(z, chunk_frames=chunk)
    assert chunked.shape == whole.shape == (2, 1, 61 * vae.config.hop_length)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


def test_chunks_without_context_would_differ(vae, monkeypatch):
    """The context frames are what makes chunking exact (the check above can fail)."""
    torch.manual_seed(1)
    z = torch.randn(1, vae.config.latent_dim, 40)
    monkeypatch.setattr(type(vae.config), "decoder_context_frames", lambda self: 0)
    with torch.no_grad():
        assert (vae.decode(z, chunk_frames=10) - vae.decode(z)).abs().max() > 1e-3


def test_safetensors_copy_round_trips(vae, tmp_path):
    path = tmp_path / "vae.safetensors"
    save_audio_vae(vae, path)
    again = load_audio_vae(path)
    assert again.config == vae.config
    z = torch.randn(1, vae.config.latent_dim, 5)
    with torch.no_grad():
        torch.testing.assert_close(again.decode(z), vae.decode(z), rtol=0, atol=0)


def test_plain_state_dict_without_metadata_loads_at_48k(golden, tmp_path):
    """No constructor arguments in the file: the architecture comes from the shapes, the rate is 48 kHz."""
    tensors, _ = golden
    path = tmp_path / "plain.pth"
    torch.save(_state(tensors, "dac_state."), path)
    vae = load_audio_vae(path)
    assert vae.sample_rate == 48000 and vae.config.decoder_rates == (3, 2)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(tensors["dac.latents"]), tensors["dac.decoded"], rtol=0, atol=TOL)
