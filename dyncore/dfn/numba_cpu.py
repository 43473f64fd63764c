"""Dynamic filtering compiled with Numba for the CPU: forward and hand-derived backward kernels.

The loops of :mod:`dyncore.dfn.loops`, reordered so that the innermost loop runs along a
contiguous image row with the zero-padding test hoisted out of it
(:func:`dyncore.geometry.shifted_row`: the row a tap reads and the columns where it stays
inside), and
parallelized with ``prange`` over *rows* of the tensor being written: iteration ``n`` owns
one row alone, so no two threads ever write the same element (deterministic, no atomics).
Rows rather than whole planes, so that even one image with one channel keeps every core busy.
The forward with ``k = 3`` goes further: the interior of each plane is one flattened run with
all nine taps per pass, in pieces shared out with groups of channels
(:func:`dynamic_filter_forward_kernel`), bit for bit the row path's sums.

With ``G = dL/d out`` and tap ``t`` at offset ``(oy, ox) = ((i - r)*d, (j - r)*d)``
(Chapter 2, "The backward pass, by hand"):

* Chapter 2, eq-dfn-grad-filters,
  ``dL/dfilters[b, t, y, x] = sum_c G[b, c, y, x] * x[b, c, y + oy, x + ox]``:
  per pixel and tap, a dot product over the channels; an iteration owns the rows ``(b, :, y)``.
* Chapter 2, eq-dfn-grad-x,
  ``dL/dx[b, c, y, x] = sum_t G[b, c, y - oy, x - ox] * filters[b, t, y - oy, x - ox]``:
  the forward read backwards, each input pixel gathering from the output pixels that read it;
  an iteration owns the row ``(b, c, y)``.
"""

import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..geometry import FLAT_RUN, flat_runs, shifted_row


@njit(cache=True, inline="always")
def _forward_row(x, filters, out, b, c, y, k, d):
    """The output row ``out[b, c, y]``, tap by tap over zero-based views of the rows (any ``k``)."""
    H, W = x.shape[2], x.shape[3]
    row = out[b, c, y]
    row[:] = 0
    for t in range(k * k):
        ys, ox, lo, hi = shifted_row(t, k, d, y, H, W, 1)
        if hi <= lo:  # the tap reads only padding
            continue
        # Zero-based views of the three rows: an index that cannot be negative needs no
        # wrap-around test, and LLVM vectorizes the loop (Chapter 7's before/after).
        o, f_row, x_row = row[lo:hi], filters[b, t, y, lo:hi], x[b, c, ys, lo + ox:hi + ox]
        for i in range(hi - lo):
            o[i] += f_row[i] * x_row[i]


@njit(cache=True, inline="always")
def _flat_pass9(o, xp, fp, lo, hi, W, d):
    """``o[j] = sum_t fp[t, j] * xp[j + oy_t W + ox_t]`` for ``j`` in ``[lo, hi)`` of a plane
    flattened to 1-D, 3 x 3 taps, all nine in one vectorizable loop, each output written once.
    The taps are added one by one in tap order, as the row path adds them, so both give equal
    outputs bit for bit."""
    oo = o[lo:hi]
    n = hi - lo
    f0, f1, f2 = fp[0, lo:hi], fp[1, lo:hi], fp[2, lo:hi]
    f3, f4, f5 = fp[3, lo:hi], fp[4, lo:hi], fp[5, lo:hi]
    f6, f7, f8 = fp[6, lo:hi], fp[7, lo:hi], fp[8, lo:hi]
    up, down = lo - d * W, lo + d * W  # the input under the first output of the top and bottom filter rows
    x0, x1, x2 = xp[up - d:up - d + n], xp[up:up + n], xp[up + d:up + d + n]
    x3, x4, x5 = xp[lo - d:lo - d + n], xp[lo:lo + n], xp[lo + d:lo + d + n]
    x6, x7, x8 = xp[down - d:down - d + n], xp[down:down + n], xp[down + d:down + d + n]
    for i in range(n):
        oo[i] = (f0[i] * x0[i] + f1[i] * x1[i] + f2[i] * x2[i] + f3[i] * x3[i] + f4[i] * x4[i]
                 + f5[i] * x5[i] + f6[i] * x6[i] + f7[i] * x7[i] + f8[i] * x8[i])


