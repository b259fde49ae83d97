"""Public text-encoder API: :func:`load_text_encoders` and :func:`encode_prompt`.

::

    from hyvideo_core.text_encoders import load_text_encoders, encode_prompt
    enc = load_text_encoders("ckpts/text_encoder", "ckpts/text_encoder_2", device="cuda", dtype="bf16")
    e = encode_prompt(enc, "a cat walks on the grass", template="video")
    y = model(x, t, e.text_states, e.text_mask, e.text_states_2, guidance)

Semantics follow the official HunyuanVideo code and diffusers' ``HunyuanVideoPipeline``:
the LLM (llava-llama-3-8b) runs on the templated prompt padded on the right to
``max_length + crop_start`` tokens, ``hidden_states[-3]`` (no final norm) is taken and the
template prefix cropped, giving ``(B, max_length, 4096)`` and a mask; CLIP-L gives
``pooler_output`` ``(B, 768)`` for the raw prompt (77 tokens).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import InputError
from .embedding_cache import PROMPT_EMBEDDING_CACHE, EmbeddingCache
from .encoder_models import ClipTextEncoder, LlmTextEncoder, build_clip, build_llm
from .templates import PromptTemplate, check_prefix_tokens, compute_crop_start, resolve_template
from .tokenizer_loading import CLIP, LLM, check_llm_tokenizer, find_tokenizer
from .weight_layouts import CLIP_TEXT, LLAMA, TextEncoderWeights, open_text_encoder_weights

logger = logging.getLogger(__name__)

DtypeLike = Union[None, str, torch.dtype]
_DTYPE_NAMES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
    "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}
_FP8_NAMES = ("fp8", "fp8_e4m3fn", "float8_e4m3fn", "fp8_scaled")


@dataclass(frozen=True)
class PromptEmbeds:
    """Text conditioning for the DiT: ``model(x, t, e.text_states, e.text_mask, e.text_states_2, g)``.

    * ``text_states``: (B, L, D) LLM hidden states of the prompt tokens (L = max_length).
    * ``text_mask``: (B, L) int64, 1 = real token, right-padded.
    * ``text_states_2``: (B, 768) pooled CLIP-L vector.
    * ``prompts``: the prompts (after ``strip()``); ``template``: the template name.
    * ``num_tokens``: real (unpadded) LLM tokens per prompt after the crop.
    """

    text_states: torch.Tensor
    text_mask: torch.Tensor
    text_states_2: torch.Tensor
    prompts: Tuple[str, ...] = ()
    template: str = "video"
    num_tokens: Tuple[int, ...] = ()

    def to(self, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> "PromptEmbeds":
        """Move to ``device`` and cast the float tensors to ``dtype`` (the mask stays int64)."""
        return PromptEmbeds(self.text_states.to(device=device, dtype=dtype), self.text_mask.to(device=device),
                            self.text_states_2.to(device=device, dtype=dtype), self.prompts, self.template,
                            self.num_tokens)

    def __len__(self) -> int:
        return self.text_states.shape[0]


@dataclass
class TextEncoders:
    """The loaded LLM and CLIP-L encoders with their tokenizers.

    Weights live on ``offload_device`` (CPU) between calls and move to ``device`` only while
    encoding, unless ``keep_on_device`` is set.
    """

    llm: LlmTextEncoder
    clip: ClipTextEncoder
    llm_tokenizer: Any
    clip_tokenizer: Any
    device: torch.device
    compute_dtype: torch.dtype
    identity: str
    keep_on_device: bool = False
    offload_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    info: Dict[str, Any] = field(default_factory=dict)
    _crop_starts: Dict[str, int] = field(default_factory=dict, repr=False)

    def crop_start(self, template: PromptTemplate) -> int:
        """Template prefix length in LLM tokens (BOS included); 95 / 36 for video / image."""
        if template.text not in self._crop_starts:
            if template.name in ("video", "image"):
                check_llm_tokenizer(self.llm_tokenizer, "the loaded LLM tokenizer")
            self._crop_starts[template.text] = compute_crop_start(self.llm_tokenizer, template)
        return self._crop_starts[template.text]

    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Move ``module`` to the compute device for the duration of the block, then back."""
        moved = self.device != self.offload_device
        if moved:
            module.to(self.device)
        try:
            yield module
        finally:
            if moved and not self.keep_on_device:
                module.to(self.offload_device)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# Loading


