"""Pixel-wise adaptive dilation as Numba CUDA kernels: one thread per written element.

Thread ``n = cuda.grid(1)`` of the forward kernel owns output element ``n`` of the flattened
``(B, Cout, H, W)`` tensor: it reads its pixel's ``D`` gates and, for each non-zero one, adds
the gate times the dilated convolution's sum over ``Cin * k * k`` taps. A dilation whose gate
is exactly zero costs nothing, so one-hot gates cost one convolution per pixel, not ``D``.

The backward kernels are gathers (Chapter 5, eq-pad-grad-x, eq-pad-grad-w, eq-pad-grad-gates): a thread per element of
``dL/dx``, ``dL/dweight``, ``dL/dgates`` (and of ``dL/dbias``, with Chapter 1's kernel), each
summing what flows into its element: no atomics, results independent of scheduling.
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..conv.cuda_kernels import conv2d_grad_bias_kernel
from ..cuda_bridge import device_function, inside, launch, on_kernel_device, tap_at, unravel4, valid_range


@device_function
def add_response(acc, scale, x, weight, b, o, y, xo, dil):
    """``acc + scale * R[b, o, y, xo]``, tap by tap, with ``R`` the response of the ``k x k``
    convolution with dilation ``dil`` (zero padding): the inner sum of Chapter 5, eq-pad-relaxed."""
    k = weight.shape[2]
    for c in range(x.shape[1]):
        for t in range(k * k):
            yi, xi = tap_at(t, k, dil, y, xo, 1)  # the pixel tap t = (i, j) reads
            if inside(yi, xi, x.shape[2], x.shape[3]):
                acc += weight[o, c, t // k, t % k] * (scale * x[b, c, yi, xi])
    return acc


@cuda.jit(cache=True)
def pad_forward_kernel(x, weight, bias, gates, dilations, out):
    b, o, y, xo = unravel4(cuda.grid(1), out.shape)
    if b < out.shape[0]:  # not a spare thread of the last block
        acc = bias[o]
        for d in range(dilations.shape[0]):
            g = gates[b, d, y, xo]
            if g == 0:  # not selected at this pixel: skip the whole convolution
                continue
            acc = add_response(acc, g, x, weight, b, o, y, xo, dilations[d])
        out[b, o, y, xo] = acc


@cuda.jit(cache=True)
def pad_grad_input_kernel(grad_out, weight, gates, dilations, grad_x):
    b, c, yi, xi = unravel4(cuda.grid(1), grad_x.shape)
    if b < grad_x.shape[0]:
        k = weight.shape[2]
        acc = grad_x.dtype.type(0)
        for d in range(dilations.shape[0]):
            for t in range(k * k):
                y, xo = tap_at(t, k, dilations[d], yi, xi, -1)  # the output pixel whose tap t reads (yi, xi)
                if not inside(y, xo, grad_x.shape[2], grad_x.shape[3]) or gates[b, d, y, xo] == 0:
                    continue
                g = gates[b, d, y, xo]
                for o in range(weight.shape[0]):
                    acc += weight[o, c, t // k, t % k] * (g * grad_out[b, o, y, xo])
        grad_x[b, c, yi, xi] = acc


@cuda.jit(cache=True)
def pad_grad_weight_kernel(grad_out, x, gates, dilations, grad_w):
    o, c, i, j = unravel4(cuda.grid(1), grad_w.shape)
    if o < grad_w.shape[0]:
        B, _, H, W = x.shape
        k = grad_w.shape[2]
        acc = grad_w.dtype.type(0)
        for d in range(dilations.shape[0]):
            oy, ox = tap_at(i * k + j, k, dilations[d], 0, 0, 1)  # where tap (i, j) reads, from (0, 0)
            y0, y1 = valid_range(H, H, 1, oy)  # the output pixels whose tap (i, j) lies inside
            x0, x1 = valid_range(W, W, 1, ox)
            for b in range(B):
                for y in range(y0, y1):
                    for xo in range(x0, x1):
                        g = gates[b, d, y, xo]
                        if g != 0:
                            acc += g * grad_out[b, o, y, xo] * x[b, c, y + oy, xo + ox]
        grad_w[o, c, i, j] = acc


@cuda.jit(cache=True)
def pad_grad_gates_kernel(grad_out, x, weight, dilations, grad_gates):
    b, d, y, xo = unravel4(cuda.grid(1), grad_gates.shape)
    if b < grad_gates.shape[0]:
        acc = grad_gates.dtype.type(0)
        # sum_o G[b, o, y, xo] * R_d[b, o, y, xo]: every dilation's response, selected or not
        for o in range(weight.shape[0]):
            acc = add_response(acc, grad_out[b, o, y, xo], x, weight, b, o, y, xo, dilations[d])
        grad_gates[b, d, y, xo] = acc


def _dilations(config, like):
    """``config`` is ``(dilations,)``."""
    return torch.tensor(config[0], dtype=torch.int64, device=like.device)


@on_kernel_device
def forward(config, x, weight, bias, gates):
    B, _, H, W = x.shape
    Cout = weight.shape[0]
    out = x.new_empty(B, Cout, H, W)
    b = bias if bias is not None else x.new_zeros(Cout)
    launch(pad_forward_kernel, out.numel(), x, weight, b, gates, _dilations(config, x), out)
    return out


@on_kernel_device
def backward(config, grad_out, x, weight, bias, gates, needs):
    need_x, need_w, need_b, need_g = needs
    dil = _dilations(config, x)
    grad_x = grad_w = grad_b = grad_g = None
    if need_x:
        grad_x = torch.empty_like(x)
        launch(pad_grad_input_kernel, grad_x.numel(), grad_out, weight, gates, dil, grad_x)
    if need_w:
        grad_w = torch.empty_like(weight)
        launch(pad_grad_weight_kernel, grad_w.numel(), grad_out, x, gates, dil, grad_w)
    if need_b and bias is not None:
        grad_b = x.new_empty(weight.shape[0])
        launch(conv2d_grad_bias_kernel, grad_b.numel(), grad_out, grad_b)
    if need_g:
        grad_g = torch.empty_like(gates)
        launch(pad_grad_gates_kernel, grad_g.numel(), grad_out, x, weight, dil, grad_g)
    return grad_x, grad_w, grad_b, grad_g


ADAPTIVE_DILATION_CONV = KernelSet("cuda", forward, backward)
