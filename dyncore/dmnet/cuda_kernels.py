"""DMNet's context filter as Numba CUDA kernels: one thread per element being written.

* forward: thread ``n`` owns ``out[b, c, y, x]`` (``n`` is its row-major index in
  ``(B, C, H, W)``) and sums its ``k*k`` taps (:func:`window_sum`);
* ``dL/dx``: thread ``n`` owns ``grad_x[b, c, y, x]`` and gathers from the ``k*k`` output pixels
  that read ``(y, x)``: ``sum_{i, j} filters[b, c, i, j] * g[b, c, y - (i - r), x - (j - r)]``,
  the same :func:`window_sum` with the window flipped;
* ``dL/dfilters``: thread ``n`` owns ``grad_filters[b, c, i, j]`` (``n`` indexes
  ``(B, C, k, k)``) and sums ``g[b, c, y, x] * x[b, c, y + i - r, x + j - r]`` over the plane.

Every thread writes one element, nothing is shared, there are no atomics: the results do not
depend on scheduling. The kernels use no shared or local arrays, so they impose no limit on
``k``. Host functions launch them through :mod:`dyncore.cuda_bridge` (a GPU, or the simulator).
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import device_function, launch, on_kernel_device, unravel4


@device_function
def window_sum(image, filters, b, c, y, xx, flip):
    """``sum_{i, j} filters[b, c, i, j] * image[b, c, y + s*(i - r), xx + s*(j - r)]``, zero outside
    the image, with ``s = -1`` if ``flip`` else ``1``: the forward reads the window around
    ``(y, xx)``; ``dL/dx`` reads ``grad_out`` through the window flipped, since output pixel
    ``(y - (i - r), xx - (j - r))`` read ``(y, xx)`` through tap ``(i, j)``."""
    H, W, k = image.shape[2], image.shape[3], filters.shape[2]
    r = (k - 1) // 2
    sign = -1 if flip else 1
    acc = image.dtype.type(0)
    for i in range(k):
        yi = y + sign * (i - r)
        if yi < 0 or yi >= H:
            continue
        for j in range(k):
            xi = xx + sign * (j - r)
            if 0 <= xi < W:
                acc += filters[b, c, i, j] * image[b, c, yi, xi]
    return acc


@cuda.jit(cache=True)
def context_filter_forward_kernel(x, filters, out):
    b, c, y, xx = unravel4(cuda.grid(1), out.shape)
    if b < out.shape[0]:  # the last block's spare threads have no element
        out[b, c, y, xx] = window_sum(x, filters, b, c, y, xx, False)


@cuda.jit(cache=True)
def context_filter_grad_input_kernel(grad_out, filters, grad_x):
    b, c, y, xx = unravel4(cuda.grid(1), grad_x.shape)
    if b < grad_x.shape[0]:
        grad_x[b, c, y, xx] = window_sum(grad_out, filters, b, c, y, xx, True)


@cuda.jit(cache=True)
def context_filter_grad_filters_kernel(grad_out, x, grad_filters):
    b, c, i, j = unravel4(cuda.grid(1), grad_filters.shape)
    if b >= grad_filters.shape[0]:
        return
    H, W, k = x.shape[2], x.shape[3], grad_filters.shape[2]
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
