"""Dynamic filtering as Numba CUDA kernels: one thread per element of the tensor being written.

Thread ``n = cuda.grid(1)`` owns element ``n`` of the flattened tensor it writes (found with
:func:`dyncore.cuda_bridge.unravel4`) and loops over the terms that make it (Chapter 2, "The CUDA kernels"):

* forward (eq-dfn): a thread per ``out[b, c, y, x]``, a loop over the ``k*k`` taps;
* eq-dfn-grad-filters: a thread per ``dL/dfilters[b, t, y, x]``, a loop over the channels;
* eq-dfn-grad-x: a thread per ``dL/dx[b, c, y, x]``, a loop over the taps, gathering from the
  output pixels ``(y - oy_t, x - ox_t)`` that read it.

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
from ..cuda_bridge import launch, on_kernel_device, unravel4


@cuda.jit(cache=True)
def dynamic_filter_forward_kernel(x, filters, out, k, d):
    b, c, y, xx = unravel4(cuda.grid(1), out.shape)
    if b >= out.shape[0]:  # a spare thread of the last block
        return
    H, W = out.shape[2], out.shape[3]
    r = (k - 1) // 2
    acc = out.dtype.type(0)
    for t in range(k * k):
        ys = y + (t // k - r) * d
        xs = xx + (t % k - r) * d
        if 0 <= ys < H and 0 <= xs < W:  # zero padding
            acc += filters[b, t, y, xx] * x[b, c, ys, xs]
    out[b, c, y, xx] = acc


@cuda.jit(cache=True)
def dynamic_filter_grad_filters_kernel(grad_out, x, grad_filters, k, d):
    b, t, y, xx = unravel4(cuda.grid(1), grad_filters.shape)
    if b >= grad_filters.shape[0]:
        return
    H, W = x.shape[2], x.shape[3]
    r = (k - 1) // 2
    ys = y + (t // k - r) * d
    xs = xx + (t % k - r) * d
    acc = grad_filters.dtype.type(0)
    if 0 <= ys < H and 0 <= xs < W:  # a tap that read padding has no gradient
        for c in range(x.shape[1]):
            acc += grad_out[b, c, y, xx] * x[b, c, ys, xs]
    grad_filters[b, t, y, xx] = acc


@cuda.jit(cache=True)
def dynamic_filter_grad_input_kernel(grad_out, filters, grad_x, k, d):
    b, c, y, xx = unravel4(cuda.grid(1), grad_x.shape)
    if b >= grad_x.shape[0]:
        return
    H, W = grad_x.shape[2], grad_x.shape[3]
    r = (k - 1) // 2
    acc = grad_x.dtype.type(0)
    for t in range(k * k):
        yo = y - (t // k - r) * d  # the output pixel whose tap t read (y, x)
        xo = xx - (t % k - r) * d
        if 0 <= yo < H and 0 <= xo < W:
            acc += grad_out[b, c, yo, xo] * filters[b, t, yo, xo]
    grad_x[b, c, y, xx] = acc


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
