"""CLAP text token states for Foley, through transformers' own CLAP text model.

The release (shared/spec/official_apps.md §C.2) tokenises the pair [negative prompt, prompt] in
one call with ``padding=True`` (to the longer of the two) and passes the attention mask to
``laion/larger_clap_general``'s ``ClapTextModelWithProjection``; it keeps ``last_hidden_state``
(768-d token states, before the projection) and cuts them to the first ``text_length = 77``
tokens *after* encoding. So the 77 kept states saw the whole prompt, and the shorter prompt's
padding states are kept too (the DiT attends to them: no mask). Encode the negative and positive
prompts in one :func:`encode_text` call to get the release's inputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ...errors import CheckpointError, InputError
from .model_folders import quiet_loading_report, read_model_type, refuse_missing_weights, require_model_folder

CLAP_REPO = "laion/larger_clap_general"
TEXT_LENGTH = 77
TOKENIZER_FILES = ("tokenizer.json|vocab.json",)


@dataclass
class ClapTextEncoder:
    model: Any        # transformers.ClapTextModelWithProjection
    tokenizer: Any    # the folder's tokenizer (RoBERTa BPE for the release)


def load_clap_text(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device="cpu") -> ClapTextEncoder:
    """CLAP's text tower and tokenizer from a local Hugging Face folder (a full ``ClapModel``
    folder such as laion/larger_clap_general, or a text-only one)."""
    from transformers import AutoTokenizer, ClapTextModelWithProjection

    folder = require_model_folder(path, what="CLAP text encoder (Foley prompt)", repo=CLAP_REPO,
                                  comfy_folder="text_encoders", other_files=TOKENIZER_FILES)
    model_type = read_model_type(folder)
    if model_type not in ("clap", "clap_text_model"):
        raise CheckpointError(f"{folder}: expected a CLAP model (config model_type 'clap', as {CLAP_REPO}); "
                              f"found {model_type!r}")
    with quiet_loading_report():
        model, info = ClapTextModelWithProjection.from_pretrained(str(folder), local_files_only=True,
                                                                  use_safetensors=True, dtype=dtype,
                                                                  output_loading_info=True)
    # the projection is not used (the DiT takes the token states), so its absence is harmless
    info = dict(info, missing_keys=[k for k in info.get("missing_keys", []) if not k.startswith("text_projection")])
    refuse_missing_weights(info, folder, "CLAP text encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return ClapTextEncoder(model.to(device).eval(), tokenizer)


@torch.inference_mode()
def encode_text(encoder: ClapTextEncoder, prompts: Sequence[str], *, text_length: int = TEXT_LENGTH) -> torch.Tensor:
    """(B, min(L, text_length), D) float32 token states, L being the longest prompt's token count
    (D = 768 for the release's model). Prompts longer than the model's positions are truncated
    to them before encoding (the release would fail on them)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError(f"prompts must be a non-empty list of strings; found {prompts!r}")
    if text_length < 1:
        raise InputError(f"text_length must be >= 1; found {text_length}")
    model = encoder.model
    # RoBERTa positions start after the padding index, so the usable length is 2 fewer
    limit = int(model.config.max_position_embeddings) - int(model.config.pad_token_id or 0) - 1
    tokens = encoder.tokenizer(list(prompts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
    device = next(model.parameters()).device
    out = model(input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device))
    return out.last_hidden_state[:, :text_length].float().cpu()
