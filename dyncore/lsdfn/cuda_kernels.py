"""LS-DFN as Numba CUDA kernels: one thread per element of the tensor being written.

Thread-to-data mapping (drawn in Chapter 3): thread ``n = cuda.grid(1)`` owns element ``n`` of
the flattened tensor it writes and loops over what flows into it.

* forward: a thread per output ``(b, v, y, x)``, looping over the ``s*s`` samples and, per
  sample, ``k*k`` taps on the channel-sum map ``S`` plus ``C`` channels at the centre tap:
  ``s*s*(C + k*k)`` multiply-adds (the factorization "eq-factor" of Chapter 3);
* backward: gathers, a thread per element of ``dL/dA_sam``, ``dL/dA_pos``, ``dL/dU``, ``dL/dV``,
  ``dL/dS`` and ``dL/dx``, with the formulas of :mod:`dyncore.lsdfn.numba_cpu`. No atomics, so
  the results do not depend on thread scheduling.

The host functions at the bottom launch them through :mod:`dyncore.cuda_bridge` (a GPU, or the
Numba CUDA simulator).
"""

import torch
from numba import cuda

from ..autograd import KernelSet
from ..cuda_bridge import (device_function, inside, launch, on_kernel_device, sum_axis1, tap_at, unravel3,
                           unravel4, unravel5)


@device_function
def sample_term(x, S, U, V, PA, b, v, y, xx, ym, xm, k):
    """The bracket of Eq. 4 for output ``(y, xx)`` and sample centre ``(ym, xm)`` (inside)."""
    centre = k * k // 2
    ux = S.dtype.type(0)
    for u in range(x.shape[1]):
        ux += U[b, v, u, y, xx] * x[b, u, ym, xm]
    acc = PA[b, v, centre, ym, xm] * ux
    for t in range(k * k):
        py, px = tap_at(t, k, 1, ym, xm, 1)  # the pixel of S tap t reads around the sample
        if inside(py, px, S.shape[1], S.shape[2]):
            acc += PA[b, v, t, ym, xm] * V[b, v, t, y, xx] * S[b, py, px]
    return acc


@cuda.jit(cache=True)
def lsdfn_forward_kernel(x, S, U, V, SA, PA, out, k, s, g):
    b, v, y, xx = unravel4(cuda.grid(1), out.shape)
    if b >= out.shape[0]:  # a spare thread of the last block
        return
    acc = out.dtype.type(0)
    for m in range(s * s):
        ym, xm = tap_at(m, s, g, y, xx, 1)  # sample m's centre
        if inside(ym, xm, out.shape[2], out.shape[3]):
            acc += SA[b, v, m, y, xx] * sample_term(x, S, U, V, PA, b, v, y, xx, ym, xm, k)
    out[b, v, y, xx] = acc


@cuda.jit(cache=True)
def lsdfn_grad_sample_attention_kernel(grad_out, x, S, U, V, PA, grad_SA, k, s, g):
    b, v, m, y, xx = unravel5(cuda.grid(1), grad_SA.shape)
    if b >= grad_SA.shape[0]:
        return
    ym, xm = tap_at(m, s, g, y, xx, 1)
    val = grad_SA.dtype.type(0)
    if inside(ym, xm, grad_SA.shape[3], grad_SA.shape[4]):
        val = grad_out[b, v, y, xx] * sample_term(x, S, U, V, PA, b, v, y, xx, ym, xm, k)
    grad_SA[b, v, m, y, xx] = val


@cuda.jit(cache=True)
def lsdfn_grad_V_kernel(grad_out, S, SA, PA, grad_V, k, s, g):
    b, v, t, y, xx = unravel5(cuda.grid(1), grad_V.shape)
    if b >= grad_V.shape[0]:
        return
    H, W = grad_V.shape[3], grad_V.shape[4]
    acc = grad_V.dtype.type(0)
    for m in range(s * s):
        ym, xm = tap_at(m, s, g, y, xx, 1)
        py, px = tap_at(t, k, 1, ym, xm, 1)
        if inside(ym, xm, H, W) and inside(py, px, H, W):
            acc += SA[b, v, m, y, xx] * PA[b, v, t, ym, xm] * S[b, py, px]
    grad_V[b, v, t, y, xx] = grad_out[b, v, y, xx] * acc


@cuda.jit(cache=True)
def lsdfn_grad_U_kernel(grad_out, x, SA, PA, grad_U, k, s, g):
    b, v, u, y, xx = unravel5(cuda.grid(1), grad_U.shape)
    if b >= grad_U.shape[0]:
        return
    centre = k * k // 2
    acc = grad_U.dtype.type(0)
    for m in range(s * s):
        ym, xm = tap_at(m, s, g, y, xx, 1)
        if inside(ym, xm, grad_U.shape[3], grad_U.shape[4]):
            acc += SA[b, v, m, y, xx] * PA[b, v, centre, ym, xm] * x[b, u, ym, xm]
    grad_U[b, v, u, y, xx] = grad_out[b, v, y, xx] * acc


