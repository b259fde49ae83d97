"""Image-to-video: image -> bucket snap -> VAE latent + LLaVA semantic tokens -> I2V sampler -> decode.

Two condition modes, chosen from the transformer (``sampling.loop.image_condition``): a model with
2C+1 input channels (the 33-channel first release) is ``latent_concat``; any other (the 16-channel
release, same keys as T2V) is ``token_replace``.

Resolution buckets follow the official training/inference code (spec A.5): the image's h/w picks a
bucket from ``crop_size_list(base, 32)`` (landscape: the closest bucket with a strictly larger
ratio; h/w >= 1: the closest with a ratio <= its own), then the image is resized (short side to the
bucket's short side) and centre-cropped, or, with ``resize="pad"``, fitted inside and padded with
black. Aspect ratios beyond 4:1 snap to the 4:1 bucket (logged).

``latent_concat`` output drops the first 4 decoded frames, as the official code and diffusers do
(129 requested frames give 125).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..config import LATENT_CONCAT, TOKEN_REPLACE
from ..errors import InputError
from ..runtime.progress import ProgressCallback
from ..sampling.conditions import image_condition
from ..sampling.noise import latent_shape
from ..text_encoders.llava_image import as_rgb_image, black_image_like, encode_image_prompt
from .latent_stages import SamplerOptions, decode_latents, sample_latents

logger = logging.getLogger(__name__)

# Bucket base sizes (official inference.py:804-845): the bucket area is about base².
BASE_SIZES = {"360p": 480, "540p": 720, "720p": 960}
BUCKET_STRIDE = 32
MAX_ASPECT_RATIO = 4.0
# Flow shift: "stable" (--i2v-stability, the official stability script) / "dynamic" (no stability).
SHIFT_STABLE, SHIFT_DYNAMIC = 7.0, 17.0
DEFAULT_STEPS = 50
DEFAULT_EMBEDDED_GUIDANCE = 6.0          # token_replace; latent_concat models have no guidance input
LATENT_CONCAT_DROPPED_FRAMES = 4
DEFAULT_FPS = 24
RESIZE_MODES = ("crop", "pad")


# --------------------------------------------------------------------------------------------
# Buckets


def crop_size_list(base_size: int = 960, patch_size: int = BUCKET_STRIDE,
                   max_ratio: float = MAX_ASPECT_RATIO) -> List[Tuple[int, int]]:
    """All (h, w) multiples of ``patch_size`` with (h/p)(w/p) <= (base/p)² and aspect <= max_ratio
    (official ``generate_crop_size_list``; 91 buckets for 960, 67 for 720, 43 for 480)."""
    if base_size < patch_size or base_size % 16:
        raise InputError(f"bucket base size must be a multiple of 16 and >= {patch_size}; found {base_size}")
    num_patches = round((base_size / patch_size) ** 2)
    out = []
    wp, hp = num_patches, 1
    while wp > 0:
        if max(wp, hp) / min(wp, hp) <= max_ratio:
            out.append((wp * patch_size, hp * patch_size))
        if (hp + 1) * wp <= num_patches:
            hp += 1
        else:
            wp -= 1
    return out


def select_bucket(height: int, width: int, base_size: int = 960) -> Tuple[int, int]:
    """The official bucket (h, w) for an image of ``height`` × ``width`` (spec A.5 rule)."""
    buckets = crop_size_list(base_size)
    ratios = [round(h / w, 5) for h, w in buckets]
    aspect = height / width
    if aspect >= 1:
        cands = [(i, r - aspect) for i, r in enumerate(ratios) if r - aspect <= 0]
    else:
        cands = [(i, r - aspect) for i, r in enumerate(ratios) if r - aspect > 0]
    best = min(cands, key=lambda c: abs(c[1]))[0]
    bucket = buckets[best]
    if max(aspect, 1 / aspect) > MAX_ASPECT_RATIO:
        logger.warning("image aspect ratio %dx%d is beyond %g:1; snapped to the %dx%d bucket (cropped)", width, height,
                       MAX_ASPECT_RATIO, bucket[1], bucket[0])
    return bucket


def fit_image(image: Any, bucket: Tuple[int, int], resize: str = "crop") -> torch.Tensor:
    """Resize an image into ``bucket`` (h, w): ``crop`` = short side to the bucket's short side,
    then centre crop (official); ``pad`` = fit inside, centred on black. Returns (3, h, w) in [0, 1]."""
    if resize not in RESIZE_MODES:
        raise InputError(f"resize must be one of {RESIZE_MODES}; found {resize!r}")
    x = as_rgb_image(image)
    _, h, w = x.shape
    bh, bw = bucket
    if resize == "crop":
        short = min(bh, bw)
        nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        nh, nw = max(nh, bh), max(nw, bw)
    else:
        scale = min(bh / h, bw / w)
        nh, nw = min(bh, max(1, round(h * scale))), min(bw, max(1, round(w * scale)))
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
    if resize == "crop":
        top, left = int(round((nh - bh) / 2.0)), int(round((nw - bw) / 2.0))
        return x[:, top:top + bh, left:left + bw]
    out = torch.zeros(3, bh, bw)
    top, left = (bh - nh) // 2, (bw - nw) // 2
    out[:, top:top + nh, left:left + nw] = x
    return out


# --------------------------------------------------------------------------------------------
# Image latents


@dataclass(frozen=True)
class ImageLatents:
    """An encoded conditioning image: ``raw`` (1, C, 1, h, w) VAE latents (posterior mode, not
    scaled), ``pixels`` (1, 3, H, W) in [-1, 1] at the bucket size, and the VAE's scaling factor."""

    raw: torch.Tensor
    pixels: torch.Tensor
    scaling_factor: float

    @property
    def scaled(self) -> torch.Tensor:
        return self.raw.float() * self.scaling_factor

    @property
    def size(self) -> Tuple[int, int]:
        return tuple(self.pixels.shape[-2:])


