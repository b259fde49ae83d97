"""Semantic image tokens for image-to-video: the LLaVA vision tower + projector feed the LLM.

HunyuanVideo-I2V encodes the prompt with the full llava-llama-3-8b (``LlavaForConditionalGeneration``):
the I2V template starts with an ``<image>`` placeholder that becomes the 576 projected CLIP-336
patch features; the LLM's ``hidden_states[-3]`` then give

* image part: the states at the image slots, subsampled every ``image_embed_interleave``
  (4 for token_replace -> 144 tokens, 2 for latent_concat -> 288), mask all ones;
* text part: the states after the template prefix (crop_start 103 with the real tokenizer),
  with the 4 assistant-header tokens ``<|eot_id|><|start_header_id|>assistant<|end_header_id|>``
  removed (official ``I2V hyvideo/text_encoder``, diffusers ``_get_llama_prompt_embeds``);

and ``text_states = [image part | text part]`` with the matching mask. CLIP-L pools the prompt only.

The ``<image>`` slot is built here from the tokenized pieces of the template (never through the
tokenizer), so any Llama-3 tokenizer works, with or without an ``<image>`` token, and the LLM runs on
``inputs_embeds``: the truncated LLM of :mod:`.encoder_models` (only the layers ``hidden_states[-3]``
needs) serves T2V and I2V alike. The crop positions (103 / 5 / 581 / 576 for the real model) are
computed by tokenizing, like the T2V crop.

Image preprocessing is CLIPImageProcessor's (shortest side to ``size``, bicubic; centre crop; CLIP
mean/std) written in torch, so no torchvision is needed; resampling differs from PIL's by about one
grey level.

Vision weights: a Hugging Face LLaVA folder (official ``text_encoder_i2v`` /
xtuner ``llava-llama-3-8b-v1_1-transformers``; keys ``vision_tower.vision_model.*`` and
``multi_modal_projector.*``, or transformers-5 ``model.``-prefixed) or ComfyUI's
``llava_llama3_vision.safetensors`` (``vision_model.*`` + ``multi_modal_projector.*``, CLIP-L/14-336).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LATENT_CONCAT, TOKEN_REPLACE
from ..errors import IncompatibleWeightsError, InputError, UnknownCheckpointError

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
# 576 image tokens -> 144 (token_replace) / 288 (latent_concat), official inference.py:260-272.
IMAGE_EMBED_INTERLEAVE = {TOKEN_REPLACE: 4, LATENT_CONCAT: 2}
ASSISTANT_HEADER_TOKENS = 4   # <|eot_id|> <|start_header_id|> assistant <|end_header_id|>
END_HEADER = "<|end_header_id|>"

# Official constants.py "dit-llm-encode-video-i2v" (= diffusers DEFAULT_PROMPT_TEMPLATE).
I2V_VIDEO_TEMPLATE_TEXT = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following aspects "
    "according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# With the real llava-llama-3-8b tokenizer and CLIP-L/14-336 (for reference and tests).
OFFICIAL_I2V_CONSTANTS = dict(crop_start=103, image_emb_start=5, image_emb_end=581, image_emb_len=576)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# openai/clip-vit-large-patch14-336, the llava-llama-3-8b vision tower (when a file has no config).
CLIP_L_336_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         image_size=336, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                         projection_dim=768)

VISION_SENTINEL = "vision_model.embeddings.patch_embedding.weight"
VISION_SENTINEL_5X = "vision_tower.embeddings.patch_embedding.weight"
PROJECTOR_SENTINEL = "multi_modal_projector.linear_1.weight"


# --------------------------------------------------------------------------------------------
# Images


def as_rgb_image(image: Any, what: str = "image") -> torch.Tensor:
    """One RGB image as float (3, H, W) in [0, 1].

    Accepts a PIL image, a uint8/float numpy array (H, W, 3), or a tensor (H, W, 3) /
    (1, H, W, 3) (ComfyUI IMAGE) / (3, H, W) / (1, 3, H, W). Masks, batches of several images and
    non-RGB channel counts get an :class:`InputError` saying what was found.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        import numpy as np

        image = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    elif not isinstance(image, torch.Tensor):
        try:
            import numpy as np

            if isinstance(image, np.ndarray):
                image = torch.from_numpy(image.copy())
        except ImportError:  # pragma: no cover
            pass
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{what} must be a PIL image, a numpy array or a torch tensor; found {type(image).__name__}")
    t = image
    if t.dim() == 2:
        raise InputError(f"{what} has shape {tuple(t.shape)}: a single-channel mask, not an RGB image. Connect an "
                         f"IMAGE (H, W, 3), e.g. from Load Image, not a MASK")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise InputError(f"{what} is a batch of {t.shape[0]} images {tuple(t.shape)}; image-to-video takes exactly "
                             f"one image. Pick one frame (e.g. core's ImageFromBatch) first")
        t = t[0]
    if t.dim() != 3:
        raise InputError(f"{what} must be one image (H, W, 3) or (3, H, W); found shape {tuple(t.shape)}")
    if t.shape[-1] in (3, 4):
        t = t.permute(2, 0, 1)
    elif t.shape[0] not in (3, 4):
        raise InputError(f"{what} has shape {tuple(image.shape)}: not an RGB image (a MASK or a greyscale image has one "
                         f"channel). Connect an IMAGE (H, W, 3), e.g. from Load Image")
    if t.shape[0] == 4:
        t = t[:3]                                  # RGBA: drop alpha
    if t.shape[1] < 2 or t.shape[2] < 2:
        raise InputError(f"{what} is {t.shape[1]}x{t.shape[2]} pixels; too small to condition a video")
    if t.dtype == torch.uint8:
        return t.float() / 255
    t = t.float()
    if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
        raise InputError(f"{what} values span [{float(t.min()):.3g}, {float(t.max()):.3g}]; expected 0..1 floats "
                         f"or uint8 0..255")
    return t.clamp(0, 1)