def _resolve_device(device: Union[str, torch.device]) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} requested but no CUDA device is available (torch "
                         f"{torch.__version__}); use device='cpu'.")
    return dev


def resolve_dtypes(dtype: DtypeLike, device: torch.device, file_dtype: torch.dtype) -> Tuple[torch.dtype, bool]:
    """Return ``(compute dtype, keep LLM linear weights in fp8)``.

    ``None`` keeps the file's precision on accelerators (fp8 files stay fp8, computing in
    bf16) and computes in float32 on the CPU, where half precision is slow.
    """
    accel = device.type != "cpu"
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key in _FP8_NAMES:
            return (torch.bfloat16 if accel else torch.float32), True
        if key not in _DTYPE_NAMES:
            raise InputError(f"dtype {dtype!r} is not supported; expected one of bf16, fp16, fp32, fp8 "
                             f"(or a torch dtype), or None for the file's precision.")
        return _DTYPE_NAMES[key], False
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float8_e4m3fn,):
            return (torch.bfloat16 if accel else torch.float32), True
        if not dtype.is_floating_point or dtype.itemsize == 1:
            raise InputError(f"dtype {dtype} is not supported; expected bfloat16, float16, float32 or "
                             f"float8_e4m3fn.")
        return dtype, False
    if dtype is not None:
        raise InputError(f"dtype must be None, a string or a torch.dtype; found {type(dtype).__name__}.")
    if file_dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return (torch.bfloat16 if accel else torch.float32), True
    return (file_dtype if accel else torch.float32), False


def _describe_path(path: Optional[str]) -> List[Any]:
    if not path:
        return [None]
    path = os.path.realpath(path)
    files = ([os.path.join(path, f) for f in sorted(os.listdir(path))] if os.path.isdir(path) else [path])
    out: List[Any] = []
    for f in files:
        if os.path.isfile(f):
            st = os.stat(f)
            out.append([f, st.st_size, st.st_mtime_ns])
    return out


def _expect_kind(weights: TextEncoderWeights, kind: str, argument: str) -> None:
    if weights.kind == kind:
        return
    if kind == LLAMA:
        raise InputError(
            f"{argument}={weights.path!r} is a CLIP text model, but the LLM (llava-llama-3-8b) was expected "
            f"there. Swap the two paths: pass the LLM as llm_path and CLIP-L as clip_path.")
    raise InputError(
        f"{argument}={weights.path!r} is a Llama LLM, but CLIP-L was expected there. Swap the two paths: "
        f"pass the LLM as llm_path and CLIP-L (clip_l.safetensors / text_encoder_2) as clip_path.")


