"""The embedded default: tiny seeded-random models in the real file layouts.

``ensure_demo_models()`` writes (once) a ``tiny`` transformer, a tiny causal VAE and tiny
Llama-3-style / CLIP-style text encoders with their tokenizers, exactly as the real files are
laid out (official safetensors, Hugging Face folders), so the demo runs the production loaders.
The toy-world issue replaces the random weights with trained ones.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

DEMO_VARIANT = "tiny"
DEMO_SEED = 20241203
_VERSION = "2"  # bump when the files written here change (2: + text_encoder_i2v, a tiny LLaVA)

# The clip the demo models are sized for, as VideoRequest fields (the command line's defaults for the
# demo). Plain values: the recipes are built on this module, not the other way round.
DEMO_REQUEST_SETTINGS = dict(frames=33, height=128, width=128, steps=8, shift=7.0, embedded_guidance=6.0)

LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>", "<pad>")
_DEMO_WORDS = ("a an the red green blue yellow white black orange purple circle square triangle star ball "
               "box moving left right up down slowly quickly on in over dark light bright background sky "
               "grass cat dog runs walks video image camera").split()


@dataclass(frozen=True)
class DemoModelPaths:
    transformer: str
    vae: str
    text_encoder: str
    clip: str
    text_encoder_i2v: str = ""   # full LLaVA folder (same language model + CLIP vision tower + projector)


def default_cache_dir() -> Path:
    env = os.environ.get("HVS_CACHE_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / ".cache"


def ensure_demo_models(root: Optional[os.PathLike] = None) -> DemoModelPaths:
    root = Path(root) if root else default_cache_dir() / f"demo_models_v{_VERSION}"
    paths = DemoModelPaths(transformer=str(root / "transformer.safetensors"), vae=str(root / "vae.safetensors"),
                           text_encoder=str(root / "text_encoder"), clip=str(root / "text_encoder_2"),
                           text_encoder_i2v=str(root / "text_encoder_i2v"))
    if (root / "complete").is_file():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    _write_transformer(paths.transformer)
    _write_vae(paths.vae)
    _write_text_encoders(Path(paths.text_encoder), Path(paths.clip))
    _write_llava(Path(paths.text_encoder), Path(paths.text_encoder_i2v))
    (root / "complete").write_text(json.dumps({"variant": DEMO_VARIANT, "seed": DEMO_SEED}))
    return paths


def _write_transformer(path: str) -> None:
    from .checkpoints.load import save_transformer
    from .model import HunyuanVideoTransformer
    from .variants import get_variant

    torch.manual_seed(DEMO_SEED)
    model = HunyuanVideoTransformer(get_variant(DEMO_VARIANT).transformer)
    model.variant = DEMO_VARIANT
    save_transformer(model, path)


def _write_vae(path: str) -> None:
    from .vae import CausalVideoVAE, save_vae
    from .variants import get_variant

    torch.manual_seed(DEMO_SEED + 1)
    save_vae(CausalVideoVAE(get_variant(DEMO_VARIANT).vae), path)


def _template_words():
    from .text_encoders.templates import resolve_template

    words = set()
    for name in ("video", "image"):
        words |= set(re.findall(r"[A-Za-z]+|\d|[.,:]", resolve_template(name).text.replace("{}", " ")))
    return sorted(words)


def _write_text_encoders(llm_dir: Path, clip_dir: Path, variant: str = DEMO_VARIANT, extra_words=(),
                         seed: int = DEMO_SEED) -> None:
    """Tiny random Llama-3-style and CLIP-style encoders sized for ``variant``'s text inputs
    (the toy world calls this with its own variant, vocabulary and seed)."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaForCausalLM

    from .variants import get_variant

    cfg = get_variant(variant).transformer
    words = sorted(set(_DEMO_WORDS) | {w.lower() for w in _template_words()} | {w.lower() for w in extra_words})

    # LLM: word-level tokenizer with the Llama-3 header tokens as single special tokens.
    vocab = {w: i for i, w in enumerate(["<unk>", *words])}
    llm_tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    llm_tok.normalizer = normalizers.Lowercase()
    llm_tok.pre_tokenizer = pre_tokenizers.Whitespace()
    llm_tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL_TOKENS])
    bos = llm_tok.token_to_id("<|begin_of_text|>")
    llm_tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
    torch.manual_seed(seed + 2)
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=llm_tok.get_vocab_size(), hidden_size=cfg.text_states_dim, intermediate_size=2 * cfg.text_states_dim,
        num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
        bos_token_id=bos, eos_token_id=llm_tok.token_to_id("<|eot_id|>"), pad_token_id=llm_tok.token_to_id("<pad>")))
    llm.save_pretrained(llm_dir, safe_serialization=True)
    _save_tokenizer(llm_tok, llm_dir, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<pad>"})

    # CLIP: BOS + words + EOS, EOS the highest id (as in CLIP-L, where pooling takes the argmax id).
    clip_vocab = {w: i for i, w in enumerate(["<|startoftext|>", "<unk>", *words, "<|endoftext|>"])}
    clip_tok = Tokenizer(models.WordLevel(vocab=clip_vocab, unk_token="<unk>"))
    clip_tok.normalizer = normalizers.Lowercase()
    clip_tok.pre_tokenizer = pre_tokenizers.Whitespace()
    eos = clip_vocab["<|endoftext|>"]
    clip_tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", eos)])
    torch.manual_seed(seed + 3)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_vocab), hidden_size=cfg.text_states_dim_2, intermediate_size=2 * cfg.text_states_dim_2,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
        pad_token_id=eos))
    # Released CLIP-L folders name the text tower's tensors "text_model.*"; recent transformers
    # versions save a bare CLIPTextModel without that prefix, so write the file ourselves.
    from safetensors.torch import save_file

    clip_dir.mkdir(parents=True, exist_ok=True)
    clip.config.save_pretrained(clip_dir)
    state = {k if k.startswith("text_model.") else f"text_model.{k}": v.contiguous() for k, v in clip.state_dict().items()}
    save_file(state, str(clip_dir / "model.safetensors"), metadata={"format": "pt"})
    _save_tokenizer(clip_tok, clip_dir, {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                         "pad_token": "<|endoftext|>", "unk_token": "<unk>"})


