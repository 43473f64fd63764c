"""Dynamic filtering as Numba CUDA kernels: one thread per element of the tensor being written.

Thread ``n = cuda.grid(1)`` owns element ``n`` of the flattened tensor it writes (found with
:func:`dyncore.cuda_bridge.unravel4`) and loops over the terms that make it (Chapter 2, "The CUDA
kernels"); :data:`~dyncore.cuda_bridge.tap_at` and :data:`~dyncore.cuda_bridge.inside` say which
pixel a tap reads and whether it lies in the image:

* forward (eq-dfn): a thread per ``out[b, c, y, x]``, a loop over the ``k*k`` taps
  (:func:`gather_taps`);
* eq-dfn-grad-filters: a thread per ``dL/dfilters[b, t, y, x]``, a loop over the channels;
* eq-dfn-grad-x: a thread per ``dL/dx[b, c, y, x]``, the same loop over the taps flipped,
  gathering from the output pixels ``(y - oy_t, x - ox_t)`` that read it.

All three are gathers: no two threads write the same element, no atomics, and the result
does not depend on the order in which threads run. Neighbouring threads own neighbouring
pixels of a row, so at each step of their loops their loads fall on neighbouring addresses
of ``x``, ``filters`` and ``grad_out`` (coalesced). The kernels keep nothing per tap in local
memory, so they have no kernel-size limit. The host functions launch them through
:mod:`dyncore.cuda_bridge`, on a GPU or under the Numba CUDA simulator.
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import device_function, inside, launch, on_kernel_device, tap_at, unravel4


@device_function
def gather_taps(filters, a, b, c, y, xx, k, d, sign):
    """The sum over the taps ``t`` of ``filters[b, t, p] * a[b, c, q]`` at pixel ``(y, xx)``.

    ``sign = 1``, the forward (eq-dfn): ``q`` is the pixel tap ``t`` reads, ``p = (y, xx)``.
    ``sign = -1``, the input gradient (eq-dfn-grad-x, ``a`` the output gradient): ``q`` is the
    output pixel whose tap ``t`` read ``(y, xx)``, and its filter is read there too, ``p = q``.
    Taps that fall outside the image add nothing (zero padding)."""
    acc = a.dtype.type(0)
    for t in range(k * k):
        yq, xq = tap_at(t, k, d, y, xx, sign)
        if inside(yq, xq, a.shape[2], a.shape[3]):
            if sign == 1:
                acc += filters[b, t, y, xx] * a[b, c, yq, xq]
            else:
                acc += filters[b, t, yq, xq] * a[b, c, yq, xq]
    return acc


@cuda.jit(cache=True)
def dynamic_filter_forward_kernel(x, filters, out, k, d):
    b, c, y, xx = unravel4(cuda.grid(1), out.shape)
    if b < out.shape[0]:  # not a spare thread of the last block
        out[b, c, y, xx] = gather_taps(filters, x, b, c, y, xx, k, d, 1)


@cuda.jit(cache=True)
def dynamic_filter_grad_filters_kernel(grad_out, x, grad_filters, k, d):
    b, t, y, xx = unravel4(cuda.grid(1), grad_filters.shape)
    if b >= grad_filters.shape[0]:
        return
    ys, xs = tap_at(t, k, d, y, xx, 1)
    acc = grad_filters.dtype.type(0)
    if inside(ys, xs, x.shape[2], x.shape[3]):  # a tap that read padding has no gradient
        for c in range(x.shape[1]):
            acc += grad_out[b, c, y, xx] * x[b, c, ys, xs]
    grad_filters[b, t, y, xx] = acc


@cuda.jit(cache=True)
def dynamic_filter_grad_input_kernel(grad_out, filters, grad_x, k, d):
    b, c, y, xx = unravel4(cuda.grid(1), grad_x.shape)
    if b < grad_x.shape[0]:
        grad_x[b, c, y, xx] = gather_taps(filters, grad_out, b, c, y, xx, k, d, -1)


@on_kernel_device
def forward(config, x, filters):
    kernel_size, dilation = config
    out = torch.empty_like(x)
    launch(dynamic_filter_forward_kernel, out.numel(), x, filters, out, kernel_size, dilation)
    return out


@on_kernel_device
def backward(config, grad_out, x, filters, needs):
    kernel_size, dilation = config
    need_x, need_filters = needs
    grad_x = grad_filters = None
    if need_x:
        grad_x = torch.empty_like(x)
        launch(dynamic_filter_grad_input_kernel, grad_x.numel(), grad_out, filters, grad_x,
               kernel_size, dilation)
    if need_filters:
        grad_filters = torch.empty_like(filters)
        launch(dynamic_filter_grad_filters_kernel, grad_filters.numel(), grad_out, x,
               grad_filters, kernel_size, dilation)
    return grad_x, grad_filters


DYNAMIC_FILTER = KernelSet("cuda", forward, backward)
