"""The HunyuanVideo-Avatar recipe (shared/spec/official_apps.md §B.2, §B.6): reference image + sound + prompt ->
a talking clip exactly as long as the sound.

``prepare_avatar``          conditioning: the reference latent (the image repeated over one window of frames,
                            encoded by the causal VAE and *sampled* from its latent distribution, seeded, as
                            released), the Whisper windows padded as released, the prompts (LLaVA image tokens
                            "The person looks like<image>" when the text encoder has a vision tower), the face mask
``sample_avatar_latents``   the released loop: circular windows over a noise buffer for sound of any length, one
                            Euler step per window per step, averaged by visit count; the released CFG schedule
``decode_avatar``           VAE decode and cut to the sound's frames
``generate_avatar``         the three above
"""
from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from ...errors import InputError
from ...model.extension import find_extension
from ...runtime.progress import ProgressCallback, ProgressEvent, report
from ...sampling.conditions import Branch, TextCondition, model_call
from ...sampling.noise import make_noise
from ...sampling.schedules import flow_sigmas
from ...text_encoders.llava_image import as_rgb_image
from .audio import _step as _audio_step
from .audio import audio_windows_for
from .extension import RELEASED_MOTION_EXP, RELEASED_MOTION_POSE, AvatarExtension
from .face import face_mask_for
from .frame_cache import FrameCache
from .schedule import CfgStep, cfg_step, noise_latents, padded_audio_frames, window_plan

RELEASED_PROMPT_PREFIX = "Authentic, Realistic, Natural, High-quality, Lens-Fixed, "
RELEASED_NEGATIVE_PROMPT = ("Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, "
                            "bad hands, bad teeth, bad eyes, bad limbs, distortion, blurring, Lens changes")
RELEASED_IMAGE_SIZE = 704            # --image-size: short side 704, area capped at 704x1216, multiples of 64
_LONG_SIDE_FOR = {704: 1216, 512: 768, 384: 576, 256: 384}
_SMALLEST_PRESET = min(_LONG_SIDE_FOR)
SIZE_MULTIPLE = 16                   # VAE x8 then the transformer's 2x2 patch


