"""The decoupled dynamic filter as Numba CUDA kernels: one thread per element being written.

Thread ``n = cuda.grid(1)`` owns element ``n`` of the flattened tensor it writes and loops over
the terms that make it (Chapter 6, "The CUDA kernels"):

* forward (Chapter 6, eq-ddf-op): a thread per ``out[b, c, yo, xo]``, a loop over the ``k*k`` taps;
* ``dL/dx``: a thread per ``x[b, c, y, x]``, a loop over the taps *flipped*: tap ``t`` of output
  pixel ``((y - oy_t)/s, (x - ox_t)/s)`` read it, when those are integers inside the output;
* ``dL/dspatial``: a thread per ``spatial[b, t, yo, xo]``, a loop over the channels;
* ``dL/dchannel`` in two stages: a thread per ``(b, c, t, yo)`` sums output row ``yo``'s
  terms into ``partial[b, c, t, yo]``, then a thread per ``channel[b, c, t]`` adds up its
  ``Ho`` row sums in order (a single thread per element would leave a GPU almost idle:
  only ``B*C*k*k`` threads, each summing ``Ho*Wo`` terms).

All of them are gathers: no two threads write the same element, no atomics, and the result does
not depend on the order in which threads run. Neighbouring threads own neighbouring pixels of
a row (forward, ``dL/dx``, ``dL/dspatial``), so their loads of ``x``, ``spatial`` and ``grad_out``
fall on neighbouring addresses (coalesced at stride 1). The two-stage ``dL/dchannel`` is still
the least efficient of them on a real GPU (a thread per row reads rows ``W`` apart; a
block-wide tree reduction in shared memory would be the next step). The kernels keep nothing
per tap in local memory, so they have no kernel-size limit.
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import launch, on_kernel_device, unravel4


@cuda.jit(cache=True)
def ddf_forward_kernel(x, spatial, channel, out, k, d, s):
    n = cuda.grid(1)
    B, C, Ho, Wo = out.shape
    if n >= B * C * Ho * Wo:
        return
    H, W = x.shape[2], x.shape[3]
    b, c, yo, xo = unravel4(n, out.shape)
    r = (k - 1) // 2
    acc = out.dtype.type(0)
    for t in range(k * k):
        y = yo * s + (t // k - r) * d
        xx = xo * s + (t % k - r) * d
        if 0 <= y < H and 0 <= xx < W:  # zero padding
            acc += spatial[b, t, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
    out[b, c, yo, xo] = acc


@cuda.jit(cache=True)
def ddf_grad_input_kernel(grad_out, spatial, channel, grad_x, k, d, s):
    n = cuda.grid(1)
    B, C, H, W = grad_x.shape
    if n >= B * C * H * W:
        return
    Ho, Wo = grad_out.shape[2], grad_out.shape[3]
    b, c, y, xx = unravel4(n, grad_x.shape)
    r = (k - 1) // 2
    acc = grad_x.dtype.type(0)
    for t in range(k * k):
        dy = y - (t // k - r) * d  # the flipped tap: which output pixel read (y, xx) with tap t?
        dx = xx - (t % k - r) * d
        if dy < 0 or dx < 0 or dy % s != 0 or dx % s != 0:
            continue
        yo, xo = dy // s, dx // s
        if yo < Ho and xo < Wo:
            acc += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * channel[b, c, t]
    grad_x[b, c, y, xx] = acc


@cuda.jit(cache=True)
def ddf_grad_spatial_kernel(grad_out, x, channel, grad_spatial, k, d, s):
    n = cuda.grid(1)
    B, T, Ho, Wo = grad_spatial.shape
    if n >= B * T * Ho * Wo:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    b, t, yo, xo = unravel4(n, grad_spatial.shape)
    r = (k - 1) // 2
    y = yo * s + (t // k - r) * d
    xx = xo * s + (t % k - r) * d
    acc = grad_spatial.dtype.type(0)
    if 0 <= y < H and 0 <= xx < W:  # a tap that read padding has no gradient
        for c in range(C):
            acc += grad_out[b, c, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
    grad_spatial[b, t, yo, xo] = acc


@cuda.jit(cache=True)
def ddf_grad_channel_rows_kernel(grad_out, x, spatial, partial, k, d, s):
    """Stage 1 of ``dL/dchannel``: a thread per ``(b, c, t, yo)`` sums one output row."""
    n = cuda.grid(1)
    B, C, T, Ho = partial.shape
    if n >= B * C * T * Ho:
        return
    H, W = x.shape[2], x.shape[3]
    Wo = grad_out.shape[3]
    b, c, t, yo = unravel4(n, partial.shape)
    r = (k - 1) // 2
    y = yo * s + (t // k - r) * d
    ox = (t % k - r) * d
    acc = partial.dtype.type(0)
    if 0 <= y < H:  # a row of taps that read padding adds nothing
        for xo in range(Wo):
            xx = xo * s + ox
            if 0 <= xx < W:
                acc += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * x[b, c, y, xx]
    partial[b, c, t, yo] = acc


@cuda.jit(cache=True)
def ddf_grad_channel_kernel(partial, grad_channel):
    """Stage 2 of ``dL/dchannel``: a thread per ``(b, c, t)`` adds its rows' sums, in order."""
    n = cuda.grid(1)
    B, C, T = grad_channel.shape
    if n >= B * C * T:
        return
    t = n % T
    c = (n // T) % C
    b = n // (T * C)
    acc = grad_channel.dtype.type(0)
    for yo in range(partial.shape[3]):
        acc += partial[b, c, t, yo]
    grad_channel[b, c, t] = acc


def _out_shape(stride, x):
    B, C, H, W = x.shape
    return B, C, (H - 1) // stride + 1, (W - 1) // stride + 1


@on_kernel_device
def forward(config, x, spatial, channel):
    kernel_size, dilation, stride = config
    out = x.new_empty(_out_shape(stride, x))
    launch(ddf_forward_kernel, out.numel(), x, spatial, channel, out, kernel_size, dilation,
           stride)
    return out


@on_kernel_device
def backward(config, grad_out, x, spatial, channel, needs):
    kernel_size, dilation, stride = config
    need_x, need_spatial, need_channel = needs
    grad_x = grad_spatial = grad_channel = None
    if need_x:
        grad_x = torch.empty_like(x)
        launch(ddf_grad_input_kernel, grad_x.numel(), grad_out, spatial, channel, grad_x,
               kernel_size, dilation, stride)
    if need_spatial:
        grad_spatial = torch.empty_like(spatial)
        launch(ddf_grad_spatial_kernel, grad_spatial.numel(), grad_out, x, channel,
               grad_spatial, kernel_size, dilation, stride)
    if need_channel:
        partial = x.new_empty(*channel.shape, grad_out.shape[2])  # (B, C, k*k, Ho)
        launch(ddf_grad_channel_rows_kernel, partial.numel(), grad_out, x, spatial, partial,
               kernel_size, dilation, stride)
        grad_channel = torch.empty_like(channel)
        launch(ddf_grad_channel_kernel, grad_channel.numel(), partial, grad_channel)
    return grad_x, grad_spatial, grad_channel


DDF = KernelSet("cuda", forward, backward)
