"""The numpy loss-plot rasterizer: image layout, both curves, EMA, odd inputs."""
import math

import numpy as np
import pytest

from hyvideo_core.finetune.loss_plot import (BACKGROUND, RAW, SMOOTH, auto_decay, draw_text, ema, render_loss_plot,
                                             text_width)


def _mask(img, color):
    return np.all(img == np.array(color, dtype=np.uint8), axis=-1)


def _curve_rows(img, color):
    """Row of the curve in the leftmost and rightmost quarter of the plot (mean over columns)."""
    ys, xs = np.nonzero(_mask(img, color)[30:])          # below the legend
    ys = ys + 30
    left, right = xs.min(), xs.max()
    q = (right - left) // 4
    return ys[xs < left + q].mean(), ys[xs > right - q].mean()


def test_decreasing_loss_is_drawn_from_top_left_to_bottom_right():
    rng = np.random.default_rng(0)
    losses = 1.0 * np.exp(-np.arange(200) / 60) + 0.2 + 0.05 * rng.standard_normal(200)
    img = render_loss_plot(losses, width=400, height=260)
    assert img.shape == (260, 400, 3) and img.dtype == np.uint8
    assert tuple(img[-1, -1]) == BACKGROUND
    for color in (RAW, SMOOTH):
        first, last = _curve_rows(img, color)
        assert first < last - 60, (color, first, last)       # row grows downwards: loss went down
    assert _mask(img, SMOOTH).sum() > 400                     # the thick EMA line is there
    assert np.array_equal(img, render_loss_plot(losses, width=400, height=260))   # deterministic


def test_ema_is_bias_corrected_and_skips_non_finite_values():
    assert np.allclose(ema([2.0, 2.0, 2.0], 0.9), [2.0, 2.0, 2.0])
    out = ema([1.0, float("nan"), 3.0], 0.5)
    assert out[0] == 1.0 and out[1] == 1.0 and math.isclose(out[2], (0.25 * 1 + 0.5 * 3) / 0.75)
    assert np.array_equal(ema([1.0, 2.0], 0.0), [1.0, 2.0])
    assert auto_decay(3) == 0.0 and math.isclose(auto_decay(100), 0.9) and auto_decay(10 ** 6) == 0.99


@pytest.mark.parametrize("losses", [[], [0.5], [0.3, 0.3, 0.3], [0.4, float("nan"), float("inf"), 0.2]],
                         ids=["empty", "one", "constant", "non-finite"])
def test_odd_inputs_still_give_a_picture(losses):
    img = render_loss_plot(losses, width=200, height=120)
    assert img.shape == (120, 200, 3)
    curve = _mask(img, SMOOTH)[25:].sum()
    assert (curve == 0) if not losses else (curve > 0)


def test_text_and_size_limits():
    img = np.zeros((10, 40, 3), np.uint8)
    draw_text(img, 1, 1, "0.5e-3", (255, 255, 255))
    assert img.any() and text_width("0.5e-3") == 35
    draw_text(img, 38, 8, "loss", (255, 255, 255))            # clipped at the border, no error
    with pytest.raises(ValueError, match="at least"):
        render_loss_plot([1.0], width=32, height=32)
