"""Convolution compiled with Numba for the CPU: forward and hand-derived backward kernels.

The loops are those of :mod:`dyncore.conv.loops`, reordered so that the innermost loop runs
along a contiguous image row, with the zero-padding test hoisted out of it
(:func:`dyncore.geometry.valid_range`, given the tap's offset minus the padding), and parallelized with ``prange`` over planes that one iteration owns
alone, so no two threads ever write the same element (deterministic, no atomics).

Backward (Chapter 1, "The backward pass"), with ``g = dL/d out``:

* ``dL/dx[b, c, y, x]  = sum_{o, i, j} weight[o, c, i, j] * g[b, o, yo, xo]`` over the output
  pixels that read ``(y, x)`` through tap ``(i, j)``: the same loops as the forward, transposed;
* ``dL/dweight[o, c, i, j] = sum_{b, yo, xo} g[b, o, yo, xo] * x[b, c, yo*sh - pt + i*dh, ...]``;
* ``dL/dbias[o] = sum_{b, yo, xo} g[b, o, yo, xo]``.
"""

import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..geometry import valid_range


@njit(parallel=True, cache=True)
def conv2d_forward_kernel(x, weight, bias, out, sh, sw, pt, pl, dh, dw, groups):
    B, Cin, H, W = x.shape
    Cout, Cin_g, kh, kw = weight.shape
    Ho, Wo = out.shape[2], out.shape[3]
    Cout_g = Cout // groups
    for n in prange(B * Cout):  # one output plane per iteration
        b, o = n // Cout, n % Cout
        g = o // Cout_g
        plane = out[b, o]
        plane[:, :] = bias[o]
        for c in range(Cin_g):
            xc = x[b, g * Cin_g + c]
            for i in range(kh):
                y_lo, y_hi = valid_range(Ho, H, sh, i * dh - pt)
                for j in range(kw):
                    x_lo, x_hi = valid_range(Wo, W, sw, j * dw - pl)
                    wv = weight[o, c, i, j]
                    for yo in range(y_lo, y_hi):
                        y = yo * sh - pt + i * dh
                        for xo in range(x_lo, x_hi):
                            plane[yo, xo] += wv * xc[y, xo * sw - pl + j * dw]


@njit(parallel=True, cache=True)
def conv2d_grad_input_kernel(grad_out, weight, grad_x, sh, sw, pt, pl, dh, dw, groups):
    B, Cin, H, W = grad_x.shape
    Cout, Cin_g, kh, kw = weight.shape
    Ho, Wo = grad_out.shape[2], grad_out.shape[3]
    Cout_g = Cout // groups
    for n in prange(B * Cin):  # one input-gradient plane per iteration
        b, c = n // Cin, n % Cin
        g, cl = c // Cin_g, c % Cin_g
        plane = grad_x[b, c]
        plane[:, :] = 0
        for ol in range(Cout_g):
            o = g * Cout_g + ol
            go = grad_out[b, o]
            for i in range(kh):
                y_lo, y_hi = valid_range(Ho, H, sh, i * dh - pt)
                for j in range(kw):
                    x_lo, x_hi = valid_range(Wo, W, sw, j * dw - pl)
                    wv = weight[o, cl, i, j]
                    for yo in range(y_lo, y_hi):
                        y = yo * sh - pt + i * dh
                        for xo in range(x_lo, x_hi):
                            plane[y, xo * sw - pl + j * dw] += wv * go[yo, xo]


@njit(parallel=True, cache=True)
def conv2d_grad_weight_kernel(grad_out, x, grad_w, sh, sw, pt, pl, dh, dw, groups):
    B, Cin, H, W = x.shape
    Cout, Cin_g, kh, kw = grad_w.shape
    Ho, Wo = grad_out.shape[2], grad_out.shape[3]
    Cout_g = Cout // groups
    for n in prange(Cout * Cin_g):  # one (output, input) channel pair per iteration
        o, cl = n // Cin_g, n % Cin_g
        c = (o // Cout_g) * Cin_g + cl
        for i in range(kh):
            y_lo, y_hi = valid_range(Ho, H, sh, i * dh - pt)
            for j in range(kw):
                x_lo, x_hi = valid_range(Wo, W, sw, j * dw - pl)
                acc = grad_w.dtype.type(0)
                for b in range(B):
                    for yo in range(y_lo, y_hi):
                        y = yo * sh - pt + i * dh
                        for xo in range(x_lo, x_hi):
                            acc += grad_out[b, o, yo, xo] * x[b, c, y, xo * sw - pl + j * dw]
                grad_w[o, cl, i, j] = acc


@njit(parallel=True, cache=True)
def conv2d_grad_bias_kernel(grad_out, grad_b):
    B, Cout, Ho, Wo = grad_out.shape
    for o in prange(Cout):
        acc = grad_b.dtype.type(0)
        for b in range(B):
            for yo in range(Ho):
                for xo in range(Wo):
                    acc += grad_out[b, o, yo, xo]
        grad_b[o] = acc


def geometry_args(geometry):
    """The kernels' scalar arguments: ``sh, sw, pt, pl, dh, dw, groups``."""
    pt, _, pl, _ = geometry.padding
    return (*geometry.stride, pt, pl, *geometry.dilation, geometry.groups)


def forward(geometry, x, weight, bias):
    B, Cout = x.shape[0], weight.shape[0]
    out = torch.empty(B, Cout, *geometry.out_size, dtype=x.dtype)
    b = bias if bias is not None else torch.zeros(Cout, dtype=x.dtype)
    conv2d_forward_kernel(
        numpy_view(x), numpy_view(weight), numpy_view(b), out.numpy(), *geometry_args(geometry)
    )
    return out


def backward(geometry, grad_out, x, weight, bias, needs):
    need_x, need_w, need_b = needs
    g = numpy_view(grad_out)
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
        conv2d_grad_input_kernel(g, numpy_view(weight), grad_x.numpy(), *geometry_args(geometry))
    if need_w:
        grad_w = torch.empty_like(weight, memory_format=torch.contiguous_format)
        conv2d_grad_weight_kernel(g, numpy_view(x), grad_w.numpy(), *geometry_args(geometry))
    if need_b and bias is not None:
        grad_b = torch.empty(weight.shape[0], dtype=x.dtype)
        conv2d_grad_bias_kernel(g, grad_b.numpy())
    return grad_x, grad_w, grad_b


CONV2D = KernelSet("numba", forward, backward)
