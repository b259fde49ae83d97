"""Text encoders for HunyuanVideo: llava-llama-3-8b (LLM) and CLIP-L, loaded offline.

Public API (module paths for ``hyvideo_core.__init__._EXPORTS``)::

    from hyvideo_core.text_encoders.api import load_text_encoders, encode_prompt, PromptEmbeds, TextEncoders

Submodules: ``templates`` (official templates, computed crop), ``tokenizer_loading`` (offline
tokenizer discovery), ``weight_layouts`` (format detection, key normalisation), ``gguf_llama``
(GGUF reading), ``encoder_models`` (network building), ``embedding_cache``.
"""
from __future__ import annotations

from .api import PromptEmbeds, TextEncoders, encode_prompt, load_text_encoders
from .templates import IMAGE_TEMPLATE, VIDEO_TEMPLATE, PromptTemplate

__all__ = ["PromptEmbeds", "TextEncoders", "encode_prompt", "load_text_encoders", "PromptTemplate",
           "VIDEO_TEMPLATE", "IMAGE_TEMPLATE"]
