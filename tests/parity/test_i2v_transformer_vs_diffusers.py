"""Image-to-video conditioning in the transformer against diffusers' I2V modes."""
import pytest
import torch

from hyvideo_core import load_transformer
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_forward, diffusers_transformer, dit_inputs, official_state_dict, save

pytestmark = pytest.mark.parity


def test_token_replace_matches_diffusers(tmp_path):
    """16-channel I2V: same weights as T2V; the first latent frame's tokens are modulated at t = 0."""
    cfg = VARIANTS["tiny"].transformer
    reference = diffusers_transformer(cfg, image_condition_type="token_replace")
    model = load_transformer(save(official_state_dict(reference), str(tmp_path / "i2v16.safetensors")))
    inputs = dit_inputs(cfg)
    expected = diffusers_forward(reference, *inputs)
    with torch.no_grad():
        got = model(*inputs, token_replace=True)
        plain = model(*inputs)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert (got - plain).abs().max() > 1e-3   # the option really changes the first frame's modulation


def test_latent_concat_matches_diffusers(tmp_path):
    """33-channel I2V (here 2·4+1): detected from the img_in shape, no guidance input."""
    cfg = VARIANTS["tiny-i2v-concat"].transformer
    reference = diffusers_transformer(cfg)
    model = load_transformer(save(official_state_dict(reference), str(tmp_path / "i2v33.safetensors")))
    assert model.variant == "tiny-i2v-concat" and model.config.condition_type == "latent_concat"
    x, t, text, mask, pooled, _ = dit_inputs(cfg)
    assert x.shape[1] == 9
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, text, mask, pooled), diffusers_forward(reference, x, t, text, mask, pooled, None),
                                   atol=1e-4, rtol=0)
