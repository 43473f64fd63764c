"""DMNet's context filter compiled with Numba for the CPU: forward and hand-derived backward.

The loops of :mod:`dyncore.dmnet.loops`, reordered: for each plane ``(b, c)``, output row by
output row, each tap ``(i, j)``'s weight sweeps the input row it reads (with ``k = 3``, all
nine in one pass over three rows), and the zero-padding test is hoisted out of the loops
(:func:`dyncore.geometry.valid_range`). The innermost loop runs over two row
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

Both are computed in one pass over ``g`` (:func:`context_filter_backward_kernel`).
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


@njit(cache=True, inline="always")
def _rows3x3(o, xa, xb, xc, w):
    """``o[x] = sum_{i, j} w[i, j] * (xa, xb, xc)[i][x + j - 1]`` (zero outside the rows): a
    whole 3 x 3 filter in one pass, for an output row whose three input rows are all inside.
    Nine loads and one store per element, against twelve and three for three :func:`_row3`."""
    W = o.shape[0]
    if W == 1:
        o[0] = w[0, 1] * xa[0] + w[1, 1] * xb[0] + w[2, 1] * xc[0]
        return
    w00, w01, w02, w10, w11, w12 = w[0, 0], w[0, 1], w[0, 2], w[1, 0], w[1, 1], w[1, 2]
    w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    o[0] = w01 * xa[0] + w02 * xa[1] + w11 * xb[0] + w12 * xb[1] + w21 * xc[0] + w22 * xc[1]
    oi = o[1:W - 1]
    am, ac, ap = xa[0:W - 2], xa[1:W - 1], xa[2:W]
    bm, bc, bp = xb[0:W - 2], xb[1:W - 1], xb[2:W]
    cm, cc, cp = xc[0:W - 2], xc[1:W - 1], xc[2:W]
    for t in range(W - 2):
        oi[t] = (w00 * am[t] + w01 * ac[t] + w02 * ap[t] + w10 * bm[t] + w11 * bc[t]
                 + w12 * bp[t] + w20 * cm[t] + w21 * cc[t] + w22 * cp[t])
    o[W - 1] = (w00 * xa[W - 2] + w01 * xa[W - 1] + w10 * xb[W - 2] + w11 * xb[W - 1]
                + w20 * xc[W - 2] + w21 * xc[W - 1])


@njit(cache=True, inline="always")
def _filter_row(orow, src, w, y):
    """Row ``y`` of the ``k x k`` filter ``w`` applied to the plane ``src``, zero-padded:
    ``orow[x] = sum_{i, j} w[i, j] * src[y + i - r, x + j - r]``. With ``k = 3`` an interior
    row is one pass over its three input rows (:func:`_rows3x3`); a border row adds its
    filter rows one pass each (:func:`_row3`)."""
    H, W = src.shape
    k = w.shape[0]
    r = (k - 1) // 2
    if k == 3 and 0 < y < H - 1:
        _rows3x3(orow, src[y - 1], src[y], src[y + 1], w)
        return
    orow[:] = 0
    for i in range(k):
        ys = y + i - r
        if ys < 0 or ys >= H:
            continue  # the filter row reads padding
        if k == 3:
            _row3(orow, src[ys], w[i, 0], w[i, 1], w[i, 2])
            continue
        for j in range(k):
            x_lo, x_hi = valid_range(W, W, 1, j - r)
            wij = w[i, j]
            out_row = orow[x_lo:x_hi]
            x_row = src[ys, x_lo + j - r:x_hi + j - r]
            for t in range(out_row.shape[0]):
                out_row[t] += wij * x_row[t]


@njit(parallel=True, cache=True)
def context_filter_forward_kernel(x, filters, out):
    """Row by row: an output row stays in L1 while the ``k`` input rows it reads are added in
    (:func:`_filter_row`). With ``k = 3`` (the paper's setting) an interior row is written in
    one pass over its three input rows; plane by plane, tap by tap, the output was streamed
    through L2 nine times, slower than oneDNN's depthwise convolution."""
    B, C, H = x.shape[0], x.shape[1], x.shape[2]
    for n in prange(B * C):  # one plane (b, c) per iteration
        b, c = n // C, n % C
        xc, plane, w = x[b, c], out[b, c], filters[b, c]
        for y in range(H):
            _filter_row(plane[y], xc, w, y)


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _dot3(gr, xr):
    """``(sum_x gr[x] xr[x - 1], sum_x gr[x] xr[x], sum_x gr[x] xr[x + 1])`` (zero outside the
    row): the three taps of one filter row in one pass over ``gr``."""
    W = gr.shape[0]
    a1 = gr[0] * xr[0]
    if W == 1:
        return a1 * 0, a1, a1 * 0
    a0 = gr[W - 1] * xr[W - 2]
    a2 = gr[0] * xr[1]
    a1 += gr[W - 1] * xr[W - 1]
    gi, xm, xc, xp = gr[1:W - 1], xr[0:W - 2], xr[1:W - 1], xr[2:W]
    for t in range(W - 2):
        a0 += gi[t] * xm[t]
        a1 += gi[t] * xc[t]
        a2 += gi[t] * xp[t]
    return a0, a1, a2


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _grad_filters_row(acc, g_row, xc, y, k):
    """Adds output-gradient row ``y``'s share to the ``k*k`` sums ``acc`` of its plane: for tap
    ``(i, j)``, ``g_row`` times input row ``y + i - r`` shifted by ``j - r``."""
    H, W = xc.shape
    r = (k - 1) // 2
    for i in range(k):
        ys = y + i - r
        if ys < 0 or ys >= H:
            continue
        if k == 3:
            a0, a1, a2 = _dot3(g_row, xc[ys])
            acc[i, 0] += a0
            acc[i, 1] += a1
            acc[i, 2] += a2
            continue
        for j in range(k):
            x_lo, x_hi = valid_range(W, W, 1, j - r)
            gr, xr = g_row[x_lo:x_hi], xc[ys, x_lo + j - r:x_hi + j - r]
            s = acc.dtype.type(0)
            for t in range(gr.shape[0]):
                s += gr[t] * xr[t]
            acc[i, j] += s


# fastmath "reassoc" lets LLVM split each sum into SIMD lanes; the order it chooses is fixed at
# compile time, so the result is still the same on every run.
@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def context_filter_backward_kernel(grad_out, x, filters, grad_x, grad_filters, need_x, need_filters):
    """Both gradients in one pass over ``dL/dout``, plane by plane and row by row, like the
    forward: an iteration owns plane ``(b, c)`` of ``dL/dx`` and its ``k*k`` filter gradients;
    each output-gradient row is read while it is in L1 for both."""
    B, C, H = x.shape[0], x.shape[1], x.shape[2]
    k = filters.shape[2]
    for n in prange(B * C):
        b, c = n // C, n % C
        g, xc = grad_out[b, c], x[b, c]
        rotated = filters[b, c, ::-1, ::-1].copy()  # every offset negated: dL/dx = G * rot180(f)
        if need_filters:
            acc = grad_filters[b, c]
            acc[:, :] = 0
        for y in range(H):
            if need_x:
                _filter_row(grad_x[b, c, y], g, rotated, y)
            if need_filters:
                _grad_filters_row(acc, g[y], xc, y, k)


def forward(config, x, filters):
    out = torch.empty(x.shape, dtype=x.dtype)
    context_filter_forward_kernel(numpy_view(x), numpy_view(filters), out.numpy())
    return out


def backward(config, grad_out, x, filters, needs):
    need_x, need_filters = needs
    grad_x = torch.empty(x.shape if need_x else (1, 1, 1, 1), dtype=x.dtype)
    grad_filters = torch.empty(filters.shape if need_filters else (1, 1, 1, 1), dtype=filters.dtype)
    context_filter_backward_kernel(numpy_view(grad_out), numpy_view(x), numpy_view(filters),
                                   grad_x.numpy(), grad_filters.numpy(), need_x, need_filters)
    return (grad_x if need_x else None), (grad_filters if need_filters else None)


CONTEXT_FILTER = KernelSet("numba", forward, backward)
