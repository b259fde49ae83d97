"""The yardstick: does a clip show what its toy-world prompt says?

Pure image analysis, no learned model:

* **background**: median colour of the frame borders, nearest background of the palette;
* **colour**: median colour of the pixels far from the background, nearest palette colour;
* **shape**: from a soft coverage map (how far each pixel has moved from the background
  towards the foreground colour): the aspect ratio of the soft bounding box (bar 2.5, pillar 0.4,
  circle and triangle 1), then the vertical offset of the area centroid from the box centre
  (a triangle, apex up, is bottom-heavy by 1/6 of its height, a circle is centred);
* **direction** and **speed**: least-squares slope of the centroid track over the clip.

``score_clip(video, prompt)`` returns a :class:`ClipScore` with the predicted attributes, the
per-attribute hits and ``adherence`` = fraction of the five attributes hit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .world import (ALL_BACKGROUNDS, ATTRIBUTES, BACKGROUNDS, BAR_THICKNESS, COLOURS, DIRECTIONS, SHAPES, SPEEDS,
                    parse_caption, to_uint8)

# Decision thresholds (midpoints between the ideal feature values of the world's shapes).
ASPECT_SPLIT = float(np.sqrt(1 / BAR_THICKNESS))   # bar 2.5 | circle/triangle 1 | pillar 0.4 (geometric midpoints)
TRIANGLE_OFFSET = 0.08      # triangle +1/6 | circle 0
MIN_TRAVEL = 0.08           # below this fraction of the frame edge the shape is "still"
SPEED_SPLIT = float(np.mean(list(SPEEDS.values())))


@dataclass
class ClipScore:
    expected: Dict[str, str]
    predicted: Dict[str, Optional[str]]
    hits: Dict[str, bool]
    features: Dict[str, float] = field(default_factory=dict)

    @property
    def adherence(self) -> float:
        return float(np.mean([self.hits[a] for a in ATTRIBUTES]))

    @property
    def all_correct(self) -> bool:
        return all(self.hits.values())


def _nearest(rgb: np.ndarray, palette: Dict[str, tuple]) -> str:
    names = list(palette)
    d = [float(np.sum((rgb - np.asarray(palette[n], np.float32)) ** 2)) for n in names]
    return names[int(np.argmin(d))]


def analyse(video) -> Dict[str, object]:
    """Predicted attributes (and the raw features) of a clip: uint8 (F, H, W, 3) or a [-1, 1]
    tensor (3, F, H, W) / (1, 3, F, H, W)."""
    from scipy import ndimage

    frames = to_uint8(video).astype(np.float32)
    n, h, w, _ = frames.shape
    border = np.concatenate([frames[:, 0].reshape(-1, 3), frames[:, -1].reshape(-1, 3),
                             frames[:, :, 0].reshape(-1, 3), frames[:, :, -1].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    pred: Dict[str, Optional[str]] = {a: None for a in ATTRIBUTES}
    pred["background"] = _nearest(bg, ALL_BACKGROUNDS)
    feats: Dict[str, float] = {}

    dist = np.linalg.norm(frames - bg, axis=-1)
    strong = dist > max(40.0, 0.5 * float(np.percentile(dist, 99.5)))
    if strong.sum() < 4:
        return {"predicted": pred, "features": feats}
    fg = np.median(frames[strong], axis=0)
    pred["colour"] = _nearest(fg, COLOURS)
    span = fg - bg
    cov = np.clip(((frames - bg) @ span) / max(float(span @ span), 1e-6), 0.0, 1.0)

    aspects, offsets, xs, ys, ts = [], [], [], [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for f in range(n):
        labels, count = ndimage.label(cov[f] > 0.5)
        if count == 0:
            continue
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
        core = labels == (1 + int(np.argmax(sizes)))
        if core.sum() < 4:
            continue
        region = ndimage.binary_dilation(core, iterations=2)
        c = cov[f] * region
        area = float(c.sum())
        col, row = c.max(axis=0), c.max(axis=1)
        bw, bh = float(col.sum()), float(row.sum())
        cx, cy = float((c * xx).sum() / area), float((c * yy).sum() / area)
        ey = float((row * np.arange(h)).sum() / max(bh, 1e-6))
        aspects.append(bw / max(bh, 1e-6))
        offsets.append((cy - ey) / max(bh, 1e-6))
        xs.append(cx)
        ys.append(cy)
        ts.append(f)
    if len(ts) < 2:
        return {"predicted": pred, "features": feats}
    aspect, offset = float(np.median(aspects)), float(np.median(offsets))
    feats.update(aspect=aspect, offset=offset)
    if aspect >= ASPECT_SPLIT:
        pred["shape"] = "bar"
    elif aspect <= 1 / ASPECT_SPLIT:
        pred["shape"] = "pillar"
    else:
        pred["shape"] = "triangle" if offset > TRIANGLE_OFFSET else "circle"

    t = np.asarray(ts, np.float32) / max(1, n - 1)
    vx = float(np.polyfit(t, xs, 1)[0]) / w       # travel over the whole clip, in frame widths
    vy = float(np.polyfit(t, ys, 1)[0]) / h
    feats.update(travel_x=vx, travel_y=vy)
    travel = max(abs(vx), abs(vy))
    if travel >= MIN_TRAVEL:
        if abs(vx) >= abs(vy):
            pred["direction"] = "right" if vx > 0 else "left"
        else:
            pred["direction"] = "down" if vy > 0 else "up"
        pred["speed"] = "quickly" if travel > SPEED_SPLIT else "slowly"
    return {"predicted": pred, "features": feats}


def score_clip(video, prompt: str) -> ClipScore:
    expected = parse_caption(prompt)
    result = analyse(video)
    pred = result["predicted"]
    hits = {a: pred[a] == expected[a] for a in ATTRIBUTES}
    return ClipScore(expected, pred, hits, result["features"])


@dataclass
class AdherenceSummary:
    n: int
    adherence: float                 # mean fraction of attributes hit
    all_correct: float               # fraction of clips with every attribute right
    per_attribute: Dict[str, float]  # accuracy per attribute

    def lines(self) -> List[str]:
        per = ", ".join(f"{a} {100 * v:.0f}%" for a, v in self.per_attribute.items())
        return [f"prompt adherence: {100 * self.adherence:.1f}% of attributes over {self.n} clips "
                f"({100 * self.all_correct:.1f}% of clips fully correct)", f"  per attribute: {per}"]


def summarise(scores: Sequence[ClipScore]) -> AdherenceSummary:
    if not scores:
        return AdherenceSummary(0, 0.0, 0.0, {a: 0.0 for a in ATTRIBUTES})
    return AdherenceSummary(
        n=len(scores),
        adherence=float(np.mean([s.adherence for s in scores])),
        all_correct=float(np.mean([s.all_correct for s in scores])),
        per_attribute={a: float(np.mean([s.hits[a] for s in scores])) for a in ATTRIBUTES})


def chance_adherence() -> float:
    """Expected adherence of a clip scored against a random prompt (uniform attributes)."""
    sizes = [len(COLOURS), len(SHAPES), len(DIRECTIONS), len(SPEEDS), len(BACKGROUNDS)]
    return float(np.mean([1.0 / s for s in sizes]))
