"""Audio for videos of any length: the Foley DiT was released for clips of at most 15 s (the
official pipeline drops every frame after 15 s, spec §C.2/§E.14). Longer videos are covered by
overlapping windows of that length that are denoised *together*: at every Euler step each window
predicts the velocity of its stretch of the latents, and where windows overlap the predictions
are averaged with smooth (raised-cosine) weights before the one step is taken over the whole
length (MultiDiffusion). Neighbouring windows therefore agree on their shared latents at every
step, so the result is one continuous latent sequence rather than pieces glued afterwards.

Each window sees the features of its own stretch of the video: SigLIP2 frames (8 fps) and
Synchformer segments (8 tokens per 16-frame segment at 25 fps, stride 8 frames = 16 latent
frames) are sliced in proportion to the latent range, whole segments only; window starts sit on
the segment grid so the sync tokens line up with the latents they resample onto. A clip that fits
one window runs exactly the plain sampler (bit-identical). Working memory: the model only ever
sees one window; what grows with the duration is the latents, the velocity accumulator and the
features (a 10-minute clip: ~15 MB of latents at 128 channels), and the DAC decodes in chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..errors import InputError
from ..runtime.progress import ProgressCallback
from ..sampling.conditions import guidance_for
from ..sampling.euler import euler
from ..sampling.schedules import flow_sigmas
from .features.frames import SEGMENT_STRIDE, SYNCH_FPS
from .features.siglip import SIGLIP_FPS
from .model import HunyuanVideoFoley
from .sample import FoleyConditions, foley_call, unconditional

RELEASED_WINDOW_SECONDS = 15.0   # the official pipeline's cap: the longest clip the model was run on
DEFAULT_OVERLAP_SECONDS = 3.0
SYNC_GRID_FRAMES = 16            # latent frames (50 Hz) per Synchformer segment stride (8 frames at 25 fps)
DEFAULT_DECODE_CHUNK_FRAMES = 500  # 10 s of latents per DAC decoder call


@dataclass(frozen=True)
class AudioWindow:
    start: int   # latent frames, end exclusive
    end: int


def latent_frames_for(duration_seconds: float, sample_rate: int, hop_length: int) -> int:
    """Latent frames whose decode covers ``duration_seconds`` of audio: ⌈samples / hop⌉, so the
    waveform can be cut to exactly :func:`samples_for` samples (the release's int(dur·50) can
    fall a few samples short)."""
    return -(-samples_for(duration_seconds, sample_rate) // hop_length)


def samples_for(duration_seconds: float, sample_rate: int) -> int:
    if not (math.isfinite(duration_seconds) and duration_seconds > 0):
        raise InputError(f"the video's duration must be a positive number of seconds; found {duration_seconds!r}")
    return int(round(duration_seconds * sample_rate))


def plan_audio_windows(total_frames: int, window_frames: int, overlap_frames: int,
                       grid: int = SYNC_GRID_FRAMES) -> List[AudioWindow]:
    """Windows of ``window_frames`` covering ``total_frames``, neighbours sharing at least
    ``overlap_frames - grid`` (evenly spread, starts on multiples of ``grid``; the last one ends at
    the end, up to ``grid`` frames longer). On short clips more than two windows may overlap a frame;
    the blend normalises by the summed weights."""
    if total_frames < 1:
        raise InputError(f"there are no audio frames to generate (total_frames={total_frames}); the video is empty")
    if total_frames <= window_frames:
        return [AudioWindow(0, total_frames)]
    if not (2 * grid <= overlap_frames <= window_frames - 2 * grid):
        raise InputError(f"overlap_frames must be between {2 * grid} and {window_frames - 2 * grid} latent frames for "
                         f"windows of {window_frames}; found {overlap_frames}")
    stride = window_frames - overlap_frames
    count = -(-(total_frames - window_frames) // stride) + 1
    span = total_frames - window_frames
    # snapping can make the last start equal the one before (a clip a few frames over one window)
    starts = sorted({(round(k * span / (count - 1)) // grid) * grid for k in range(count)})
    windows = [AudioWindow(s, s + window_frames) for s in starts[:-1]] + [AudioWindow(starts[-1], total_frames)]
    for prev, nxt in zip(windows, windows[1:]):
        assert prev.start < nxt.start < prev.end, "neighbouring windows must overlap"
    return windows


def blend_weights(windows: Sequence[AudioWindow]) -> List[torch.Tensor]:
    """Per window, a weight per latent frame: 1 inside, raised-cosine ramps across its overlap with
    each neighbour (where exactly two windows meet, the two ramps sum to 1), so the averaged
    velocity moves smoothly from one window's prediction to the next. Every weight is > 0."""
    weights = []
    for k, w in enumerate(windows):
        length = w.end - w.start
        weight = torch.ones(length, dtype=torch.float32)
        if k > 0:
            n = min(windows[k - 1].end - w.start, length // 2)
            weight[:n] = _ramp(n)
        if k + 1 < len(windows):
            n = min(w.end - windows[k + 1].start, length // 2)
            weight[length - n:] = torch.minimum(weight[length - n:], _ramp(n).flip(0))
        weights.append(weight)
    return weights


def _ramp(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)).float()


def _slice(start: int, end: int, total: int, units: int) -> Tuple[int, int]:
    lo = min(units - 1, round(start * units / total))
    return lo, max(lo + 1, min(units, round(end * units / total)))


def window_conditions(cond: FoleyConditions, window: AudioWindow, total_frames: int,
                      tokens_per_segment: int) -> FoleyConditions:
    """The features of one window's stretch of the video (proportional slices; whole Synchformer
    segments). The whole range gives the features unchanged."""
    if window.start == 0 and window.end == total_frames:
        return cond
    v0, v1 = _slice(window.start, window.end, total_frames, cond.visual_features.shape[1])
    s0, s1 = _slice(window.start, window.end, total_frames, cond.sync_features.shape[1] // tokens_per_segment)
    return FoleyConditions(cond.visual_features[:, v0:v1], cond.sync_features[:, s0 * tokens_per_segment:
                                                                             s1 * tokens_per_segment],
                           cond.text_states)


FEATURE_DURATION_SLACK_SECONDS = 1.0   # frame picking and whole segments round each stream a little


def check_feature_durations(cond: FoleyConditions, audio_frames: int, audio_rate: int,
                            tokens_per_segment: int) -> None:
    """The windows slice the features in proportion to the latents, so both must cover the same
    video: SigLIP2 frames at 8 fps and Synchformer segments (0.32 s apart, 0.64 s long) against
    the latents at ``audio_rate``. Features sampled with the release's 15 s cap against a longer
    clip's latents would otherwise be stretched silently."""
    seconds = audio_frames / audio_rate
    visual = cond.visual_features.shape[1] / SIGLIP_FPS
    sync = (cond.sync_features.shape[1] // tokens_per_segment + 1) * SEGMENT_STRIDE / SYNCH_FPS   # (S - 1)·stride + 16 frames
    for what, covered in (("SigLIP2 features (8 fps)", visual), ("Synchformer features (25 fps)", sync)):
        if abs(covered - seconds) > FEATURE_DURATION_SLACK_SECONDS:
            raise InputError(f"the {what} cover {covered:.2f} s of video but the audio latents {seconds:.2f} s "
                             f"({audio_frames} frames at {audio_rate}/s); extract the features from the whole video "
                             f"(frame sampling caps at 15 s by default: raise max_seconds) or generate latents for "
                             f"the features' duration")


def long_audio_noise(frames: int, channels: int, seed: int, batch: int = 1) -> torch.Tensor:
    """(batch, channels, frames) standard normal noise drawn frame by frame (time-major), so the
    noise of the first N frames is the same whatever the total length or the window layout."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(batch, frames, channels, generator=g).transpose(1, 2).contiguous()


def sample_long_audio_latents(model: HunyuanVideoFoley, noise: torch.Tensor, cond: FoleyConditions,
                              negative_text_states: Optional[torch.Tensor] = None, *, steps: int = 50,
                              shift: float = 1.0, cfg_scale: float = 4.5,
                              window_frames: Optional[int] = None, overlap_frames: Optional[int] = None,
                              grid: int = SYNC_GRID_FRAMES,
                              callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Like :func:`~hyvideo_core.v2a.sample.sample_audio_latents` for any length of ``noise``
    (B, C_latent, La): jointly denoised windows of ``window_frames`` latent frames (default: the
    released 15 s) overlapping by ``overlap_frames`` (default 3 s). ``cond`` holds the whole
    video's features; each window gets its own stretch of them."""
    cfg = model.config
    if noise.dim() != 3 or noise.shape[1] != cfg.audio_latent_dim:
        raise InputError(f"noise must be (B, {cfg.audio_latent_dim}, La) audio latents; found {tuple(noise.shape)}")
    if cfg_scale > 1 and negative_text_states is None:
        raise InputError(f"cfg_scale {cfg_scale} > 1 needs negative_text_states (the CLAP states of the negative "
                         f"prompt, by default 'noisy, harsh')")
    rate = cfg.audio_frame_rate
    window_frames = int(window_frames or round(RELEASED_WINDOW_SECONDS * rate))
    overlap_frames = int(overlap_frames or round(DEFAULT_OVERLAP_SECONDS * rate))
    total = noise.shape[2]
    check_feature_durations(cond, total, rate, cfg.sync_tokens_per_segment)
    windows = plan_audio_windows(total, window_frames, overlap_frames, grid)
    weights = [w.to(noise.device) for w in blend_weights(windows)]
    seg = cfg.sync_tokens_per_segment
    guidances = []
    for w in windows:
        c = window_conditions(cond, w, total, seg)
        negative = unconditional(model, c, negative_text_states).as_branch() if cfg_scale > 1 else None
        guidances.append(guidance_for(c.as_branch(), negative, cfg_scale))
    call = foley_call(model)
    total_w = torch.zeros(total, dtype=torch.float32, device=noise.device)
    for w, weight in zip(windows, weights):
        total_w[w.start:w.end] += weight

    def velocity(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        total_v = torch.zeros_like(x)
        for w, weight, guidance in zip(windows, weights, guidances):
            v = guidance.velocity(call, x[:, :, w.start:w.end], sigma, i)
            total_v[:, :, w.start:w.end] += v * weight
        return total_v / total_w

    sigmas = flow_sigmas(steps, shift).to(noise.device)
    return euler(noise.float(), sigmas, velocity, callback=callback, stage="foley")


def decode_audio(vae, latents: torch.Tensor, duration_seconds: float, *,
                 chunk_frames: Optional[int] = DEFAULT_DECODE_CHUNK_FRAMES) -> torch.Tensor:
    """(B, C_latent, L) -> (B, 1, N) waveform with N = the video's duration in samples, decoded in
    chunks of ``chunk_frames`` latent frames (each with the decoder's receptive field as context,
    so the result equals one whole decode while memory stays bounded)."""
    samples = samples_for(duration_seconds, vae.sample_rate)
    have = latents.shape[-1] * vae.config.hop_length
    if have < samples:
        raise InputError(f"{latents.shape[-1]} latent frames decode to {have} samples, fewer than the "
                         f"{samples} of {duration_seconds:g} s at {vae.sample_rate} Hz; generate "
                         f"{latent_frames_for(duration_seconds, vae.sample_rate, vae.config.hop_length)} frames")
    return vae.decode(latents, chunk_frames=chunk_frames)[:, :, :samples]