def encode_image(vae, image: Any, *, base_size: Optional[int] = 960, bucket: Optional[Tuple[int, int]] = None,
                 resize: str = "crop") -> ImageLatents:
    """Snap ``image`` to its bucket (or to ``bucket`` = (h, w), multiples of 16) and VAE-encode it
    as one frame (official: ``vae.encode(...).mode()``)."""
    x = as_rgb_image(image)
    if bucket is None:
        if base_size is None:
            raise InputError("give base_size (e.g. 960 for 720p) or an explicit bucket=(height, width)")
        bucket = select_bucket(x.shape[1], x.shape[2], base_size)
    bh, bw = int(bucket[0]), int(bucket[1])
    if bh % 16 or bw % 16 or bh <= 0 or bw <= 0:
        raise InputError(f"bucket {bh}x{bw} (h x w) must be positive multiples of 16")
    pixels = fit_image(x, (bh, bw), resize)[None] * 2 - 1
    device = next(vae.parameters()).device
    with torch.no_grad():
        raw = vae.encode(pixels[:, :, None].to(device, vae.dtype))
    return ImageLatents(raw.float().cpu(), pixels, float(vae.scaling_factor))


# --------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class I2VRequest:
    prompt: str
    frames: int = 129
    base_size: int = 960                      # 720p buckets; 720 = 540p, 480 = 360p
    bucket: Optional[Tuple[int, int]] = None  # explicit (h, w) instead of the bucket rule
    resize: str = "crop"                      # or "pad"
    steps: int = DEFAULT_STEPS
    shift: Optional[float] = None             # None: 7 with i2v_stability, 17 without
    embedded_guidance: Optional[float] = DEFAULT_EMBEDDED_GUIDANCE   # ignored by models without guidance input
    cfg_scale: float = 1.0
    negative_prompt: Optional[str] = None
    seed: int = 0
    i2v_stability: bool = True
    image_embed_interleave: Optional[int] = None
    tile: object = None

    @property
    def flow_shift(self) -> float:
        if self.shift is not None:
            return self.shift
        return SHIFT_STABLE if self.i2v_stability else SHIFT_DYNAMIC


# The negative prompt of the official I2V code (used with a black image when cfg_scale > 1).
DEFAULT_NEGATIVE_PROMPT = "deformation, a poor composition and deformed video, bad teeth, bad eyes, bad limbs"


def condition_mode(transformer, vae) -> str:
    return image_condition(transformer, vae.config.latent_channels)


