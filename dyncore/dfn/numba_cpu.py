"""Dynamic filtering compiled with Numba for the CPU: forward and hand-derived backward kernels.

The loops of :mod:`dyncore.dfn.loops`, reordered so that the innermost loop runs along a
contiguous image row with the zero-padding test hoisted out of it
(:func:`dyncore.geometry.shifted_row`: the row a tap reads and the columns where it stays
inside), and
parallelized with ``prange`` over *rows* of the tensor being written: iteration ``n`` owns
one row alone, so no two threads ever write the same element (deterministic, no atomics).
Rows rather than whole planes, so that even one image with one channel keeps every core busy.

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
from ..geometry import shifted_row


@njit(parallel=True, cache=True)
def dynamic_filter_forward_kernel(x, filters, out, k, d):
    B, C, H, W = x.shape
    for n in prange(B * C * H):  # one output row (b, c, y) per iteration
        b, c, y = n // (C * H), (n // H) % C, n % H
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
