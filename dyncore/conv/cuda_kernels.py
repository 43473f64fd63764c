"""Convolution as Numba CUDA kernels: one thread per element of the tensor being written.

Thread-to-data mapping (drawn in Chapter 1): thread ``n = cuda.grid(1)`` owns output element
``n`` of the flattened ``(B, Cout, Ho, Wo)`` tensor (:func:`dyncore.cuda_bridge.unravel4` turns
``n`` into ``(b, o, yo, xo)``; Chapter 1 writes that arithmetic out once) and loops over the
``Cin/groups * kh * kw`` products that make it. The backward kernels are gathers too: a thread per element of
``dL/dx``, of ``dL/dweight`` and of ``dL/dbias``, each summing what flows into its element, so
there are no atomics and the result does not depend on thread scheduling.

The host functions at the bottom launch the kernels through :mod:`dyncore.cuda_bridge`, which
runs them on a GPU or under the Numba CUDA simulator.
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import launch, on_kernel_device, unravel4, valid_range
from .numba_cpu import geometry_args


@cuda.jit(cache=True)
def conv2d_forward_kernel(x, weight, bias, out, sh, sw, pt, pl, dh, dw, groups):
    b, o, yo, xo = unravel4(cuda.grid(1), out.shape)
    if b >= out.shape[0]:  # a spare thread of the last block
        return
    H, W = x.shape[2], x.shape[3]
    Cout, Cin_g, kh, kw = weight.shape
    c0 = (o // (Cout // groups)) * Cin_g
    acc = bias[o]
    for c in range(Cin_g):
        for i in range(kh):
            y = yo * sh - pt + i * dh
            if y < 0 or y >= H:
                continue
            for j in range(kw):
                xx = xo * sw - pl + j * dw
                if 0 <= xx < W:
                    acc += weight[o, c, i, j] * x[b, c0 + c, y, xx]
    out[b, o, yo, xo] = acc


@cuda.jit(cache=True)
def conv2d_grad_input_kernel(grad_out, weight, grad_x, sh, sw, pt, pl, dh, dw, groups):
    b, c, y, xx = unravel4(cuda.grid(1), grad_x.shape)
    if b >= grad_x.shape[0]:
        return
    Ho, Wo = grad_out.shape[2], grad_out.shape[3]
    Cout, Cin_g, kh, kw = weight.shape
    Cout_g = Cout // groups
    g, cl = c // Cin_g, c % Cin_g
    acc = grad_x.dtype.type(0)
    for i in range(kh):
        ty = y + pt - i * dh  # = yo * sh for the output row that reads row y through tap i
        if ty < 0 or ty % sh != 0 or ty // sh >= Ho:
            continue
        yo = ty // sh
        for j in range(kw):
            tx = xx + pl - j * dw
            if tx < 0 or tx % sw != 0 or tx // sw >= Wo:
                continue
            xo = tx // sw
            for ol in range(Cout_g):
                o = g * Cout_g + ol
                acc += weight[o, cl, i, j] * grad_out[b, o, yo, xo]
    grad_x[b, c, y, xx] = acc


@cuda.jit(cache=True)
def conv2d_grad_weight_kernel(grad_out, x, grad_w, sh, sw, pt, pl, dh, dw, groups):
    o, cl, i, j = unravel4(cuda.grid(1), grad_w.shape)
    Cout, Cin_g = grad_w.shape[0], grad_w.shape[1]
    if o >= Cout:
        return
    oy, ox = i * dh - pt, j * dw - pl  # output pixel (yo, xo) reads (yo*sh + oy, xo*sw + ox) here
    y0, y1 = valid_range(grad_out.shape[2], x.shape[2], sh, oy)  # the rows where that is inside
    x0, x1 = valid_range(grad_out.shape[3], x.shape[3], sw, ox)
    c = (o // (Cout // groups)) * Cin_g + cl
    acc = grad_w.dtype.type(0)
    for b in range(x.shape[0]):
        for yo in range(y0, y1):
            for xo in range(x0, x1):
                acc += grad_out[b, o, yo, xo] * x[b, c, yo * sh + oy, xo * sw + ox]
    grad_w[o, cl, i, j] = acc


@cuda.jit(cache=True)
def conv2d_grad_bias_kernel(grad_out, grad_b):
    o = cuda.grid(1)
    if o >= grad_b.shape[0]:
        return
    acc = grad_b.dtype.type(0)
    for b in range(grad_out.shape[0]):
        for yo in range(grad_out.shape[2]):
            for xo in range(grad_out.shape[3]):
                acc += grad_out[b, o, yo, xo]
    grad_b[o] = acc


@on_kernel_device
def forward(geometry, x, weight, bias):
    B, Cout = x.shape[0], weight.shape[0]
    out = x.new_empty(B, Cout, *geometry.out_size)
    b = bias if bias is not None else x.new_zeros(Cout)
    launch(conv2d_forward_kernel, out.numel(), x, weight, b, out, *geometry_args(geometry))
    return out


@on_kernel_device
def backward(geometry, grad_out, x, weight, bias, needs):
    need_x, need_w, need_b = needs
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = torch.empty_like(x)
        launch(conv2d_grad_input_kernel, grad_x.numel(), grad_out, weight, grad_x,
               *geometry_args(geometry))
    if need_w:
        grad_w = torch.empty_like(weight)
        launch(conv2d_grad_weight_kernel, grad_w.numel(), grad_out, x, grad_w,
               *geometry_args(geometry))
    if need_b and bias is not None:
        grad_b = x.new_empty(weight.shape[0])
        launch(conv2d_grad_bias_kernel, grad_b.numel(), grad_out, grad_b)
    return grad_x, grad_w, grad_b


CONV2D = KernelSet("cuda", forward, backward)
