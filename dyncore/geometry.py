"""The geometry every operator of the book shares: taps, output size, which indices stay inside.

A ``k x k`` window (``k`` odd) has taps ``t = i*k + j``, row-major, ``0 <= i, j < k``; tap ``t``
reads at the offset ``((i - r)*d, (j - r)*d)`` from the pixel the window is centred on, with
``r = (k - 1)//2`` and ``d`` the dilation, so the centre tap ``t = k*k // 2`` reads the pixel
itself (Chapter 0, "Shared conventions"). With stride ``s``, output pixel ``(yo, xo)`` is centred
on input pixel ``(yo*s, xo*s)`` and ``Ho = (H - 1)//s + 1``: the geometry of
``F.conv2d(x, w, stride=s, padding=d*r, dilation=d)``.

:func:`valid_range` is compiled by Numba and inlined into the CPU kernels, which use it to run
their innermost loops over exactly the pixels whose tap lands inside the image (zero padding
without a test per pixel).
"""

from __future__ import annotations

import torch
from numba import njit

from . import validation as V

__all__ = ["inside", "output_size", "shifted_row", "tap_at", "tap_offset", "tap_offsets", "valid_range"]


def output_size(n: int, stride: int = 1) -> int:
    """``(n - 1) // stride + 1``: the output length of a centred, zero-padded window."""
    return (n - 1) // stride + 1


def tap_offset(t: int, kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """The offset ``(oy, ox)`` at which tap ``t = i*k + j`` reads, relative to the centre pixel."""
    r = (kernel_size - 1) // 2
    i, j = divmod(t, kernel_size)
    return (i - r) * dilation, (j - r) * dilation


def tap_offsets(kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """``(k*k, 2)`` integer tensor: row ``t`` is the offset ``(oy_t, ox_t)`` at which tap ``t`` reads."""
    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    return torch.tensor([tap_offset(t, k, d) for t in range(k * k)], dtype=torch.long)


@njit(cache=True, inline="always")
def tap_at(t, k, d, y, x, sign):
    """Tap ``t = i*k + j`` of a ``k x k`` window of dilation ``d`` (or sample ``t`` of an
    ``s x s`` grid of stride ``g``) seen from pixel ``(y, x)``: with ``sign = 1`` the pixel the
    tap of ``(y, x)`` reads, ``(y + oy_t, x + ox_t)``; with ``sign = -1`` the pixel whose tap ``t``
    reads ``(y, x)``, ``(y - oy_t, x - ox_t)`` (:func:`tap_offset` gives ``(oy_t, ox_t)``). It may lie
    outside the image: :func:`inside` says."""
    r = (k - 1) // 2
    return y + sign * (t // k - r) * d, x + sign * (t % k - r) * d


@njit(cache=True, inline="always")
def inside(y, x, H, W):
    """Does pixel ``(y, x)`` lie in an ``H x W`` image? (Outside, zero padding reads zero.)"""
    return 0 <= y < H and 0 <= x < W


@njit(cache=True, inline="always")
def valid_range(n_out, n_in, stride, offset):
    """``[lo, hi)``: the output indices ``o < n_out`` whose input ``o*stride + offset`` lies in
    ``[0, n_in)``. With ``stride = 1`` and ``n_out = n_in`` this is "where a shifted tap stays
    inside"; a convolution with padding ``p`` passes ``offset - p``."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride  # ceil(-offset / stride)
    last = n_in - 1 - offset
    hi = min(n_out, last // stride + 1) if last >= 0 else 0
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def shifted_row(t, k, d, y, H, W, sign):
    """Tap ``t`` of a ``k x k`` window of dilation ``d`` (or sample ``t`` of an ``s x s`` grid of
    stride ``g``) seen from row ``y`` of an ``H x W`` image, its offset times ``sign`` (``1``:
    where the tap of the pixel on row ``y`` reads; ``-1``: which pixel's tap reads row ``y``).

    Returns ``(ys, ox, lo, hi)``: the row ``ys = y + sign*oy``, the column offset
    ``sign*ox``, and the columns ``[lo, hi)`` whose shifted column stays inside the image
    (:func:`valid_range`); ``lo == hi`` when row ``ys`` is outside it. The kernels' loop
    ``for t: ys, ox, lo, hi = shifted_row(...)`` then skips an empty range."""
    r = (k - 1) // 2
    oy, ox = sign * (t // k - r) * d, sign * (t % k - r) * d
    ys = y + oy
    if ys < 0 or ys >= H:
        return ys, ox, 0, 0
    lo, hi = valid_range(W, W, 1, ox)
    return ys, ox, lo, hi


#: The flattened interior of a plane (3 x 3 taps at stride 1, see :func:`flat_runs`) is swept in
#: runs of this many outputs, for up to :data:`CHANNEL_GROUP` channels of one image in turn: the
#: run's nine rows of per-pixel filter (9 x 64 KiB in float32) stay in the L2 cache while the
#: channels stream past them. (Tried with DDF at Table 2's size: runs of 8192 outputs measured
#: slower, of 32768 about the same.)
FLAT_RUN = 16384
#: Channels per iteration of the flattened sweep (and so per reuse of a run of the filter);
#: halved while that leaves fewer than :data:`MIN_ITERATIONS` iterations to share among the
#: threads, down to one channel.
CHANNEL_GROUP = 16
MIN_ITERATIONS = 32


@njit(cache=True, inline="always")
def flat_runs(B, C, H, W, d):
    """How the fused 3 x 3 kernels (DFN's and DDF's forward, DDF's input gradient) cut the
    flattened interiors of ``B x C`` planes of ``H x W`` at dilation ``d`` into parallel work:
    ``(runs per plane, channels per group, groups)``.

    The interior is the plane flattened to 1-D from ``(d, d)`` to ``(H-d-1, W-d-1)``, where
    every tap of a 3 x 3 window reads inside the image (``H`` and ``W`` larger than ``2d``); it
    is cut into runs of :data:`FLAT_RUN` elements, and one iteration sweeps one run for a group
    of up to :data:`CHANNEL_GROUP` channels of one image."""
    runs = ((H - 2 * d) * W - 2 * d + FLAT_RUN - 1) // FLAT_RUN
    group = CHANNEL_GROUP
    while group > 1 and B * runs * ((C + group - 1) // group) < MIN_ITERATIONS:
        group //= 2
    return runs, group, (C + group - 1) // group
