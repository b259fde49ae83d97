"""The image-to-video recipe on the embedded tiny models: buckets, first-frame fidelity, both modes, errors."""
import pytest
import torch

from hyvideo_core import load_transformer, load_vae
from hyvideo_core.apps.i2v import (ImageCondition, I2VConditioningOptions, I2VRequest, crop_size_list,
                                   encode_image, fit_image, image_to_video, prepare_conditioning,
                                   sample_i2v_latents, select_bucket)
from hyvideo_core.apps.latent_stages import SamplerOptions
from hyvideo_core.demo_models import ensure_demo_models
from hyvideo_core.errors import InputError
from hyvideo_core.text_encoders import load_text_encoders


@pytest.fixture(scope="module")
def demo():
    paths = ensure_demo_models()
    return dict(transformer=load_transformer(paths.transformer), vae=load_vae(paths.vae),
                encoders=load_text_encoders(paths.text_encoder_i2v, paths.clip), paths=paths)


def _picture(h=96, w=160):
    """A smooth picture (gradient + a disc) so that the VAE round trip is meaningful."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.3) ** 2) < 0.05).float()
    return torch.stack([0.2 + 0.6 * disc, 0.3 + 0.4 * xx, 0.8 - 0.5 * yy], dim=-1)   # (H, W, 3)


def test_buckets_match_the_official_rule():
    assert [len(crop_size_list(b)) for b in (960, 720, 480)] == [91, 67, 43]
    assert select_bucket(720, 1280, 960) == (704, 1248)
    assert select_bucket(1024, 1024, 960) == (960, 960)
    assert select_bucket(768, 1024, 960) == (832, 1088)
    assert select_bucket(720, 1280, 720) == (544, 928)
    assert select_bucket(720, 1280, 480) == (352, 608)
    assert select_bucket(100, 1000, 480) == (224, 896)       # beyond 4:1 snaps to the 4:1 bucket


def test_fit_image_crop_and_pad():
    img = _picture(90, 160)
    crop, pad = fit_image(img, (64, 128), "crop"), fit_image(img, (64, 128), "pad")
    assert crop.shape == pad.shape == (3, 64, 128)
    assert pad[:, :, :4].abs().max() == 0 and pad[:, 32, 64].abs().max() > 0   # black bars left/right
    with pytest.raises(InputError, match="resize"):
        fit_image(img, (64, 128), "stretch")


def test_token_replace_first_frame_is_the_image(demo):
    vae, image = demo["vae"], _picture()
    request = I2VRequest(prompt="a red circle moving left", frames=9, base_size=64, steps=3, seed=1, tile=False)
    video = image_to_video(demo["transformer"], vae, demo["encoders"], image, request)
    cond = encode_image(vae, image, base_size=64)
    assert video.shape == (1, 3, 9, *cond.size) and cond.size == select_bucket(96, 160, 64)
    with torch.no_grad():
        round_trip = vae.decode(cond.raw, tile=False)[:, :, 0]
    err = (video[:, :, 0] - round_trip).abs().mean()
    input_err = (round_trip - cond.pixels).abs().mean()        # the random tiny VAE's own reconstruction error
    assert err <= input_err, (float(err), float(input_err))
    # Exactly: the sampled first latent frame is the clean image latent, so decoded on its own it is the
    # round trip. (In the full decode, the random tiny VAE's temporal GroupNorm mixes in the other frames.)
    from hyvideo_core import sample
    from hyvideo_core.text_encoders.llava_image import encode_image_prompt

    e = encode_image_prompt(demo["encoders"], request.prompt, image)
    noise = torch.randn(1, 4, 3, *[s // 8 for s in cond.size])
    latents = sample(demo["transformer"], noise, e.text_states, e.text_mask, e.text_states_2, steps=2, shift=7.0,
                     embedded_guidance=6.0, image_latents=cond.scaled)
    assert torch.equal(latents[:, :, :1], cond.scaled)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(latents[:, :, :1] / vae.scaling_factor, tile=False)[:, :, 0], round_trip)


def test_latent_concat_drops_four_frames(demo):
    from hyvideo_core.model import HunyuanVideoTransformer
    from hyvideo_core.variants import get_variant

    torch.manual_seed(0)
    model = HunyuanVideoTransformer(get_variant("tiny-i2v-concat").transformer).eval()
    model.variant = "tiny-i2v-concat"
    request = I2VRequest(prompt="a blue square", frames=9, base_size=64, steps=2, tile=False, embedded_guidance=None)
    video = image_to_video(model, demo["vae"], demo["encoders"], _picture(64, 64), request)
    assert video.shape == (1, 3, 5, 64, 64)


def test_conditioning_for_nodes_and_mismatches(demo):
    vae, enc, model = demo["vae"], demo["encoders"], demo["transformer"]
    embeds, empty, cond, img = prepare_conditioning(vae, enc, _picture(64, 64), I2VConditioningOptions(
        prompt="a cat", frames=5, base_size=64))
    assert empty.shape == (1, 4, 2, 8, 8) and img.shape == (1, 3, 64, 64) and cond.mode == "token_replace"
    assert embeds.text_states.shape[1] == 16 // 4 + 256 - 4
    opts = SamplerOptions(steps=1, shift=7.0)
    out = sample_i2v_latents(model, embeds, empty, cond, opts, scaling_factor=vae.scaling_factor)
    torch.testing.assert_close(out[:, :, :1], cond.image_latents)
    with pytest.raises(InputError, match="set the conditioning node's condition to 'token_replace'"):
        sample_i2v_latents(model, embeds, empty, ImageCondition(cond.image_latents, "latent_concat"), opts,
                           scaling_factor=vae.scaling_factor)
    with pytest.raises(InputError, match="no image"):
        sample_i2v_latents(model, embeds, empty, None, opts, scaling_factor=vae.scaling_factor)


@pytest.mark.parametrize("bad,match", [(torch.rand(64, 64), "MASK"), (torch.rand(4, 64, 64, 3), "batch of 4")])
def test_wrong_image_kinds(demo, bad, match):
    with pytest.raises(InputError, match=match):
        encode_image(demo["vae"], bad, base_size=64)
    with pytest.raises(InputError, match="multiples of 16"):
        encode_image(demo["vae"], _picture(), bucket=(60, 64))