def image_to_video(transformer, vae, encoders, image: Any, request: I2VRequest, *, image_encoder=None,
                   callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Generate one video from ``image`` + ``request.prompt``; returns (1, 3, F, H, W) in [-1, 1]
    on the CPU (F = frames, or frames − 4 for latent_concat models)."""
    mode = condition_mode(transformer, vae)
    image = as_rgb_image(image)
    cond = encode_image(vae, image, base_size=request.base_size, bucket=request.bucket, resize=request.resize)
    positive = encode_image_prompt(encoders, request.prompt, image, mode=mode, image_encoder=image_encoder,
                                   image_embed_interleave=request.image_embed_interleave)
    negative = None
    if request.cfg_scale > 1:
        negative = encode_image_prompt(encoders, request.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
                                       black_image_like(image), mode=mode, image_encoder=image_encoder,
                                       image_embed_interleave=request.image_embed_interleave)
    empty = torch.zeros(latent_shape(request.frames, *cond.size, channels=vae.config.latent_channels))
    options = SamplerOptions(steps=request.steps, shift=request.flow_shift, embedded_guidance=request.embedded_guidance,
                             cfg_scale=request.cfg_scale, seed=request.seed)
    raw = sample_latents(transformer, positive, empty, options, scaling_factor=vae.scaling_factor, negative=negative,
                         callback=callback, image_latents=cond.raw, condition=mode,
                         i2v_stability=request.i2v_stability)
    return decode_i2v(vae, raw, mode, tile=request.tile, callback=callback)


def decode_i2v(vae, raw_latents: torch.Tensor, mode: str, *, tile=None,
               callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """VAE-decode raw latents; latent_concat drops the first 4 frames (official, diffusers)."""
    video = decode_latents(vae, raw_latents, tile=tile, callback=callback)
    if mode == LATENT_CONCAT:
        video = video[:, :, LATENT_CONCAT_DROPPED_FRAMES:]
    return video


# --------------------------------------------------------------------------------------------
# ComfyUI-facing steps (one call per node)


@dataclass(frozen=True)
class ImageCondition:
    """What the I2V conditioning attaches to a LATENT: the raw image latent and the mode the
    embeddings were made for (the token interleave differs between modes)."""

    image_latents: torch.Tensor        # raw (1, C, 1, h, w)
    mode: str


LATENT_KEY = "hvs_image_condition"


@dataclass(frozen=True)
class I2VConditioningOptions:
    prompt: str
    frames: int = 129
    base_size: int = 960
    resize: str = "crop"
    mode: str = TOKEN_REPLACE
    batch_size: int = 1


def prepare_conditioning(vae, encoders, image: Any, options: I2VConditioningOptions, *, image_encoder=None):
    """Image + prompt -> (PromptEmbeds, empty raw latents (B, C, T, h, w), ImageCondition, bucket image
    (1, 3, H, W) in [0, 1])."""
    if options.mode not in (TOKEN_REPLACE, LATENT_CONCAT):
        raise InputError(f"mode must be {TOKEN_REPLACE!r} or {LATENT_CONCAT!r}; found {options.mode!r}")
    image = as_rgb_image(image)
    cond = encode_image(vae, image, base_size=options.base_size, resize=options.resize)
    embeds = encode_image_prompt(encoders, options.prompt, image, mode=options.mode, image_encoder=image_encoder)
    h, w = cond.size
    empty = torch.zeros(latent_shape(options.frames, h, w, vae.config.latent_channels, options.batch_size))
    return embeds, empty, ImageCondition(cond.raw, options.mode), (cond.pixels + 1) / 2


def sample_i2v_latents(model, positive, latents: torch.Tensor, condition: Optional[ImageCondition], options, *,
                       scaling_factor: float, negative=None, i2v_stability: bool = True,
                       callback: Optional[ProgressCallback] = None, sampler=sample_latents) -> torch.Tensor:
    """Raw latents in and out (ComfyUI LATENT), like ``apps.latent_stages.sample_latents``, with the image condition
    (``sampler``: ``sample_latents`` or a call with its arguments, e.g. the parallel pool's)."""
    c = latents.shape[1]
    mode = image_condition(model, c)
    if condition is None:
        raise InputError(
            f"this is an image-to-video model ({mode}, {model.config.in_channels} input channels) but the latent has "
            f"no image: make it with the HunyuanVideo Image-to-Video Conditioning node, not an empty latent")
    if condition.mode != mode:
        raise InputError(
            f"the image conditioning was made for {condition.mode!r} but this model is {mode!r} "
            f"({model.config.in_channels} input channels); set the conditioning node's condition to {mode!r}")
    return sampler(model, positive, latents, options, scaling_factor=scaling_factor, negative=negative,
                   callback=callback, image_latents=condition.image_latents, condition=mode,
                   i2v_stability=i2v_stability)
