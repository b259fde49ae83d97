"""A 3-step ``sample()`` against diffusers' ``HunyuanVideoPipeline`` run from the same prompt
embeddings, pooled vector, mask and initial latents."""
import pytest
import torch

from hyvideo_core import flow_sigmas, load_transformer, sample
from hyvideo_core.errors import Interrupted, InputError
from hyvideo_core.variants import VARIANTS
from tests.reference_models import diffusers_transformer, dit_inputs, official_state_dict, save

pytestmark = pytest.mark.parity


def _pipeline(reference):
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    vae = AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                    norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4)
    return HunyuanVideoPipeline(tokenizer=None, text_encoder=None, transformer=reference, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=None, tokenizer_2=None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cfg = VARIANTS["tiny"].transformer
    reference = diffusers_transformer(cfg)
    path = save(official_state_dict(reference), str(tmp_path_factory.mktemp("dit") / "tiny.safetensors"))
    return reference, load_transformer(path)


@pytest.mark.parametrize("true_cfg", [False, True])
def test_three_steps_match_pipeline(models, true_cfg):
    reference, model = models
    cfg = model.config
    _, _, text, mask, pooled, _ = dit_inputs(cfg)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, cfg.in_channels, 3, 4, 4, generator=g)   # 9 frames of 32×32 pixels
    neg_text, neg_pooled = torch.randn(2, 5, cfg.text_states_dim, generator=g), torch.randn(2, cfg.text_states_dim_2, generator=g)
    neg_mask = torch.ones(2, 5, dtype=torch.int64)
    extra = dict(negative_prompt_embeds=neg_text, negative_pooled_prompt_embeds=neg_pooled,
                 negative_prompt_attention_mask=neg_mask, true_cfg_scale=3.0) if true_cfg else {}
    expected = _pipeline(reference)(
        prompt_embeds=text, pooled_prompt_embeds=pooled, prompt_attention_mask=mask, latents=noise.clone(),
        height=32, width=32, num_frames=9, num_inference_steps=3, guidance_scale=4.5, output_type="latent",
        **extra).frames
    got = sample(model, noise, text, mask, pooled, steps=3, shift=7.0, embedded_guidance=4.5,
                 cfg_scale=3.0 if true_cfg else 1.0,
                 negative=(neg_text, neg_mask, neg_pooled) if true_cfg else None)
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=0)


def test_callback_reports_every_step_and_interrupts(models):
    _, model = models
    _, _, text, mask, pooled, _ = dit_inputs(model.config)
    noise = torch.randn(2, model.config.in_channels, 1, 4, 4)
    seen = []
    sample(model, noise, text, mask, pooled, steps=4, shift=7.0, embedded_guidance=6.0,
           callback=lambda e: seen.append((e.stage, e.step, e.total, tuple(e.latents.shape))))
    assert seen == [("sample", i, 4, tuple(noise.shape)) for i in (1, 2, 3, 4)]

    def stop_after_two(event):
        if event.step == 2:
            raise Interrupted("user pressed cancel")
    with pytest.raises(Interrupted):
        sample(model, noise, text, mask, pooled, steps=4, shift=7.0, embedded_guidance=6.0, callback=stop_after_two)


def test_denoise_starts_part_way(models):
    _, model = models
    _, _, text, mask, pooled, _ = dit_inputs(model.config)
    source = torch.randn(2, model.config.in_channels, 1, 4, 4)
    noise = torch.randn_like(source)
    steps_run = []
    out = sample(model, noise, text, mask, pooled, steps=10, shift=1.0, embedded_guidance=6.0,
                 latents=source, denoise=0.3, callback=lambda e: steps_run.append(e.step))
    assert steps_run == [1, 2, 3]
    assert out.shape == source.shape
    with pytest.raises(InputError, match="denoise"):
        sample(model, noise, text, mask, pooled, steps=10, shift=1.0, embedded_guidance=6.0, latents=source, denoise=0)


def test_cfg_without_negative_is_a_clear_error(models):
    _, model = models
    _, _, text, mask, pooled, _ = dit_inputs(model.config)
    with pytest.raises(InputError, match="negative"):
        sample(model, torch.randn(2, 4, 1, 4, 4), text, mask, pooled, steps=2, shift=7.0,
               embedded_guidance=6.0, cfg_scale=5.0)


def test_schedule_matches_released_values():
    sigmas = flow_sigmas(50, 7.0)
    torch.testing.assert_close(sigmas[:3] * 1000, torch.tensor([1000.0, 997.093, 994.083]), atol=1e-3, rtol=0)
    assert float(sigmas[-2] * 1000) == pytest.approx(125.0)
    assert float(sigmas[-1]) == 0.0
    torch.testing.assert_close(flow_sigmas(2, 7.0), torch.tensor([1.0, 0.875, 0.0]))
