"""Embeddings from every supported format equal hidden_states[-3] (cropped, masked) of the
reference model and diffusers' HunyuanVideoPipeline prompt encoding on the same tiny models."""
import copy
import logging

import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.text_encoders import encode_prompt, load_text_encoders
from hyvideo_core.text_encoders.embedding_cache import EmbeddingCache
from hyvideo_core.text_encoders.encoder_models import fp8_linear_count
from hyvideo_core.quant.fp8 import quantize_fp8
from hyvideo_core.text_encoders.templates import IMAGE_TEMPLATE, VIDEO_TEMPLATE, compute_crop_start
from tiny_text_models import llama_reference_hidden

PROMPTS = ["a red cat walks on the green grass at night", "a dog"]
MAX_LEN = 48


def reference(model, tok, template, prompts=PROMPTS, max_length=MAX_LEN):
    crop = compute_crop_start(tok, template)
    hidden, mask = llama_reference_hidden(model, tok, [template.format(p) for p in prompts], max_length + crop)
    return hidden[:, crop:], mask[:, crop:]


@pytest.mark.parametrize("template", [VIDEO_TEMPLATE, IMAGE_TEMPLATE], ids=["video", "image"])
def test_hf_folder_equals_hidden_states_minus_3(hf_encoders, reference_llama, reference_clip, template):
    e = encode_prompt(hf_encoders, PROMPTS, template=template.name, max_length=MAX_LEN, use_cache=False)
    ref_h, ref_m = reference(reference_llama, hf_encoders.llm_tokenizer, template)
    assert e.text_states.shape == (2, MAX_LEN, 256) and e.text_mask.shape == (2, MAX_LEN)
    assert e.text_mask.dtype == torch.int64
    torch.testing.assert_close(e.text_states, ref_h, atol=1e-5, rtol=1e-5)
    assert torch.equal(e.text_mask, ref_m)
    # only the real tokens are 1, right-padded, and padded positions are zero-masked
    assert e.text_mask[0, : e.num_tokens[0]].all() and not e.text_mask[0, e.num_tokens[0]:].any()
    ids = hf_encoders.clip_tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True,
                                     return_tensors="pt")["input_ids"]
    with torch.no_grad():
        pooled = reference_clip(input_ids=ids).pooler_output
    torch.testing.assert_close(e.text_states_2, pooled, atol=1e-6, rtol=1e-6)


def test_crop_keeps_prompt_tokens_and_eot(hf_encoders):
    tok = hf_encoders.llm_tokenizer
    crop = hf_encoders.crop_start(VIDEO_TEMPLATE)
    ids = tok(VIDEO_TEMPLATE.format(PROMPTS[1]))["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|begin_of_text|>")
    kept = ids[crop:]
    assert tok.decode(kept[:-1]) == PROMPTS[1]  # the user prompt...
    assert kept[-1] == tok.convert_tokens_to_ids("<|eot_id|>")  # ...and the closing <|eot_id|>
    e = encode_prompt(hf_encoders, PROMPTS[1], max_length=MAX_LEN, use_cache=False)
    assert e.num_tokens == (len(kept),)


def test_matches_diffusers_pipeline(hf_encoders, tiny_files):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import CLIPTextModel, LlamaModel

    pipe = HunyuanVideoPipeline(
        text_encoder=LlamaModel.from_pretrained(str(tiny_files["llm_hf"])).eval(),
        tokenizer=hf_encoders.llm_tokenizer, transformer=None, vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=CLIPTextModel.from_pretrained(str(tiny_files["clip_hf"])).eval(),
        tokenizer_2=hf_encoders.clip_tokenizer)
    crop = hf_encoders.crop_start(VIDEO_TEMPLATE)
    with torch.no_grad():
        embeds, pooled, mask = pipe.encode_prompt(
            PROMPTS, prompt_template={"template": VIDEO_TEMPLATE.text, "crop_start": crop},
            device=torch.device("cpu"), dtype=torch.float32, max_sequence_length=MAX_LEN)
    e = encode_prompt(hf_encoders, PROMPTS, template="video", max_length=MAX_LEN, use_cache=False)
    torch.testing.assert_close(e.text_states, embeds, atol=1e-5, rtol=1e-5)
    assert torch.equal(e.text_mask, mask.to(torch.int64))
    torch.testing.assert_close(e.text_states_2, pooled, atol=1e-6, rtol=1e-6)


def _rounded_reference(reference_llama, fn):
    model = copy.deepcopy(reference_llama)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(fn(name, p))
    return model


def test_comfyui_fp16_single_files(tiny_files, reference_llama):
    enc = load_text_encoders(tiny_files["llm_fp16"], tiny_files["clip_file"])  # tokenizers: ComfyUI tree
    assert enc.info["llm_layout"] == "comfyui_llm" and enc.info["clip_layout"] == "comfyui_clip"
    ref = _rounded_reference(reference_llama, lambda n, p: p.half().float())
    e = encode_prompt(enc, PROMPTS, max_length=MAX_LEN, use_cache=False)
    ref_h, ref_m = reference(ref, enc.llm_tokenizer, VIDEO_TEMPLATE)
    torch.testing.assert_close(e.text_states, ref_h, atol=1e-5, rtol=1e-5)
    assert torch.equal(e.text_mask, ref_m)


