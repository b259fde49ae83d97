"""Talking clips of the toy world: a shape that "speaks" a synthetic speech-like sound.

Everything is a pure function of ``(seed, index)`` like :mod:`hyvideo_core.toy.world`:

* **sound** (16 kHz mono): a voiced harmonic carrier (fundamental 120-250 Hz with slow vibrato, harmonics
  falling off as 1/k) plus a little breath noise, amplitude-modulated by a syllable envelope: smooth bumps at
  2-4.5 syllables a second with random heights, and pauses (a syllable left out) between words;
* **picture**: one shape of the world's vocabulary (colour, shape, background) that stays in place while its
  size follows the loudness: the *mouth openness* of the toy world is the shape's scale,
  ``REST_SCALE + OPEN_SCALE * envelope(t)`` at the video frame times (25 fps). A size change is what the toy
  VAE (8x spatial, 4x temporal) renders and what the yardstick measures robustly from pixels (the shape's
  area), and it leaves the shape's outline, hence its identity (colour, shape class), untouched.

The caption uses only words of the toy text encoders' vocabulary ("talking" is not one of them)::

    "a red circle changes size on a dark background"

The *reference image* is the shape at rest (scale ``REST_SCALE``, silence), where the clip has it; the *face
mask* is the box the shape can ever fill (its fully open size), plus a 1-pixel margin. The release enlarges a
detected face box x3 to take in the head's motion; a toy shape does not move, so its box is the whole region
that changes.

Splits: training clips come from :data:`TRAIN_SEED` (any index), held-out clips from :data:`HELDOUT_SEED`;
``talking_clip(seed, i)`` for another seed gives yet other clips. Every attribute combination can occur in
both splits: what is held out is the sound and the placement, the thing the audio adapter must generalise over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from ..errors import InputError
from .world import ALL_BACKGROUNDS, BACKGROUNDS, COLOURS, SHAPES, _SUPERSAMPLE, _shape_mask

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS          # 640
FRAMES, HEIGHT, WIDTH = 17, 64, 64
REST_SCALE = 0.6            # shape size at silence, as a fraction of its full size
OPEN_SCALE = 0.4            # added at the loudest point of the envelope (envelope in [0, 1])
SIZE_RANGE = (0.40, 0.50)   # full (open) size as a fraction of min(H, W)
SYLLABLE_RATE = (2.0, 4.5)  # syllables per second
PAUSE_CHANCE = 0.25         # a syllable slot left silent
TRAIN_SEED = 1401
HELDOUT_SEED = 91401


def talking_caption(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} changes size on a {background} background"


@dataclass(frozen=True)
class TalkingSpec:
    colour: str
    shape: str
    background: str
    size: float                     # full (open) size in pixels
    centre: Tuple[float, float]     # (x, y) in pixels
    f0: float                       # voice fundamental, Hz
    syllable_rate: float
    frames: int = FRAMES
    height: int = HEIGHT
    width: int = WIDTH

    @property
    def caption(self) -> str:
        return talking_caption(self.colour, self.shape, self.background)

    @property
    def attributes(self) -> Dict[str, str]:
        return {"colour": self.colour, "shape": self.shape, "background": self.background}

    @property
    def samples(self) -> int:
        return self.frames * SAMPLES_PER_FRAME


@dataclass(frozen=True)
class TalkingClip:
    spec: TalkingSpec
    audio: np.ndarray               # (samples,) float32 in [-1, 1], 16 kHz
    envelope: np.ndarray            # (frames,) loudness envelope in [0, 1] at the video frame times
    frames: np.ndarray              # (F, H, W, 3) uint8
    reference: np.ndarray           # (H, W, 3) uint8: the shape at rest
    face_box: Tuple[int, int, int, int]   # (x0, y0, x1, y1) pixels, x1/y1 exclusive

    @property
    def caption(self) -> str:
        return self.spec.caption

    def face_mask(self) -> np.ndarray:
        """(H, W) float32: 1 inside the face box, 0 outside."""
        m = np.zeros((self.spec.height, self.spec.width), np.float32)
        x0, y0, x1, y1 = self.face_box
        m[y0:y1, x0:x1] = 1.0
        return m

    def tensor(self):
        from .world import to_tensor

        return to_tensor(self.frames)


def talking_spec(seed: int, index: int) -> TalkingSpec:
    rng = np.random.default_rng([int(seed), int(index), 0x7A1C])
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    size = float(rng.uniform(*SIZE_RANGE) * min(HEIGHT, WIDTH))
    margin = size / 2 + 2
    centre = (float(rng.uniform(margin, WIDTH - margin)), float(rng.uniform(margin, HEIGHT - margin)))
    return TalkingSpec(colour, shape, background, size, centre, f0=float(rng.uniform(120, 250)),
                       syllable_rate=float(rng.uniform(*SYLLABLE_RATE)))


def syllable_envelope(rng: np.random.Generator, rate: float, seconds: float, hz: int) -> np.ndarray:
    """A smooth loudness curve in [0, 1] sampled at ``hz``: raised-cosine bumps, one per syllable slot
    (slots jittered, heights 0.5-1, a quarter of the slots silent), starting at a random phase."""
    n = int(round(seconds * hz))
    t = np.arange(n) / hz
    env = np.zeros(n, np.float64)
    period = 1.0 / rate
    start = -float(rng.uniform(0, period))
    k = 0
    while start + k * period < seconds + period:
        slot = start + k * period + float(rng.uniform(-0.15, 0.15)) * period
        k += 1
        if rng.uniform() < PAUSE_CHANCE:
            continue
        width = period * float(rng.uniform(0.7, 1.0))
        height = float(rng.uniform(0.5, 1.0))
        u = (t - slot) / width
        inside = np.abs(u) < 0.5
        env[inside] = np.maximum(env[inside], height * 0.5 * (1 + np.cos(2 * np.pi * u[inside])))
    return env


def _speech(rng: np.random.Generator, spec: TalkingSpec, envelope: np.ndarray) -> np.ndarray:
    t = np.arange(spec.samples) / SAMPLE_RATE
    vibrato = 1 + 0.03 * np.sin(2 * np.pi * float(rng.uniform(3, 6)) * t + float(rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(spec.f0 * vibrato) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase + float(rng.uniform(0, 2 * np.pi))) / k for k in range(1, 16))
    noise = rng.standard_normal(spec.samples) * 0.3
    signal = (voiced + noise) * envelope
    return (0.5 * signal / max(float(np.abs(signal).max()), 1e-6)).astype(np.float32)


def _render(spec: TalkingSpec, scales: np.ndarray) -> np.ndarray:
    s = _SUPERSAMPLE
    ys, xs = np.meshgrid((np.arange(spec.height * s) + 0.5) / s, (np.arange(spec.width * s) + 0.5) / s,
                         indexing="ij")
    fg = np.asarray(COLOURS[spec.colour], np.float32)
    bg = np.asarray(ALL_BACKGROUNDS[spec.background], np.float32)
    out = np.empty((len(scales), spec.height, spec.width, 3), np.uint8)
    for f, scale in enumerate(scales):
        cover = _shape_mask(spec.shape, xs, ys, spec.centre[0], spec.centre[1], spec.size * float(scale))
        cover = cover.astype(np.float32).reshape(spec.height, s, spec.width, s).mean(axis=(1, 3))[..., None]
        out[f] = np.clip(np.rint(bg + cover * (fg - bg)), 0, 255).astype(np.uint8)
    return out


def talking_clip(seed: int, index: int) -> TalkingClip:
    """Clip ``index`` of the talking world ``seed`` (17 frames, 64x64, 25 fps, 0.68 s of sound)."""
    if int(index) < 0:
        raise InputError(f"talking clip index must be >= 0; found {index}")
    spec = talking_spec(seed, index)
    rng = np.random.default_rng([int(seed), int(index), 0x50D])
    seconds = spec.samples / SAMPLE_RATE
    env_audio = syllable_envelope(rng, spec.syllable_rate, seconds, SAMPLE_RATE)
    audio = _speech(rng, spec, env_audio)
    # the picture follows the loudness at each frame's time (frame f shows t = f / 25 s)
    envelope = env_audio[np.arange(spec.frames) * SAMPLES_PER_FRAME].astype(np.float32)
    frames = _render(spec, REST_SCALE + OPEN_SCALE * envelope)
    reference = _render(spec, np.asarray([REST_SCALE]))[0]
    half = spec.size / 2 + 1
    box = (max(0, int(np.floor(spec.centre[0] - half))), max(0, int(np.floor(spec.centre[1] - half))),
           min(spec.width, int(np.ceil(spec.centre[0] + half))), min(spec.height, int(np.ceil(spec.centre[1] + half))))
    return TalkingClip(spec, audio, envelope, frames, reference, box)


def frame_envelope(audio: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """Loudness of a sound at the video frame times, in [0, 1] relative to its loudest frame: RMS over a
    40 ms window centred on each frame's time. What the yardstick correlates mouth openness with (it works
    on any sound, so shuffled and silent audio are measured the same way)."""
    audio = np.asarray(audio, np.float64)
    out = np.zeros(frames)
    for f in range(frames):
        c = f * SAMPLES_PER_FRAME
        seg = audio[max(0, c - SAMPLES_PER_FRAME // 2):c + SAMPLES_PER_FRAME // 2]
        out[f] = float(np.sqrt(np.mean(seg ** 2))) if seg.size else 0.0
    peak = out.max()
    return (out / peak if peak > 0 else out).astype(np.float32)
