"""A tiny LlavaForConditionalGeneration (CLIP vision tower + projector + Llama) with a Llama-3-style
tokenizer that knows <image>, written as a Hugging Face LLaVA folder in the released (transformers 4.x)
key layout, plus a tiny CLIP-L folder."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "text_encoders"))

from tiny_text_models import (CLIP_TOKENIZER_SPECIALS, LLAMA_TOKENIZER_SPECIALS, TINY_LLAMA,  # noqa: E402
                              build_clip_model, build_clip_tokenizer_object, build_llama_tokenizer_object,
                              hf_tokenizer, write_tokenizer_folder)

# diffusers' tiny I2V test vision tower (spec §4), 3 layers so that hidden_states[-2] is a real layer.
TINY_VISION = dict(hidden_size=8, intermediate_size=37, projection_dim=32, num_attention_heads=4,
                   num_hidden_layers=3, image_size=224, patch_size=32)


def llama_tokenizer_with_image():
    from tokenizers import AddedToken

    tk = build_llama_tokenizer_object()
    tk.add_special_tokens([AddedToken("<image>", special=True, normalized=False)])
    return tk


def build_llava(tk, seed: int = 0):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    pad, image = tk.token_to_id("<pad>"), tk.token_to_id("<image>")
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**TINY_VISION),
                      text_config=LlamaConfig(**TINY_LLAMA, pad_token_id=pad), pad_token_id=pad,
                      image_token_index=image)
    model = LlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.05)
    return model


def released_layout(state):
    """transformers-5 LlavaForConditionalGeneration keys -> the released 4.x folder keys."""
    out = {}
    for k, v in state.items():
        if k.startswith("model.language_model."):
            k = "language_model.model." + k[len("model.language_model."):]
        elif k == "lm_head.weight":
            k = "language_model.lm_head.weight"
        elif k.startswith("model.vision_tower."):
            rest = k[len("model.vision_tower."):]
            k = "vision_tower." + (rest if rest.startswith("vision_model.") else "vision_model." + rest)
        elif k.startswith("model.multi_modal_projector."):
            k = k[len("model."):]
        out[k] = v.detach().contiguous()
    return out


def write_llava_folder(model, tk, folder: Path) -> Path:
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    save_file(released_layout(model.state_dict()), str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer_folder(tk, folder, LLAMA_TOKENIZER_SPECIALS)
    size = TINY_VISION["image_size"]
    (folder / "preprocessor_config.json").write_text(json.dumps(dict(
        image_processor_type="CLIPImageProcessor", size={"shortest_edge": size},
        crop_size={"height": size, "width": size}, do_center_crop=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])))
    return folder


def write_clip_folder(folder: Path) -> Path:
    ctk = build_clip_tokenizer_object()
    build_clip_model(vocab_size=ctk.get_vocab_size()).save_pretrained(folder)
    write_tokenizer_folder(ctk, folder, CLIP_TOKENIZER_SPECIALS)
    return folder


__all__ = ["TINY_VISION", "llama_tokenizer_with_image", "build_llava", "write_llava_folder", "write_clip_folder",
           "hf_tokenizer", "LLAMA_TOKENIZER_SPECIALS"]
