"""Synchformer sync features for Foley: the visual MotionFormer of ``synchformer_state_dict.pth``.

What the release computes (shared/spec/official_apps.md §C.2; official ``utils/feature_utils.py``
``encode_video_with_sync`` and ``models/synchformer/``): frames sampled at 25 fps are resized so
their short side is 224 (bicubic, antialiased, on uint8), centre-cropped to 224×224, scaled to
[0, 1] and normalised with mean = std = 0.5; cut into segments of 16 frames with stride 8
(S = (T - 16) // 8 + 1, trailing frames that fill no segment are dropped); each segment goes through
the visual branch of Synchformer only, a divided space-time ViT (MotionFormer):

* a 3-D patch embedding (2 frames × 16 × 16 pixels per token: 8 × 14 × 14 tokens) plus a CLS token;
  positions = a spatial table (tiled over time) + a temporal table (repeated over space);
* per block, attention over time (each spatial position across the 8 time steps), then over space
  (each time step's 196 patches), then a GELU MLP; each of the two attentions puts the CLS token's
  key/value in front of every group and lets the CLS query attend to all tokens;
* the CLS token is dropped, a LayerNorm applied, and each time step's patches are pooled by a
  pre-norm ``nn.TransformerEncoderLayer`` reading out its own learned CLS token; the temporal
  aggregation is the identity.

So a segment gives 8 tokens of 768, and a clip (B, 8·S, 768): 240 tokens for 10 s. The release runs it
under float16 autocast on CUDA; we do the same on CUDA and compute in float32 on CPU.

The file holds the whole Synchformer (the audio AST branch and the audio-visual sync classifier too).
Only ``vfeat_extractor.*`` is what Foley runs; it loads with an identity key map, every tensor
checked for presence and shape. Two kinds of tensor are read past on purpose, as the release does:
the audio branch and the classifier (prefixes in :data:`UNUSED_BRANCHES`), and the MotionFormer's
2-D ``patch_embed`` (the release builds it only to count patches; tokens come from the 3-D one).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoints.detect import count_blocks
from ...checkpoints.io import open_weights
from ...checkpoints.validate import describe_mismatch
from ...errors import IncompatibleWeightsError, InputError, UnknownCheckpointError
from .frames import SEGMENT_FRAMES, SEGMENT_STRIDE, SYNCH_FPS, sync_segment_count
from .model_folders import FeatureModelMissingError
from .siglip import _as_uint8_video

log = logging.getLogger(__name__)

SYNCHFORMER_FILE = "synchformer_state_dict.pth"
SYNCHFORMER_REPO = "tencent/HunyuanVideo-Foley"
PREFIX = "vfeat_extractor."
SENTINEL = PREFIX + "patch_embed_3d.proj.weight"
# Parts of the file Foley never runs (the release loads them, then calls only the visual branch).
UNUSED_BRANCHES = ("afeat_extractor.", "vproj.", "aproj.", "transformer.")
UNUSED_VISUAL = (PREFIX + "patch_embed.proj.weight", PREFIX + "patch_embed.proj.bias")
MEAN = STD = 0.5


@dataclass(frozen=True)
class SynchformerConfig:
    """The visual MotionFormer's size. The segment length (16 frames), stride (8) and crop (224) are
    the release's; ``frames_per_segment / temporal_patch`` tokens come out per segment."""
    name: str
    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: int = 4
    patch_size: int = 16
    temporal_patch: int = 2
    image_size: int = 224
    frames_per_segment: int = SEGMENT_FRAMES
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.embed_dim % self.heads:
            raise InputError(f"embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.image_size % self.patch_size or self.frames_per_segment % self.temporal_patch:
            raise InputError(f"{self.name}: image_size/patch_size and frames_per_segment/temporal_patch must divide")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_segment(self) -> int:
        return self.frames_per_segment // self.temporal_patch


SYNCHFORMER_CONFIGS: Dict[str, SynchformerConfig] = {c.name: c for c in (
    SynchformerConfig("synchformer"),                                    # synchformer_state_dict.pth
    SynchformerConfig("synchformer-tiny", embed_dim=12, depth=2, heads=2),   # tests; tokens fit foley-tiny
)}


# ---- the network (module names = the official keys under ``vfeat_extractor.``) -------------------------

class PatchEmbed3D(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        kernel = (cfg.temporal_patch, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, t·h·w, D), time-major."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DividedAttention(nn.Module):
    """Attention within groups of tokens (one time step's patches, or one patch's time steps). The
    CLS token's key/value joins every group; the CLS query attends to every token."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, patches: int, over_time: bool) -> torch.Tensor:
        n, length, dim = x.shape
        h, d = self.heads, dim // self.heads
        q, k, v = self.qkv(x).view(n, length, 3, h, d).permute(2, 0, 3, 1, 4)   # each (N, h, L, d)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)             # (N, h, 1, d)

        def grouped(t: torch.Tensor) -> torch.Tensor:
            t = t[:, :, 1:].reshape(n, h, frames, patches, d)
            if over_time:
                t = t.transpose(2, 3)                                           # (N, h, patches, frames, d)
            return t

        qg, kg, vg = grouped(q), grouped(k), grouped(v)
        groups = qg.shape[2]
        expand = lambda t: t[:, :, :1, None].expand(n, h, groups, 1, d)        # noqa: E731
        kg = torch.cat([expand(k), kg], dim=3)
        vg = torch.cat([expand(v), vg], dim=3)
        out = F.scaled_dot_product_attention(qg, kg, vg)                       # (N, h, groups, members, d)
        if over_time:
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(n, h, frames * patches, d)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DividedSpaceTimeBlock(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        dim = cfg.embed_dim
        # the official names: norm3 + timeattn run first, then norm1 + attn (space), then norm2 + mlp
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = DividedAttention(dim, cfg.heads)
        self.timeattn = DividedAttention(dim, cfg.heads)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, dim * cfg.mlp_ratio)
        self.norm3 = nn.LayerNorm(dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, frames: int, patches: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), frames, patches, over_time=True)
        x = x + self.attn(self.norm1(x), frames, patches, over_time=False)
        return x + self.mlp(self.norm2(x))


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (packed in_proj, out_proj), computed with SDPA."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(
            n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, dim))


class SpatialPooling(nn.Module):
    """Pools each time step's patches into one token: a learned CLS token read out of one pre-norm
    transformer encoder layer (GELU feed-forward of mlp_ratio·D, LayerNorm eps 1e-6)."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.self_attn = SelfAttention(dim, cfg.heads)
        self.linear1 = nn.Linear(dim, dim * cfg.mlp_ratio)
        self.linear2 = nn.Linear(dim * cfg.mlp_ratio, dim)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(G, patches, D) -> (G, D)."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.self_attn(self.norm1(x))
        x = x + self.linear2(F.gelu(self.linear1(self.norm2(x))))
        return x[:, 0]


class MotionFormer(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.cfg = cfg
        dim, t = cfg.embed_dim, cfg.tokens_per_segment
        self.patch_embed_3d = PatchEmbed3D(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid ** 2 + 1, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, t, dim))
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.spatial_attn_agg = SpatialPooling(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 16, 224, 224) pixel segments -> (N, 8, D) tokens."""
        cfg = self.cfg
        n = x.shape[0]
        frames, patches = cfg.tokens_per_segment, cfg.grid ** 2
        x = self.patch_embed_3d(x)
        pos = self.pos_embed[:, 1:].repeat(1, frames, 1) + self.temp_embed.repeat_interleave(patches, dim=1)
        # no casts: under CUDA autocast the patch embedding gives float16 and adding the float32
        # positions promotes, so the residual stream stays float32 as in the release
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, x + pos], dim=1)
        for block in self.blocks:
            x = block(x, frames, patches)
        x = self.norm(x[:, 1:])                                              # (N, frames·patches, D)
        pooled = self.spatial_attn_agg(x.reshape(n * frames, patches, -1))
        return pooled.view(n, frames, -1)


class Synchformer(nn.Module):
    """The part of Synchformer Foley uses; ``vfeat_extractor`` keeps the file's key names."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.config = cfg
        self.vfeat_extractor = MotionFormer(cfg)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        """(B, S, 16, 3, 224, 224) normalised segments -> (B, S, 8, D), as the official
        ``Synchformer.forward``."""
        b, s = segments.shape[:2]
        x = segments.flatten(0, 1).permute(0, 2, 1, 3, 4)                   # (B·S, 3, 16, H, W)
        return self.vfeat_extractor(x).view(b, s, self.config.tokens_per_segment, -1)


# ---- loading ---------------------------------------------------------------------------------------

def _missing_file_error(path: str, found: str) -> FeatureModelMissingError:
    return FeatureModelMissingError(
        f"Synchformer (Foley sync features): expected {SYNCHFORMER_FILE} at {path!r} ({found}); download "
        f"{SYNCHFORMER_FILE} from the Hugging Face repository {SYNCHFORMER_REPO} (it sits beside "
        f"hunyuanvideo_foley.pth and vae_128d_48k.pth) into ComfyUI/models/foley/ and pass that file")


# Files people may pick by mistake, recognised by a sentinel, for a precise error.
_OTHER_KINDS = (
    (lambda keys: "audio_embedder.proj.weight" in keys,
     "the HunyuanVideo-Foley DiT (hunyuanvideo_foley.pth / _xl.pth); load it with load_foley"),
    (lambda keys: "quant_conv.weight" in keys and any(k.startswith("encoder.block.") for k in keys),
     "the DAC audio VAE of HunyuanVideo-Foley (vae_128d_48k.pth); load it with load_audio_vae"),
    (lambda keys: "img_in.proj.weight" in keys,
     "a HunyuanVideo video transformer; load it with load_transformer (ComfyUI: models/diffusion_models)"),
    (lambda keys: "decoder.conv_in.conv.weight" in keys,
     "the HunyuanVideo video VAE; load it with load_vae (ComfyUI: models/vae)"),
    (lambda keys: any(k.startswith(("vision_model.", "text_model.")) for k in keys),
     "a SigLIP/CLIP/CLAP encoder; those load from their Hugging Face folders (load_siglip_vision, load_clap_text)"),
)


def _derive(source) -> Dict[str, int]:
    keys = source.keys()
    depth = count_blocks(keys, PREFIX + "blocks.")
    dim, _, tp, ph, _ = source.shape(SENTINEL)
    return {"embed_dim": dim, "depth": depth, "temporal_patch": tp, "patch_size": ph,
            "grid_cells": source.shape(PREFIX + "pos_embed")[1] - 1,
            "tokens_per_segment": source.shape(PREFIX + "temp_embed")[1],
            "mlp_hidden": source.shape(PREFIX + "blocks.0.mlp.fc1.weight")[0] if depth else 0}


def _fields(cfg: SynchformerConfig) -> Dict[str, int]:
    return {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "temporal_patch": cfg.temporal_patch,
            "patch_size": cfg.patch_size, "grid_cells": cfg.grid ** 2, "tokens_per_segment": cfg.tokens_per_segment,
            "mlp_hidden": cfg.embed_dim * cfg.mlp_ratio}


def detect_synchformer_config(source) -> SynchformerConfig:
    """The registered Synchformer size whose shapes the file has (heads are not visible in shapes)."""
    keys = source.keys()
    if SENTINEL not in source:
        kind = next((what for test, what in _OTHER_KINDS if test(set(keys))), None)
        found = f"it is {kind}" if kind else f"found {len(keys)} keys such as {sorted(keys)[:4]}"
        raise UnknownCheckpointError(
            f"{source.path!r} is not a Synchformer ({SYNCHFORMER_FILE}: expected {SENTINEL!r} and the other "
            f"'vfeat_extractor.' tensors of its visual MotionFormer); {found}. Pick {SYNCHFORMER_FILE} from "
            f"{SYNCHFORMER_REPO} here.")
    needed = [PREFIX + k for k in ("pos_embed", "temp_embed")]
    absent = [k for k in needed if k not in source]
    if absent:
        raise IncompatibleWeightsError(f"{source.path!r} looks like a Synchformer but lacks {absent}; the file is "
                                       f"incomplete: re-download {SYNCHFORMER_FILE}")
    derived = _derive(source)
    for cfg in SYNCHFORMER_CONFIGS.values():
        if _fields(cfg) == derived:
            return cfg
    raise UnknownCheckpointError(
        f"{source.path!r} is a Synchformer of an unknown size (derived {derived}); known: "
        + "; ".join(f"{c.name} {_fields(c)}" for c in SYNCHFORMER_CONFIGS.values()))


def load_synchformer(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                     dtype: torch.dtype = torch.float32) -> Synchformer:
    """``synchformer_state_dict.pth`` (or the same tensors as .safetensors) -> :class:`Synchformer`
    in eval mode. ``.pth`` files are read with weights_only unpickling: no pickled code runs."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _missing_file_error(path, "a folder, not a file" if os.path.isdir(path) else "not found")
    source = open_weights(path)
    cfg = detect_synchformer_config(source)
    with torch.device("meta"):
        model = Synchformer(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ignored = [k for k in source.keys() if k.startswith(UNUSED_BRANCHES) or k in UNUSED_VISUAL]
    present = {k: tuple(source.shape(k)) for k in source.keys() if k not in set(ignored)}
    problems = describe_mismatch(expected, present)
    if problems:
        raise IncompatibleWeightsError(
            f"{path!r} is a {cfg.name} file but its visual tensors do not fit: {problems}. The file is incomplete "
            f"or from a modified model; re-download {SYNCHFORMER_FILE} from {SYNCHFORMER_REPO}.")
    state = {k: source.get(k).to(device=device, dtype=dtype) for k in expected}
    model.load_state_dict(state, strict=True, assign=True)
    log.info("loaded %s from %s (%d visual tensors; %d audio-branch/classifier tensors not used by Foley)",
             cfg.name, path, len(state), len(ignored))
    return model.eval().requires_grad_(False)


# ---- preprocessing and encoding -----------------------------------------------------------------------

def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> short side ``size``, long side int(size·long/short), bicubic with
    antialias on uint8 (torchvision ``v2.Resize(size, BICUBIC)`` on a CPU uint8 tensor)."""
    h, w = frames.shape[-2:]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
    if (new_h, new_w) == (h, w):
        return frames
    return F.interpolate(frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    h, w = frames.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return frames[..., top:top + size, left:left + size]


def preprocess_sync_frames(frames: Union[np.ndarray, torch.Tensor], image_size: int = 224) -> torch.Tensor:
    """(T, H, W, 3) uint8 (or ComfyUI float IMAGE in [0, 1]) -> (T, 3, size, size) uint8, resized and
    cropped as released; :func:`normalise` makes the model input of it."""
    video = _as_uint8_video(frames)
    if video.shape[0] != 1:
        raise InputError(f"preprocess_sync_frames takes one clip (T, H, W, 3); found {video.shape[0]} clips")
    if min(video.shape[2:4]) < 1:
        raise InputError(f"frames have no pixels (height x width {video.shape[2]}x{video.shape[3]})")
    pixels = torch.from_numpy(np.ascontiguousarray(video[0])).permute(0, 3, 1, 2)
    return center_crop(resize_short_side(pixels, image_size), image_size).contiguous()


def normalise(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (pixels.to(dtype) / 255.0 - MEAN) / STD


@torch.inference_mode()
def encode_sync_frames(model: Synchformer, frames: Union[np.ndarray, torch.Tensor], *,
                       batch_size: int = 8) -> torch.Tensor:
    """Synchformer tokens of one clip already sampled at 25 fps: (1, 8·S, D) float32, S = (T - 16) // 8 + 1.

    ``frames`` is (T, H, W, 3) uint8 or a ComfyUI IMAGE batch (floats in [0, 1]). At most
    ``batch_size`` segments (8·batch_size + 8 frames) are preprocessed and encoded at once, so memory
    stays bounded whatever the clip length."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1; found {batch_size!r}")
    shape = tuple(getattr(frames, "shape", ()))
    if len(shape) != 4 or shape[-1] != 3:
        raise InputError(f"frames must be one clip (T, H, W, 3) RGB at {SYNCH_FPS} fps; found shape {shape}")
    if min(shape[1:3]) < 1:
        raise InputError(f"frames have no pixels (height x width {shape[1]}x{shape[2]}); give real video frames")
    cfg = model.config
    segments = sync_segment_count(shape[0])
    param = next(model.parameters())
    autocast = param.device.type == "cuda" and param.dtype == torch.float32   # the release: fp16 autocast on CUDA
    out = []
    for first in range(0, segments, batch_size):
        last = min(segments, first + batch_size)
        lo = first * SEGMENT_STRIDE
        pixels = preprocess_sync_frames(frames[lo:(last - 1) * SEGMENT_STRIDE + SEGMENT_FRAMES], cfg.image_size)
        clip = torch.stack([pixels[s * SEGMENT_STRIDE - lo: s * SEGMENT_STRIDE - lo + SEGMENT_FRAMES]
                            for s in range(first, last)])
        clip = normalise(clip.to(param.device), param.dtype)[None]       # (1, s, 16, 3, H, W)
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            out.append(model(clip).float().cpu())
    return torch.cat(out, dim=1).flatten(1, 2)


def sync_duration_seconds(n_frames: int) -> float:
    """The audio length the release makes for ``n_frames`` frames at 25 fps (frame count / 25)."""
    return n_frames / SYNCH_FPS


__all__ = ["SYNCHFORMER_FILE", "SYNCHFORMER_CONFIGS", "SynchformerConfig", "Synchformer", "load_synchformer",
           "detect_synchformer_config", "preprocess_sync_frames", "normalise", "encode_sync_frames",
           "sync_duration_seconds"]
