"""Helpers added for Chapter 1: ``plotting.tap_grid`` and ``plotting.plot_erf``."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dyncore.plotting import plot_erf, tap_grid  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("k,d", [(1, 1), (3, 1), (3, 2), (5, 3)])
def test_tap_grid_labels_every_tap_at_its_offset(k, d):
    ax = tap_grid(k, d)
    r = (k - 1) // 2
    labels = {int(t.get_text()): t.get_position() for t in ax.texts}
    assert sorted(labels) == list(range(k * k))
    for i in range(k):
        for j in range(k):
            x, y = labels[i * k + j]
            assert (y, x) == ((i - r) * d, (j - r) * d)  # row offset is y, column offset is x
    # the image covers the dilated kernel plus the margin on each side
    half = r * d + 1
    assert ax.images[0].get_array().shape == (2 * half + 1, 2 * half + 1)
    # the centre tap is marked differently from the other taps
    grid = np.asarray(ax.images[0].get_array())
    assert grid[half, half] > grid.max() / 2 and (k == 1 or grid[half - d, half - d] < grid[half, half])


@pytest.mark.parametrize("bad", [0, 2, -3])
def test_tap_grid_rejects_even_or_nonpositive_kernel(bad):
    with pytest.raises(ValueError, match="kernel_size"):
        tap_grid(bad)


def test_tap_grid_rejects_bad_dilation():
    with pytest.raises(ValueError, match="dilation"):
        tap_grid(3, 0)


def test_plot_erf_outlines_the_theoretical_field():
    erf = torch.zeros(11, 11)
    erf[3:8, 3:8] = 1 / 25
    ax = plot_erf(erf, rf=5, title="t")
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 1
    (x0, y0), w, h = rects[0].get_xy(), rects[0].get_width(), rects[0].get_height()
    # pixel centres are integers: a 5-wide field around pixel 5 spans 2.5 .. 7.5
    assert (x0, y0, w, h) == (2.5, 2.5, 5, 5)
    assert ax.get_title() == "t"


def test_plot_erf_log_scale_blanks_zeros():
    erf = np.zeros((5, 5))
    erf[2, 2] = 1.0
    erf[2, 3] = 0.01
    ax = plot_erf(erf, log=True, colorbar=False)
    shown = np.ma.filled(ax.images[0].get_array(), np.nan)
    assert shown[2, 2] == 0.0 and shown[2, 3] == pytest.approx(-2.0)
    assert np.isnan(shown[0, 0])


def test_plot_erf_rejects_non_maps():
    with pytest.raises(ValueError, match="2-D"):
        plot_erf(np.zeros((2, 3, 3)))