@njit(cache=True, inline="always")
def _wrapped_columns3(o, xp, fp, lo, hi, W, d):
    """(Re)compute the outputs of ``[lo, hi)`` (interior rows of a flattened plane) in the ``d``
    columns at either end of a row, where a horizontal tap of :func:`_flat_pass9` wrapped into
    the neighbouring row: each is the sum of its six taps that read inside the image, in tap
    order."""
    dW = d * W
    for y in range(lo // W, (hi - 1) // W + 1):
        for j in range(2 * d):
            p = y * W + (j if j < d else W - 2 * d + j)
            if p < lo or p >= hi:
                continue
            if j < d:  # left end: the taps at ox = -d read padding
                o[p] = (fp[1, p] * xp[p - dW] + fp[2, p] * xp[p - dW + d] + fp[4, p] * xp[p]
                        + fp[5, p] * xp[p + d] + fp[7, p] * xp[p + dW] + fp[8, p] * xp[p + dW + d])
            else:  # right end: the taps at ox = +d read padding
                o[p] = (fp[0, p] * xp[p - dW - d] + fp[1, p] * xp[p - dW] + fp[3, p] * xp[p - d]
                        + fp[4, p] * xp[p] + fp[6, p] * xp[p + dW - d] + fp[7, p] * xp[p + dW])


@njit(parallel=True, cache=True)
def dynamic_filter_forward_kernel(x, filters, out, k, d):
    """The tuned forward. In general one output row per iteration (:func:`_forward_row`). With
    ``k = 3`` (planes larger than ``2d`` each way) the interior of each plane, where no tap reads
    padding, is swept as one flattened run with all nine taps in the loop body
    (:func:`_flat_pass9`): nine passes over each short row cost a fixed start-up each and read
    and wrote the row nine times. The run is cut into pieces, and an iteration sweeps one piece
    for a group of channels of one image, whose nine rows of filter then stay in the cache
    (:func:`dyncore.geometry.flat_runs`, as DDF's forward does); the ``2d`` columns where a
    horizontal tap wrapped into the next row are redone (:func:`_wrapped_columns3`), the ``d``
    rows at the top and the bottom take the row path. Every output is the same sum, added in the
    same order, on every path: equal bit for bit to the untuned loops."""
    B, C, H, W = x.shape
    if k == 3 and H > 2 * d and W > 2 * d:
        HW = H * W
        start, stop = d * W + d, (H - d) * W - d  # every tap of these flattened outputs reads inside
        runs, group, groups = flat_runs(B, C, H, W, d)
        for n in prange(B * runs * groups):  # a run of the interiors of a group of channels
            b, rest = n // (runs * groups), n % (runs * groups)
            run, first = rest // groups, (rest % groups) * group
            lo = start + run * FLAT_RUN
            hi = min(lo + FLAT_RUN, stop)
            fp = filters[b].reshape((9, HW))
            for c in range(first, min(first + group, C)):
                o, xp = out[b, c].reshape(HW), x[b, c].reshape(HW)
                _flat_pass9(o, xp, fp, lo, hi, W, d)
                # the first and the last run also own the d outputs just outside the sweep
                _wrapped_columns3(o, xp, fp, lo - d if lo == start else lo, hi + d if hi == stop else hi, W, d)
        for n in prange(B * C * 2 * d):  # the d rows at the top and at the bottom of each plane
            b, c, i = n // (C * 2 * d), (n // (2 * d)) % C, n % (2 * d)
            _forward_row(x, filters, out, b, c, i if i < d else H - 2 * d + i, 3, d)
    else:
        for n in prange(B * C * H):  # one output row (b, c, y) per iteration
            b, c, y = n // (C * H), (n // H) % C, n % H
            _forward_row(x, filters, out, b, c, y, k, d)


@njit(parallel=True, cache=True)
def dynamic_filter_forward_simple(x, filters, out, k, d):
    """The forward before tuning, kept for Chapter 7's before/after: the same loops, but
    indexing the rows with ``xx + ox``, which Numba guards with a negative-index test that
    stops LLVM from vectorizing the innermost loop."""
    B, C, H, W = x.shape
    for n in prange(B * C * H):
        b, c, y = n // (C * H), (n // H) % C, n % H
        row = out[b, c, y]
        row[:] = 0
        for t in range(k * k):
            ys, ox, lo, hi = shifted_row(t, k, d, y, H, W, 1)
            if hi <= lo:
                continue
            f_row, x_row = filters[b, t, y], x[b, c, ys]
            for xx in range(lo, hi):
                row[xx] += f_row[xx] * x_row[xx + ox]


@njit(parallel=True, cache=True)
def dynamic_filter_grad_filters_kernel(grad_out, x, grad_filters, k, d):
    B, C, H, W = x.shape
    for n in prange(B * H):  # the rows grad_filters[b, :, y] of every tap, per iteration
        b, y = n // H, n % H
        for t in range(k * k):
            g_row = grad_filters[b, t, y]
            g_row[:] = 0
            ys, ox, lo, hi = shifted_row(t, k, d, y, H, W, 1)
            if hi <= lo:
                continue
            g = g_row[lo:hi]
            for c in range(C):  # eq-dfn-grad-filters: the filter is shared, so sum the channels
                # zero-based views, as in the forward: LLVM vectorizes the loop
                go, xr = grad_out[b, c, y, lo:hi], x[b, c, ys, lo + ox:hi + ox]
                for i in range(hi - lo):
                    g[i] += go[i] * xr[i]


@njit(parallel=True, cache=True)
def dynamic_filter_grad_input_kernel(grad_out, filters, grad_x, k, d):
    B, C, H, W = grad_x.shape
    for n in prange(B * C * H):  # one input-gradient row (b, c, y) per iteration
        b, c, y = n // (C * H), (n // H) % C, n % H
        row = grad_x[b, c, y]
        row[:] = 0
        for t in range(k * k):
            # eq-dfn-grad-x: the output row yo whose tap t read row y, at column offset -ox
            yo, mox, lo, hi = shifted_row(t, k, d, y, H, W, -1)
            if hi <= lo:
                continue
            g = row[lo:hi]  # zero-based views, as in the forward: LLVM vectorizes the loop
            go, fr = grad_out[b, c, yo, lo + mox:hi + mox], filters[b, t, yo, lo + mox:hi + mox]
            for i in range(hi - lo):
                g[i] += go[i] * fr[i]


def forward(config, x, filters):
    kernel_size, dilation = config
    out = torch.empty(x.shape, dtype=x.dtype)
    dynamic_filter_forward_kernel(numpy_view(x), numpy_view(filters), out.numpy(),
                                  kernel_size, dilation)
    return out


def forward_simple(config, x, filters):
    """Host function of :func:`dynamic_filter_forward_simple` (Chapter 7's "before")."""
    kernel_size, dilation = config
    out = torch.empty(x.shape, dtype=x.dtype)
    dynamic_filter_forward_simple(numpy_view(x), numpy_view(filters), out.numpy(),
                                  kernel_size, dilation)
    return out


def backward(config, grad_out, x, filters, needs):
    kernel_size, dilation = config
    need_x, need_filters = needs
    g = numpy_view(grad_out)
    grad_x = grad_filters = None
    if need_x:
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        dynamic_filter_grad_input_kernel(g, numpy_view(filters), grad_x.numpy(),
                                         kernel_size, dilation)
    if need_filters:
        grad_filters = torch.empty(filters.shape, dtype=filters.dtype)
        dynamic_filter_grad_filters_kernel(g, numpy_view(x), grad_filters.numpy(),
                                           kernel_size, dilation)
    return grad_x, grad_filters


DYNAMIC_FILTER = KernelSet("numba", forward, backward)
