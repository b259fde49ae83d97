"""The toy world as a training clip source: ``toy:N[:SEED]`` = N generated captioned clips.

The one reader of that spelling (:func:`open_clip_source`, :func:`parse_toy_source`), for
``python -m hyvideo_core.finetune cache --source`` and the Cache Dataset node. The trainer takes any
iterable of :class:`~hyvideo_core.finetune.data.RawClip` and knows nothing of the toy world.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from ..errors import InputError
from ..finetune.data import Bucket, ClipSource, RawClip, folder_source
from .world import ToyWorld

PREFIX = "toy:"
_SPEC = re.compile(r"toy:([1-9]\d*)(?::(\d+))?")


def toy_clips(n: int, seed: int = 0, geometries: Optional[Sequence[Bucket]] = None,
              split: str = "train") -> Iterator[RawClip]:
    """The first ``n`` clips of the toy world ``seed`` (ids ``toy<seed>_<index>``), rendered at
    ``geometries`` (frames, height, width) or the world's default sizes."""
    world = ToyWorld(seed, split=split, geometries=geometries)
    for i in range(n):
        clip = world[i]
        yield RawClip(f"toy{seed}_{i:06d}", clip.frames, clip.caption)


@dataclass(frozen=True)
class ToyClipSource:
    """A parsed ``toy:N[:SEED]``."""

    count: int
    seed: int = 0

    def clips(self, geometries: Optional[Sequence[Bucket]] = None) -> Iterator[RawClip]:
        return toy_clips(self.count, self.seed, geometries)


def parse_toy_source(spec: str) -> Optional[ToyClipSource]:
    """``toy:N`` / ``toy:N:SEED`` -> :class:`ToyClipSource`; None for anything not starting with
    ``toy:`` (a dataset folder); a clear error for a malformed ``toy:`` spelling."""
    spec = spec.strip()
    if not spec.startswith(PREFIX):
        return None
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise InputError(f"dataset {spec!r}: generated toy-world clips are written toy:N or toy:N:SEED with N >= 1 "
                         f"(e.g. toy:8 or toy:8:3)")
    return ToyClipSource(int(m.group(1)), int(m.group(2) or 0))


def open_clip_source(spec: str, geometries: Optional[Sequence[Bucket]] = None) -> ClipSource:
    """A dataset as the command line and the node spell it: ``toy:N[:SEED]`` (generated clips at
    ``geometries``) or a folder of videos with ``.txt`` captions."""
    toy = parse_toy_source(spec)
    return toy.clips(geometries) if toy is not None else folder_source(spec)
