"""Tiny Llama / CLIP text models and tokenizers, built locally (no network), written in every
format the text-encoder loader accepts. Shared by the tests and bench/text_cache.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<pad>"]
WORDS = ("a the cat dog red blue green small big runs walks jumps on in over under grass street sky "
         "camera slowly pans left right video image of and with night day light shadow bright dark "
         "describe detailing following aspects main content theme color shape size texture quantity "
         "text spatial relationships objects actions events behaviors temporal physical movement "
         "changes background environment style atmosphere angles movements transitions used").split()
CORPUS = [
    "Describe the video by detailing the following aspects: 1. The main content and theme of the video.",
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.",
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.",
    "4. background environment, light, style and atmosphere.",
    "5. camera angles, movements, and transitions used in the video:",
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships",
    "system user assistant", "a red cat walks on the green grass at night",
    "a small dog runs in the street, the camera slowly pans left", "\n\n", " \n",
] + [" ".join(WORDS[i:i + 7]) for i in range(0, len(WORDS), 3)]

TINY_LLAMA = dict(vocab_size=448, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=128, hidden_act="silu",
                  max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=500000.0,
                  tie_word_embeddings=False)
TINY_CLIP_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                      max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                      projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def build_llama_tokenizer_object():
    """Byte-level BPE with Llama-3's pre-tokenizer, BOS post-processor and header special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from hyvideo_core.text_encoders.gguf_llama import LLAMA3_SPLIT_PATTERN

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True)])
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(CORPUS * 3, trainer=trainer)
    data = json.loads(tk.to_str())
    vocab = data["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True, fuse_unk=False))
    tk.pre_tokenizer = pre
    tk.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS])
    bos = tk.token_to_id("<|begin_of_text|>")
    tk.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                      special_tokens=[("<|begin_of_text|>", bos)])
    return tk