def load_text_encoders(llm_path: Union[str, os.PathLike], clip_path: Union[str, os.PathLike],
                       device: Union[str, torch.device] = "cpu", dtype: DtypeLike = None,
                       tokenizer_path: Optional[Union[str, os.PathLike]] = None, *,
                       clip_tokenizer_path: Optional[Union[str, os.PathLike]] = None,
                       llm_config: Any = None, hidden_state_skip_layer: int = 2,
                       apply_final_norm: bool = False, keep_on_device: bool = False,
                       attn_implementation: str = "sdpa") -> TextEncoders:
    """Load the LLM and CLIP-L text encoders and their tokenizers, offline.

    ``llm_path``: HF folder (official ``ckpts/text_encoder``), ComfyUI single file
    (``llava_llama3_fp16`` / ``llava_llama3_fp8_scaled``) or GGUF. ``clip_path``: HF folder
    (``ckpts/text_encoder_2``) or ``clip_l.safetensors``. ``tokenizer_path``: a folder with the
    Llama-3 tokenizer, or a ComfyUI installation (its ``comfy/text_encoders/llama_tokenizer`` and
    ``comfy/sd1_tokenizer`` are used). ``dtype``: None (file precision; float32 on CPU), "bf16",
    "fp16", "fp32" or "fp8" (LLM linear weights stored in fp8 with per-layer scales).
    ``llm_config``: a config dict for single files whose hyper-parameters shapes cannot tell.
    """
    dev = _resolve_device(device)
    llm_path, clip_path = os.fspath(llm_path), os.fspath(clip_path)
    tokenizer_path = os.fspath(tokenizer_path) if tokenizer_path else None
    clip_tokenizer_path = os.fspath(clip_tokenizer_path) if clip_tokenizer_path else None

    llm_weights = open_text_encoder_weights(llm_path, llm_config=llm_config)
    _expect_kind(llm_weights, LLAMA, "llm_path")
    clip_weights = open_text_encoder_weights(clip_path)
    _expect_kind(clip_weights, CLIP_TEXT, "clip_path")

    llm_tok = find_tokenizer(LLM, tokenizer_path, llm_path, fallback=llm_weights.tokenizer)
    # A ComfyUI installation given as tokenizer_path serves both tokenizers.
    if clip_tokenizer_path is None and _is_comfyui_dir(tokenizer_path):
        clip_tokenizer_path = tokenizer_path
    clip_tok = find_tokenizer(CLIP, clip_tokenizer_path, clip_path)

    compute_dtype, fp8 = resolve_dtypes(dtype, dev, llm_weights.file_dtype)
    # CLIP-L is small: never fp8; with dtype=None it keeps its own file precision.
    clip_dtype = resolve_dtypes(None, dev, clip_weights.file_dtype)[0] if dtype is None else compute_dtype
    llm = build_llm(llm_weights, dtype=compute_dtype, fp8=fp8, skip_layers=hidden_state_skip_layer,
                    apply_final_norm=apply_final_norm, attn_implementation=attn_implementation)
    clip = build_clip(clip_weights, dtype=clip_dtype, attn_implementation=attn_implementation)

    identity_src = dict(llm=_describe_path(llm_path), clip=_describe_path(clip_path),
                        tok=_describe_path(tokenizer_path), tok2=_describe_path(clip_tokenizer_path),
                        dtype=str(compute_dtype), clip_dtype=str(clip_dtype), fp8=fp8,
                        skip=hidden_state_skip_layer, norm=apply_final_norm, cfg=str(llm_config))
    identity = hashlib.sha1(json.dumps(identity_src, sort_keys=True, default=str).encode()).hexdigest()
    info = dict(llm_path=llm_path, llm_layout=llm_weights.layout, clip_layout=clip_weights.layout, fp8=fp8,
                llm_layers_run=llm.model.config.num_hidden_layers, llm_layers_total=llm.full_layers)
    logger.info("text encoders loaded: LLM %s (%s, %d of %d layers run, %s%s), CLIP %s (%s)",
                llm_path, llm_weights.layout, info["llm_layers_run"], llm.full_layers, compute_dtype,
                ", fp8 weights" if fp8 else "", clip_path, clip_weights.layout)
    enc = TextEncoders(llm=llm, clip=clip, llm_tokenizer=llm_tok, clip_tokenizer=clip_tok, device=dev,
                       compute_dtype=compute_dtype, identity=identity, keep_on_device=keep_on_device, info=info)
    if keep_on_device and dev.type != "cpu":
        llm.to(dev)
        clip.to(dev)
    return enc


def _is_comfyui_dir(path: Optional[str]) -> bool:
    return bool(path) and (os.path.isdir(os.path.join(path, "comfy")) or os.path.basename(
        os.path.normpath(path)) == "comfy" or os.path.isdir(os.path.join(path, "sd1_tokenizer")))


# --------------------------------------------------------------------------------------------
# Encoding