@cuda.jit(cache=True)
def lsdfn_grad_position_attention_kernel(grad_out, x, S, U, V, SA, grad_PA, k, s, g):
    b, v, t, p, q = unravel5(cuda.grid(1), grad_PA.shape)
    if b >= grad_PA.shape[0]:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    centre = k * k // 2
    py, px = tap_at(t, k, 1, p, q, 1)
    s_tap = S.dtype.type(0)
    if inside(py, px, H, W):
        s_tap = S[b, py, px]
    acc = grad_PA.dtype.type(0)
    for m in range(s * s):
        y, xx = tap_at(m, s, g, p, q, -1)  # the output whose sample m is centred here
        if not inside(y, xx, H, W):
            continue
        term = V[b, v, t, y, xx] * s_tap
        if t == centre:
            for u in range(C):
                term += U[b, v, u, y, xx] * x[b, u, p, q]
        acc += grad_out[b, v, y, xx] * SA[b, v, m, y, xx] * term
    grad_PA[b, v, t, p, q] = acc


@cuda.jit(cache=True)
def lsdfn_grad_channel_sum_kernel(grad_out, V, SA, PA, grad_S, k, s, g):
    b, p, q = unravel3(cuda.grid(1), grad_S.shape)
    if b >= grad_S.shape[0]:
        return
    H, W = grad_S.shape[1], grad_S.shape[2]
    acc = grad_S.dtype.type(0)
    for v in range(grad_out.shape[1]):
        for t in range(k * k):
            ym, xm = tap_at(t, k, 1, p, q, -1)  # the sample centre whose tap t reads (p, q)
            if not inside(ym, xm, H, W):
                continue
            for m in range(s * s):
                y, xx = tap_at(m, s, g, ym, xm, -1)  # the output whose sample m is centred there
                if inside(y, xx, H, W):
                    acc += (grad_out[b, v, y, xx] * SA[b, v, m, y, xx]
                            * PA[b, v, t, ym, xm] * V[b, v, t, y, xx])
    grad_S[b, p, q] = acc


@cuda.jit(cache=True)
def lsdfn_grad_input_kernel(grad_out, U, SA, PA, grad_S, grad_x, k, s, g):
    b, u, p, q = unravel4(cuda.grid(1), grad_x.shape)
    if b >= grad_x.shape[0]:
        return
    centre = k * k // 2
    acc = grad_S[b, p, q]
    for v in range(grad_out.shape[1]):
        for m in range(s * s):
            y, xx = tap_at(m, s, g, p, q, -1)
            if inside(y, xx, grad_x.shape[2], grad_x.shape[3]):
                acc += (grad_out[b, v, y, xx] * SA[b, v, m, y, xx]
                        * PA[b, v, centre, p, q] * U[b, v, u, y, xx])
    grad_x[b, u, p, q] = acc


def _channel_sum(x):
    """``S[b, y, x] = sum_u x[b, u, y, x]`` (Chapter 3, eq-factor), a thread per pixel."""
    B, C, H, W = x.shape
    return sum_axis1(x.view(B, C, H * W)).view(B, H, W)


@on_kernel_device
def forward(config, x, U, V, sample_attention, position_attention):
    k, s, g = config
    out = x.new_empty(x.shape[0], U.shape[1], x.shape[2], x.shape[3])
    launch(lsdfn_forward_kernel, out.numel(), x, _channel_sum(x), U, V,
           sample_attention, position_attention, out, k, s, g)
    return out


@on_kernel_device
def backward(config, grad_out, x, U, V, sample_attention, position_attention, needs):
    k, s, g = config
    need_x, need_U, need_V, need_SA, need_PA = needs
    SA, PA = sample_attention, position_attention
    S = _channel_sum(x)
    grad_x = grad_U = grad_V = grad_SA = grad_PA = None
    if need_x:
        grad_S = torch.empty_like(S)
        launch(lsdfn_grad_channel_sum_kernel, grad_S.numel(), grad_out, V, SA, PA, grad_S, k, s, g)
        grad_x = torch.empty_like(x)
        launch(lsdfn_grad_input_kernel, grad_x.numel(), grad_out, U, SA, PA, grad_S, grad_x, k, s, g)
    if need_U:
        grad_U = torch.empty_like(U)
        launch(lsdfn_grad_U_kernel, grad_U.numel(), grad_out, x, SA, PA, grad_U, k, s, g)
    if need_V:
        grad_V = torch.empty_like(V)
        launch(lsdfn_grad_V_kernel, grad_V.numel(), grad_out, S, SA, PA, grad_V, k, s, g)
    if need_SA:
        grad_SA = torch.empty_like(SA)
        launch(lsdfn_grad_sample_attention_kernel, grad_SA.numel(), grad_out, x, S, U, V, PA,
               grad_SA, k, s, g)
    if need_PA:
        grad_PA = torch.empty_like(PA)
        launch(lsdfn_grad_position_attention_kernel, grad_PA.numel(), grad_out, x, S, U, V, SA,
               grad_PA, k, s, g)
    return grad_x, grad_U, grad_V, grad_SA, grad_PA


LARGE_SAMPLING_FILTER = KernelSet("cuda", forward, backward)
