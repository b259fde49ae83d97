"""Semantic image tokens against diffusers' HunyuanVideoImageToVideoPipeline._get_llama_prompt_embeds on a
tiny LlavaForConditionalGeneration, with the real I2V template (crop computed by tokenizing)."""
import numpy as np
import pytest
import torch

from hyvideo_core.errors import InputError, UnknownCheckpointError
from hyvideo_core.text_encoders.llava_image import (I2V_VIDEO_TEMPLATE_TEXT, ImagePreprocess, as_rgb_image,
                                                    encode_image_prompt, load_image_encoder, template_layout)

pytestmark = pytest.mark.parity
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _image(h, w, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _diffusers(files, layout, prompts, image, interleave, max_length):
    from diffusers import HunyuanVideoImageToVideoPipeline
    from transformers import CLIPImageProcessor

    from tiny_llava import LLAMA_TOKENIZER_SPECIALS, hf_tokenizer

    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=files["model"], tokenizer=hf_tokenizer(files["tokenizer"], LLAMA_TOKENIZER_SPECIALS),
        transformer=None, vae=None, scheduler=None, text_encoder_2=None, tokenizer_2=None,
        image_processor=CLIPImageProcessor(crop_size=224, size=224, resample=3, image_mean=MEAN, image_std=STD))
    template = dict(template=I2V_VIDEO_TEMPLATE_TEXT, crop_start=layout.crop_start,
                    image_emb_start=layout.image_emb_start, image_emb_end=layout.image_emb_end(49), image_emb_len=49)
    with torch.no_grad():
        return pipe._get_llama_prompt_embeds(image, prompts, template, device=torch.device("cpu"), dtype=torch.float32,
                                            max_sequence_length=max_length, image_embed_interleave=interleave)


@pytest.mark.parametrize("mode,interleave", [("token_replace", 4), ("latent_concat", 2)])
def test_image_tokens_match_diffusers(tiny_llava_files, llava_encoders, mode, interleave):
    prompts = ["a red cat walks on the green grass at night", "a small dog runs"]
    image = _image(224, 224)
    layout = template_layout(llava_encoders.llm_tokenizer)
    got = encode_image_prompt(llava_encoders, prompts, image, mode=mode, max_length=32)
    rows = [_diffusers(tiny_llava_files, layout, [p], image, interleave, 32) for p in prompts]  # one image per call
    states, mask = torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])
    n_img = len(range(0, 49, interleave))
    assert got.text_states.shape == (2, n_img + 32 - 4, 256) == states.shape
    torch.testing.assert_close(got.text_mask, mask.long())
    torch.testing.assert_close(got.text_states, states, atol=1e-4, rtol=0)
    assert got.text_states_2.shape == (2, 128)


def test_truncated_prompt_matches_diffusers(tiny_llava_files, llava_encoders):
    prompt = "a red cat walks on the green grass at night and a small dog runs in the street " * 3
    image = _image(224, 224, seed=1)
    layout = template_layout(llava_encoders.llm_tokenizer)
    got = encode_image_prompt(llava_encoders, prompt, image, max_length=12)
    states, mask = _diffusers(tiny_llava_files, layout, [prompt], image, 4, 12)
    torch.testing.assert_close(got.text_mask, mask.long())
    torch.testing.assert_close(got.text_states, states, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="cut"):
        encode_image_prompt(llava_encoders, prompt, image, max_length=12, truncate=False)


def test_template_positions_are_computed(llava_encoders):
    layout = template_layout(llava_encoders.llm_tokenizer)
    tok = llava_encoders.llm_tokenizer
    # the real tokenizer gives BOS <|start_header_id|> system <|end_header_id|> "\n\n" -> <image> at 5, crop 103
    assert layout.image_emb_start == len(tok(I2V_VIDEO_TEMPLATE_TEXT.split("<image>")[0])["input_ids"])
    assert layout.crop_start == len(tok(I2V_VIDEO_TEMPLATE_TEXT.split("{}")[0])["input_ids"])  # <image>: one token


def test_preprocess_matches_clip_image_processor():
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor(crop_size=224, size=224, resample=3, image_mean=MEAN, image_std=STD)
    pre = ImagePreprocess(size=224, crop_size=(224, 224))
    same = _image(224, 224)
    torch.testing.assert_close(pre(same), proc(same, return_tensors="pt").pixel_values, atol=1e-5, rtol=0)
    for h, w in ((300, 500), (640, 256)):
        img = _image(h, w, seed=h)
        ours, ref = pre(img), proc(img, return_tensors="pt").pixel_values
        assert ours.shape == ref.shape == (1, 3, 224, 224)
        assert (ours - ref).abs().mean() < 0.05   # torch vs PIL bicubic resampling


def test_vision_encoder_matches_llava_image_features(tiny_llava_files):
    enc = load_image_encoder(tiny_llava_files["llava"])
    assert enc.num_image_tokens == 49
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = tiny_llava_files["model"].model.get_image_features(
            pixel_values=pixels, vision_feature_layer=-2, vision_feature_select_strategy="default").pooler_output[0]
        torch.testing.assert_close(enc(pixels)[0], ref, atol=1e-5, rtol=0)


def test_comfyui_vision_file_layout(tiny_llava_files, tmp_path):
    """ComfyUI's llava_llama3_vision.safetensors: vision_model.* + multi_modal_projector.*."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_llava_files["llava"] / "model.safetensors"))
    vision = {k[len("vision_tower."):]: v for k, v in sd.items() if k.startswith("vision_tower.")}
    vision.update({k: v for k, v in sd.items() if k.startswith("multi_modal_projector.")})
    save_file(vision, str(tmp_path / "llava_vision.safetensors"))
    a, b = load_image_encoder(tiny_llava_files["llava"]), load_image_encoder(tmp_path / "llava_vision.safetensors",
                                                                                vision_config={"num_attention_heads": 4})
    assert b.preprocess.size == 224
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    only_tower = {k: v for k, v in vision.items() if k.startswith("vision_model.")}
    save_file(only_tower, str(tmp_path / "clip_vision.safetensors"))
    with pytest.raises(UnknownCheckpointError, match="projector"):
        load_image_encoder(tmp_path / "clip_vision.safetensors")


def test_t2v_text_encoder_without_vision_tower_is_a_clear_error(tmp_path):
    from hyvideo_core.demo_models import ensure_demo_models
    from hyvideo_core.text_encoders import load_text_encoders

    paths = ensure_demo_models()
    enc = load_text_encoders(paths.text_encoder, paths.clip)
    with pytest.raises(InputError, match="no LLaVA vision tower"):
        encode_image_prompt(enc, "a cat", torch.rand(32, 32, 3))


@pytest.mark.parametrize("bad,match", [
    (torch.rand(64, 64), "mask"), (torch.rand(3, 64, 64, 3), "batch of 3"), (torch.rand(1, 64, 64), "not an RGB"),
    (torch.rand(64, 64, 3) * 4, "0..1"), ("image.png", "PIL image")])
def test_bad_images_are_clear_errors(bad, match):
    with pytest.raises(InputError, match=match):
        as_rgb_image(bad)


def test_image_layouts_agree():
    hwc = torch.rand(20, 30, 3)
    for form in (hwc, hwc[None], hwc.permute(2, 0, 1), (hwc * 255).round().to(torch.uint8).numpy()):
        torch.testing.assert_close(as_rgb_image(form), hwc.permute(2, 0, 1), atol=1 / 255, rtol=0)
