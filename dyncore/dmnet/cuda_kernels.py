"""DMNet's context filter as Numba CUDA kernels: one thread per element being written.

* forward: thread ``n`` owns ``out[b, c, y, x]`` (``n`` is its row-major index in
  ``(B, C, H, W)``) and sums its ``k*k`` taps;
* ``dL/dx``: thread ``n`` owns ``grad_x[b, c, y, x]`` and gathers from the ``k*k`` output pixels
  that read ``(y, x)``: ``sum_{i, j} filters[b, c, i, j] * g[b, c, y - (i - r), x - (j - r)]``;
* ``dL/dfilters``: thread ``n`` owns ``grad_filters[b, c, i, j]`` (``n`` indexes
  ``(B, C, k, k)``) and sums ``g[b, c, y, x] * x[b, c, y + i - r, x + j - r]`` over the plane.

Every thread writes one element, nothing is shared, there are no atomics: the results do not
depend on scheduling. The kernels use no shared or local arrays, so they impose no limit on
``k``. Host functions launch them through :mod:`dyncore.cuda_bridge` (a GPU, or the simulator).
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import launch, on_kernel_device, unravel4


@cuda.jit(cache=True)
def context_filter_forward_kernel(x, filters, out):
    n = cuda.grid(1)
    B, C, H, W = out.shape
    if n >= B * C * H * W:
        return
    b, c, y, xx = unravel4(n, out.shape)
    k = filters.shape[2]
    r = (k - 1) // 2
    acc = out.dtype.type(0)
    for i in range(k):
        yi = y + i - r
        if yi < 0 or yi >= H:
            continue
        for j in range(k):
            xi = xx + j - r
            if 0 <= xi < W:
                acc += filters[b, c, i, j] * x[b, c, yi, xi]
    out[b, c, y, xx] = acc


@cuda.jit(cache=True)
def context_filter_grad_input_kernel(grad_out, filters, grad_x):
    n = cuda.grid(1)
    B, C, H, W = grad_x.shape
    if n >= B * C * H * W:
        return
    b, c, y, xx = unravel4(n, grad_x.shape)
    k = filters.shape[2]
    r = (k - 1) // 2
    acc = grad_x.dtype.type(0)
    for i in range(k):
        yo = y - i + r  # the output row that reads row y through tap row i
        if yo < 0 or yo >= H:
            continue
        for j in range(k):
            xo = xx - j + r
            if 0 <= xo < W:
                acc += filters[b, c, i, j] * grad_out[b, c, yo, xo]
    grad_x[b, c, y, xx] = acc


@cuda.jit(cache=True)
def context_filter_grad_filters_kernel(grad_out, x, grad_filters):
    n = cuda.grid(1)
    B, C, k, _ = grad_filters.shape
    if n >= B * C * k * k:
        return
    b, c, i, j = unravel4(n, grad_filters.shape)
    H, W = x.shape[2], x.shape[3]
    r = (k - 1) // 2
    acc = grad_filters.dtype.type(0)
    for y in range(max(0, r - i), min(H, H + r - i)):
        for xx in range(max(0, r - j), min(W, W + r - j)):
            acc += grad_out[b, c, y, xx] * x[b, c, y + i - r, xx + j - r]
    grad_filters[b, c, i, j] = acc


@on_kernel_device
def forward(config, x, filters):
    out = torch.empty_like(x)
    launch(context_filter_forward_kernel, out.numel(), x, filters, out)
    return out


@on_kernel_device
def backward(config, grad_out, x, filters, needs):
    need_x, need_filters = needs
    grad_x = grad_filters = None
    if need_x:
        grad_x = torch.empty_like(x)
        launch(context_filter_grad_input_kernel, grad_x.numel(), grad_out, filters, grad_x)
    if need_filters:
        grad_filters = torch.empty_like(filters)
        launch(context_filter_grad_filters_kernel, grad_filters.numel(), grad_out, x, grad_filters)
    return grad_x, grad_filters


CONTEXT_FILTER = KernelSet("cuda", forward, backward)
