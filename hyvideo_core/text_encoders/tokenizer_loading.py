"""Finding and loading the two tokenizers, offline only.

Tokenizers are never downloaded. They come from, in this order:

1. an explicit ``tokenizer_path`` (a tokenizer folder, or a ComfyUI installation / its
   ``comfy`` folder, where ComfyUI ships ``comfy/text_encoders/llama_tokenizer`` and
   ``comfy/sd1_tokenizer``);
2. the Hugging Face model folder itself (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``);
3. the GGUF file's metadata (LLM only, see :mod:`.gguf_llama`);
4. the ComfyUI installation found by walking up from the weights file or from this package
   (the node pack lives in ``ComfyUI/custom_nodes/``).

If none has it, :func:`missing_tokenizer_error` says exactly which files to put where.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from ..errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

LLM = "llm"
CLIP = "clip"

# Where ComfyUI keeps its bundled tokenizers, relative to the ComfyUI root.
COMFYUI_TOKENIZER_DIRS = {
    LLM: ("comfy/text_encoders/llama_tokenizer",),
    CLIP: ("comfy/sd1_tokenizer", "comfy/text_encoders/sd1_tokenizer"),
}
LLAMA3_TEMPLATE_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def has_tokenizer_files(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return folder.is_dir() and ((folder / "tokenizer.json").is_file()
                                or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()))


def _special_token_strings(folder: Path) -> Dict[str, Any]:
    """bos/eos/pad/unk strings and add_bos flag from tokenizer_config.json / special_tokens_map.json."""
    found: Dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"could not read {str(path)!r}: {exc}. Expected a JSON tokenizer "
                                  f"config; re-copy the tokenizer files.") from exc
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and key not in found:
                found[key] = value
    return found


def wrap_tokenizer(tokenizer_object: Any, *, bos_token: Optional[str] = None, eos_token: Optional[str] = None,
                   pad_token: Optional[str] = None, unk_token: Optional[str] = None) -> Any:
    """Wrap a ``tokenizers.Tokenizer`` as a transformers fast tokenizer padding on the right."""
    from transformers import PreTrainedTokenizerFast

    tokenizer_object.no_truncation()
    tokenizer_object.no_padding()
    vocab = tokenizer_object.get_vocab()
    kwargs = {k: v for k, v in dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token).items()
              if v is not None and v in vocab}
    if pad_token is None or pad_token not in vocab:
        # Padded positions are masked everywhere (and CLIP is causal), so any known token will do.
        pad_token = next((t for t in ("<pad>", "<|finetune_right_pad_id|>", eos_token, unk_token)
                          if t is not None and t in vocab), None)
    if pad_token is not None:
        kwargs["pad_token"] = pad_token
    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, padding_side="right",
                                  truncation_side="right", **kwargs)
    if tok.pad_token is None:
        tok.pad_token_id = 0 if tok.unk_token_id is None else tok.unk_token_id
    return tok


def load_tokenizer_folder(folder: str | os.PathLike, kind: str) -> Any:
    """Load a tokenizer from local files (``tokenizer.json``, or CLIP-style vocab + merges)."""
    folder = Path(folder)
    specials = _special_token_strings(folder)
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise CheckpointError(f"could not read {str(folder / 'tokenizer.json')!r}: {exc}. Expected a "
                                  f"Hugging Face tokenizers file; re-copy it.") from exc
        tok = wrap_tokenizer(tk, **specials)
    elif kind == CLIP and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from transformers import CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        tok.padding_side = "right"
    else:
        raise missing_tokenizer_error(kind, str(folder), searched=[str(folder)])
    if kind == LLM:
        check_llm_tokenizer(tok, str(folder))
    return tok


def check_llm_tokenizer(tok: Any, where: str) -> None:
    """The official templates need the Llama-3 header tokens as single special tokens."""
    vocab = tok.get_vocab()
    missing = [t for t in LLAMA3_TEMPLATE_TOKENS if t not in vocab]
    if missing:
        raise InputError(
            f"the LLM tokenizer from {where!r} does not know the Llama-3 template tokens {missing}. "
            f"Expected the llava-llama-3-8b (Llama-3) tokenizer; found a tokenizer with "
            f"{len(vocab)} entries (a CLIP or other tokenizer?). Point tokenizer_path at the folder "
            f"holding the Llama-3 tokenizer.json (ComfyUI: comfy/text_encoders/llama_tokenizer).")


def _comfyui_roots(start_points: Iterable[str]) -> List[Path]:
    roots: List[Path] = []
    for start in start_points:
        if not start:
            continue
        p = Path(start).resolve()
        for parent in [p, *p.parents]:
            if (parent / "comfy").is_dir() and parent not in roots:
                roots.append(parent)
            if parent.name == "comfy" and parent.parent not in roots:
                roots.append(parent.parent)
    try:  # the comfy package's location, without importing it
        import importlib.util

        spec = importlib.util.find_spec("comfy")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                root = Path(loc).resolve().parent
                if root not in roots:
                    roots.append(root)
    except (ImportError, ValueError):
        pass
    return roots


def _explicit_dirs(kind: str, tokenizer_path: str) -> List[Path]:
    tp = Path(tokenizer_path)
    out = [tp]
    for rel in COMFYUI_TOKENIZER_DIRS[kind]:
        out.append(tp / rel)                    # the ComfyUI root
        out.append(tp / rel.split("/", 1)[1])   # the comfy/ folder
    return out


def _folder_dirs(weights_path: Optional[str]) -> List[Path]:
    if weights_path and os.path.isdir(weights_path):
        return [Path(weights_path), Path(weights_path) / "tokenizer"]
    return []


def _installation_dirs(kind: str, weights_path: Optional[str]) -> List[Path]:
    starts = [weights_path or "", str(Path(__file__).resolve().parent)]
    return [root / rel for root in _comfyui_roots(starts) for rel in COMFYUI_TOKENIZER_DIRS[kind]]


def find_tokenizer(kind: str, tokenizer_path: Optional[str], weights_path: Optional[str],
                   fallback: Any = None) -> Any:
    """Load the tokenizer of ``kind`` ("llm" or "clip") from the first place that has one.

    Order: explicit ``tokenizer_path``; the model folder; ``fallback`` (a tokenizer rebuilt from
    GGUF metadata); the ComfyUI installation around the weights file or this package.
    """
    if tokenizer_path:
        dirs = _explicit_dirs(kind, tokenizer_path)
        for d in dirs:
            if has_tokenizer_files(d):
                logger.info("%s tokenizer: %s", kind.upper(), d)
                return load_tokenizer_folder(d, kind)
        raise missing_tokenizer_error(kind, weights_path, [str(d) for d in dirs], explicit=tokenizer_path)
    searched: List[Path] = []
    for d in _folder_dirs(weights_path):
        searched.append(d)
        if has_tokenizer_files(d):
            logger.info("%s tokenizer: %s", kind.upper(), d)
            return load_tokenizer_folder(d, kind)
    if fallback is not None:
        return fallback
    for d in _installation_dirs(kind, weights_path):
        searched.append(d)
        if has_tokenizer_files(d):
            logger.info("%s tokenizer: %s (ComfyUI installation)", kind.upper(), d)
            return load_tokenizer_folder(d, kind)
    raise missing_tokenizer_error(kind, weights_path, [str(d) for d in searched])


def missing_tokenizer_error(kind: str, weights_path: Optional[str], searched: List[str],
                            explicit: Optional[str] = None) -> CheckpointError:
    if kind == LLM:
        what = ("the Llama-3 tokenizer of llava-llama-3-8b: tokenizer.json + tokenizer_config.json "
                "(+ special_tokens_map.json)")
        where = ("put them next to config.json in the text-encoder folder (official ckpts/text_encoder), "
                 "or pass tokenizer_path= the folder holding them; inside ComfyUI they ship in "
                 "ComfyUI/comfy/text_encoders/llama_tokenizer (pass your ComfyUI folder as tokenizer_path). "
                 "GGUF files usually carry the tokenizer in their metadata.")
    else:
        what = ("the CLIP-L tokenizer of openai/clip-vit-large-patch14: vocab.json + merges.txt "
                "(+ tokenizer_config.json, special_tokens_map.json) or tokenizer.json")
        where = ("put them next to config.json in the CLIP folder (official ckpts/text_encoder_2), or pass "
                 "clip_tokenizer_path= the folder holding them; inside ComfyUI they ship in "
                 "ComfyUI/comfy/sd1_tokenizer (pass your ComfyUI folder as tokenizer_path).")
    shown = ", ".join(searched[:6]) + (" ..." if len(searched) > 6 else "")
    lead = (f"tokenizer_path {explicit!r} holds no tokenizer files" if explicit
            else f"no {kind.upper()} tokenizer found for {weights_path!r}")
    return CheckpointError(f"{lead}. Expected {what}; searched: {shown or 'nothing'}. To fix: {where} "
                           f"Tokenizers are never downloaded.")