def build_clip_tokenizer_object():
    """WordLevel CLIP-like tokenizer: BOS + words + EOS; EOS has the highest id (as in CLIP-L)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = sorted(set(WORDS) | set("1 2 3 4 5 . , :".split()))
    vocab_list = ["<|startoftext|>", "<unk>", *words, "<|endoftext|>"]
    vocab = {w: i for i, w in enumerate(vocab_list)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", vocab["<|endoftext|>"])])
    return tk


def write_tokenizer_folder(tk, folder: Path, specials: Dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    cfg = dict(specials, tokenizer_class="PreTrainedTokenizerFast", model_max_length=1000000)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


LLAMA_TOKENIZER_SPECIALS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<pad>"}
CLIP_TOKENIZER_SPECIALS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                           "pad_token": "<|endoftext|>", "unk_token": "<unk>"}


def hf_tokenizer(tk, specials):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tk, padding_side="right", **specials)


def build_llama_causal_lm(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).eval()
    with torch.no_grad():  # larger-than-default weights so that layers change the states visibly
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.05)
    return model


def build_clip_model(seed: int = 0, vocab_size: int = 128):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(text_config=dict(TINY_CLIP_TEXT, vocab_size=vocab_size),
                     vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=8, patch_size=4, projection_dim=32),
                     projection_dim=32)
    return CLIPModel(cfg).eval()


def fp8_scaled_state_dict(llama_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """ComfyUI fp8_scaled layout: fp8 linear weights + float32 ``scale_weight``; the rest fp16."""
    from hyvideo_core.quant.fp8 import quantize_fp8

    out: Dict[str, torch.Tensor] = {}
    for k, v in llama_state.items():
        if k.startswith("model.layers.") and k.endswith("_proj.weight"):
            q, s = quantize_fp8(v)
            out[k] = q
            out[k[: -len("weight")] + "scale_weight"] = s
        else:
            out[k] = v.half()
    out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def write_gguf_llm(path: Path, model, tk, qtype: str = "F16") -> Path:
    """Write a llama.cpp-layout GGUF (permuted Q/K, tokenizer metadata) as convert_hf_to_gguf does."""
    import gguf

    from hyvideo_core.text_encoders.gguf_llama import permute_qk

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    data = json.loads(tk.to_str())
    vocab = tk.get_vocab(with_added_tokens=True)
    tokens = [None] * (max(vocab.values()) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a.content for a in tk.get_added_tokens_decoder().values()}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|begin_of_text|>"])
    w.add_eos_token_id(vocab["<|eot_id|>"])
    w.add_pad_token_id(vocab["<pad>"])
    w.add_add_bos_token(True)
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for k, v in model.state_dict().items():
        v = v.detach().float()
        if k == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif k == "model.norm.weight":
            name = "output_norm.weight"
        elif k == "lm_head.weight":
            name = "output.weight"
        else:
            parts = k.split(".")  # model.layers.N.<module>.weight
            module = ".".join(parts[3:-1])
            name = f"blk.{parts[2]}.{names[module]}.weight"
            if module == "self_attn.q_proj":
                v = permute_qk(v, cfg.num_attention_heads)
            elif module == "self_attn.k_proj":
                v = permute_qk(v, cfg.num_key_value_heads)
        arr = v.numpy()
        if arr.ndim == 1:
            w.add_tensor(name, arr.astype(np.float32))
        elif qtype == "Q8_0":
            w.add_tensor(name, gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_all_formats(root: Path) -> Dict[str, Path]:
    """Write every supported format of one tiny LLM + CLIP pair under ``root``."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    ltk, ctk = build_llama_tokenizer_object(), build_clip_tokenizer_object()
    llama = build_llama_causal_lm()
    clip = build_clip_model(vocab_size=ctk.get_vocab_size())
    out: Dict[str, Path] = {}
    # Hugging Face folders, as the official ckpts/text_encoder and ckpts/text_encoder_2.
    llama.save_pretrained(root / "text_encoder")
    write_tokenizer_folder(ltk, root / "text_encoder", LLAMA_TOKENIZER_SPECIALS)
    clip.save_pretrained(root / "text_encoder_2")
    write_tokenizer_folder(ctk, root / "text_encoder_2", CLIP_TOKENIZER_SPECIALS)
    out["llm_hf"], out["clip_hf"] = root / "text_encoder", root / "text_encoder_2"
    # A ComfyUI installation: tokenizers in comfy/, single files in models/text_encoders/.
    comfy = root / "ComfyUI"
    write_tokenizer_folder(ltk, comfy / "comfy" / "text_encoders" / "llama_tokenizer", LLAMA_TOKENIZER_SPECIALS)
    write_tokenizer_folder(ctk, comfy / "comfy" / "sd1_tokenizer", CLIP_TOKENIZER_SPECIALS)
    te = comfy / "models" / "text_encoders"
    te.mkdir(parents=True)
    sd = {k: v.detach().contiguous() for k, v in llama.state_dict().items()}
    save_file({k: v.half() for k, v in sd.items()}, str(te / "llava_llama3_fp16.safetensors"))
    save_file(fp8_scaled_state_dict(sd), str(te / "llava_llama3_fp8_scaled.safetensors"))
    clip_sd = {k: v.detach().half().contiguous() for k, v in clip.state_dict().items()
               if k.startswith("text_model.") or k == "text_projection.weight"}
    save_file(clip_sd, str(te / "clip_l.safetensors"))
    out["comfyui"] = comfy
    out["llm_fp16"] = te / "llava_llama3_fp16.safetensors"
    out["llm_fp8"] = te / "llava_llama3_fp8_scaled.safetensors"
    out["clip_file"] = te / "clip_l.safetensors"
    out["llm_gguf_f16"] = write_gguf_llm(root / "llava-llama-3-8b-F16.gguf", llama, ltk, "F16")
    out["llm_gguf_q8"] = write_gguf_llm(root / "llava-llama-3-8b-Q8_0.gguf", llama, ltk, "Q8_0")
    return out


def llama_reference_hidden(model, tokenizer, texts: List[str], max_length: int, skip: int = 2):
    """hidden_states[-(skip+1)] of the full model on right-padded, truncated input."""
    batch = tokenizer(texts, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[-(skip + 1)], batch["attention_mask"]
