"""HunyuanVideo-Avatar as an extension of the transformer (shared/spec/official_apps.md §B.2-§B.5, §E.6-§E.7).

What it does inside one forward, hook by hook:

``condition``     vec += motion_exp(4 values) ‖ motion_pose(4 values) + fps_proj(fps)
``embed_tokens``  every video token += before_proj(ref_in(reference latent)), element-wise per frame;
                  then one frame of reference tokens, img_in(reference latent frame 0), is prepended at
                  RoPE t = -1 (the model drops it again before the final layer). The audio windows go
                  through ``audio_proj`` here: 4 tokens per video frame, the first frame's repeated 3 more
                  times in front, so each latent frame gets 16 tokens (4 frames x 4).
``after_double``  after each listed double block, the audio adapter updates the video tokens only
                  (the prepended reference frame is left alone), scaled by the face mask.

Named inputs (``model(..., extras={...})``):

================  ======================================================================================
``ref_latents``   (B, C, T, H, W) the reference image's video latent, same shape as the latents (the
                  release encodes the image repeated over the clip with the causal VAE)
``audio_windows`` (B, 4T-3, 10, 5, 384) Whisper windows per video frame (zeros for the unconditional branch)
``face_mask``     optional, (B, 1, 1 or T', H', W') or (B, H', W'), any size, 0..1: nearest-resized to the
                  token grid as released; absent = the whole frame
``motion_exp``    optional, scalar / (B,) / (B, 4): expression motion (the release always uses 30)
``motion_pose``   optional, scalar / (B,) / (B, 4): head-pose motion (the release always uses 25)
``fps``           optional, scalar / (B,): frames per second of the audio windows (25 in the release)
================  ======================================================================================

A batch of 1 in any of them is broadcast to the latents' batch.

Step caches: ``cache_policy = "never_skip"``. A cache that skips blocks reuses the residual of the
previous model call; with long audio the sampler moves through shifted windows of latents and audio, so
the previous call is another window, and the released CFG schedule changes the text, the audio and the
face-mask strength between steps. The release's own frame-wise cache (DeepCache) is the right tool:
:class:`~hyvideo_core.apps.avatar.frame_cache.FrameCache`, which the avatar sampler drives window by window;
the generic caches refuse to skip instead of reusing a stale residual.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import AvatarConfig, TransformerConfig
from ...errors import InputError
from ...model.extension import Extension, ForwardContext
from ...model.layers import Conditioning
from ...model.rope import grid_positions, rope_for_positions
from .modules import MOTION_VALUES, avatar_modules, embed_motion

# The values the release feeds its motion and fps embedders on every call (audio_dataset.py).
RELEASED_MOTION_EXP = 30.0
RELEASED_MOTION_POSE = 25.0
RELEASED_FPS = 25.0

_STATE = "avatar"


class AvatarExtension(Extension):
    name = "avatar"
    consumes = ("ref_latents", "audio_windows", "face_mask", "motion_exp", "motion_pose", "fps")
    cache_policy = "never_skip"

    def __init__(self, cfg: TransformerConfig, avatar: AvatarConfig):
        if cfg.patch_size[0] != 1:
            raise InputError(f"the avatar reference frame needs a temporal patch size of 1, found {cfg.patch_size}")
        bad = [i for i in avatar.adapter_after if not 0 <= i < cfg.double_depth]
        if bad or len(set(avatar.adapter_after)) != len(avatar.adapter_after):
            raise InputError(f"audio adapters after double blocks {avatar.adapter_after}: each must be a distinct "
                             f"block index below {cfg.double_depth}")
        self.cfg, self.avatar = cfg, avatar
        self._modules = avatar_modules(cfg, avatar)
        self.adapter_of_block = {block: j for j, block in enumerate(avatar.adapter_after)}

    def modules(self) -> Dict[str, nn.Module]:
        return dict(self._modules)

    # -- conditioning vector --------------------------------------------------------------------

    def condition(self, ctx: ForwardContext, cond: Conditioning) -> Conditioning:
        b, device = ctx.t.shape[0], ctx.t.device
        exp = _per_sample(ctx.extras.get("motion_exp", RELEASED_MOTION_EXP), b, MOTION_VALUES, "motion_exp", device)
        pose = _per_sample(ctx.extras.get("motion_pose", RELEASED_MOTION_POSE), b, MOTION_VALUES, "motion_pose",
                           device)
        fps = _per_sample(ctx.extras.get("fps", RELEASED_FPS), b, 1, "fps", device)[:, 0]
        m = self._modules
        added = (embed_motion(m["motion_exp"], exp, ctx.dtype) + embed_motion(m["motion_pose"], pose, ctx.dtype)
                 + m["fps_proj"](fps, ctx.dtype))
        return replace(cond, vec=cond.vec + added, first=None if cond.first is None else cond.first + added)

    # -- tokens ---------------------------------------------------------------------------------

    def embed_tokens(self, ctx: ForwardContext, img: torch.Tensor) -> torch.Tensor:
        missing = [k for k in ("ref_latents", "audio_windows") if k not in ctx.extras]
        if missing:
            raise InputError(f"the avatar model needs the extras {missing}: ref_latents (B, C, T, H, W) the "
                             f"reference latent, audio_windows (B, 4T-3, {self.avatar.audio_window}, "
                             f"{self.avatar.whisper_layers}, {self.avatar.whisper_dim}) Whisper windows "
                             f"(zeros for no audio); make them with hyvideo_core.apps.avatar.prepare_avatar and sample with "
                             f"sample_avatar_latents (ComfyUI: the Avatar Conditioning node)")
        b, (t, h, w) = img.shape[0], ctx.grid
        ref = self._reference(ctx.extras["ref_latents"], b, ctx.grid, img.device).to(ctx.dtype)
        m = self._modules
        img = img + m["before_proj"](m["ref_in"](ref))
        ctx.state[_STATE] = {"audio": self._audio_tokens(ctx.extras["audio_windows"], b, t, img.device, ctx.dtype),
                             "mask": self._face_mask(ctx.extras.get("face_mask"), b, ctx.grid, img.device, img.dtype)}
        first = ctx.model.img_in(ref[:, :, :1])
        rope = rope_for_positions(grid_positions((1, h, w), offset=(-1, 0, 0), device=img.device),
                                  self.cfg.rope_axes, self.cfg.rope_theta)
        return ctx.prepend(img, first, rope)

    def _reference(self, ref, b: int, grid, device) -> torch.Tensor:
        expected = tuple(n * p for n, p in zip(grid, self.cfg.patch_size))
        if not isinstance(ref, torch.Tensor) or ref.dim() != 5 or ref.shape[1] != self.cfg.in_channels \
                or tuple(ref.shape[2:]) != expected or ref.shape[0] not in (1, b):
            found = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
            raise InputError(f"ref_latents: expected the reference latent ({b}, {self.cfg.in_channels}, "
                             f"{', '.join(map(str, expected))}) like the latents, found {found}")
        return ref.to(device).expand(b, *ref.shape[1:])

    def _audio_tokens(self, windows, b: int, latent_frames: int, device, dtype) -> torch.Tensor:
        a = self.avatar
        frames = a.audio_frames(latent_frames)
        expected = (frames, a.audio_window, a.whisper_layers, a.whisper_dim)
        if not isinstance(windows, torch.Tensor) or windows.dim() != 5 or tuple(windows.shape[1:]) != expected \
                or windows.shape[0] not in (1, b):
            found = tuple(windows.shape) if isinstance(windows, torch.Tensor) else type(windows).__name__
            raise InputError(f"audio_windows: expected ({b}, {', '.join(map(str, expected))}) Whisper windows, "
                             f"{frames} video frames for {latent_frames} latent frames; found {found}")
        tokens = self._modules["audio_proj"](windows.to(device=device, dtype=dtype).expand(b, *expected))
        # video frame 0 stands alone in latent frame 0 (causal VAE): its tokens fill the 3 missing frames
        lead = tokens[:, :1].expand(-1, a.frames_per_latent - 1, -1, -1)
        return torch.cat([lead, tokens], dim=1).reshape(b, latent_frames, a.tokens_per_latent, -1)

    def _face_mask(self, mask: Optional[torch.Tensor], b: int, grid, device, dtype) -> torch.Tensor:
        t, h, w = grid
        if mask is None:
            return torch.ones(1, t * h * w, 1, device=device, dtype=dtype)
        if not isinstance(mask, torch.Tensor) or mask.dim() not in (3, 5) or mask.shape[0] not in (1, b) \
                or (mask.dim() == 5 and mask.shape[1] != 1):
            found = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise InputError(f"face_mask: expected (B, H, W) or (B, 1, frames, H, W) with B = {b} or 1, values "
                             f"0..1; found {found}")
        mask = mask.to(device=device, dtype=torch.float32)
        if mask.dim() == 3:
            mask = mask[:, None, None]
        if mask.shape[2] == 1:
            mask = mask.expand(-1, -1, t, -1, -1)
        # nearest, as released: token (i, j) takes the mask at (floor(i·H'/h), floor(j·W'/w))
        mask = F.interpolate(mask, size=(t, h, w), mode="nearest")
        return mask.reshape(mask.shape[0], t * h * w, 1).to(dtype)

    # -- audio adapters -------------------------------------------------------------------------

    def after_double(self, ctx: ForwardContext, index: int, img: torch.Tensor,
                     txt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        j = self.adapter_of_block.get(index)
        if j is None:
            return img, txt
        state = ctx.state[_STATE]
        adapter = self._modules["audio_adapter_blocks"][j]
        (t, h, w), p = ctx.grid, ctx.prefix_tokens
        # under sequence parallel this rank holds tokens start .. start + n of [reference frame | video | pads]
        start = ctx.state["sp_tokens"][2] if "sp_tokens" in ctx.state else 0
        n, hw = img.shape[1], h * w
        if start == 0 and n == p + t * hw:          # the whole sequence: every frame at once
            video = img[:, p:]
            b, d = video.shape[0], video.shape[2]
            update = adapter(state["audio"], video.reshape(b, t, hw, d))
            return torch.cat([img[:, :p], video + update.reshape(b, t * hw, d) * state["mask"]], dim=1), txt
        # a shard: the adapter is per token given its latent frame, so run it frame piece by frame piece
        lo, hi = max(start, p), min(start + n, p + t * hw)
        if lo >= hi:
            return img, txt
        pieces, first = [], lo
        while first < hi:
            frame = (first - p) // hw
            last = min(hi, p + (frame + 1) * hw)
            tokens = img[:, first - start:last - start]
            update = adapter(state["audio"][:, frame:frame + 1], tokens[:, None])[:, 0]
            pieces.append(tokens + update * state["mask"][:, first - p:last - p])
            first = last
        return torch.cat([img[:, :lo - start], *pieces, img[:, hi - start:]], dim=1), txt


def _per_sample(value, b: int, width: int, name: str, device) -> torch.Tensor:
    """A scalar, (B,), (B, width) or batch-1 value -> (B, width) float32."""
    v = torch.as_tensor(value, dtype=torch.float32, device=device)
    if v.dim() == 0:
        return v.expand(b, width)
    if v.dim() == 1 and v.shape[0] in (1, b):
        return v[:, None].expand(b, width)
    if v.dim() == 2 and v.shape[0] in (1, b) and v.shape[1] == width:
        return v.expand(b, width)
    raise InputError(f"{name}: expected a number, ({b},) or ({b}, {width}) values, found shape {tuple(v.shape)}")


def avatar_extension(avatar: AvatarConfig) -> Callable[[TransformerConfig], AvatarExtension]:
    """A factory for ``load_transformer(..., extensions=[...])``."""
    return lambda cfg: AvatarExtension(cfg, avatar)
