"""A loss curve drawn with numpy alone (no plotting library): axes box, light grid, the raw
loss as a thin polyline, its EMA-smoothed curve on top, and a few labels in a built-in 5×7
pixel font.

    image = render_loss_plot(losses)        # (H, W, 3) uint8, white background
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

Color = Tuple[int, int, int]
BACKGROUND: Color = (255, 255, 255)
AXES: Color = (60, 60, 60)
GRID: Color = (228, 228, 228)
RAW: Color = (150, 185, 230)
SMOOTH: Color = (20, 70, 170)

# 5×7 glyphs, one string per row, '#' = ink. Only what the labels need.
_FONT = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "l": (".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "o": (".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "m": (".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"),
    "a": (".....", ".....", ".###.", "....#", ".####", "#...#", ".####"),
    "t": (".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."),
    "p": (".....", ".....", "####.", "#...#", "####.", "#....", "#...."),
    " ": (".....",) * 7,
}
_GLYPHS = {c: np.array([[ch == "#" for ch in row] for row in rows]) for c, rows in _FONT.items()}


def ema(values: Sequence[float], decay: float) -> np.ndarray:
    """Bias-corrected exponential moving average (the first value is not pulled towards 0).
    Non-finite values are skipped (the average carries over them)."""
    out = np.empty(len(values), dtype=np.float64)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            avg = decay * avg + (1 - decay) * v
            weight = decay * weight + (1 - decay)
        out[i] = avg / weight if weight > 0 else float("nan")
    return out


def auto_decay(n: int) -> float:
    """Smoothing that grows with the run: none for a handful of steps, 0.9 at 100, 0.99 at 1000+."""
    return float(min(0.99, max(0.0, 1.0 - 10.0 / max(n, 1))))


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * 6 * scale - scale if text else 0


def draw_text(img: np.ndarray, x: int, y: int, text: str, color: Color, scale: int = 1) -> None:
    """Write ``text`` with its top-left corner at (x, y); characters the font lacks are blanks."""
    for i, ch in enumerate(text):
        glyph = _GLYPHS.get(ch)
        if glyph is None:
            continue
        mask = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        x0 = x + i * 6 * scale
        _blit(img, x0, y, mask, color)


def _blit(img: np.ndarray, x: int, y: int, mask: np.ndarray, color: Color) -> None:
    h, w = mask.shape
    H, W = img.shape[:2]
    ys, xs = slice(max(y, 0), min(y + h, H)), slice(max(x, 0), min(x + w, W))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    sub = mask[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
    img[ys, xs][sub] = color


def draw_polyline(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Color, thickness: int = 1) -> None:
    """Connect consecutive finite points (x, y in pixels); a non-finite point breaks the line."""
    H, W = img.shape[:2]
    ok = np.isfinite(xs) & np.isfinite(ys)
    px, py = [], []
    for i in range(len(xs)):
        if not ok[i]:
            continue
        if i + 1 < len(xs) and ok[i + 1]:
            n = int(max(abs(xs[i + 1] - xs[i]), abs(ys[i + 1] - ys[i]))) + 2
            px.append(np.linspace(xs[i], xs[i + 1], n))
            py.append(np.linspace(ys[i], ys[i + 1], n))
        else:   # an isolated point
            px.append(np.array([xs[i]]))
            py.append(np.array([ys[i]]))
    if not px:
        return
    x = np.rint(np.concatenate(px)).astype(np.int64)
    y = np.rint(np.concatenate(py)).astype(np.int64)
    lo = -(thickness // 2)
    for dy in range(lo, lo + thickness):
        for dx in range(lo, lo + thickness):
            xx, yy = x + dx, y + dy
            keep = (xx >= 0) & (xx < W) & (yy >= 0) & (yy < H)
            img[yy[keep], xx[keep]] = color


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+")


def render_loss_plot(losses: Sequence[float], width: int = 512, height: int = 320,
                     smoothing: Optional[float] = None) -> np.ndarray:
    """The loss curve of a training run as an (height, width, 3) uint8 image.

    x is the step (1 … len(losses)), y the loss on a linear scale spanning the finite values;
    the raw losses are drawn thin and light, their EMA (``smoothing`` = decay; None picks one
    from the run length, see :func:`auto_decay`) thick and dark. Labels: the y range, the last
    step, and a legend. An empty list gives the empty axes."""
    if width < 64 or height < 48:
        raise ValueError(f"loss plot needs at least 64x48 pixels, got {width}x{height}")
    values = np.asarray([float(v) for v in losses], dtype=np.float64)
    scale = max(1, min(width, height) // 300)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = BACKGROUND

    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    labels = (_fmt(hi), _fmt(lo))
    left = 6 * scale + max(text_width(t, scale) for t in labels) + 4 * scale
    right, top = width - 8 * scale, 8 * scale + 7 * scale + 6 * scale
    bottom = height - (7 * scale + 10 * scale)
    if right - left < 16 or bottom - top < 16:
        left, right, top, bottom = 2, width - 3, 2, height - 3
        labels = None

    # grid, box, ticks
    for k in range(1, 4):
        y = round(top + (bottom - top) * k / 4)
        img[y, left + 1:right] = GRID
    img[top, left:right + 1] = AXES
    img[bottom, left:right + 1] = AXES
    img[top:bottom + 1, left] = AXES
    img[top:bottom + 1, right] = AXES

    n = len(values)
    if n:
        span = max(n - 1, 1)
        xs = left + 1 + (np.arange(n) / span) * (right - left - 2) if n > 1 else np.full(1, (left + right) / 2)

        def to_y(v: np.ndarray) -> np.ndarray:
            return bottom - 1 - (v - lo) / (hi - lo) * (bottom - top - 2)

        draw_polyline(img, xs, to_y(values), RAW, thickness=scale)
        decay = auto_decay(n) if smoothing is None else float(smoothing)
        draw_polyline(img, xs, to_y(ema(values, decay)), SMOOTH, thickness=2 * scale)

    if labels is not None:
        ink = AXES
        draw_text(img, left - 4 * scale - text_width(labels[0], scale), top, labels[0], ink, scale)
        draw_text(img, left - 4 * scale - text_width(labels[1], scale), bottom - 7 * scale, labels[1], ink, scale)
        under = bottom + 5 * scale
        draw_text(img, left, under, "1" if n else "0", ink, scale)
        last = f"step {n}"
        draw_text(img, right - text_width(last, scale), under, last, ink, scale)
        # legend above the box: a swatch and a word per curve
        x = left
        for word, color, thick in (("loss", RAW, scale), ("ema", SMOOTH, 2 * scale)):
            mid = 8 * scale + 3 * scale
            img[mid - thick // 2: mid - thick // 2 + thick, x:x + 14 * scale] = color
            x += 18 * scale
            draw_text(img, x, 8 * scale, word, ink, scale)
            x += text_width(word, scale) + 14 * scale
    return img
