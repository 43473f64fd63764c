"""Plotting helpers shared by the chapters (matplotlib only)."""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _to_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def imshow_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int | None = None,
                cmap: str = "gray", size: float = 2.2, suptitle: str | None = None,
                colorbar: bool = False, symmetric: bool = False):
    """Show 2-D arrays (or tensors) side by side; returns the figure.

    ``symmetric=True`` centres a diverging colour map on zero (for filters and gradients).
    """
    n = len(images)
    ncols = ncols or min(n, 6)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = _to_numpy(images[k])
        kw = {"cmap": cmap}
        if symmetric:
            m = float(np.abs(img).max()) or 1.0
            kw.update(cmap="RdBu_r", vmin=-m, vmax=m)
        im = ax.imshow(img, **kw)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_curves(curves: Mapping[str, Sequence[float]], xlabel: str = "step", ylabel: str = "",
                logy: bool = False, title: str | None = None, ax=None):
    """Line plot of named sequences (loss curves, scaling curves); returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, ys in curves.items():
        ax.plot(_to_numpy(ys), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def thread_map(shape: tuple[int, int], threads_per_block: int, ax=None, title: str | None = None):
    """Draw which thread and block of a 1-D CUDA grid owns each element of an ``(H, W)`` plane.

    Element ``(y, x)`` gets linear index ``n = y*W + x``; it belongs to block
    ``n // threads_per_block`` and is thread ``n % threads_per_block`` of it.
    """
    H, W = shape
    n = np.arange(H * W).reshape(H, W)
    block = n // threads_per_block
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * W + 1, 0.6 * H + 0.8))
    ax.imshow(block, cmap="tab20", interpolation="nearest")
    # The numbers fill about half a cell, and never drop below 8 pt: give the axes room
    # (about 0.25 in per cell) rather than shrink them.
    ax.figure.canvas.draw_idle()
    box = ax.get_window_extent()
    cell_pt = min(box.width / W, box.height / H) * 72 / ax.figure.dpi
    size = max(8.0, min(12.0, 0.45 * cell_pt))
    for y in range(H):
        for x in range(W):
            ax.text(x, y, str(n[y, x] % threads_per_block), ha="center", va="center", fontsize=size)
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.set_xlabel("xo")
    ax.set_ylabel("yo")
    ax.set_title(title or f"colour = block, number = thread (blockDim {threads_per_block})", fontsize=9)
    return ax


def tap_grid(kernel_size: int, dilation: int = 1, ax=None, title: str | None = None, margin: int = 1):
    """Draw the taps of a ``k x k`` kernel with dilation ``d`` on the input pixels around a centre.

    Tap ``t = i*k + j`` sits at offset ``((i - r)*d, (j - r)*d)`` from the centre pixel, with
    ``r = (k - 1) // 2`` (the book's convention, contract.md); each tap's square shows ``t``,
    the centre tap is highlighted, and pixels no tap reads stay white. ``margin`` adds that
    many untouched pixels on each side. Returns the axes.
    """
    from . import validation as V

    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    m = V.check_nonnegative_int("margin", margin)
    r = (k - 1) // 2
    half = r * d + m
    side = 2 * half + 1
    grid = np.zeros((side, side))
    if ax is None:
        _, ax = plt.subplots(figsize=(0.32 * side + 1.2, 0.32 * side + 1.0))
    for i in range(k):
        for j in range(k):
            oy, ox = (i - r) * d, (j - r) * d
            grid[oy + half, ox + half] = 2 if (i == r and j == r) else 1
            ax.text(ox, oy, str(i * k + j), ha="center", va="center",
                    fontsize=8)
    extent = (-half - 0.5, half + 0.5, half + 0.5, -half - 0.5)
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=3.2, extent=extent, interpolation="nearest")
    ticks = range(-half, half + 1)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticks(np.arange(-half - 0.5, half + 1), minor=True)
    ax.set_yticks(np.arange(-half - 0.5, half + 1), minor=True)
    ax.grid(which="minor", color="0.8", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelsize=8)
    ax.set_xlabel("column offset  (j - r) d")
    ax.set_ylabel("row offset  (i - r) d")
    ax.set_title(title or f"taps t = i*k + j, k = {k}, d = {d}", fontsize=9)
    return ax


def plot_erf(erf, rf: int | None = None, ax=None, title: str | None = None, log: bool = False,
             colorbar: bool = True):
    """Show an effective-receptive-field map (e.g. from ``effective_receptive_field``).

    ``rf`` outlines the theoretical receptive field, a centred ``rf x rf`` square (the centre
    is pixel ``(H // 2, W // 2)``, as in ``effective_receptive_field``). ``log=True`` shows
    ``log10`` of the map (zeros stay blank), which makes the faint tails visible. Returns the axes.
    """
    erf = _to_numpy(erf).astype(float)
    if erf.ndim != 2:
        raise ValueError(f"erf must be a 2-D map (H, W); got shape {erf.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.0))
    if log:
        shown = np.full_like(erf, np.nan)
        positive = erf > 0
        shown[positive] = np.log10(erf[positive])
        label = "log10 |d out[centre] / d x| (share)"
    else:
        shown, label = erf, "|d out[centre] / d x| (share)"
    im = ax.imshow(shown, cmap="magma", interpolation="nearest")
    if rf is not None:
        from matplotlib.patches import Rectangle

        H, W = erf.shape
        half = rf / 2
        ax.add_patch(Rectangle((W // 2 - half, H // 2 - half), rf, rf, fill=False,
                               edgecolor="tab:cyan", linewidth=1.2, linestyle="--",
                               label=f"theoretical RF {rf} x {rf}"))
        ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
    return ax


def interact(function, /, **controls):
    """``ipywidgets.interact``, shown once: the live widget, with a static copy of its figure.

    ``interact(draw, k=IntSlider(3, 1, 7))`` draws ``draw(k=3)`` and shows the sliders. The
    output carries two forms of the same thing: the widget (JupyterLab shows it, sliders and
    figure, and redraws as they move) and a PNG of the figure for the initial values (what the
    HTML book shows, where there is no kernel to redraw; book/_config.yml ranks the widget view
    below images for the HTML pages). ``ipywidgets.interact`` followed by a static call would
    show the figure twice in JupyterLab.
    """
    import ipywidgets as widgets
    from IPython.display import display
    from IPython.utils.capture import capture_output

    if not callable(function):
        raise TypeError(f"function must be callable, got {type(function).__name__}")
    # The widget runs its function once when it is built; that first run is skipped, and the
    # function is called here instead, with the same values, its outputs captured: they go both
    # into the widget's output area and into the static copy.
    first = {"pending": True, "kwargs": None}

    @functools.wraps(function)
    def run(**kwargs):
        if first["pending"]:
            first["pending"], first["kwargs"] = False, kwargs
            return None
        return function(**kwargs)

    live = widgets.interactive(run, **controls)
    with capture_output() as captured:
        function(**first["kwargs"])
    outputs = [{"output_type": "stream", "name": "stdout", "text": captured.stdout}] if captured.stdout else []
    outputs += [{"output_type": "display_data", "data": o.data, "metadata": o.metadata} for o in captured.outputs]
    live.out.outputs = tuple(outputs)
    bundle = {
        "application/vnd.jupyter.widget-view+json": {
            "model_id": live.model_id, "version_major": 2, "version_minor": 0},
        "text/plain": f"interactive {getattr(function, '__name__', 'figure')} "
                      "(run the notebook to move the controls)",
    }
    images = [o.data for o in captured.outputs if "image/png" in o.data]
    metadata = {}
    if images:
        bundle["image/png"] = images[-1]["image/png"]
        png_meta = [o.metadata for o in captured.outputs if "image/png" in o.data][-1]
        if png_meta:
            metadata = {"image/png": png_meta.get("image/png", png_meta)}
    display(bundle, raw=True, metadata=metadata)
