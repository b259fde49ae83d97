"""A 3-step image-to-video ``sample()`` against diffusers' ``HunyuanVideoImageToVideoPipeline`` run
from the same prompt embeddings, image latents and initial latents, in both condition modes."""
import numpy as np
import pytest
import torch

from hyvideo_core import load_transformer, sample
from hyvideo_core.errors import InputError
from hyvideo_core.sampling.loop import image_condition
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

pytestmark = pytest.mark.parity


def _tiny_vae():
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(5)
    return AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                     norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                     up_block_types=("HunyuanVideoUpBlock3D",) * 4).eval()


def _pipeline(reference, vae):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline

    return HunyuanVideoImageToVideoPipeline(text_encoder=None, tokenizer=None, transformer=reference, vae=vae,
                                            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None,
                                            tokenizer_2=None, image_processor=None)


@pytest.mark.parametrize("mode,variant", [("token_replace", "tiny"), ("latent_concat", "tiny-i2v-concat")])
def test_three_i2v_steps_match_pipeline(tmp_path, mode, variant):
    from PIL import Image

    cfg = VARIANTS[variant].transformer
    reference = diffusers_transformer(cfg, image_condition_type=mode)
    model = load_transformer(save(official_state_dict(reference), str(tmp_path / "dit.safetensors")))
    assert image_condition(model, 4) == mode
    vae = _tiny_vae()
    _, _, text, mask, pooled, _ = dit_inputs(cfg, batch=1)
    g = torch.Generator().manual_seed(3)
    pixels = (torch.rand(32, 32, 3, generator=g) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    with torch.no_grad():
        x = torch.from_numpy(pixels).float().permute(2, 0, 1)[None, :, None] / 127.5 - 1
        image_latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    noise = torch.randn(1, 4, 3, 4, 4, generator=g)                    # 9 frames of 32×32 pixels
    guidance = 6.0 if cfg.guidance_embed else 1.0
    expected = _pipeline(reference, vae)(
        image=image, prompt_embeds=text, pooled_prompt_embeds=pooled, prompt_attention_mask=mask,
        latents=noise.clone(), height=32, width=32, num_frames=9, num_inference_steps=3, guidance_scale=guidance,
        output_type="latent").frames
    got = sample(model, noise, text, mask, pooled, steps=3, shift=7.0,
                 embedded_guidance=guidance if cfg.guidance_embed else None, image_latents=image_latents)
    if mode == "latent_concat":
        got = got[:, :, 1:]      # diffusers' latent output drops the conditioning frame
    else:
        torch.testing.assert_close(got[:, :, :1], image_latents)   # frame 0 stays the clean image
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=0)


def test_stability_init_is_optional(tmp_path):
    cfg = VARIANTS["tiny"].transformer
    model = load_transformer(save(official_state_dict(diffusers_transformer(cfg)), str(tmp_path / "d.safetensors")))
    _, _, text, mask, pooled, _ = dit_inputs(cfg, batch=1)
    noise, img = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 1, 4, 4)
    run = lambda s: sample(model, noise, text, mask, pooled, steps=1, shift=7.0, embedded_guidance=6.0,
                           image_latents=img, i2v_stability=s)
    assert not torch.equal(run(True), run(False))


def test_wrong_model_for_the_condition_is_a_clear_error(tmp_path):
    concat = VARIANTS["tiny-i2v-concat"].transformer
    model = load_transformer(save(official_state_dict(diffusers_transformer(concat)), str(tmp_path / "c.safetensors")))
    _, _, text, mask, pooled, _ = dit_inputs(concat, batch=1)
    with pytest.raises(InputError, match="no image was given"):
        sample(model, torch.randn(1, 4, 2, 4, 4), text, mask, pooled, steps=1, shift=7.0)
    with pytest.raises(InputError, match="must be"):
        sample(model, torch.randn(1, 4, 2, 4, 4), text, mask, pooled, steps=1, shift=7.0,
               image_latents=torch.randn(1, 4, 1, 8, 8))
    with pytest.raises(InputError, match="needs a model with 4 input channels"):
        sample(model, torch.randn(1, 4, 2, 4, 4), text, mask, pooled, steps=1, shift=7.0,
               image_latents=torch.randn(1, 4, 1, 4, 4), condition="token_replace")
