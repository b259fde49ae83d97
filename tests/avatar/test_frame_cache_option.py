"""The avatar frame cache as a step-cache method: accepted by the options, refused with a clear message by the
text/image-to-video sampler (which has no windows to drive it)."""
import pytest
import torch

from hyvideo_core import sample
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.runtime.options import StepCacheOptions
from hyvideo_core.variants import VARIANTS
from tests.reference_models import dit_inputs


def test_option_names_the_avatar_frame_cache():
    options = StepCacheOptions("avatar_frame_cache")
    assert options.avatar_frame_cache and not StepCacheOptions("teacache").avatar_frame_cache
    with pytest.raises(InputError, match=r"'teacache', 'first_block_cache' or 'avatar_frame_cache'"):
        StepCacheOptions("frame_cache")


def test_text_to_video_sampler_refuses_it_before_any_step():
    model = HunyuanVideoTransformer(VARIANTS["tiny"].transformer)
    _, _, text, mask, pooled, _ = dit_inputs(model.config)
    noise = torch.randn(2, model.config.in_channels, 2, 4, 4)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match=r"works only when sampling with avatar conditioning .* choose 'teacache'"):
        sample(model, noise, text, mask, pooled, steps=2, shift=7.0, embedded_guidance=6.0,
               step_cache=StepCacheOptions("avatar_frame_cache"))
    assert calls == [] and model.block_passes == []
