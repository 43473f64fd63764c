"""Dynamic filtering as plain Python loops: the executable specification (Chapter 2).

The dynamic local filtering layer of DFN (Jia et al., 2016) gives every pixel its own
``k x k`` filter, shared by all channels (Chapter 2, eq-dfn; contract section 2):

    out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t]

with tap ``t = i*k + j`` at offset ``(oy_t, ox_t) = ((i - r)*d, (j - r)*d)``, ``r = (k - 1)//2``
(:func:`dyncore.geometry.tap_offset`), and zero padding: a tap whose input pixel falls outside
the image adds nothing.

The backward pass (Chapter 2, eq-dfn-grad-filters and eq-dfn-grad-x), with ``G = dL/d out``, is
written here as loops too, so that the chapter, the tests and the exercises have an executable
specification of it:

    dL/d filters[b, t, y, x] = sum_c G[b, c, y, x] * x[b, c, y + oy_t, x + ox_t]
    dL/d x[b, c, y, x]       = sum_t G[b, c, y - oy_t, x - ox_t] * filters[b, t, y - oy_t, x - ox_t]

The loops work on numpy arrays; ``dyncore.dfn.dynamic_filter(..., backend="loops")`` wraps them.
"""

import numpy as np

from ..geometry import tap_offset


def dynamic_filter_loops(x, filters, kernel_size, dilation):
    """``x: (B, C, H, W)``, ``filters: (B, k*k, H, W)`` -> ``out: (B, C, H, W)`` (eq-dfn)."""
    B, C, H, W = x.shape
    out = np.zeros((B, C, H, W), dtype=x.dtype)
    for b, c, y, xx in np.ndindex(out.shape):  # every output element, row-major
        acc = 0.0
        for t in range(kernel_size * kernel_size):
            oy, ox = tap_offset(t, kernel_size, dilation)
            if 0 <= y + oy < H and 0 <= xx + ox < W:  # zero padding
                acc += filters[b, t, y, xx] * x[b, c, y + oy, xx + ox]
        out[b, c, y, xx] = acc
    return out


def dynamic_filter_backward_loops(grad_out, x, filters, kernel_size, dilation):
    """``(dL/dx, dL/dfilters)`` given ``grad_out = dL/d out``, as loops (Chapter 2,
    eq-dfn-grad-filters and eq-dfn-grad-x).

    Both are *gathers*: each gradient element sums what flows into it, which is how the
    ``"numba"`` and ``"cuda"`` backward kernels compute them too.
    """
    B, C, H, W = x.shape
    T = kernel_size * kernel_size
    grad_x = np.zeros_like(x)
    grad_filters = np.zeros_like(filters)
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for t in range(T):
                    oy, ox = tap_offset(t, kernel_size, dilation)
                    # eq-dfn-grad-filters: filter tap t at (y, x) multiplied x at (y + oy, x + ox) ...
                    if 0 <= y + oy < H and 0 <= xx + ox < W:
                        acc = 0.0
                        for c in range(C):  # ... in every channel: the filter is shared
                            acc += grad_out[b, c, y, xx] * x[b, c, y + oy, xx + ox]
                        grad_filters[b, t, y, xx] = acc
                    # eq-dfn-grad-x: x at (y, x) was read by tap t of the pixel (y - oy, x - ox)
                    yo, xo = y - oy, xx - ox
                    if 0 <= yo < H and 0 <= xo < W:
                        for c in range(C):
                            grad_x[b, c, y, xx] += grad_out[b, c, yo, xo] * filters[b, t, yo, xo]
    return grad_x, grad_filters