def _save_tokenizer(tokenizer, folder: Path, specials: dict) -> None:
    tokenizer.save(str(folder / "tokenizer.json"))
    config = dict(specials, tokenizer_class="PreTrainedTokenizerFast", model_max_length=1_000_000, padding_side="right")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


# Tiny CLIP vision tower of the demo LLaVA: 64x64 input, 16x16 patches -> 16 image tokens.
DEMO_VISION = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, image_size=64,
                   patch_size=16, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def _write_llava(llm_dir: Path, out_dir: Path) -> None:
    """A Hugging Face LLaVA folder in the released (xtuner llava-llama-3-8b-v1_1-transformers) key layout:
    the demo language model under ``language_model.``, an ``<image>`` token appended to its vocabulary,
    a tiny CLIP vision tower under ``vision_tower.vision_model.`` and ``multi_modal_projector.linear_1/2``."""
    import shutil

    from safetensors.torch import load_file, save_file
    from tokenizers import AddedToken, Tokenizer
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlavaConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(llm_dir / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False)])
    image_id = tok.token_to_id("<image>")
    text_cfg = LlamaConfig.from_pretrained(llm_dir)
    lm = load_file(str(llm_dir / "model.safetensors"))
    torch.manual_seed(DEMO_SEED + 4)
    state = {}
    for k, v in lm.items():
        if k in ("model.embed_tokens.weight", "lm_head.weight") and v.shape[0] <= image_id:
            v = torch.cat([v, torch.randn(image_id + 1 - v.shape[0], v.shape[1], dtype=v.dtype) * 0.02])
        state["language_model." + k] = v.contiguous()
    text_cfg.vocab_size = image_id + 1
    vision_cfg = CLIPVisionConfig(**DEMO_VISION)
    vision = CLIPVisionModel(vision_cfg)
    for k, v in vision.state_dict().items():
        if not k.endswith("position_ids"):
            k = k if k.startswith("vision_model.") else "vision_model." + k
            state["vision_tower." + k] = v.contiguous()
    d_text = text_cfg.hidden_size
    for i, (n_in, n_out) in enumerate(((vision_cfg.hidden_size, d_text), (d_text, d_text)), start=1):
        state[f"multi_modal_projector.linear_{i}.weight"] = torch.randn(n_out, n_in) / n_in ** 0.5
        state[f"multi_modal_projector.linear_{i}.bias"] = torch.zeros(n_out)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = LlavaConfig(vision_config=vision_cfg, text_config=text_cfg, image_token_index=image_id,
                         pad_token_id=text_cfg.pad_token_id, projector_hidden_act="gelu",
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    config.save_pretrained(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    shutil.copy(llm_dir / "tokenizer_config.json", out_dir / "tokenizer_config.json")
    size = DEMO_VISION["image_size"]
    (out_dir / "preprocessor_config.json").write_text(json.dumps(dict(
        image_processor_type="CLIPImageProcessor", size={"shortest_edge": size},
        crop_size={"height": size, "width": size}, do_center_crop=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]), indent=1))
