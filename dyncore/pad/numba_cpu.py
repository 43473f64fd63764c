"""Pixel-wise adaptive dilation compiled with Numba for the CPU: fused forward and backward.

*Fused* means that the ``D`` dilated convolutions of the gated sum are never materialized:
each output pixel accumulates ``gates[b, d, y, x]`` times its dilation-``d`` response directly
into its ``Cout`` outputs. A dilation whose gate is exactly zero at a pixel is skipped there,
so with one-hot gates (the straight-through forward, or eval mode with ``hard=True``) each
pixel costs one convolution instead of ``D``.

Each ``prange`` iteration owns one row ``(b, y)`` of the tensor it writes (all channels), so no
two threads write the same element: deterministic, no atomics. The innermost loops run over
the ``Cout`` (or ``Cin``) channels of one pixel, on weights laid out so that they are contiguous.

Backward (Chapter 5, eq-pad-grad-x, eq-pad-grad-w, eq-pad-grad-gates), with ``G = dL/d out`` and ``R_d`` the dilation-``d`` response:

* ``dL/dx[b, c, y', x'] = sum_{d, i, j, o} weight[o, c, i, j] * gates[b, d, y, x] * G[b, o, y, x]``
  over the output pixels ``(y, x) = (y' - (i - r) dil_d, x' - (j - r) dil_d)`` that read ``(y', x')``;
* ``dL/dweight[o, c, i, j] = sum_{b, d, y, x} gates[b, d, y, x] * G[b, o, y, x]
  * x[b, c, y + (i - r) dil_d, x + (j - r) dil_d]``;
* ``dL/dbias[o] = sum_{b, y, x} G[b, o, y, x]``;
* ``dL/dgates[b, d, y, x] = sum_o G[b, o, y, x] * R_d[b, o, y, x]
  = sum_{c, i, j} u[c, i, j] * x[b, c, y + (i - r) dil_d, x + (j - r) dil_d]`` with
  ``u[c, i, j] = sum_o G[b, o, y, x] * weight[o, c, i, j]``: one product with the weights per
  pixel, shared by all ``D`` dilations. It needs every dilation's response, selected or not.
"""

import numpy as np
import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..conv.numba_cpu import conv2d_grad_bias_kernel


@njit(parallel=True, cache=True)
def pad_forward_kernel(x, weight_t, bias, gates, dilations, out):
    """``weight_t[c, i, j, o] = weight[o, c, i, j]``: the ``Cout`` weights of a tap side by side."""
    B, Cin, H, W = x.shape
    k, Cout = weight_t.shape[1], weight_t.shape[3]
    D = dilations.shape[0]
    r = (k - 1) // 2
    for n in prange(B * H):  # one output row, all channels, per iteration
        b, y = n // H, n % H
        acc = np.empty(Cout, dtype=out.dtype)
        for xo in range(W):
            for o in range(Cout):
                acc[o] = bias[o]
            for d in range(D):
                g = gates[b, d, y, xo]
                if g == 0:  # a dilation this pixel did not select costs nothing
                    continue
                dil = dilations[d]
                # c, i, j in the order of dyncore.conv's kernel: a one-hot gate gives its bits
                for c in range(Cin):
                    for i in range(k):
                        yi = y + (i - r) * dil
                        if yi < 0 or yi >= H:
                            continue
                        for j in range(k):
                            xi = xo + (j - r) * dil
                            if xi < 0 or xi >= W:
                                continue
                            v = g * x[b, c, yi, xi]
                            for o in range(Cout):
                                acc[o] += weight_t[c, i, j, o] * v
            for o in range(Cout):
                out[b, o, y, xo] = acc[o]


@njit(parallel=True, cache=True)
def pad_grad_input_kernel(grad_out, weight_t, gates, dilations, grad_x):
    """``weight_t[i, j, o, c] = weight[o, c, i, j]``. A gather: input pixel ``(y', x')`` sums
    what flows back from every output pixel that read it, through every tap and dilation."""
    B, Cin, H, W = grad_x.shape
    k, Cout = weight_t.shape[0], weight_t.shape[2]
    D = dilations.shape[0]
    r = (k - 1) // 2
    for n in prange(B * H):  # one input-gradient row, all channels, per iteration
        b, yi = n // H, n % H
        acc = np.empty(Cin, dtype=grad_x.dtype)
        for xi in range(W):
            for c in range(Cin):
                acc[c] = 0
            for d in range(D):
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
                            v = g * grad_out[b, o, y, xo]
                            for c in range(Cin):
                                acc[c] += weight_t[i, j, o, c] * v
            for c in range(Cin):
                grad_x[b, c, yi, xi] = acc[c]


