"""The avatar's prompt encoding (shared/spec/official_apps.md §B.6 "LLaVA image conditioning").

The release encodes the prompt with the full LLaVA (llava-llama-3-8b) using the text-to-video template, with
``"\\nThe person looks like<image>"`` appended to the templated text, padded to 95 + 256 tokens; the 576 projected
CLIP patch features of the reference (resized to 336x336, not cropped) take the ``<image>`` slot right after the
text, before the padding, and the 95 template tokens are cropped: 256 - 1 + 576 = 831 states of which the real
tokens come first. The negative prompt gets the same image. CLIP-L pools the prompt alone.

A text encoder without a vision tower (the embedded tiny and toy encoders, a text-only Llama) encodes the plain
prompt with the text-to-video template: the image then conditions the clip through the reference latent only.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ...errors import InputError
from ...text_encoders.api import PromptEmbeds, _tokenize_clip, encode_prompt
from ...text_encoders.llava_image import LlavaImageEncoder, as_rgb_image, has_vision_tower, load_image_encoder
from ...text_encoders.templates import resolve_template

log = logging.getLogger(__name__)

PERSON_LOOKS_LIKE = "\nThe person looks like"      # then the <image> slot
MAX_LENGTH = 256                                    # LLM tokens after the crop, image slot included


def vision_tower_of(encoders: Any) -> Optional[LlavaImageEncoder]:
    """The LLaVA vision tower stored with the LLM (loaded once per encoders), or None for a text-only LLM."""
    cached = encoders.__dict__.get("_image_encoder")
    if cached is not None:
        return cached
    info = getattr(encoders, "info", None) or {}
    path = info.get("llm_path")
    if not path or not has_vision_tower(path):
        return None
    encoder = load_image_encoder(path, device="cpu", dtype=encoders.compute_dtype)
    encoders.__dict__["_image_encoder"] = encoder
    return encoder


def _pixel_values(vision: LlavaImageEncoder, image: Any) -> torch.Tensor:
    """Resize straight to the tower's input size (no crop, as released), CLIP mean/std."""
    x = as_rgb_image(image, "reference image")[None]
    size = tuple(vision.preprocess.crop_size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    mean = torch.tensor(vision.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(vision.preprocess.std).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_avatar_prompt(encoders: Any, prompt: str, image: Optional[Any] = None, *,
                         max_length: int = MAX_LENGTH) -> PromptEmbeds:
    """PromptEmbeds of one prompt for the avatar model: with the reference's image tokens when ``encoders`` has a
    LLaVA vision tower and ``image`` is given, else the plain text-to-video encoding."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise InputError(f"max_text_tokens: expected a whole number >= 2 (256 as released), found {max_length!r}")
    vision = vision_tower_of(encoders) if image is not None else None
    if vision is None:
        return encode_prompt(encoders, prompt, template="video", max_length=max_length)
    template = resolve_template("video")
    crop = encoders.crop_start(template)
    tok = encoders.llm_tokenizer
    ids = tok(template.format(prompt.strip()) + PERSON_LOOKS_LIKE, add_special_tokens=True)["input_ids"]
    room = crop + max_length - 1                    # one slot stays for the image
    if len(ids) > room:
        # the release would cut the <image> token with the text; here the image always stays
        log.warning("avatar prompt is %d LLM tokens long, over the limit of %d: %d tokens are cut",
                    len(ids) - crop, max_length - 1, len(ids) - room)
        ids = ids[:room]
    n_text = len(ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    llm = encoders.llm
    with encoders.on_device(vision):
        feats = vision(_pixel_values(vision, image)).to("cpu")                 # (1, N, D)
    n_img = feats.shape[1]
    padding = crop + max_length - 1 - n_text
    with encoders.on_device(llm):
        dev = encoders.device
        text = llm.model.embed_tokens(torch.tensor([ids + [pad] * padding], device=dev))
        embeds = torch.cat([text[:, :n_text], feats.to(dev, text.dtype), text[:, n_text:]], dim=1)
        mask = torch.zeros(1, embeds.shape[1], dtype=torch.int64)
        mask[:, :n_text + n_img] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        hidden = llm.model(inputs_embeds=embeds, attention_mask=mask.to(dev), position_ids=positions.to(dev),
                           use_cache=False).last_hidden_state.to("cpu")
    clip_ids = _tokenize_clip(encoders, [prompt.strip()], 77)
    with encoders.on_device(encoders.clip) as clip:
        pooled = clip(clip_ids.to(encoders.device)).to("cpu")
    states, mask = hidden[:, crop:], mask[:, crop:]
    return PromptEmbeds(states, mask, pooled, (prompt.strip(),), "avatar-llava", (int(mask.sum()),))
