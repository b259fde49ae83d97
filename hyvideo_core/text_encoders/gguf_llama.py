"""GGUF Llama text encoders (llama.cpp layout), read with the ``gguf`` package.

* Tensor names are mapped back to ``transformers.LlamaModel`` names
  (``blk.N.attn_q.weight`` -> ``layers.N.self_attn.q_proj.weight``, ...).
* llama.cpp's converter permutes the rows of Q and K (``convert_hf_to_gguf.LlamaModel.permute``,
  from the rotate-half to the interleaved RoPE layout); the permutation is undone here.
* Quantised tensors are dequantised with ``gguf.quants.dequantize`` when the weight is read.
* The tokenizer is rebuilt from the ``tokenizer.ggml.*`` metadata (Llama-3 byte-level BPE).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import CheckpointError, UnknownCheckpointError
from .encoder_weights import LLAMA, MappedSource, TextEncoderWeights

logger = logging.getLogger(__name__)

GGUF_TO_HF = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
# The pre-tokenizer regex of Llama-3's tokenizer.json (llama.cpp pre-type "llama-bpe").
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def permute_qk(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's Q/K row permutation (rotate-half -> interleaved); used by tests to write files."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def unpermute_qk(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of :func:`permute_qk` (interleaved -> rotate-half, the transformers layout)."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(reader: Any, name: str, default: Any = None) -> Any:
    f = reader.get_field(name)
    if f is None:
        return default
    value = f.contents()
    return value


def _tensor_to_torch(t: Any) -> torch.Tensor:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    shape = tuple(int(x) for x in reversed([int(d) for d in t.shape]))
    qtype = GGMLQuantizationType(int(t.tensor_type))
    if qtype == GGMLQuantizationType.F32:
        arr = np.asarray(t.data, dtype=np.float32)
    elif qtype == GGMLQuantizationType.F16:
        arr = np.asarray(t.data, dtype=np.float16)
    else:
        try:
            arr = dequantize(np.asarray(t.data), qtype)
        except NotImplementedError as exc:
            raise CheckpointError(
                f"GGUF tensor {t.name!r} uses quantisation {qtype.name}, which the installed gguf package "
                f"cannot dequantise; use a Q8_0/Q6_K/Q5_K/Q4_K/F16 file or upgrade `gguf`.") from exc
    return torch.from_numpy(np.array(arr.reshape(shape)))


def open_gguf_llm(path: str) -> TextEncoderWeights:
    """Open a GGUF Llama and return its weights with transformers names, config and tokenizer."""
    from gguf import GGUFReader
    from transformers import LlamaConfig

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf raises ValueError / struct errors for broken files
        raise CheckpointError(f"could not read {path!r} as GGUF: {exc}. The file is corrupt or not GGUF; "
                              f"re-download it.") from exc
    arch = _field(reader, "general.architecture", "")
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors or "blk.0.attn_q.weight" not in tensors:
        what = ("a HunyuanVideo transformer (DiT) GGUF; load it with load_transformer"
                if arch == "hyvid" or any(n.startswith("double_blocks.") for n in tensors)
                else f"a GGUF of architecture {arch!r}")
        raise UnknownCheckpointError(
            f"{path!r} is {what}, not a Llama text encoder. Expected llama.cpp Llama tensors "
            f"('token_embd.weight', 'blk.0.attn_q.weight'); found e.g. {list(tensors)[:5]}. Use a GGUF of "
            f"the llava-llama-3-8b language model.")
    if arch and arch != "llama":
        logger.warning("GGUF architecture is %r; reading it as a Llama", arch)
    arch = arch or "llama"
    hidden = int(_field(reader, f"{arch}.embedding_length", tensors["token_embd.weight"].shape[0]))
    n_head = int(_field(reader, f"{arch}.attention.head_count", max(1, hidden // 128)))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", hidden // n_head))
    layers = max(int(m.group(1)) for n in tensors for m in [re.match(r"blk\.(\d+)\.", n)] if m) + 1
    vocab = int(tensors["token_embd.weight"].shape[1])
    intermediate = int(_field(reader, f"{arch}.feed_forward_length", tensors["blk.0.ffn_gate.weight"].shape[1]))
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=head_dim, hidden_act="silu",
        max_position_embeddings=int(_field(reader, f"{arch}.context_length", 8192)),
        rms_norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 500000.0)),
        attention_bias=f"blk.0.attn_q.bias" in tensors, tie_word_embeddings=False)

    entries: Dict[str, Tuple[Tuple[int, ...], torch.dtype, Any]] = {}
    for name, t in tensors.items():
        hf = _hf_name(name)
        if hf is None:
            continue
        shape = tuple(int(x) for x in reversed([int(d) for d in t.shape]))
        n = n_head if ".q_proj." in hf else n_kv if ".k_proj." in hf else None

        def load(t=t, n=n):
            w = _tensor_to_torch(t)
            return unpermute_qk(w, n) if n is not None else w
        entries[hf] = (shape, torch.float32 if int(t.tensor_type) == 0 else torch.float16, load)  # quantised -> fp16
    source = MappedSource(entries, path)
    tokenizer = None
    try:
        tokenizer = tokenizer_from_gguf(reader)
    except CheckpointError as exc:
        logger.warning("%s", exc)
    return TextEncoderWeights(LLAMA, "gguf", source, config, path, tokenizer=tokenizer)


def _hf_name(name: str) -> Optional[str]:
    if name == "token_embd.weight":
        return "embed_tokens.weight"
    if name == "output_norm.weight":
        return "norm.weight"
    m = re.match(r"blk\.(\d+)\.(\w+)\.(weight|bias)$", name)
    if m and m.group(2) in GGUF_TO_HF:
        return f"layers.{m.group(1)}.{GGUF_TO_HF[m.group(2)]}.{m.group(3)}"
    return None  # output.weight (lm_head), rope_freqs: not used for encoding


def tokenizer_from_gguf(reader: Any) -> Any:
    """Rebuild a transformers fast tokenizer from ``tokenizer.ggml.*`` metadata (BPE/"gpt2" only)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    from .tokenizer_loading import wrap_tokenizer

    model = _field(reader, "tokenizer.ggml.model")
    tokens: Optional[List[str]] = _field(reader, "tokenizer.ggml.tokens")
    if model is None or tokens is None:
        raise CheckpointError("the GGUF file has no tokenizer metadata (tokenizer.ggml.tokens); the "
                              "tokenizer must come from tokenizer_path or the ComfyUI installation.")
    if model != "gpt2":
        raise CheckpointError(f"the GGUF tokenizer is of type {model!r}; only byte-level BPE ('gpt2', as "
                              f"Llama-3) can be rebuilt. Pass tokenizer_path= a folder with tokenizer.json.")
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in (_field(reader, "tokenizer.ggml.merges", []) or [])]
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    llama3 = pre in ("llama-bpe", "llama3", "smaug-bpe")
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=llama3, fuse_unk=False))
    if llama3:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True)])
    else:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    specials = [AddedToken(tokens[i], special=True, normalized=False)
                for i, ty in enumerate(types) if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)]
    tk.add_special_tokens(specials)

    def tok(key: str) -> Optional[str]:
        idx = _field(reader, key)
        return tokens[int(idx)] if idx is not None and 0 <= int(idx) < len(tokens) else None
    bos, eos, pad, unk = (tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id"),
                          tok("tokenizer.ggml.padding_token_id"), tok("tokenizer.ggml.unknown_token_id"))
    if bos is not None and bool(_field(reader, "tokenizer.ggml.add_bos_token", True)):
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    logger.info("LLM tokenizer rebuilt from GGUF metadata (%d tokens, pre=%s)", len(tokens), pre)
    return wrap_tokenizer(tk, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)