@njit(parallel=True, cache=True)
def pad_grad_weight_kernel(grad_out, x_t, gates, dilations, grad_w_t):
    """``x_t[b, y, x, c] = x[b, c, y, x]`` (channels last) and ``grad_w_t[o, i, j, c] =
    dL/dweight[o, c, i, j]``: the innermost loop runs over contiguous channels."""
    B, H, W, Cin = x_t.shape
    Cout, k = grad_w_t.shape[0], grad_w_t.shape[1]
    D = dilations.shape[0]
    r = (k - 1) // 2
    for o in prange(Cout):  # one output channel's k*k*Cin weights per iteration
        acc = grad_w_t[o]
        acc[:, :, :] = 0
        for b in range(B):
            for y in range(H):
                for xo in range(W):
                    go = grad_out[b, o, y, xo]
                    for d in range(D):
                        s = gates[b, d, y, xo] * go
                        if s == 0:  # unselected dilation (or no gradient): nothing flows
                            continue
                        dil = dilations[d]
                        for i in range(k):
                            yi = y + (i - r) * dil
                            if yi < 0 or yi >= H:
                                continue
                            for j in range(k):
                                xi = xo + (j - r) * dil
                                if xi < 0 or xi >= W:
                                    continue
                                for c in range(Cin):
                                    acc[i, j, c] += s * x_t[b, yi, xi, c]


@njit(parallel=True, cache=True)
def pad_grad_gates_kernel(grad_out, x, weight_flat, k, dilations, grad_gates):
    """``weight_flat[o, (c*k + i)*k + j] = weight[o, c, i, j]``."""
    B, Cin, H, W = x.shape
    Cout, K = weight_flat.shape
    D = dilations.shape[0]
    r = (k - 1) // 2
    for n in prange(B * H):  # one row of gate gradients, all D dilations, per iteration
        b, y = n // H, n % H
        u = np.empty(K, dtype=grad_gates.dtype)
        for xo in range(W):
            # u[c, i, j] = sum_o G[b, o, y, xo] * weight[o, c, i, j], once for all dilations
            for t in range(K):
                u[t] = 0
            for o in range(Cout):
                go = grad_out[b, o, y, xo]
                for t in range(K):
                    u[t] += weight_flat[o, t] * go
            for d in range(D):
                dil = dilations[d]
                acc = grad_gates.dtype.type(0)
                for c in range(Cin):
                    for i in range(k):
                        yi = y + (i - r) * dil
                        if yi < 0 or yi >= H:
                            continue
                        for j in range(k):
                            xi = xo + (j - r) * dil
                            if 0 <= xi < W:
                                acc += u[(c * k + i) * k + j] * x[b, c, yi, xi]
                grad_gates[b, d, y, xo] = acc


def _dilations(config) -> np.ndarray:
    """``config`` is ``(dilations,)``."""
    return np.asarray(config[0], dtype=np.int64)


def forward(config, x, weight, bias, gates):
    """``config`` is ``(dilations,)``."""
    B, _, H, W = x.shape
    Cout = weight.shape[0]
    out = torch.empty(B, Cout, H, W, dtype=x.dtype)
    b = bias if bias is not None else torch.zeros(Cout, dtype=x.dtype)
    pad_forward_kernel(numpy_view(x), numpy_view(weight.permute(1, 2, 3, 0)), numpy_view(b),
                       numpy_view(gates), _dilations(config), out.numpy())
    return out


def backward(config, grad_out, x, weight, bias, gates, needs):
    need_x, need_w, need_b, need_g = needs
    g = numpy_view(grad_out)
    dil = _dilations(config)
    grad_x = grad_w = grad_b = grad_g = None
    if need_x:
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        pad_grad_input_kernel(g, numpy_view(weight.permute(2, 3, 0, 1)), numpy_view(gates), dil,
                              grad_x.numpy())
    if need_w:
        Cout, Cin, k, _ = weight.shape
        grad_w_t = torch.empty(Cout, k, k, Cin, dtype=x.dtype)
        pad_grad_weight_kernel(g, numpy_view(x.permute(0, 2, 3, 1)), numpy_view(gates), dil,
                               grad_w_t.numpy())
        grad_w = grad_w_t.permute(0, 3, 1, 2).contiguous()
    if need_b and bias is not None:
        grad_b = torch.empty(weight.shape[0], dtype=x.dtype)
        conv2d_grad_bias_kernel(g, grad_b.numpy())
    if need_g:
        grad_g = torch.empty(gates.shape, dtype=x.dtype)
        pad_grad_gates_kernel(g, numpy_view(x), numpy_view(weight.reshape(weight.shape[0], -1)),
                              weight.shape[2], dil, grad_g.numpy())
    return grad_x, grad_w, grad_b, grad_g


ADAPTIVE_DILATION_CONV = KernelSet("numba", forward, backward)
