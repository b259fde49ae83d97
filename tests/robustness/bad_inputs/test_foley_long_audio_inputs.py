"""Inputs the long-audio Foley path cannot use: each a clear error saying what was expected, found, and
what to do (before any sampling starts)."""
import math

import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.v2a.audio_vae.model import DacConfig, DacVae
from hyvideo_core.v2a.config import FOLEY_VARIANTS
from hyvideo_core.v2a.long_audio import decode_audio, latent_frames_for, plan_audio_windows, sample_long_audio_latents
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.v2a.sample import FoleyConditions

pytestmark = pytest.mark.robustness

CFG = FOLEY_VARIANTS["foley-tiny"].model


@pytest.fixture(scope="module")
def model():
    return HunyuanVideoFoley(CFG).eval()


@pytest.fixture(scope="module")
def vae():
    return DacVae(DacConfig(encoder_dim=4, encoder_rates=(2, 3), latent_dim=CFG.audio_latent_dim, decoder_dim=16,
                            decoder_rates=(3, 2), sample_rate=300)).eval()


def features(seconds):
    segments = (int(seconds * 25) - 16) // 8 + 1
    return FoleyConditions(torch.randn(1, int(seconds * 8), CFG.visual_dim), torch.randn(1, 8 * segments, CFG.sync_dim),
                           torch.randn(1, 4, CFG.text_dim))


def sample(model, frames, cond, negative=None, **kw):
    return lambda: sample_long_audio_latents(model, torch.randn(1, CFG.audio_latent_dim, frames), cond, negative,
                                             steps=1, window_frames=96, overlap_frames=32, **{"cfg_scale": 1.0, **kw})


CASES = {
    "empty_video_no_frames": (lambda m, v: lambda: plan_audio_windows(0, 96, 32), r"no audio frames .* the video is empty"),
    "overlap_too_small": (lambda m, v: lambda: plan_audio_windows(1000, 96, 16), r"overlap_frames must be between 32"),
    "overlap_too_large": (lambda m, v: lambda: plan_audio_windows(1000, 96, 70), r"overlap_frames must be between 32 and 64"),
    "zero_duration": (lambda m, v: lambda: latent_frames_for(0.0, 300, 6), r"positive number of seconds; found 0.0"),
    "negative_duration": (lambda m, v: lambda: latent_frames_for(-2.0, 300, 6), r"positive number of seconds"),
    "nan_duration": (lambda m, v: lambda: latent_frames_for(math.nan, 300, 6), r"positive number of seconds"),
    "latents_shorter_than_duration": (lambda m, v: lambda: decode_audio(v, torch.zeros(1, 8, 50), 2.0),
                                      r"50 latent frames decode to 300 samples, fewer than the 600 .* generate 100"),
    "features_capped_at_15s_for_a_60s_clip": (lambda m, v: sample(m, 3000, features(15.0)),
                                              r"SigLIP2 features \(8 fps\) cover 15.00 s .* latents 60.00 s .* max_seconds"),
    "sync_features_of_another_clip": (lambda m, v: sample(m, 500, FoleyConditions(
        torch.randn(1, 80, CFG.visual_dim), features(4.0).sync_features, torch.randn(1, 4, CFG.text_dim))),
        r"Synchformer features \(25 fps\) cover 3.84 s .* latents 10.00 s"),
    "wrong_latent_channels": (lambda m, v: lambda: sample_long_audio_latents(m, torch.randn(1, 5, 100), features(2.0)),
                              r"noise must be \(B, 8, La\) audio latents; found \(1, 5, 100\)"),
    "cfg_without_negative_prompt": (lambda m, v: sample(m, 100, features(2.0), cfg_scale=4.5),
                                    r"cfg_scale 4.5 > 1 needs negative_text_states"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_long_audio_inputs(model, vae, case):
    make, message = CASES[case]
    with pytest.raises(InputError, match=message):
        make(model, vae)()
