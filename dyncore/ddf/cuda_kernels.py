"""The decoupled dynamic filter as Numba CUDA kernels: one thread per element being written.

Thread ``n = cuda.grid(1)`` owns element ``n`` of the flattened tensor it writes and loops over
the terms that make it (Chapter 6, "The CUDA kernels"):

* forward (Chapter 6, eq-ddf-op): a thread per ``out[b, c, yo, xo]``, a loop over the ``k*k`` taps;
* ``dL/dx``: a thread per ``x[b, c, y, x]``, a loop over the taps *flipped*: tap ``t`` of output
  pixel ``((y - oy_t)/s, (x - ox_t)/s)`` read it, when those are integers inside the output;
* ``dL/dspatial``: a thread per ``spatial[b, t, yo, xo]``, a loop over the channels;
* ``dL/dchannel`` in two stages: a thread per ``(b, c, t, yo)`` sums output row ``yo``'s
  terms into ``partial[b, c, t, yo]``, then a thread per ``channel[b, c, t]`` adds up its
  ``Ho`` row sums in order (:func:`dyncore.cuda_bridge.sum_axis1`; a single thread per element
  would leave a GPU almost idle:
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
from ..cuda_bridge import inside, launch, on_kernel_device, sum_axis1, tap_at, unravel4, valid_range
from ..geometry import output_size


@cuda.jit(cache=True)
def ddf_forward_kernel(x, spatial, channel, out, k, d, s):
    b, c, yo, xo = unravel4(cuda.grid(1), out.shape)
    if b < out.shape[0]:  # not a spare thread of the last block
        acc = out.dtype.type(0)
        for t in range(k * k):
            y, xx = tap_at(t, k, d, yo * s, xo * s, 1)  # the input pixel tap t reads
            if inside(y, xx, x.shape[2], x.shape[3]):  # zero padding
                acc += spatial[b, t, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
        out[b, c, yo, xo] = acc


@cuda.jit(cache=True)
def ddf_grad_input_kernel(grad_out, spatial, channel, grad_x, k, d, s):
    b, c, y, xx = unravel4(cuda.grid(1), grad_x.shape)
    if b < grad_x.shape[0]:
        acc = grad_x.dtype.type(0)
        for t in range(k * k):
            # the flipped tap: the output pixel (yo, xo) whose tap t read (y, xx), if it exists
            dy, dx = tap_at(t, k, d, y, xx, -1)  # = (yo * s, xo * s)
            if dy % s != 0 or dx % s != 0:
                continue
            yo, xo = dy // s, dx // s
            if inside(yo, xo, grad_out.shape[2], grad_out.shape[3]):
                acc += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * channel[b, c, t]
        grad_x[b, c, y, xx] = acc


@cuda.jit(cache=True)
def ddf_grad_spatial_kernel(grad_out, x, channel, grad_spatial, k, d, s):
    b, t, yo, xo = unravel4(cuda.grid(1), grad_spatial.shape)
    if b < grad_spatial.shape[0]:
        y, xx = tap_at(t, k, d, yo * s, xo * s, 1)
        acc = grad_spatial.dtype.type(0)
        if inside(y, xx, x.shape[2], x.shape[3]):  # a tap that read padding has no gradient
            for c in range(x.shape[1]):
                acc += channel[b, c, t] * grad_out[b, c, yo, xo] * x[b, c, y, xx]
        grad_spatial[b, t, yo, xo] = acc


@cuda.jit(cache=True)
def ddf_grad_channel_rows_kernel(grad_out, x, spatial, partial, k, d, s):
    """Stage 1 of ``dL/dchannel``: a thread per ``(b, c, t, yo)`` sums one output row."""
    b, c, t, yo = unravel4(cuda.grid(1), partial.shape)
    if b < partial.shape[0]:
        y, ox = tap_at(t, k, d, yo * s, 0, 1)  # the row tap t reads, and its column offset
        x0, x1 = valid_range(grad_out.shape[3], x.shape[3], s, ox)  # the pixels whose tap is inside
        acc = partial.dtype.type(0)
        if 0 <= y < x.shape[2]:  # a row of taps that read padding adds nothing
            for xo in range(x0, x1):
                acc += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * x[b, c, y, xo * s + ox]
        partial[b, c, t, yo] = acc


def _out_shape(stride, x):
    B, C, H, W = x.shape
    return B, C, output_size(H, stride), output_size(W, stride)


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
        # stage 2: a thread per (b, c, t) adds its Ho row sums, in order
        grad_channel = sum_axis1(partial.view(-1, partial.shape[3], 1)).view(channel.shape)
    return grad_x, grad_spatial, grad_channel


DDF = KernelSet("cuda", forward, backward)
