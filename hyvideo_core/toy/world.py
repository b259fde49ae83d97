"""The toy world: short captioned clips of one coloured shape moving over a plain background.

Everything is a pure function of ``(seed, index)``, so any number of clips can be regenerated
bit-for-bit on any machine. Captions are templated from five attributes::

    "a red circle moving left slowly on a dark background"

A fixed quarter of the caption combinations (chosen by a hash of the caption, independent of
any seed) is the *held-out* split: those prompts are never produced by the training split and
serve as the evaluation prompt set (:func:`heldout_prompts`, >= 100 prompts).

Frames are rendered anti-aliased (4x supersampling) as uint8 ``(F, H, W, 3)``;
:func:`to_tensor` turns them into the engine's ``(3, F, H, W)`` float in [-1, 1].
"""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError

# -- the attribute vocabulary (every number of the world lives here) ------------------------

# Shapes that differ in outline at the scale the 8x-downsampling VAE keeps (aspect ratio, where the
# mass sits), not only in corners: the tiny toy VAE rounds corners off, so with "square" and
# "diamond" its round trips of real clips kept the shape in only about half the clips.
SHAPES: Tuple[str, ...] = ("circle", "triangle", "bar", "pillar")
BAR_THICKNESS = 0.4                # bar height (pillar width) as a fraction of its length
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    "dark": (18, 18, 28),
    "light": (228, 228, 218),
    "gray": (120, 120, 120),
}
# Concept words the base model never sees in training (their token is in the text encoders'
# vocabulary, as any word is in a real tokenizer): the LoRA new-concept test teaches one of them.
NEW_BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {"orange": (235, 125, 25)}
ALL_BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {**BACKGROUNDS, **NEW_BACKGROUNDS}
DIRECTIONS: Dict[str, Tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Travel over the whole clip as a fraction of the frame edge along the motion.
SPEEDS: Dict[str, float] = {"slowly": 0.22, "quickly": 0.45}
SIZE_RANGE = (0.30, 0.38)          # shape bounding-box edge as a fraction of min(H, W)
ATTRIBUTES = ("colour", "shape", "direction", "speed", "background")

MIN_SIZE, MAX_SIZE = 32, 256       # pixels; multiples of 16
MIN_FRAMES, MAX_FRAMES = 5, 129    # 4n+1
HELDOUT_MODULUS = 4                # 1 in 4 caption combinations is held out
_SUPERSAMPLE = 4


def caption_of(colour: str, shape: str, direction: str, speed: str, background: str) -> str:
    return f"a {colour} {shape} moving {direction} {speed} on a {background} background"


_CAPTION_RE = re.compile(
    r"^a (?P<colour>\w+) (?P<shape>\w+) moving (?P<direction>\w+) (?P<speed>\w+) on a (?P<background>\w+) background$")


def parse_caption(caption: str) -> Dict[str, str]:
    """The five attributes of a world caption; InputError for text outside the template."""
    m = _CAPTION_RE.match(caption.strip().lower())
    vocab = {"colour": COLOURS, "shape": SHAPES, "direction": DIRECTIONS, "speed": SPEEDS, "background": ALL_BACKGROUNDS}
    if m is None or any(m.group(k) not in v for k, v in vocab.items()):
        raise InputError(
            f"{caption!r} is not a toy-world caption; expected e.g. "
            f"{caption_of('red', 'circle', 'left', 'slowly', 'dark')!r} with colour in {list(COLOURS)}, "
            f"shape in {list(SHAPES)}, direction in {list(DIRECTIONS)}, speed in {list(SPEEDS)}, "
            f"background in {list(ALL_BACKGROUNDS)}.")
    return {k: m.group(k) for k in ATTRIBUTES}


def all_captions(backgrounds: Sequence[str] = tuple(BACKGROUNDS)) -> List[str]:
    """Every caption of the base vocabulary (or with the given backgrounds, e.g. a new concept's)."""
    return [caption_of(c, s, d, v, b) for c, s, d, v, b in
            itertools.product(COLOURS, SHAPES, DIRECTIONS, SPEEDS, backgrounds)]


def is_heldout(caption: str) -> bool:
    digest = hashlib.sha256(caption.strip().lower().encode()).digest()
    return int.from_bytes(digest[:4], "little") % HELDOUT_MODULUS == 0


def heldout_prompts() -> List[str]:
    """The fixed evaluation prompt set (never used by the training split)."""
    return [c for c in all_captions() if is_heldout(c)]


def train_prompts() -> List[str]:
    return [c for c in all_captions() if not is_heldout(c)]


def concept_prompts(background: str, split: str) -> List[str]:
    """Captions with a new-concept background (:data:`NEW_BACKGROUNDS`), split by the same hash
    into "train" and "heldout"."""
    if background not in NEW_BACKGROUNDS:
        raise InputError(f"{background!r} is not a new-concept background; known: {list(NEW_BACKGROUNDS)}")
    if split not in ("train", "heldout"):
        raise InputError(f"split must be 'train' or 'heldout'; found {split!r}")
    return [c for c in all_captions((background,)) if is_heldout(c) == (split == "heldout")]


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip."""
    colour: str
    shape: str
    direction: str
    speed: str
    background: str
    frames: int
    height: int
    width: int
    size: float            # shape edge in pixels
    start: Tuple[float, float]   # centre (x, y) in pixels at frame 0

    @property
    def caption(self) -> str:
        return caption_of(self.colour, self.shape, self.direction, self.speed, self.background)

    @property
    def attributes(self) -> Dict[str, str]:
        return {k: getattr(self, k) for k in ATTRIBUTES}

    def travel(self) -> float:
        edge = self.width if DIRECTIONS[self.direction][0] else self.height
        return SPEEDS[self.speed] * edge

    def centre(self, frame: int) -> Tuple[float, float]:
        dx, dy = DIRECTIONS[self.direction]
        f = frame / max(1, self.frames - 1)
        return self.start[0] + dx * f * self.travel(), self.start[1] + dy * f * self.travel()


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray     # (F, H, W, 3) uint8
    caption: str
    spec: ClipSpec

    def tensor(self):
        return to_tensor(self.frames)


def _check_geometry(frames: int, height: int, width: int) -> None:
    if (frames - 1) % 4 or not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise InputError(f"toy clips need 4n+1 frames in [{MIN_FRAMES}, {MAX_FRAMES}]; found {frames}")
    for name, n in (("height", height), ("width", width)):
        if n % 16 or not MIN_SIZE <= n <= MAX_SIZE:
            raise InputError(f"toy clip {name} must be a multiple of 16 in [{MIN_SIZE}, {MAX_SIZE}]; found {n}")


def make_spec(attributes: Dict[str, str], rng: np.random.Generator, frames: int, height: int,
              width: int) -> ClipSpec:
    """Place a shape with the given attributes so that it stays inside the frame all clip long."""
    _check_geometry(frames, height, width)
    size = float(rng.uniform(*SIZE_RANGE) * min(height, width))
    dx, dy = DIRECTIONS[attributes["direction"]]
    edge = width if dx else height
    travel = SPEEDS[attributes["speed"]] * edge
    margin = size / 2 + 1
    lo_x, hi_x = margin, width - margin
    lo_y, hi_y = margin, height - margin
    # along the motion the start leaves room for the travel; across it, anywhere inside
    if dx:
        lo_x, hi_x = (lo_x + travel, hi_x) if dx < 0 else (lo_x, hi_x - travel)
    else:
        lo_y, hi_y = (lo_y + travel, hi_y) if dy < 0 else (lo_y, hi_y - travel)
    start = (float(rng.uniform(lo_x, max(lo_x, hi_x))), float(rng.uniform(lo_y, max(lo_y, hi_y))))
    return ClipSpec(frames=frames, height=height, width=width, size=size, start=start,
                    **{k: attributes[k] for k in ATTRIBUTES})


def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, size: float) -> np.ndarray:
    u, v = (xs - cx) / (size / 2), (ys - cy) / (size / 2)      # [-1, 1] inside the bounding box
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "bar":
        return (np.abs(u) <= 1) & (np.abs(v) <= BAR_THICKNESS)
    if shape == "pillar":
        return (np.abs(u) <= BAR_THICKNESS) & (np.abs(v) <= 1)
    if shape == "triangle":   # apex up, base at the bottom of the bounding box
        return (v <= 1) & (v >= -1) & (np.abs(u) <= (v + 1) / 2)
    raise InputError(f"unknown shape {shape!r}; known: {SHAPES}")


def render(spec: ClipSpec) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of ``spec``, anti-aliased by supersampling."""
    s = _SUPERSAMPLE
    ys, xs = np.meshgrid((np.arange(spec.height * s) + 0.5) / s, (np.arange(spec.width * s) + 0.5) / s, indexing="ij")
    fg = np.asarray(COLOURS[spec.colour], np.float32)
    bg = np.asarray(ALL_BACKGROUNDS[spec.background], np.float32)
    out = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    for f in range(spec.frames):
        cx, cy = spec.centre(f)
        cover = _shape_mask(spec.shape, xs, ys, cx, cy, spec.size).astype(np.float32)
        cover = cover.reshape(spec.height, s, spec.width, s).mean(axis=(1, 3))[..., None]
        out[f] = np.clip(np.rint(bg + cover * (fg - bg)), 0, 255).astype(np.uint8)
    return out


def to_tensor(frames: np.ndarray):
    """uint8 (F, H, W, 3) -> float32 torch tensor (3, F, H, W) in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(video) -> np.ndarray:
    """[-1, 1] tensor (3, F, H, W) or (1, 3, F, H, W) -> uint8 (F, H, W, 3); uint8 arrays pass through."""
    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise InputError(f"uint8 frames must be (F, H, W, 3); found {video.shape}")
        return video
    import torch

    t = torch.as_tensor(video).detach().float().cpu()
    if t.dim() == 5:
        if t.shape[0] != 1:
            raise InputError(f"expected one clip, found a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 4 or t.shape[0] != 3:
        raise InputError(f"expected a video tensor (3, F, H, W) in [-1, 1]; found {tuple(t.shape)}")
    return ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


class ToyWorld:
    """A deterministic, endless source of captioned clips.

    ``ToyWorld(seed, frames=17, height=64, width=64, split="train")``; ``world[i]`` is clip ``i``.
    ``split``: "train" draws captions from the training combinations only, "heldout" from the
    held-out prompt set, "all" from both. ``geometries``: optional list of (frames, height, width)
    to draw from per clip (for aspect-ratio / duration buckets); default one geometry.
    """

    def __init__(self, seed: int = 0, frames: int = 17, height: int = 64, width: int = 64,
                 split: str = "train", geometries: Optional[Sequence[Tuple[int, int, int]]] = None,
                 prompts: Optional[Sequence[str]] = None):
        if split not in ("train", "heldout", "all"):
            raise InputError(f"split must be 'train', 'heldout' or 'all'; found {split!r}")
        self.seed, self.split = int(seed), split
        self.geometries = [tuple(g) for g in (geometries or [(frames, height, width)])]
        for g in self.geometries:
            _check_geometry(*g)
        if prompts is not None:
            for p in prompts:
                parse_caption(p)
            if not prompts:
                raise InputError("ToyWorld(prompts=...) needs at least one caption; found an empty list")
        self.prompts = (list(prompts) if prompts is not None
                        else {"train": train_prompts, "heldout": heldout_prompts, "all": all_captions}[split]())

    def spec(self, index: int) -> ClipSpec:
        rng = np.random.default_rng([self.seed, int(index), 0x70E])
        caption = self.prompts[int(rng.integers(len(self.prompts)))]
        frames, height, width = self.geometries[int(rng.integers(len(self.geometries)))]
        return make_spec(parse_caption(caption), rng, frames, height, width)

    def __getitem__(self, index: int) -> Clip:
        spec = self.spec(index)
        return Clip(render(spec), spec.caption, spec)

    def clips(self, n: int, start: int = 0) -> Iterator[Clip]:
        for i in range(start, start + n):
            yield self[i]


def clip_for_prompt(prompt: str, seed: int = 0, frames: int = 17, height: int = 64, width: int = 64) -> Clip:
    """A ground-truth clip for a given caption (used to test the evaluator)."""
    rng = np.random.default_rng([int(seed), int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "little")])
    spec = make_spec(parse_caption(prompt), rng, frames, height, width)
    return Clip(render(spec), spec.caption, spec)


def spec_dict(spec: ClipSpec) -> dict:
    d = asdict(spec)
    d["start"] = list(spec.start)
    return d
