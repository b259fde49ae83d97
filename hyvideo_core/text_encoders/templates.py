"""Prompt templates for the LLM text encoder and the computation of their crop length.

The official HunyuanVideo code wraps the user prompt in a Llama-3 chat template whose system
block asks the model to describe a video (or an image). The encoder runs on the whole
templated text, then drops the leading template tokens (BOS, the system block and the
``<|start_header_id|>user<|end_header_id|>\\n\\n`` header) so that only the user's tokens and
the closing ``<|eot_id|>`` remain.

The official code hard-codes that crop length (95 for the video template, 36 for the image
template with the llava-llama-3 tokenizer). Here it is *computed* by tokenizing the part of
the template before ``{}``, so custom templates and other tokenizers work too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, List, Sequence, Union

from ..errors import InputError

logger = logging.getLogger(__name__)

# The strings are Python-concatenated in the official constants.py: there is no space between
# "...video." and "2.", and "\n\n" are two newline characters.
VIDEO_TEMPLATE_TEXT = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Describe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

IMAGE_TEMPLATE_TEXT = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

# Crop lengths of the official code with the real llava-llama-3-8b tokenizer (for reference and
# tests; the engine computes them).
OFFICIAL_CROP_START = {"video": 95, "image": 36}


@dataclass(frozen=True)
class PromptTemplate:
    """A template with exactly one ``{}`` slot for the user prompt.

    ``name`` is ``"video"``, ``"image"``, ``"none"`` or ``"custom"``; ``text`` is the template.
    """

    name: str
    text: str

    @property
    def prefix(self) -> str:
        """The part of the template before the prompt slot (what the crop removes)."""
        return self.text.split("{}", 1)[0]

    def format(self, prompt: str) -> str:
        return self.text.replace("{}", prompt, 1)


VIDEO_TEMPLATE = PromptTemplate("video", VIDEO_TEMPLATE_TEXT)
IMAGE_TEMPLATE = PromptTemplate("image", IMAGE_TEMPLATE_TEXT)
NO_TEMPLATE = PromptTemplate("none", "{}")
_NAMED = {"video": VIDEO_TEMPLATE, "image": IMAGE_TEMPLATE, "none": NO_TEMPLATE}


def resolve_template(template: Union[str, PromptTemplate, None]) -> PromptTemplate:
    """Turn ``"video"`` / ``"image"`` / ``"none"`` / a custom string with ``{}`` into a template."""
    if template is None:
        return VIDEO_TEMPLATE
    if isinstance(template, PromptTemplate):
        text = template.text
        resolved = template
    elif isinstance(template, str):
        key = template.strip().lower()
        if key in _NAMED:
            return _NAMED[key]
        text = template
        resolved = PromptTemplate("custom", template)
    else:
        raise InputError(f"template must be 'video', 'image', 'none' or a string with one '{{}}' slot; "
                         f"found {type(template).__name__}.")
    if text.count("{}") != 1:
        raise InputError(
            f"a custom prompt template needs exactly one '{{}}' slot where the prompt goes; found "
            f"{text.count('{}')} in {text[:80]!r}. Use 'video' or 'image' for the official templates, "
            f"or write e.g. '<|start_header_id|>user<|end_header_id|>\\n\\n{{}}<|eot_id|>'.")
    return resolved


def compute_crop_start(tokenizer: Any, template: PromptTemplate) -> int:
    """Number of tokens the template puts before the user prompt, BOS included.

    Computed by tokenizing the template's prefix with the tokenizer's own special-token rules
    (BOS added when the tokenizer adds it). Gives 95 / 36 for the official video / image
    templates with the llava-llama-3-8b tokenizer.
    """
    if not template.prefix:
        ids = tokenizer("", add_special_tokens=True)["input_ids"]
        return len(ids)
    ids = tokenizer(template.prefix, add_special_tokens=True)["input_ids"]
    return len(ids)


def check_prefix_tokens(tokenizer: Any, template: PromptTemplate, input_ids: Sequence[Sequence[int]],
                        crop_start: int) -> None:
    """Warn when a prompt's tokens do not start with the template's prefix tokens.

    That happens when the prompt's first characters merge with the end of the prefix (e.g. a
    prompt starting with a newline), which makes the fixed-length crop cut a wrong boundary.
    """
    prefix_ids: List[int] = list(tokenizer(template.prefix, add_special_tokens=True)["input_ids"])
    for row in input_ids:
        if list(row[:crop_start]) != prefix_ids:
            logger.warning(
                "the templated prompt does not start with the template's %d prefix tokens (the "
                "prompt's first characters merged with the template); the crop may keep or drop "
                "one token at the boundary. Remove leading whitespace from the prompt.", crop_start)
            return