@dataclass(frozen=True)
class ImagePreprocess:
    """CLIPImageProcessor settings: shortest side -> ``size`` (bicubic), centre crop, CLIP mean/std."""

    size: int = 336
    crop_size: Tuple[int, int] = (336, 336)
    mean: Tuple[float, float, float] = CLIP_MEAN
    std: Tuple[float, float, float] = CLIP_STD
    do_center_crop: bool = True

    def __call__(self, image: Any) -> torch.Tensor:
        """Image -> pixel_values (1, 3, crop_h, crop_w)."""
        x = as_rgb_image(image)
        _, h, w = x.shape
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(self.size * long / short)
        nh, nw = (self.size, new_long) if h <= w else (new_long, self.size)
        if (nh, nw) != (h, w):
            x = F.interpolate(x[None] * 255, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
            x = x[0].round().clamp(0, 255) / 255       # PIL resamples uint8 images
        if self.do_center_crop:
            ch, cw = self.crop_size
            if nh < ch or nw < cw:
                ph, pw = max(ch - nh, 0), max(cw - nw, 0)
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                nh, nw = x.shape[1:]
            top, left = (nh - ch) // 2, (nw - cw) // 2
            x = x[:, top:top + ch, left:left + cw]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std)[None]

    @classmethod
    def from_json(cls, cfg: Dict[str, Any]) -> "ImagePreprocess":
        size = cfg.get("size", 336)
        size = size.get("shortest_edge", size.get("height", 336)) if isinstance(size, dict) else size
        crop = cfg.get("crop_size", size)
        crop = (crop.get("height", size), crop.get("width", size)) if isinstance(crop, dict) else (crop, crop)
        return cls(size=int(size), crop_size=(int(crop[0]), int(crop[1])),
                   mean=tuple(cfg.get("image_mean", CLIP_MEAN)), std=tuple(cfg.get("image_std", CLIP_STD)),
                   do_center_crop=bool(cfg.get("do_center_crop", True)))


# --------------------------------------------------------------------------------------------
# The vision encoder