@dataclass(frozen=True)
class AvatarOptions:
    steps: int = 50
    shift: float = 5.0
    cfg_scale: float = 7.5            # g0 of the released schedule
    seed: int = 0
    fps: float = 25.0                 # 25 or 12.5 (audio window step)
    motion_exp: float = RELEASED_MOTION_EXP      # "motion intensity" (expression); the release hard-codes 30
    motion_pose: float = RELEASED_MOTION_POSE    # head-pose motion; the release hard-codes 25
    frames: Optional[int] = None      # None = the audio's length; else cut/pad the audio to this many frames
    frame_cache: bool = False         # DeepCache-style skipping (the release's frame cache)
    released_schedule: bool = True    # False = plain CFG at cfg_scale (text+audio vs negative+zero audio) every step

    def check(self) -> None:
        if not isinstance(self.steps, numbers.Integral) or isinstance(self.steps, bool) or self.steps < 1:
            raise InputError(f"steps: expected a whole number >= 1, found {self.steps!r}")
        for name in ("shift", "cfg_scale", "motion_exp", "motion_pose"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InputError(f"{name}: expected a finite number, found {value!r}")
        if self.shift <= 0:
            raise InputError(f"shift: expected a positive number (the release uses 5), found {self.shift}")
        _audio_step(self.fps)
        if self.frames is not None and (not isinstance(self.frames, numbers.Integral) or isinstance(self.frames, bool)
                                        or self.frames < 1):
            raise InputError(f"frames: expected None (the sound's length) or a whole number >= 1, found "
                             f"{self.frames!r}")


@dataclass
class AvatarConditioning:
    """Everything the sampler needs (what the HVS_AvatarConditioning node outputs)."""
    positive: TextCondition           # the prompt [+ LLaVA image tokens]
    negative: TextCondition           # the negative prompt's
    ref_latents: torch.Tensor         # (1, C, window_latents, h, w) scaled latents of the reference repeated
    audio_windows: torch.Tensor       # (1, n, audio_window, whisper_layers, whisper_dim), n = padded frames
    face_mask: Optional[torch.Tensor]  # (1, H/8, W/8) 0..1 at latent resolution (None, like ones: whole frame)
    video_frames: int                 # frames of the output (audio length at fps), the cut
    fps: float
    height: int
    width: int


# --------------------------------------------------------------------------------------------
# conditioning


def avatar_size(height: int, width: int, image_size: Optional[int] = RELEASED_IMAGE_SIZE) -> tuple:
    """(H, W) the reference is resized to. As released (``audio_dataset.py``): short side to ``image_size``,
    both sides rounded to multiples of 64, area capped at the preset's (704 -> 704x1216). Images smaller than
    the smallest preset (256), and any image with ``image_size=None``, keep their size rounded to multiples of
    16 (the toy world's 64x64 stays 64x64: upscaling it to 704 would only cost time)."""
    if image_size is None or min(height, width) < _SMALLEST_PRESET:
        return tuple(max(SIZE_MULTIPLE, round(s / SIZE_MULTIPLE) * SIZE_MULTIPLE) for s in (height, width))
    if not isinstance(image_size, numbers.Integral) or image_size < _SMALLEST_PRESET:
        raise InputError(f"image_size: expected None (keep the size) or a short side >= {_SMALLEST_PRESET} "
                         f"(704 as released), found {image_size!r}")
    scale = image_size / min(height, width)
    h, w = round(height * scale / 64) * 64, round(width * scale / 64) * 64
    long_side = _LONG_SIDE_FOR.get(image_size, image_size * 1.5)
    if h * w > image_size * long_side:
        scale = math.sqrt(image_size * long_side / (height * width))
        h, w = round(height * scale / 64) * 64, round(width * scale / 64) * 64
    return max(64, h), max(64, w)


def _fit_reference(image: Any, image_size: Optional[int]) -> torch.Tensor:
    """(3, H, W) in [0, 1] at the avatar size (resized, not cropped, as released)."""
    x = as_rgb_image(image, "reference image")
    h, w = avatar_size(x.shape[1], x.shape[2], image_size)
    if (h, w) != tuple(x.shape[1:]):
        # bicubic with antialias stands in for the release's PIL Lanczos
        x = F.interpolate(x[None], size=(h, w), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)
    return x


@torch.no_grad()
def encode_reference(vae, pixels: torch.Tensor, window_latents: int, seed: int,
                     frames_per_latent: int = 4) -> torch.Tensor:
    """(1, C, window_latents, h, w) scaled reference latents: the image repeated over the window's frames, through
    the causal VAE, a sample of the latent distribution drawn from ``seed`` (the release samples, not the mode;
    the causal VAE makes the frames differ), times the scaling factor."""
    frames = frames_per_latent * window_latents - (frames_per_latent - 1)
    clip = (pixels * 2 - 1)[None, :, None].expand(-1, -1, frames, -1, -1)
    mean, logvar = vae.encode_moments(clip)
    std = torch.exp(0.5 * logvar.float().clamp(-30.0, 20.0))
    noise = make_noise(mean.shape, seed, device=mean.device)
    return ((mean.float() + std * noise) * vae.scaling_factor).cpu()


def _window_latents_for(whisper, window_latents: Optional[int]) -> int:
    """The sampling window the reference latent is made for. Without a model at hand, the avatar variant whose
    Whisper matches this one's width decides (33 for whisper-tiny)."""
    if window_latents is not None:
        if not isinstance(window_latents, numbers.Integral) or window_latents < 2:
            raise InputError(f"window_latents: expected a whole number >= 2 (33 as released), found {window_latents!r}")
        return int(window_latents)
    from ...variants import VARIANTS

    windows = {s.app.config.window_latents for s in VARIANTS.values()
               if s.app is not None and s.app.app == "avatar" and s.app.config.whisper_dim == whisper.dim
               and s.app.config.whisper_layers == whisper.layers}
    if len(windows) == 1:
        return windows.pop()
    if not windows:
        return 33
    raise InputError(f"several avatar variants use a Whisper of width {whisper.dim} with different windows "
                     f"{sorted(windows)}; pass window_latents= (the model's AvatarConfig.window_latents)")


def _text(encoders, prompt: str, image: Optional[torch.Tensor], max_length: int) -> TextCondition:
    from .prompt import encode_avatar_prompt

    return TextCondition.of(encode_avatar_prompt(encoders, prompt, image, max_length=max_length))


def prepare_avatar(vae, encoders, whisper, image, audio, prompt: str, options: AvatarOptions = AvatarOptions(), *,
                   negative_prompt: str = RELEASED_NEGATIVE_PROMPT, face_mask=None, face_detector=None,
                   add_prompt_prefix: bool = True, image_size: Optional[int] = RELEASED_IMAGE_SIZE,
                   window_latents: Optional[int] = None, max_text_tokens: int = 256) -> AvatarConditioning:
    """The conditioning of one clip.

    image: (H, W, 3) / (1, H, W, 3) 0..1 tensor (ComfyUI IMAGE) or uint8 numpy; audio: a file path or ComfyUI
    AUDIO dict (silence is valid: the mouth stays at rest; no samples at all is an error); whisper: from
    ``load_whisper``; face_mask: ComfyUI MASK (1, H, W) of any size; face_detector: from ``load_face_detector``
    (used when no MASK is given); neither: the whole frame (one log line, as the release does without a face).
    ``window_latents``: the model's window (``AvatarConfig.window_latents``); None = the avatar variant whose
    Whisper width matches ``whisper`` (33 for whisper-tiny). ``image_size``: see :func:`avatar_size`.
    ``max_text_tokens``: LLM tokens kept after the template (256 as released; the toy avatar was trained with 32,
    and fewer tokens make each model call cheaper)."""
    options.check()
    if audio is None:
        raise InputError("audio: the avatar needs a sound (a file path or a ComfyUI AUDIO); none was given. For a "
                         "still, closed-mouth clip give a silent recording of the wanted length")
    if not isinstance(prompt, str):
        raise InputError(f"prompt: expected a string, found {type(prompt).__name__}")
    window = _window_latents_for(whisper, window_latents)
    # the cheap inputs first, so that a bad sound, image or mask is reported before the reference is encoded
    pixels = _fit_reference(image, image_size)
    height, width = pixels.shape[1:]
    windows = audio_windows_for(audio, whisper, options.fps, video_frames=options.frames)
    frames = windows.shape[1]
    padded = padded_audio_frames(frames, window)
    windows = torch.cat([windows, windows.new_zeros(1, padded - frames, *windows.shape[2:])], dim=1).float().cpu()
    # a drawn MASK wins, else the detector's largest face x3, else the whole frame (one log line, as released)
    mask = face_mask_for(image=pixels.permute(1, 2, 0), mask=face_mask, detector=face_detector, size=(height, width))

    text = (RELEASED_PROMPT_PREFIX + prompt) if add_prompt_prefix else prompt
    return AvatarConditioning(positive=_text(encoders, text, pixels, max_text_tokens),
                              negative=_text(encoders, negative_prompt, pixels, max_text_tokens),
                              ref_latents=encode_reference(vae, pixels, window, options.seed), audio_windows=windows,
                              face_mask=mask, video_frames=frames, fps=float(options.fps), height=height, width=width)


# --------------------------------------------------------------------------------------------
# sampling


def _avatar_of(model) -> AvatarExtension:
    ext = find_extension(model, AvatarExtension)
    if ext is None:
        raise InputError(f"this transformer ({getattr(model, 'variant', type(model).__name__)}) has no avatar "
                         f"modules: avatar conditioning needs a HunyuanVideo-Avatar model; load it with "
                         f"hyvideo_core.apps.avatar.load_avatar_transformer (ComfyUI: the avatar checkpoint)")
    return ext


def _check_conditioning(cond: AvatarConditioning, ext: AvatarExtension, channels: int) -> None:
    a = ext.avatar
    ref, audio = cond.ref_latents, cond.audio_windows
    if not isinstance(ref, torch.Tensor) or ref.dim() != 5 or ref.shape[0] != 1 or ref.shape[1] != channels:
        found = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
        raise InputError(f"ref_latents: expected (1, {channels}, {a.window_latents}, h, w), found {found}")
    if ref.shape[2] != a.window_latents:
        raise InputError(f"the conditioning was prepared for windows of {ref.shape[2]} latent frames but this model "
                         f"samples windows of {a.window_latents}; prepare it with window_latents={a.window_latents}")
    want = (a.audio_window, a.whisper_layers, a.whisper_dim)
    if not isinstance(audio, torch.Tensor) or audio.dim() != 5 or audio.shape[0] != 1 or \
            tuple(audio.shape[2:]) != want:
        found = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise InputError(f"audio_windows: expected (1, frames, {', '.join(map(str, want))}) for this model's "
                         f"Whisper, found {found}; encode the sound with the Whisper this avatar model was made for")


def _unit_mask(cond: AvatarConditioning) -> torch.Tensor:
    """The face mask at strength 1: the given one, or the whole frame (the release's fallback box)."""
    if cond.face_mask is not None:
        return cond.face_mask.float()
    return torch.ones(1, *cond.ref_latents.shape[-2:])


def _guidance(options: AvatarOptions, step: int) -> CfgStep:
    if options.released_schedule:
        return cfg_step(step, options.steps, options.cfg_scale)
    return CfgStep(float(options.cfg_scale), True, 1.0)


@torch.no_grad()
def sample_avatar_latents(model, cond: AvatarConditioning, options: AvatarOptions = AvatarOptions(), *,
                          callback: Optional[ProgressCallback] = None,
                          window_dtype: Optional[torch.dtype] = torch.bfloat16) -> torch.Tensor:
    """Scaled latents (1, C, output_latents, h, w) of the clip, float32 on the model's device.

    The released loop (§B.6): a circular buffer of seeded noise and one of audio windows; per step, windows of
    ``window_latents`` start at 0, w, 2w, ... minus a shift that grows by ``window_shift`` each step; each window
    takes one Euler step under CFG (unconditional = negative or positive prompt with zero audio, see
    :func:`~.schedule.cfg_step`) and the stepped windows are averaged by visit count. ``window_dtype``: the
    release holds each stepped window in bf16 before averaging (kept for step-by-step parity); None keeps float32.
    ``callback`` gets a :class:`ProgressEvent` after every step; raise ``Interrupted`` from it to stop."""
    ext = _avatar_of(model)
    options.check()
    a = ext.avatar
    channels = model.config.in_channels
    _check_conditioning(cond, ext, channels)
    device = next(model.parameters()).device
    plan = window_plan(cond.audio_windows.shape[1], a.window_latents, a.window_shift, a.frames_per_latent)
    h, w = cond.ref_latents.shape[-2:]
    drawn = noise_latents(plan.audio_frames, a.window_latents, a.frames_per_latent)
    latents = make_noise((1, channels, drawn, h, w), options.seed, device=device)[:, :, :plan.buffer_latents]
    audio = cond.audio_windows.to(device)
    if audio.shape[1] < plan.buffer_audio:   # zero audio past the sound fills the buffer, as released
        audio = torch.cat([audio, audio.new_zeros(1, plan.buffer_audio - audio.shape[1], *audio.shape[2:])], dim=1)
    audio = audio[:, :plan.buffer_audio]
    run = _WindowedRun(
        call=model_call(model, None, lambda x: x, dict), plan=plan, options=options,
        sigmas=flow_sigmas(options.steps, options.shift).to(device), audio=audio,
        zero_audio=audio.new_zeros(1, a.audio_frames(a.window_latents), *audio.shape[2:]),
        fixed=dict(ref_latents=cond.ref_latents.to(device), motion_exp=float(options.motion_exp),
                   motion_pose=float(options.motion_pose), fps=float(cond.fps)),
        positive=TextCondition.of(cond.positive).to(device),
        negative=TextCondition.of(cond.negative).to(device), mask=_unit_mask(cond).to(device),
        window_dtype=window_dtype,
        # the release's DeepCache: computing steps record the last single block's input per latent frame; the
        # sampler tells it each call's step, window frames and branch
        cache=FrameCache(model, steps=options.steps) if options.frame_cache else None)
    try:
        for step in range(options.steps):
            latents, denoised = run.step(latents, step)
            report(callback, ProgressEvent("sample", step + 1, options.steps,
                                           latents=latents[:, :, :plan.output_latents],
                                           denoised=denoised[:, :, :plan.output_latents]))
    finally:
        if run.cache is not None:
            run.cache.close()
    return latents[:, :, :plan.output_latents]


@dataclass
class _WindowedRun:
    """What stays fixed over one sampling run, and one denoising step over every window."""
    call: Any                         # sampling.conditions.ModelCall
    plan: Any                         # schedule.WindowPlan
    options: AvatarOptions
    sigmas: torch.Tensor
    audio: torch.Tensor               # the circular audio buffer
    zero_audio: torch.Tensor          # one window of zero audio (the unconditional branch)
    fixed: dict                       # extras every call gets: reference latent, motion, fps
    positive: TextCondition
    negative: TextCondition
    mask: torch.Tensor                # the face mask at strength 1
    window_dtype: Optional[torch.dtype]
    cache: Optional[FrameCache]

    def _at(self, step: int, window, branch: str):
        return contextlib.nullcontext() if self.cache is None else self.cache.at(step, window.latents, branch)

    def step(self, latents: torch.Tensor, step: int):
        """(latents, x0 estimate) after denoising step ``step``: one Euler step per window, averaged by visits."""
        guide = _guidance(self.options, step)
        sigma, sigma_next = self.sigmas[step], self.sigmas[step + 1]
        extras = dict(self.fixed, face_mask=self.mask * guide.mask_scale)
        uncond_text = self.negative if guide.negative_prompt else self.positive
        total, denoised = torch.zeros_like(latents), torch.zeros_like(latents)
        visits = torch.zeros(latents.shape[2], device=latents.device)
        for window in self.plan.windows(step):
            idx = torch.tensor(window.latents, device=latents.device)
            x = latents[:, :, idx]
            with self._at(step, window, "cond"):
                v_cond = self.call(x, sigma, Branch(self.positive,
                                                    dict(extras, audio_windows=self.audio[:, list(window.audio)])))
            with self._at(step, window, "uncond"):
                v_uncond = self.call(x, sigma, Branch(uncond_text, dict(extras, audio_windows=self.zero_audio)))
            v = v_uncond + guide.scale * (v_cond - v_uncond)
            stepped = x + (sigma_next - sigma) * v
            if self.window_dtype is not None:
                stepped = stepped.to(self.window_dtype).float()
            total.index_add_(2, idx, stepped)
            denoised.index_add_(2, idx, x - sigma * v)
            visits.index_add_(0, idx, torch.ones(len(idx), device=latents.device))
        visits = visits[None, None, :, None, None]
        return total / visits, denoised / visits


# --------------------------------------------------------------------------------------------
# decode and the whole recipe


def decode_avatar(vae, latents: torch.Tensor, cond_or_frames: Union[AvatarConditioning, int], *,
                  scaling_factor: Optional[float] = None, tile=None,
                  callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """(1, 3, F, H, W) float32 video in [-1, 1] on the CPU, cut to F = the sound's frames. ``latents`` are the
    sampler's scaled latents; ``tile``: None = the VAE's automatic tiling, False = off, or TileSettings."""
    frames = cond_or_frames.video_frames if isinstance(cond_or_frames, AvatarConditioning) else cond_or_frames
    if not isinstance(frames, numbers.Integral) or isinstance(frames, bool) or frames < 1:
        raise InputError(f"frames: expected the clip's frame count (a whole number >= 1) or its conditioning, "
                         f"found {frames!r}")
    factor = vae.scaling_factor if scaling_factor is None else scaling_factor
    available = 4 * (latents.shape[2] - 1) + 1
    if frames > available:
        raise InputError(f"the latents hold {available} frames but {frames} were asked for; sample the clip with "
                         f"the same conditioning")
    with torch.no_grad():
        video = vae.decode((latents.float() / factor).to(vae.device, vae.dtype), tile=tile, callback=callback)
    return video.float().cpu()[:, :, :frames]


def generate_avatar(transformer, vae, encoders, whisper, image, audio, prompt: str,
                    options: AvatarOptions = AvatarOptions(), *, callback: Optional[ProgressCallback] = None,
                    tile=None, **kw) -> torch.Tensor:
    """A talking clip (1, 3, F, H, W) in [-1, 1] on the CPU, F = the sound's length at ``options.fps``.
    ``kw`` go to :func:`prepare_avatar` (negative_prompt, face_mask, face_detector, add_prompt_prefix, image_size,
    max_text_tokens); the window is the model's."""
    ext = _avatar_of(transformer)
    kw.setdefault("window_latents", ext.avatar.window_latents)
    cond = prepare_avatar(vae, encoders, whisper, image, audio, prompt, options, **kw)
    latents = sample_avatar_latents(transformer, cond, options, callback=callback)
    return decode_avatar(vae, latents, cond, tile=tile, callback=callback)
