"""Clear errors for wrong files and missing tokenizers; the real model's key sets and shapes.

Key layouts of the released files (documented here, checked on meta-device models):

* official ``ckpts/text_encoder`` (``model.language_model`` of xtuner/llava-llama-3-8b-v1_1-transformers,
  a ``LlamaForCausalLM`` saved with ``save_pretrained``) and ComfyUI ``llava_llama3_fp16.safetensors``:
  ``model.embed_tokens.weight`` (128320, 4096), ``model.layers.{0..31}.{input_layernorm,
  post_attention_layernorm}.weight``, ``model.layers.N.self_attn.{q,o}_proj.weight`` (4096, 4096),
  ``{k,v}_proj.weight`` (1024, 4096), ``model.layers.N.mlp.{gate,up}_proj.weight`` (14336, 4096),
  ``down_proj.weight`` (4096, 14336), ``model.norm.weight``, plus ``lm_head.weight`` (unused, ignored).
  ComfyUI detects the LLM by ``model.norm.weight``; ``llava_llama3_fp8_scaled`` adds
  ``<linear>.scale_weight`` and a ``scaled_fp8`` marker.
* ``transformers.LlamaModel`` itself (``AutoModel``, what the official loader builds) uses the same
  names without ``model.``; both forms load.
* CLIP-L (``ckpts/text_encoder_2`` = full CLIPModel, ComfyUI ``clip_l.safetensors``):
  ``text_model.embeddings.token_embedding.weight`` (49408, 768), ``position_embedding`` (77, 768),
  ``text_model.encoder.layers.{0..11}.…``, ``text_model.final_layer_norm.…``.
"""
import shutil

import pytest
import torch
from safetensors.torch import save_file

from hyvideo_core.checkpoints.io import DictSource
from hyvideo_core.errors import CheckpointError, InputError, UnknownCheckpointError
from hyvideo_core.text_encoders import load_text_encoders
from hyvideo_core.text_encoders.weight_layouts import (CLIP_L_TEXT_CONFIG, LLAVA_LLAMA3_8B_CONFIG, LLAMA,
                                                       infer_clip_config, infer_llama_config, recognise)


def test_missing_tokenizer_says_which_files_where(tiny_files, tmp_path):
    lonely = tmp_path / "models" / "llava_llama3_fp16.safetensors"
    lonely.parent.mkdir()
    shutil.copy(tiny_files["llm_fp16"], lonely)
    with pytest.raises(CheckpointError) as info:
        load_text_encoders(lonely, tiny_files["clip_hf"])
    msg = str(info.value)
    assert "tokenizer.json" in msg and "comfy/text_encoders/llama_tokenizer" in msg and "tokenizer_path" in msg
    with pytest.raises(CheckpointError, match="holds no tokenizer files"):
        load_text_encoders(lonely, tiny_files["clip_hf"], tokenizer_path=tmp_path)


def test_clip_tokenizer_as_llm_tokenizer(tiny_files):
    with pytest.raises(InputError, match="Llama-3 template tokens"):
        load_text_encoders(tiny_files["llm_fp16"], tiny_files["clip_hf"],
                           tokenizer_path=tiny_files["comfyui"] / "comfy" / "sd1_tokenizer")


def test_vae_and_dit_files_are_refused(tiny_files, tmp_path):
    vae = tmp_path / "vae.safetensors"
    save_file({"decoder.conv_in.conv.weight": torch.zeros(4, 4, 3, 3, 3),
               "encoder.down_blocks.0.resnets.0.conv1.conv.weight": torch.zeros(4, 4, 3, 3, 3)}, str(vae))
    with pytest.raises(UnknownCheckpointError, match="VAE.*load_vae"):
        load_text_encoders(vae, tiny_files["clip_hf"])
    dit = tmp_path / "dit.safetensors"
    save_file({"double_blocks.0.img_attn_qkv.weight": torch.zeros(6, 2), "img_in.proj.weight": torch.zeros(2, 2)},
              str(dit))
    with pytest.raises(UnknownCheckpointError, match="transformer \\(DiT\\).*load_transformer"):
        load_text_encoders(tiny_files["llm_hf"], dit)
    junk = tmp_path / "junk.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(junk))
    with pytest.raises(UnknownCheckpointError, match="not a recognised text encoder"):
        load_text_encoders(junk, tiny_files["clip_hf"])


def test_dit_gguf_is_refused(tmp_path, tiny_files):
    import gguf
    import numpy as np

    path = tmp_path / "hyvid.gguf"
    w = gguf.GGUFWriter(str(path), "hyvid")
    w.add_tensor("double_blocks.0.img_attn_qkv.weight", np.zeros((6, 2), np.float16))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(UnknownCheckpointError, match="DiT"):
        load_text_encoders(path, tiny_files["clip_hf"])


def test_swapped_paths(tiny_files):
    with pytest.raises(InputError, match="Swap"):
        load_text_encoders(tiny_files["clip_file"], tiny_files["llm_fp16"])


def test_missing_path(tmp_path, tiny_files):
    with pytest.raises(CheckpointError, match="not found"):
        load_text_encoders(tmp_path / "nope.safetensors", tiny_files["clip_hf"])


def _meta_source(module, prefix="", extra=None):
    tensors = {prefix + k: v for k, v in module.state_dict().items()}
    tensors.update(extra or {})
    return DictSource(tensors, path="<meta>")


def test_real_llava_llama3_key_set_and_shapes():
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        full = LlamaForCausalLM(LlamaConfig(**LLAVA_LLAMA3_8B_CONFIG))
    sd = full.state_dict()
    assert sd["model.embed_tokens.weight"].shape == (128320, 4096)
    assert sd["model.layers.31.self_attn.q_proj.weight"].shape == (4096, 4096)
    assert sd["model.layers.31.self_attn.k_proj.weight"].shape == (1024, 4096)
    assert sd["model.layers.0.mlp.down_proj.weight"].shape == (4096, 14336)
    assert sd["lm_head.weight"].shape == (128320, 4096)
    assert len([k for k in sd if k.startswith("model.")]) == 1 + 32 * 9 + 1
    assert sum(v.numel() for k, v in sd.items() if k.startswith("model.")) == 7_505_186_816
    # ComfyUI llava_llama3_fp16 / official layout ("model." prefix + lm_head) is recognised and the
    # config inferred from shapes alone is the llava-llama-3-8b one.
    w = recognise(_meta_source(full), "<meta>", layout="single_file")
    assert w.kind == LLAMA and "lm_head.weight" not in w.source
    cfg = infer_llama_config(w.source)
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps"):
        assert getattr(cfg, key) == LLAVA_LLAMA3_8B_CONFIG[key], key
    # The bare LlamaModel layout loads too.
    w2 = recognise(_meta_source(full.model), "<meta>", layout="single_file")
    assert set(w2.source.keys()) == set(w.source.keys())


def test_real_clip_l_text_key_set_and_shapes():
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        model = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT_CONFIG))
    keys = model.state_dict()
    nested = any(k.startswith("text_model.") for k in keys)
    prefix = "" if nested else "text_model."
    src = _meta_source(model, prefix, {"text_projection.weight": torch.empty(768, 768, device="meta")})
    w = recognise(src, "<meta>", layout="single_file")
    assert w.source.shape("text_model.embeddings.token_embedding.weight") == (49408, 768)
    assert w.source.shape("text_model.embeddings.position_embedding.weight") == (77, 768)
    assert "text_projection.weight" not in w.source
    cfg = infer_clip_config(w.source)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (768, 12, 12, 3072)
    assert sum(v.numel() for v in keys.values()) == 123_060_480