class LlavaImageEncoder(nn.Module):
    """CLIP vision tower (truncated at ``vision_feature_layer``) + the LLaVA projector.

    ``forward(pixel_values) -> (B, image_emb_len, D_llm)``: the features LLaVA puts in place of
    ``<image>`` (CLS dropped for the "default" select strategy)."""

    def __init__(self, tower: nn.Module, linear_1: nn.Linear, linear_2: nn.Linear, act: str,
                 preprocess: ImagePreprocess, drop_cls: bool, path: str = ""):
        super().__init__()
        from transformers.activations import ACT2FN

        self.tower = tower
        self.linear_1, self.linear_2 = linear_1, linear_2
        self.act = ACT2FN[act]
        self.preprocess = preprocess
        self.drop_cls = drop_cls
        self.path = path

    @property
    def dtype(self) -> torch.dtype:
        return self.linear_1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.linear_1.weight.device

    @property
    def out_dim(self) -> int:
        return self.linear_2.out_features

    @property
    def num_image_tokens(self) -> int:
        cfg = self.tower.config
        return (cfg.image_size // cfg.patch_size) ** 2 + (0 if self.drop_cls else 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feats = self.tower(pixel_values=pixel_values.to(self.device, self.dtype)).last_hidden_state
        if self.drop_cls:
            feats = feats[:, 1:]
        return self.linear_2(self.act(self.linear_1(feats)))

    @torch.no_grad()
    def encode(self, image: Any) -> torch.Tensor:
        return self(self.preprocess(image))


def _find_prefix(keys: Sequence[str], sentinel: str) -> Optional[str]:
    hits = [k[: -len(sentinel)] for k in keys if k.endswith(sentinel)]
    return min(hits, key=len) if hits else None


def _open_source(path: str):
    from .weight_layouts import _folder_config, _hf_folder_sources, merged
    from ..checkpoints.io import open_weights

    if os.path.isdir(path):
        folder = Path(path)
        cfg = _folder_config(folder)
        pre = folder / "preprocessor_config.json"
        pre_cfg = json.loads(pre.read_text()) if pre.is_file() else None
        return merged(_hf_folder_sources(folder), path), cfg, pre_cfg
    if path.lower().endswith(".gguf"):
        raise UnknownCheckpointError(
            f"{path!r} is a GGUF file; the LLaVA vision tower is read from a Hugging Face LLaVA folder or ComfyUI's "
            f"llava_llama3_vision.safetensors (models/clip_vision)")
    return open_weights(path), None, None


def has_vision_tower(path: Union[str, os.PathLike]) -> bool:
    """True when ``path`` (file or folder) holds a CLIP vision tower and a LLaVA projector."""
    try:
        src = _open_source(os.fspath(path))[0]
    except Exception:  # noqa: BLE001 - a probe: any unreadable path simply has no tower
        return False
    keys = src.keys()
    return (_find_prefix(keys, VISION_SENTINEL) is not None or _find_prefix(keys, VISION_SENTINEL_5X) is not None) \
        and _find_prefix(keys, PROJECTOR_SENTINEL) is not None


def load_image_encoder(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                       dtype: Optional[torch.dtype] = None, *,
                       vision_config: Optional[Dict[str, Any]] = None) -> LlavaImageEncoder:
    """Load the LLaVA vision tower + projector from a LLaVA folder or a ComfyUI vision file.

    ``dtype`` None keeps the file's precision on accelerators and uses float32 on the CPU.
    ``vision_config``: CLIPVisionConfig fields that shapes cannot tell (a single file has no
    config.json; widths other than CLIP-L's get 64-wide heads otherwise).
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"image encoder not found: {path!r}. Expected a LLaVA model folder (text_encoder_i2v) or "
                         f"llava_llama3_vision.safetensors")
    src, cfg, pre_cfg = _open_source(path)
    keys = src.keys()
    tower_prefix = _find_prefix(keys, VISION_SENTINEL)
    if tower_prefix is not None:
        tower_prefix += "vision_model."
    else:
        tower_prefix = _find_prefix(keys, VISION_SENTINEL_5X)
        tower_prefix = None if tower_prefix is None else tower_prefix + "vision_tower."
    proj_prefix = _find_prefix(keys, PROJECTOR_SENTINEL)
    if tower_prefix is None or proj_prefix is None:
        from .weight_layouts import describe_other_model

        what = ("a CLIP vision model without the LLaVA projector (multi_modal_projector.*)" if tower_prefix
                else describe_other_model(keys) or f"{len(keys)} tensors such as {keys[:4]}")
        raise UnknownCheckpointError(
            f"{path!r} has no LLaVA vision tower + projector: found {what}. Image-to-video needs the full "
            f"llava-llama-3-8b (HF folder text_encoder_i2v with vision_tower.* and multi_modal_projector.*) or "
            f"ComfyUI's llava_llama3_vision.safetensors (models/clip_vision)")
    llava = cfg if cfg and cfg.get("model_type") in ("llava", "llava_next") else {}
    vision_json = dict(llava.get("vision_config") or {})
    shapes = {k[len(tower_prefix):]: tuple(src.shape(k)) for k in keys if k.startswith(tower_prefix)}
    hidden = shapes["embeddings.patch_embedding.weight"][0]
    patch = shapes["embeddings.patch_embedding.weight"][-1]
    positions = shapes["embeddings.position_embedding.weight"][0]
    layers = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.layers."))
    grid = int(round((positions - 1) ** 0.5))
    inferred = dict(CLIP_L_336_VISION, hidden_size=hidden, patch_size=patch, image_size=grid * patch,
                    num_hidden_layers=layers, intermediate_size=shapes["encoder.layers.0.mlp.fc1.weight"][0])
    if hidden != CLIP_L_336_VISION["hidden_size"]:
        inferred["num_attention_heads"] = max(1, hidden // 64)
    vision_json = {k: v for k, v in vision_json.items() if not k.startswith("_") and k not in ("model_type",
                                                                                                 "architectures")}
    vcfg = CLIPVisionConfig(**dict(inferred, **vision_json, **(vision_config or {})))
    if (vcfg.hidden_size, vcfg.num_hidden_layers) != (hidden, layers):
        raise IncompatibleWeightsError(f"{path!r}: config.json says a {vcfg.num_hidden_layers}-layer vision tower of "
                                       f"width {vcfg.hidden_size}, the weights have {layers} layers of width {hidden}")
    feature_layer = llava.get("vision_feature_layer", -2)
    if not isinstance(feature_layer, int):
        raise IncompatibleWeightsError(f"{path!r}: vision_feature_layer {feature_layer!r} (several layers) is not "
                                       f"used by HunyuanVideo's LLaVA; expected one layer (-2)")
    keep = feature_layer if feature_layer >= 0 else vcfg.num_hidden_layers + 1 + feature_layer
    vcfg.num_hidden_layers = keep       # hidden_states[feature_layer] = output of the first `keep` layers
    vcfg._attn_implementation = "sdpa"
    drop_cls = llava.get("vision_feature_select_strategy", "default") == "default"
    act = llava.get("projector_hidden_act", "gelu")
    file_dtype = src.dtype(proj_prefix + PROJECTOR_SENTINEL)
    dev = torch.device(device)
    compute = dtype or (file_dtype if dev.type != "cpu" and file_dtype.is_floating_point else torch.float32)

    with torch.device("meta"):
        tower = CLIPVisionModel(vcfg)
    wanted = tower.state_dict()
    nested = any(k.startswith("vision_model.") for k in wanted)
    state = {}
    for name in wanted:
        bare = name[len("vision_model."):] if nested else name
        if bare.startswith("encoder.layers.") and int(bare.split(".")[2]) >= keep:
            continue
        key = tower_prefix + bare
        if key not in src:
            if bare.endswith("position_ids"):
                continue
            raise IncompatibleWeightsError(f"{path!r} lacks {key!r}; the vision tower is incomplete")
        state[name] = src.get(key).to(compute)
    tower.load_state_dict(state, strict=False, assign=True)
    emb = tower.vision_model.embeddings if nested else tower.embeddings
    emb.register_buffer("position_ids", torch.arange(emb.num_positions).expand((1, -1)), persistent=False)
    left = [n for n, t in list(tower.named_parameters()) + list(tower.named_buffers()) if t.is_meta]
    if left:
        raise IncompatibleWeightsError(f"{path!r}: vision tensors {left[:4]} missing")
    lin = []
    for i in (1, 2):
        w = src.get(f"{proj_prefix}multi_modal_projector.linear_{i}.weight").to(compute)
        bkey = f"{proj_prefix}multi_modal_projector.linear_{i}.bias"
        layer = nn.Linear(w.shape[1], w.shape[0], bias=bkey in src, dtype=compute)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bkey in src:
                layer.bias.copy_(src.get(bkey).to(compute))
        lin.append(layer)
    if lin[0].in_features != hidden:
        raise IncompatibleWeightsError(f"{path!r}: projector takes {lin[0].in_features} features, the tower gives {hidden}")
    if pre_cfg:
        preprocess = ImagePreprocess.from_json(pre_cfg)
    else:
        preprocess = ImagePreprocess(size=vcfg.image_size, crop_size=(vcfg.image_size, vcfg.image_size))
    enc = LlavaImageEncoder(tower, lin[0], lin[1], act, preprocess, drop_cls, path).eval().requires_grad_(False)
    logger.info("LLaVA image encoder loaded from %s: %d of %d vision layers, %d image tokens -> %d", path, keep,
                layers, enc.num_image_tokens, enc.out_dim)
    return enc.to(dev)


# --------------------------------------------------------------------------------------------
# Prompt + image -> PromptEmbeds


@dataclass(frozen=True)
class I2VTemplateLayout:
    """Token positions of the I2V template for one tokenizer (input-id coordinates, ``<image>`` = 1)."""

    prefix_ids: Tuple[int, ...]      # BOS + tokens before <image>
    middle_ids: Tuple[int, ...]      # tokens between <image> and the prompt slot
    crop_start: int                  # 103 with the real tokenizer
    image_emb_start: int             # 5

    def image_emb_end(self, image_emb_len: int) -> int:
        return self.image_emb_start + image_emb_len


def template_layout(tokenizer: Any, template: str = I2V_VIDEO_TEMPLATE_TEXT) -> I2VTemplateLayout:
    if template.count(IMAGE_PLACEHOLDER) != 1 or template.count("{}") != 1 or \
            template.index(IMAGE_PLACEHOLDER) > template.index("{}"):
        raise InputError(f"an image-to-video template needs one {IMAGE_PLACEHOLDER!r} before one '{{}}' slot; "
                         f"found {template[:80]!r}")
    before, after = template.split(IMAGE_PLACEHOLDER)
    middle = after.split("{}")[0]
    pre = tuple(tokenizer(before, add_special_tokens=True)["input_ids"])
    mid = tuple(tokenizer(middle, add_special_tokens=False)["input_ids"]) if middle else ()
    return I2VTemplateLayout(pre, mid, len(pre) + 1 + len(mid), len(pre))


def _tokenize(tokenizer: Any, layout: I2VTemplateLayout, template: str, prompts: List[str], max_length: int,
              truncate: bool) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
    """Input ids with one placeholder (-1) for <image>, right-padded to crop_start + max_length."""
    total = layout.crop_start + max_length
    after = template.split(IMAGE_PLACEHOLDER, 1)[1]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    end_header = tokenizer.convert_tokens_to_ids(END_HEADER) if END_HEADER in template else None
    rows, masks, assistant = [], [], []
    for i, p in enumerate(prompts):
        ids = list(layout.prefix_ids) + [-1] + list(tokenizer(after.replace("{}", p, 1),
                                                               add_special_tokens=False)["input_ids"])
        if len(ids) > total:
            msg = (f"prompt {i} is {len(ids) - layout.crop_start} LLM tokens long with the image template's tail, over "
                   f"the limit of {max_length}: {len(ids) - total} tokens are cut")
            if not truncate:
                raise InputError(msg + ". Shorten the prompt or raise max_length")
            logger.warning("%s", msg)
            ids = ids[:total]
        n = len(ids)
        # The assistant header ends at the last <|end_header_id|> after the prompt; when truncation cut
        # it, diffusers (and the official code) take the sequence end instead.
        a = total
        if end_header is not None:
            hits = [j for j in range(layout.crop_start, n) if ids[j] == end_header]
            if hits:
                a = hits[-1] + 1
        assistant.append(a)
        rows.append(ids + [pad] * (total - n))
        masks.append([1] * n + [0] * (total - n))
    return torch.tensor(rows), torch.tensor(masks), assistant


def encode_image_prompt(encoders: Any, prompt: Union[str, Sequence[str]], image: Any, *,
                        mode: str = TOKEN_REPLACE, image_encoder: Optional[LlavaImageEncoder] = None,
                        image_embed_interleave: Optional[int] = None, max_length: int = 256,
                        clip_max_length: int = 77, truncate: bool = True,
                        template: str = I2V_VIDEO_TEMPLATE_TEXT) -> Any:
    """Encode ``prompt`` (one string or a list) with the semantic tokens of ``image`` for I2V.

    Returns :class:`~hyvideo_core.text_encoders.api.PromptEmbeds` with ``text_states``
    ``(B, image_emb_len/interleave + max_length - 4, D)`` = [image tokens | text tokens], the mask
    (ones for the image part) and the pooled CLIP-L vector of the prompt alone; 396 tokens for the
    real model in token_replace mode, 540 in latent_concat.

    ``image_encoder``: from :func:`load_image_encoder`; when None, the vision tower of the LLM's own
    folder is loaded once and kept on ``encoders`` (a full LLaVA folder has one).
    ``image_embed_interleave``: None = 4 (token_replace) / 2 (latent_concat).
    """
    from .api import PromptEmbeds, _as_prompt_list, _tokenize_clip

    if mode not in IMAGE_EMBED_INTERLEAVE:
        raise InputError(f"mode must be {TOKEN_REPLACE!r} or {LATENT_CONCAT!r}; found {mode!r}")
    interleave = image_embed_interleave or IMAGE_EMBED_INTERLEAVE[mode]
    prompts = _as_prompt_list(prompt)
    vision = image_encoder if image_encoder is not None else default_image_encoder(encoders)
    llm = encoders.llm
    if vision.out_dim != llm.model.config.hidden_size:
        raise IncompatibleWeightsError(
            f"the image encoder projects to {vision.out_dim} features but the LLM's hidden size is "
            f"{llm.model.config.hidden_size}; use the vision tower of the same LLaVA model as the text encoder")
    tok = encoders.llm_tokenizer
    key = ("i2v_layout", template)
    layout = encoders._crop_starts.get(key)
    if layout is None:
        layout = encoders._crop_starts[key] = template_layout(tok, template)
    ids, mask, assistant = _tokenize(tok, layout, template, prompts, max_length, truncate)
    b, total = ids.shape
    pos = layout.image_emb_start
    with torch.no_grad():
        with encoders.on_device(vision):
            feats = vision.encode(image).to("cpu")                       # (1, N, D)
        n_img = feats.shape[1]
        with encoders.on_device(llm):
            dev = encoders.device
            emb = llm.model.embed_tokens(ids.clamp_min(0).to(dev))
            feats_dev = feats.to(dev, emb.dtype).expand(b, -1, -1)
            embeds = torch.cat([emb[:, :pos], feats_dev, emb[:, pos + 1:]], dim=1)
            full_mask = torch.cat([mask[:, :pos], torch.ones(b, n_img, dtype=mask.dtype), mask[:, pos + 1:]], dim=1)
            position_ids = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 1)
            hidden = llm.model(inputs_embeds=embeds, attention_mask=full_mask.to(dev),
                               position_ids=position_ids.to(dev), use_cache=False).last_hidden_state.to("cpu")
    shift = n_img - 1                      # input-id index j > pos sits at j + shift in the expanded sequence
    image_part = hidden[:, pos:pos + n_img][:, ::interleave]
    drop = ASSISTANT_HEADER_TOKENS if END_HEADER in template else 0
    states, masks = [], []
    for i, a in enumerate(assistant):
        keep = list(range(layout.crop_start, a - drop)) + list(range(a, total))
        idx = torch.tensor(keep)
        states.append(hidden[i, idx + shift])
        masks.append(mask[i, idx])
    text_states = torch.cat([image_part, torch.stack(states)], dim=1)
    text_mask = torch.cat([torch.ones(b, image_part.shape[1], dtype=torch.int64), torch.stack(masks).long()], dim=1)
    clip_ids = _tokenize_clip(encoders, prompts, clip_max_length)
    with torch.no_grad(), encoders.on_device(encoders.clip) as clip:
        pooled = clip(clip_ids.to(encoders.device)).to("cpu")
    return PromptEmbeds(text_states, text_mask, pooled, tuple(prompts), f"i2v-{mode}",
                        tuple(int(m.sum()) for m in text_mask))


def default_image_encoder(encoders: Any) -> LlavaImageEncoder:
    """The vision tower stored with the LLM (a full LLaVA folder), loaded once per TextEncoders."""
    cached = encoders.__dict__.get("_image_encoder")
    if cached is not None:
        return cached
    path = encoders.info.get("llm_path")
    if not path or not has_vision_tower(path):
        raise InputError(
            f"the loaded text encoder ({path or 'unknown path'}) has no LLaVA vision tower, which image-to-video needs "
            f"for the semantic image tokens. Load the full llava-llama-3-8b folder (text_encoder_i2v) as the LLM, or "
            f"pass image_encoder=load_image_encoder('llava_llama3_vision.safetensors') (ComfyUI: models/clip_vision)")
    enc = load_image_encoder(path, device="cpu", dtype=encoders.compute_dtype)
    encoders.__dict__["_image_encoder"] = enc
    return enc


def black_image_like(image: Any) -> torch.Tensor:
    """The negative branch's image for true CFG (official and diffusers: a black image of the same size)."""
    return torch.zeros_like(as_rgb_image(image))