def test_comfyui_fp8_scaled_keeps_fp8_weights(tiny_files, reference_llama):
    enc = load_text_encoders(tiny_files["llm_fp8"], tiny_files["clip_file"], tokenizer_path=tiny_files["comfyui"])
    assert enc.info["llm_layout"] == "comfyui_fp8_scaled" and enc.info["fp8"]
    assert fp8_linear_count(enc.llm) == 7 * enc.info["llm_layers_run"]

    def dequant(name, p):
        if name.startswith("layers.") and name.endswith("_proj.weight"):
            q, s = quantize_fp8(p)
            return q.float() * s
        return p.half().float()
    ref = _rounded_reference(reference_llama, dequant)
    e = encode_prompt(enc, PROMPTS, max_length=MAX_LEN, use_cache=False)
    ref_h, ref_m = reference(ref, enc.llm_tokenizer, VIDEO_TEMPLATE)
    torch.testing.assert_close(e.text_states, ref_h, atol=1e-4, rtol=1e-4)
    assert torch.equal(e.text_mask, ref_m)


def test_gguf_f16_with_tokenizer_from_metadata(tiny_files, reference_llama, hf_encoders):
    enc = load_text_encoders(tiny_files["llm_gguf_f16"], tiny_files["clip_hf"])
    assert enc.info["llm_layout"] == "gguf"
    ref_tok = hf_encoders.llm_tokenizer
    for text in [VIDEO_TEMPLATE.format(p) for p in PROMPTS] + ["Hello, World! 123 \n\n ünïcode"]:
        assert enc.llm_tokenizer(text)["input_ids"] == ref_tok(text)["input_ids"]
    ref = _rounded_reference(reference_llama, lambda n, p: p.half().float())
    e = encode_prompt(enc, PROMPTS, max_length=MAX_LEN, use_cache=False)
    ref_h, _ = reference(ref, ref_tok, VIDEO_TEMPLATE)
    torch.testing.assert_close(e.text_states, ref_h, atol=1e-5, rtol=1e-5)  # q/k permutation undone


def test_gguf_q8_0_close_to_reference(tiny_files, hf_encoders):
    enc = load_text_encoders(tiny_files["llm_gguf_q8"], tiny_files["clip_file"], tokenizer_path=tiny_files["comfyui"])
    e = encode_prompt(enc, PROMPTS, max_length=MAX_LEN, use_cache=False)
    ref = encode_prompt(hf_encoders, PROMPTS, max_length=MAX_LEN, use_cache=False)
    err = (e.text_states - ref.text_states).abs().max() / ref.text_states.abs().max()
    assert err < 0.05
    assert torch.equal(e.text_mask, ref.text_mask)


def test_dtype_options(tiny_files):
    bf16 = load_text_encoders(tiny_files["llm_hf"], tiny_files["clip_hf"], dtype="bf16")
    e = encode_prompt(bf16, "a cat", max_length=16, use_cache=False)
    assert e.text_states.dtype == torch.bfloat16 and e.text_states_2.dtype == torch.bfloat16
    fp8 = load_text_encoders(tiny_files["llm_hf"], tiny_files["clip_hf"], dtype="fp8")
    assert fp8_linear_count(fp8.llm) > 0 and fp8.llm.model.embed_tokens.weight.dtype == torch.float32
    with pytest.raises(InputError, match="dtype"):
        load_text_encoders(tiny_files["llm_hf"], tiny_files["clip_hf"], dtype="int4")


def test_batch_equals_single(hf_encoders):
    batch = encode_prompt(hf_encoders, PROMPTS, max_length=MAX_LEN, use_cache=False)
    for i, p in enumerate(PROMPTS):
        one = encode_prompt(hf_encoders, p, max_length=MAX_LEN, use_cache=False)
        torch.testing.assert_close(one.text_states[0], batch.text_states[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one.text_states_2[0], batch.text_states_2[i], atol=1e-6, rtol=1e-6)


def test_embedding_cache_skips_the_model(hf_encoders, monkeypatch):
    cache = EmbeddingCache(max_entries=2)
    first = encode_prompt(hf_encoders, "a cat", max_length=MAX_LEN, cache=cache)
    calls = []
    monkeypatch.setattr(hf_encoders.llm, "forward", lambda *a, **k: calls.append(1) or None)
    again = encode_prompt(hf_encoders, "a cat", max_length=MAX_LEN, cache=cache)
    assert not calls and cache.stats.hits == 1
    assert torch.equal(first.text_states, again.text_states)
    monkeypatch.undo()
    encode_prompt(hf_encoders, "a cat", template="image", max_length=MAX_LEN, cache=cache)  # new key
    encode_prompt(hf_encoders, "a dog", max_length=MAX_LEN, cache=cache)
    assert len(cache) == 2  # bounded LRU: the oldest entry was evicted
    assert cache.stats.misses == 3


def test_over_long_prompt_truncated_with_warning(hf_encoders, caplog):
    long_prompt = " ".join(["a red cat walks on the green grass"] * 10)
    with caplog.at_level(logging.WARNING):
        e = encode_prompt(hf_encoders, long_prompt, max_length=16, use_cache=False)
    assert e.text_mask.sum() == 16
    msg = " ".join(r.getMessage() for r in caplog.records)
    n = len(hf_encoders.llm_tokenizer(VIDEO_TEMPLATE.format(long_prompt))["input_ids"]) - \
        hf_encoders.crop_start(VIDEO_TEMPLATE) - 16
    assert f"{n} tokens are cut" in msg and "limit of 16" in msg
    with pytest.raises(InputError, match="tokens are cut"):
        encode_prompt(hf_encoders, long_prompt, max_length=16, truncate=False, use_cache=False)


def test_custom_template(hf_encoders):
    tmpl = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    e = encode_prompt(hf_encoders, "a cat", template=tmpl, max_length=8, use_cache=False)
    assert e.template == "custom" and e.text_states.shape[1] == 8
    with pytest.raises(InputError, match="slot"):
        encode_prompt(hf_encoders, "a cat", template="no slot here")
