"""Prompt nodes: rewrite and encode."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .adapters import CATEGORY, PREFIX, tooltip


@dataclass(frozen=True)
class Conditioning:
    """What flows on the HVS_EMBEDS wire: the prompt's embeddings and, optionally, the negative's."""
    positive: object
    negative: Optional[object] = None


class TextEncode:
    DESCRIPTION = ("Encodes a prompt (and an optional negative prompt for true CFG) with the LLM and CLIP-L, using "
                   "the official video or image template. Re-queueing the same prompt reuses cached embeddings.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (f"{PREFIX}_EMBEDS",)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = ("Prompt embeddings (LLM states + mask + pooled CLIP vector).",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoders": (f"{PREFIX}_TEXT_ENCODERS", tooltip("From Load HunyuanVideo Text Encoders.")),
            "prompt": ("STRING", tooltip("What the video shows. Up to 256 LLM tokens are used; longer prompts are "
                                         "cut with a warning.", multiline=True, dynamicPrompts=True)),
            "template": (["video", "image"], tooltip("Official prompt template: video for clips, image for 1 frame.",
                                                     default="video")),
        }, "optional": {
            "negative_prompt": ("STRING", tooltip("Only used when the sampler's cfg > 1 (true CFG).",
                                                  multiline=True, default="")),
        }}

    def encode(self, text_encoders, prompt, template, negative_prompt=""):
        from ..hyvideo_core.text_encoders import encode_prompt

        positive = encode_prompt(text_encoders, prompt, template=template)
        negative = encode_prompt(text_encoders, negative_prompt, template=template) if negative_prompt.strip() else None
        return (Conditioning(positive, negative),)


class RewritePrompt:
    DESCRIPTION = ("Rewrites a short prompt into the detailed style the model was trained on (normal or master mode, "
                   "with a self-revision pass), using an OpenAI-compatible server (llama.cpp, vLLM, Ollama…) or a local "
                   "chat model folder.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)
    OUTPUT_TOOLTIPS = ("The rewritten prompt.",)
    FUNCTION = "rewrite"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prompt": ("STRING", tooltip("The prompt to rewrite.", multiline=True)),
            "mode": (["normal", "master"], tooltip("normal keeps the meaning and adds clarity; master adds "
                                                   "composition, lighting and camera detail.", default="normal")),
            "backend": ("STRING", tooltip("http(s)://host:port of an OpenAI-compatible chat server, or a local "
                                          "folder with a transformers chat model.", default="http://127.0.0.1:8080")),
            "model": ("STRING", tooltip("Model name sent to the server (ignored for local folders).", default="")),
            "seed": ("INT", tooltip("Seed for deterministic rewriting (temperature 0).", default=0, min=0,
                                    max=2**31 - 1)),
            "on_failure": (["error", "keep original prompt"], tooltip(
                "What to do if the rewriter is unreachable or answers badly.", default="error")),
        }}

    def rewrite(self, prompt, mode, backend, model, seed, on_failure):
        from ..hyvideo_core.prompt_rewrite import rewrite_prompt

        return (rewrite_prompt(prompt, mode=mode, backend=backend, model=model or None, seed=seed,
                               fallback_to_original=on_failure != "error"),)


NODES = {f"{PREFIX}_TextEncode": (TextEncode, "HunyuanVideo Text Encode (HVS)"),
         f"{PREFIX}_RewritePrompt": (RewritePrompt, "HunyuanVideo Prompt Rewrite (HVS)")}
