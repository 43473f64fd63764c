"""Plotting helpers shared by the chapters (matplotlib only)."""

from __future__ import annotations

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
        _, ax = plt.subplots(figsize=(0.45 * W + 1, 0.45 * H + 0.6))
    ax.imshow(block, cmap="tab20", interpolation="nearest")
    for y in range(H):
        for x in range(W):
            ax.text(x, y, str(n[y, x] % threads_per_block), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.set_xlabel("xo")
    ax.set_ylabel("yo")
    ax.set_title(title or f"colour = block, number = thread (blockDim {threads_per_block})", fontsize=9)
    return ax
