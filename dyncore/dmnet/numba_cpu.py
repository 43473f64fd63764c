"""DMNet's context filter compiled with Numba for the CPU: forward and hand-derived backward.

The loops of :mod:`dyncore.dmnet.loops`, reordered: for each plane ``(b, c)`` and each tap
``(i, j)``, one weight ``filters[b, c, i, j]`` sweeps the whole plane, and the zero-padding
test is hoisted out of the loops (:func:`dyncore.geometry.valid_range`). The innermost loop runs over two row
*views* from index 0, ``out_row[t] += w * x_row[t]``: an index that cannot be negative lets
Numba drop its negative-index wrap-around test, and LLVM then vectorizes the loop (about 3x
faster than indexing the planes with ``xx + j - r``). ``prange`` runs over the ``B*C`` planes;
an iteration owns its plane of the output (and of ``dL/dx``) and its ``k*k`` filter gradients,
so no two threads ever write the same element (deterministic, no atomics).

Backward (Chapter 4, "The backward pass"), with ``g = dL/d out`` and tap offset
``(dy, dx) = (i - r, j - r)``:

* ``dL/dx[b, c, y, x] = sum_{i, j} filters[b, c, i, j] * g[b, c, y - dy, x - dx]``: the same
  depthwise filter, applied with every offset negated (the filter rotated by 180 degrees);
* ``dL/dfilters[b, c, i, j] = sum_{y, x} g[b, c, y, x] * x[b, c, y + dy, x + dx]``: the
  correlation of the output gradient with the input, one ``k x k`` window of it per plane.
"""

import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..geometry import valid_range


@njit(cache=True, inline="always")
def _row3(o, xr, w0, w1, w2):
    """``o[x] += w0 * xr[x - 1] + w1 * xr[x] + w2 * xr[x + 1]`` (zero outside the row): one row
    of a 3 x 3 filter in one pass, the interior over zero-based slices (vectorized)."""
    W = o.shape[0]
    if W == 1:
        o[0] += w1 * xr[0]
        return
    o[0] += w1 * xr[0] + w2 * xr[1]
    oi, xm, xc, xp = o[1:W - 1], xr[0:W - 2], xr[1:W - 1], xr[2:W]
    for t in range(W - 2):
        oi[t] += w0 * xm[t] + w1 * xc[t] + w2 * xp[t]
    o[W - 1] += w0 * xr[W - 2] + w1 * xr[W - 1]


@njit(parallel=True, cache=True)
def context_filter_forward_kernel(x, filters, out):
    """Row by row: an output row stays in L1 while the ``k`` input rows it reads are added in.

    With ``k = 3`` (the paper's setting) one pass adds a whole filter row (:func:`_row3`), so a
    row of the output is read and written 3 times instead of 9 (plane by plane, tap by tap, it
    was streamed through L2 nine times: slower than oneDNN's depthwise convolution)."""
    B, C, H, W = x.shape
    k = filters.shape[2]
    r = (k - 1) // 2
    for n in prange(B * C):  # one plane (b, c) per iteration
        b, c = n // C, n % C
        xc, plane = x[b, c], out[b, c]
        for y in range(H):
            orow = plane[y]
            orow[:] = 0
            for i in range(k):
                ys = y + i - r
                if ys < 0 or ys >= H:
                    continue  # the filter row reads padding
                if k == 3:
                    _row3(orow, xc[ys], filters[b, c, i, 0], filters[b, c, i, 1], filters[b, c, i, 2])
                    continue
                for j in range(k):
                    x_lo, x_hi = valid_range(W, W, 1, j - r)
                    w = filters[b, c, i, j]
                    out_row = orow[x_lo:x_hi]
                    x_row = xc[ys, x_lo + j - r:x_hi + j - r]
                    for t in range(out_row.shape[0]):
                        out_row[t] += w * x_row[t]


@njit(parallel=True, cache=True)
def context_filter_grad_input_kernel(grad_out, filters, grad_x):
    B, C, H, W = grad_x.shape
    k = filters.shape[2]
    r = (k - 1) // 2
    for n in prange(B * C):
        b, c = n // C, n % C
        g, plane = grad_out[b, c], grad_x[b, c]
        plane[:, :] = 0
        for i in range(k):
            y_lo, y_hi = valid_range(H, H, 1, r - i)  # pixel y receives from output row y - (i - r)
            for j in range(k):
                x_lo, x_hi = valid_range(W, W, 1, r - j)
                w = filters[b, c, i, j]
                for y in range(y_lo, y_hi):
                    gx_row = plane[y, x_lo:x_hi]
                    g_row = g[y - i + r, x_lo - j + r:x_hi - j + r]
                    for t in range(gx_row.shape[0]):
                        gx_row[t] += w * g_row[t]


# fastmath "reassoc" lets LLVM split each sum into SIMD lanes; the order it chooses is fixed at
# compile time, so the result is still the same on every run.
@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def context_filter_grad_filters_kernel(grad_out, x, grad_filters):
    B, C, H, W = x.shape
    k = grad_filters.shape[2]
    r = (k - 1) // 2
    for n in prange(B * C):  # the k*k filter gradients of plane (b, c)
        b, c = n // C, n % C
        g, xc = grad_out[b, c], x[b, c]
        for i in range(k):
            y_lo, y_hi = valid_range(H, H, 1, i - r)
            for j in range(k):
                x_lo, x_hi = valid_range(W, W, 1, j - r)
                acc = grad_filters.dtype.type(0)
                for y in range(y_lo, y_hi):
                    g_row = g[y, x_lo:x_hi]
                    x_row = xc[y + i - r, x_lo + j - r:x_hi + j - r]
                    for t in range(g_row.shape[0]):
                        acc += g_row[t] * x_row[t]
                grad_filters[b, c, i, j] = acc


def forward(config, x, filters):
    out = torch.empty(x.shape, dtype=x.dtype)
    context_filter_forward_kernel(numpy_view(x), numpy_view(filters), out.numpy())
    return out


def backward(config, grad_out, x, filters, needs):
    need_x, need_filters = needs
    g = numpy_view(grad_out)
    grad_x = grad_filters = None
    if need_x:
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        context_filter_grad_input_kernel(g, numpy_view(filters), grad_x.numpy())
    if need_filters:
        grad_filters = torch.empty(filters.shape, dtype=filters.dtype)
        context_filter_grad_filters_kernel(g, numpy_view(x), grad_filters.numpy())
    return grad_x, grad_filters


CONTEXT_FILTER = KernelSet("numba", forward, backward)
