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
from ..cuda_bridge import device_function, launch, on_kernel_device, unravel4


@device_function
def add_response(acc, scale, x, weight, b, o, y, xo, dil):
    """``acc + scale * R[b, o, y, xo]``, tap by tap, with ``R`` the response of the ``k x k``
    convolution with dilation ``dil`` (zero padding): the inner sum of Chapter 5, eq-pad-relaxed."""
    Cin, H, W, k = x.shape[1], x.shape[2], x.shape[3], weight.shape[2]
    r = (k - 1) // 2
    for c in range(Cin):
        for i in range(k):
            yi = y + (i - r) * dil
            if yi < 0 or yi >= H:
                continue
            for j in range(k):
                xi = xo + (j - r) * dil
                if 0 <= xi < W:
                    acc += weight[o, c, i, j] * (scale * x[b, c, yi, xi])
    return acc


@cuda.jit(cache=True)
def pad_forward_kernel(x, weight, bias, gates, dilations, out):
    b, o, y, xo = unravel4(cuda.grid(1), out.shape)
    if b >= out.shape[0]:  # a spare thread of the last block
        return
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
    if b >= grad_x.shape[0]:
        return
    H, W = grad_x.shape[2], grad_x.shape[3]
    Cout, k = weight.shape[0], weight.shape[2]
    r = (k - 1) // 2
    acc = grad_x.dtype.type(0)
    for d in range(dilations.shape[0]):
        dil = dilations[d]
        for i in range(k):
            y = yi - (i - r) * dil  # the output row whose tap i reads row yi
            if y < 0 or y >= H:
                continue
            for j in range(k):
                xo = xi - (j - r) * dil
                if xo < 0 or xo >= W:
                    continue
                g = gates[b, d, y, xo]
                if g == 0:
                    continue
                for o in range(Cout):
                    acc += weight[o, c, i, j] * (g * grad_out[b, o, y, xo])
    grad_x[b, c, yi, xi] = acc


@cuda.jit(cache=True)
def pad_grad_weight_kernel(grad_out, x, gates, dilations, grad_w):
    o, c, i, j = unravel4(cuda.grid(1), grad_w.shape)
    if o >= grad_w.shape[0]:
        return
    B, _, H, W = x.shape
    k = grad_w.shape[2]
    r = (k - 1) // 2
    acc = grad_w.dtype.type(0)
    for d in range(dilations.shape[0]):
        oy = (i - r) * dilations[d]
        ox = (j - r) * dilations[d]
        for b in range(B):
            for y in range(max(0, -oy), min(H, H - oy)):
                for xo in range(max(0, -ox), min(W, W - ox)):
                    g = gates[b, d, y, xo]
                    if g != 0:
                        acc += g * grad_out[b, o, y, xo] * x[b, c, y + oy, xo + ox]
    grad_w[o, c, i, j] = acc


@cuda.jit(cache=True)
def pad_grad_gates_kernel(grad_out, x, weight, dilations, grad_gates):
    b, d, y, xo = unravel4(cuda.grid(1), grad_gates.shape)
    if b >= grad_gates.shape[0]:
        return
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
