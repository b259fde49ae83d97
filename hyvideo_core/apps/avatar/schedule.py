"""The released avatar sampling schedules as pure functions (shared/spec/official_apps.md §B.6, §E.8-§E.9):
which latent and audio frames each model call sees (circular windows for audio of any length), the CFG
scale / negative / face-mask strength of each step, and the steps the release's frame cache computes in full.

Windows. Audio of ``n`` video frames (after the release's padding: up to 129, or 5 more zero frames) gives
``n // 4 + 1`` output latent frames. The sampler works on a circular buffer of ``(n // 128 + 1) · 32 + 1`` latent
frames and ``(n // 128 + 1) · 128 + 4`` audio frames, denoised in windows of 33 latent frames (129 audio frames)
that start at 0, 33, 66, … minus a shift; indices wrap around the buffers. The shift grows by 10 (mod 33) after
every step, so window seams move and the buffer's end blends into its start. Each window takes one Euler step;
latent frames seen by several windows are averaged. A clip of one window (33 latent frames) has no shift.

CFG. Steps 0-9: negative prompt + zero audio against positive prompt + audio, face mask ×0.6, scale
(1 - i/N)(g0 - 2) + 2. Steps 10+: positive prompt + zero audio against positive prompt + audio, mask ×1, scale
(1 - i/N)(6.5 - 3.5) + 3.5 whatever g0 (the release hard-codes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from ...errors import InputError

WINDOW_LATENTS = 33          # latent frames per window (frames_per_batch)
WINDOW_SHIFT = 10            # shift_offset: how far the windows move after every step
FRAMES_PER_LATENT = 4
TEXT_CFG_STEPS = 10          # steps that guide against the negative prompt
EARLY_MASK_SCALE = 0.6       # face-mask strength during those steps
LATE_SCALES = (6.5, 3.5)     # the late steps' scale goes linearly from the first toward the second
EARLY_SCALE_FLOOR = 2.0
DEFAULT_CFG_SCALE = 7.5


@dataclass(frozen=True)
class Window:
    """One model call's share of the buffers: latent frame indices and audio frame indices (wrapped)."""
    start: int                   # first latent index before wrapping (may be negative)
    latents: Tuple[int, ...]     # WINDOW_LATENTS indices into the latent buffer
    audio: Tuple[int, ...]       # 4·WINDOW_LATENTS - 3 indices into the audio buffer


@dataclass(frozen=True)
class WindowPlan:
    audio_frames: int            # video frames of audio windows given to the sampler
    output_latents: int          # latent frames kept at the end (then frames are cut to the audio length)
    buffer_latents: int          # latent frames in the circular buffer
    buffer_audio: int            # audio frames in the circular buffer (zero-padded)
    window: int = WINDOW_LATENTS
    shift_step: int = WINDOW_SHIFT
    frames_per_latent: int = FRAMES_PER_LATENT

    def shift(self, step: int) -> int:
        return (step * self.shift_step) % self.window

    def windows(self, step: int) -> List[Window]:
        """The model calls of denoising step ``step``, in the release's order."""
        per_window_audio = self.window * self.frames_per_latent - (self.frames_per_latent - 1)
        out = []
        for first in range(0, self.buffer_latents, self.window):
            start = first - self.shift(step)
            out.append(Window(
                start,
                tuple((start + k) % self.buffer_latents for k in range(self.window)),
                tuple((start * self.frames_per_latent + k) % self.buffer_audio for k in range(per_window_audio))))
        return out


def output_latents(audio_frames: int, frames_per_latent: int = FRAMES_PER_LATENT) -> int:
    """Latent frames the sampler returns for ``audio_frames`` video frames of audio windows (the release's
    ``((n // 4 * 4 + 1) - 1) // 4 + 1``)."""
    return audio_frames // frames_per_latent + 1


def window_plan(audio_frames: int, window: int = WINDOW_LATENTS, shift_step: int = WINDOW_SHIFT,
                frames_per_latent: int = FRAMES_PER_LATENT) -> WindowPlan:
    """The released circular-window plan for ``audio_frames`` video frames of audio windows."""
    if audio_frames < 1:
        raise InputError(f"audio_frames must be at least 1, found {audio_frames}")
    span = (window - 1) * frames_per_latent          # 128 video frames per 32 latent frames
    output = output_latents(audio_frames, frames_per_latent)
    blocks = audio_frames // span + 1
    buffer_latents, buffer_audio = blocks * (window - 1) + 1, blocks * span + frames_per_latent
    if output == window or buffer_latents == window:   # one window: no circular buffer, no shift
        return WindowPlan(audio_frames, output, window, window * frames_per_latent, window, 0, frames_per_latent)
    return WindowPlan(audio_frames, output, buffer_latents, buffer_audio, window, shift_step, frames_per_latent)


def noise_latents(audio_frames: int, window: int = WINDOW_LATENTS, frames_per_latent: int = FRAMES_PER_LATENT) -> int:
    """Latent frames of noise the release draws from the seed: the whole circular buffer, even for a clip of one
    window, whose sampler then keeps the first ``window`` frames (so the same seed gives the release's noise)."""
    return (audio_frames // ((window - 1) * frames_per_latent) + 1) * (window - 1) + 1


def padded_audio_frames(frames: int, window: int = WINDOW_LATENTS, frames_per_latent: int = FRAMES_PER_LATENT) -> int:
    """Frames after the release pads the Whisper windows: up to one window (129), else 5 zero frames more."""
    one_window = window * frames_per_latent - (frames_per_latent - 1)
    return one_window if frames <= one_window else frames + 5


@dataclass(frozen=True)
class CfgStep:
    scale: float                 # v = v_uncond + scale · (v_cond - v_uncond)
    negative_prompt: bool        # the unconditional branch uses the negative prompt (else the positive one)
    mask_scale: float            # face-mask multiplier in both branches


def cfg_step(step: int, steps: int, scale: float = DEFAULT_CFG_SCALE) -> CfgStep:
    """The released guidance of step ``step`` of ``steps``; the unconditional audio is always zero."""
    progress = 1 - step / steps
    if step < TEXT_CFG_STEPS:
        return CfgStep(progress * (scale - EARLY_SCALE_FLOOR) + EARLY_SCALE_FLOOR, True, EARLY_MASK_SCALE)
    high, low = LATE_SCALES
    return CfgStep(progress * (high - low) + low, False, 1.0)


def frame_cache_computes(step: int) -> bool:
    """Whether the release's frame cache (its always-on DeepCache) runs the whole model at ``step`` of its 50:
    steps 0-15, every 5th up to 40, and 41-49 (30 of 50); the other steps run only the last single block."""
    return step <= 15 or step >= 41 or step % 5 == 0
