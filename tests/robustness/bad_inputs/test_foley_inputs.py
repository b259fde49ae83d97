"""Inputs the Foley DiT and its sampler cannot use: each a clear error saying what was expected."""
import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.v2a.sample import FoleyConditions, sample_audio_latents

pytestmark = pytest.mark.robustness

CFG = FOLEY_VARIANTS["foley-tiny"].model


@pytest.fixture(scope="module")
def model():
    return HunyuanVideoFoley(CFG).eval()


def _good(b=1):
    return dict(x=torch.randn(b, CFG.audio_latent_dim, 10), t=torch.full((b,), 500.0),
                visual_features=torch.randn(b, 3, CFG.visual_dim), text_states=torch.randn(b, 4, CFG.text_dim),
                sync_features=torch.randn(b, 16, CFG.sync_dim))


@pytest.mark.parametrize("change, message", [
    (dict(x=torch.randn(1, 5, 10)), r"x must be \(B, C_latent, La\) audio latents with D = 8"),
    (dict(x=torch.randn(1, 8, 0)), r"x is empty \(length 0\)"),
    (dict(visual_features=torch.randn(1, 3, 7)), r"visual_features must be \(B, Lv, D\) SigLIP2 frame features with D = 16"),
    (dict(visual_features=torch.randn(1, 0, 16)), r"visual_features is empty"),
    (dict(text_states=torch.randn(2, 4, 20)), r"text_states must be .* batch 1; found shape \(2, 4, 20\)"),
    (dict(sync_features=torch.randn(1, 12, 12)), r"whole Synchformer segments of 8 tokens; found 12"),
    (dict(sync_features=torch.randn(1, 16)), r"sync_features must be \(B, 8·S, D\) Synchformer tokens"),
    (dict(t=torch.tensor(500.0)), r"t must be \(B,\) = \(1,\) timesteps"),
], ids=["latent_channels", "zero_audio_frames", "visual_dim", "no_visual_frames", "batch_mismatch",
        "partial_sync_segment", "sync_not_3d", "scalar_t"])
def test_bad_forward_inputs(model, change, message):
    with pytest.raises(InputError, match=message):
        model(**{**_good(), **change})


def test_cfg_without_negative_prompt_states(model):
    g = _good()
    cond = FoleyConditions(g["visual_features"], g["sync_features"], g["text_states"])
    with pytest.raises(InputError, match=r"cfg_scale 4\.5 > 1 needs negative_text_states"):
        sample_audio_latents(model, g["x"], cond, None, steps=2, cfg_scale=4.5)


def test_noise_of_the_wrong_shape(model):
    g = _good()
    cond = FoleyConditions(g["visual_features"], g["sync_features"], g["text_states"])
    with pytest.raises(InputError, match=r"noise must be \(B, 8, La\) audio latents; found \(1, 8, 10, 1\)"):
        sample_audio_latents(model, g["x"][..., None], cond, g["text_states"], steps=2)


def test_zero_steps(model):
    g = _good()
    cond = FoleyConditions(g["visual_features"], g["sync_features"], g["text_states"])
    with pytest.raises(InputError, match="steps must be .*at least 1"):
        sample_audio_latents(model, g["x"], cond, g["text_states"], steps=0)


@pytest.fixture(scope="module")
def audio_vae():
    from hyvideo_core.v2a.audio_vae import DacConfig, DacVae

    return DacVae(DacConfig(4, (2, 3), 8, 16, (3, 2), 48000)).eval()


@pytest.mark.parametrize("call, message", [
    (lambda vae: vae.decode(torch.randn(1, 5, 4)), r"latents must be \(B, 8, L\) with L > 0; found \(1, 5, 4\)"),
    (lambda vae: vae.decode(torch.randn(1, 8, 0)), r"latents must be \(B, 8, L\) with L > 0; found \(1, 8, 0\)"),
    (lambda vae: vae.decode(torch.randn(1, 8, 9), chunk_frames=0), r"chunk_frames must be at least 1; found 0"),
    (lambda vae: vae.encode(torch.randn(1, 2, 60)), r"audio must be a \(B, 1, N\) mono waveform with N > 0; found \(1, 2, 60\)"),
    (lambda vae: vae.encode(torch.randn(1, 1, 0)), r"audio must be a \(B, 1, N\) mono waveform with N > 0"),
], ids=["latent_channels", "zero_latent_frames", "zero_chunk", "stereo_audio", "empty_audio"])
def test_bad_audio_vae_inputs(audio_vae, call, message):
    with pytest.raises(InputError, match=message):
        call(audio_vae)