def _as_prompt_list(prompt: Union[str, Sequence[str]]) -> List[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise InputError("encode_prompt got an empty list of prompts; expected a string or a non-empty list.")
    bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
    if bad:
        raise InputError(f"prompts must be strings; found {bad[0]}. Pass a str or a list of str.")
    return [p.strip() for p in prompts]


def _tokenize_llm(enc: TextEncoders, prompts: List[str], template: PromptTemplate, crop: int,
                  max_length: int, truncate: bool) -> Dict[str, torch.Tensor]:
    tok = enc.llm_tokenizer
    texts = [template.format(p) for p in prompts]
    total = max_length + crop
    full = tok(texts, add_special_tokens=True)["input_ids"]
    for i, ids in enumerate(full):
        cut = len(ids) - total
        if cut > 0:
            kept = tok.decode(ids[crop:total], skip_special_tokens=True)
            msg = (f"prompt {i} is {len(ids) - crop} LLM tokens long (template excluded), over the limit of "
                   f"{max_length}: {cut} tokens are cut (the text after {kept[-40:]!r} is dropped).")
            if not truncate:
                raise InputError(f"{msg} Shorten the prompt, raise max_length, or allow truncation.")
            logger.warning("%s", msg)
    batch = tok(texts, max_length=total, padding="max_length", truncation=True, return_tensors="pt",
                return_attention_mask=True, add_special_tokens=True)
    check_prefix_tokens(tok, template, batch["input_ids"].tolist(), crop)
    return batch


def _tokenize_clip(enc: TextEncoders, prompts: List[str], max_length: int) -> torch.Tensor:
    tok = enc.clip_tokenizer
    full = tok(prompts)["input_ids"]
    for i, ids in enumerate(full):
        if len(ids) > max_length:
            logger.warning("prompt %d is %d CLIP tokens long, over CLIP-L's limit of %d: %d tokens are cut "
                           "for the pooled vector (the LLM part is unaffected).", i, len(ids), max_length,
                           len(ids) - max_length)
    return tok(prompts, max_length=max_length, padding="max_length", truncation=True,
               return_tensors="pt")["input_ids"]


@torch.no_grad()  # not inference_mode: the embeddings may feed a training step (LoRA)
def encode_prompt(encoders: TextEncoders, prompt: Union[str, Sequence[str]], *,
                  template: Union[str, PromptTemplate] = "video", max_length: int = 256,
                  clip_max_length: int = 77, truncate: bool = True, use_cache: bool = True,
                  cache: Optional[EmbeddingCache] = None) -> PromptEmbeds:
    """Encode one prompt or a batch for the DiT.

    ``template``: "video" (official, crop 95), "image" (crop 36), "none" or a custom string with
    one ``{}``. ``max_length``: LLM tokens kept after the crop (256 as official). Over-long
    prompts are truncated with a warning saying how many tokens were cut (``truncate=False``
    raises :class:`InputError` instead). Results are cached per prompt (bounded LRU) unless
    ``use_cache=False``.
    """
    if max_length < 1 or clip_max_length < 2:
        raise InputError(f"max_length must be >= 1 and clip_max_length >= 2; found {max_length}, {clip_max_length}.")
    prompts = _as_prompt_list(prompt)
    tmpl = resolve_template(template)
    crop = encoders.crop_start(tmpl)
    store = cache if cache is not None else PROMPT_EMBEDDING_CACHE
    keys = [(encoders.identity, tmpl.text, max_length, clip_max_length, p) for p in prompts]
    rows: List[Any] = [store.get(k) if use_cache else None for k in keys]
    todo = sorted({p for p, r in zip(prompts, rows) if r is None}, key=prompts.index)
    if todo:
        fresh = _run_encoders(encoders, todo, tmpl, crop, max_length, clip_max_length, truncate)
        for p, row in fresh.items():
            if use_cache:
                store.put(keys[prompts.index(p)], row)
        rows = [r if r is not None else fresh[p] for p, r in zip(prompts, rows)]
    text_states = torch.stack([r[0] for r in rows])
    text_mask = torch.stack([r[1] for r in rows])
    pooled = torch.stack([r[2] for r in rows])
    return PromptEmbeds(text_states, text_mask, pooled, tuple(prompts), tmpl.name,
                        tuple(int(m.sum()) for m in text_mask))


def _run_encoders(enc: TextEncoders, prompts: List[str], template: PromptTemplate, crop: int,
                  max_length: int, clip_max_length: int, truncate: bool) -> Dict[str, Tuple[torch.Tensor, ...]]:
    batch = _tokenize_llm(enc, prompts, template, crop, max_length, truncate)
    clip_ids = _tokenize_clip(enc, prompts, clip_max_length)
    with enc.on_device(enc.llm) as llm:
        hidden = llm(batch["input_ids"].to(enc.device), batch["attention_mask"].to(enc.device))
        hidden = hidden[:, crop:].to("cpu")
    mask = batch["attention_mask"][:, crop:].to(torch.int64)
    with enc.on_device(enc.clip) as clip:
        pooled = clip(clip_ids.to(enc.device)).to("cpu")
    return {p: (hidden[i], mask[i], pooled[i]) for i, p in enumerate(prompts)}
