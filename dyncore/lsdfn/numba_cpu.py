"""LS-DFN compiled with Numba for the CPU: the fused forward and hand-derived backward kernels.

The forward uses the factorization of Chapter 3 (equation "eq-factor"): since ``V`` is shared by all input
channels, ``sum_u W[u, t] x[u, p] = V[t] * S[p] + [t == centre] U[u] x[u, p]`` with the
channel-sum map ``S = sum_u x[u]``. A sample then costs ``C + k*k`` multiply-adds instead of
``C * k*k``, and nothing of size ``Co * C * k*k * H * W`` is ever built.

Every kernel is parallel over image rows of the tensor it writes (``prange``); one iteration owns
its row, so there are no atomics and the results are deterministic. The innermost loops run
along contiguous image rows with the zero-padding tests hoisted into their bounds.

Backward (Chapter 3, "The backward pass"), with ``g = dL/d out``, ``o_m`` the sample offsets,
``o_t`` the tap offsets and ``c`` the centre tap:

* ``dL/dA_sam[v, m, y, x] = g[v, y, x] * inner[v, m, y, x]`` (the bracket of Eq. 4);
* ``dL/dV[v, t, y, x] = g * sum_m A_sam[m] * A_pos[t, ym, xm] * S[ym + o_t]``;
* ``dL/dU[v, u, y, x] = g * sum_m A_sam[m] * A_pos[c, ym, xm] * x[u, ym, xm]``;
* ``dL/dA_pos[v, t, p]``: gathered from the outputs ``(y, x) = p - o_m`` that read ``p`` as their
  sample centre: ``sum_m g * A_sam[m] * (V[t] S[p + o_t] + [t == c] sum_u U[u] x[u, p])``;
* ``dL/dx[u, p] = dL/dS[p] + sum_{v, m} g * A_sam[m] * A_pos[c, p] * U[u]`` at ``(y, x) = p - o_m``,
  with ``dL/dS[p] = sum_{v, t, m} g * A_sam[m] * A_pos[t, p - o_t] * V[t]`` at ``(y, x) = p - o_t - o_m``.
"""

import numpy as np
import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..geometry import valid_range


@njit(cache=True, inline="always")
def _centre_terms(x, U, b, v, y, s, g, ux):
    """``ux[m, x] = sum_u U[u, y, x] * x[u, ym, x + dx]``: the centre tap of every sample.

    Entries whose sample centre is outside the image are 0.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    rs = (s - 1) // 2
    ux[:, :] = 0
    for m in range(s * s):
        dy, dx = (m // s - rs) * g, (m % s - rs) * g
        ym = y + dy
        if ym < 0 or ym >= H:
            continue
        lo, hi = valid_range(W, W, 1, dx)
        acc = ux[m, lo:hi]
        for u in range(C):  # a row of U times a shifted row of x, along contiguous memory
            urow, xrow = U[b, v, u, y, lo:hi], x[b, u, ym, lo + dx: hi + dx]
            for i in range(hi - lo):  # a loop from 0 over slices: LLVM vectorizes it (4x here)
                acc[i] += urow[i] * xrow[i]


@njit(cache=True, inline="always")
def _sample_row(S, V, PA, b, v, y, ym, dx, k, ux_m, acc):
    """``acc[x] = sum_t A_pos[t, ym, x+dx] * sum_u W[u, t, y, x] * x[u, ym + ty, x + dx + tx]``.

    The bracket of Eq. 4 for one output row ``y`` and one sample (row ``ym``, column shift
    ``dx``), factorized: the centre tap's channel sum ``ux_m`` comes from :func:`_centre_terms`,
    the ``V`` part multiplies the channel-sum map ``S``. Entries whose centre is outside stay 0.
    """
    H, W = S.shape[1], S.shape[2]
    r = (k - 1) // 2
    centre = k * k // 2
    acc[:] = 0
    lo, hi = valid_range(W, W, 1, dx)
    pa = PA[b, v, centre, ym]
    for xx in range(lo, hi):
        acc[xx] = pa[xx + dx] * ux_m[xx]
    # the V term: one weight per tap, shared by the channels, so it multiplies S
    for t in range(k * k):
        ty, tx = t // k - r, t % k - r
        py = ym + ty
        if py < 0 or py >= H:
            continue
        lo2, hi2 = valid_range(W, W, 1, dx + tx)
        lo2, hi2 = max(lo, lo2), min(hi, hi2)
        if hi2 <= lo2:
            continue
        pa = PA[b, v, t, ym, lo2 + dx: hi2 + dx]
        vrow, srow = V[b, v, t, y, lo2:hi2], S[b, py, lo2 + dx + tx: hi2 + dx + tx]
        out = acc[lo2:hi2]
        for i in range(hi2 - lo2):
            out[i] += pa[i] * vrow[i] * srow[i]


@njit(parallel=True, cache=True)
def channel_sum_kernel(x, S):
    B, C, H, W = x.shape
    for n in prange(B * H):
        b, y = n // H, n % H
        S[b, y, :] = 0
        for u in range(C):
            for xx in range(W):
                S[b, y, xx] += x[b, u, y, xx]


@njit(parallel=True, cache=True)
def lsdfn_forward_kernel(x, S, U, V, SA, PA, out, k, s, g):
    B, Co, H, W = out.shape
    rs = (s - 1) // 2
    for n in prange(B * Co * H):  # one output row per iteration
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        row = out[b, v, y]
        row[:] = 0
        acc = np.empty_like(row)
        ux = np.empty((s * s, W), dtype=row.dtype)
        _centre_terms(x, U, b, v, y, s, g, ux)
        for m in range(s * s):
            dy, dx = (m // s - rs) * g, (m % s - rs) * g
            ym = y + dy
            if ym < 0 or ym >= H:
                continue  # A_pos is zero outside the image
            _sample_row(S, V, PA, b, v, y, ym, dx, k, ux[m], acc)
            for xx in range(W):
                row[xx] += SA[b, v, m, y, xx] * acc[xx]


@njit(parallel=True, cache=True)
def lsdfn_grad_sample_attention_kernel(grad_out, x, S, U, V, PA, grad_SA, k, s, g):
    B, Co, H, W = grad_out.shape
    rs = (s - 1) // 2
    for n in prange(B * Co * H):
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        acc = np.empty_like(grad_out[b, v, y])
        ux = np.empty((s * s, W), dtype=acc.dtype)
        _centre_terms(x, U, b, v, y, s, g, ux)
        for m in range(s * s):
            dy, dx = (m // s - rs) * g, (m % s - rs) * g
            ym = y + dy
            if ym < 0 or ym >= H:
                grad_SA[b, v, m, y, :] = 0
                continue
            _sample_row(S, V, PA, b, v, y, ym, dx, k, ux[m], acc)
            for xx in range(W):
                grad_SA[b, v, m, y, xx] = grad_out[b, v, y, xx] * acc[xx]


@njit(parallel=True, cache=True)
def lsdfn_grad_kernels_kernel(grad_out, x, S, SA, PA, grad_U, grad_V, k, s, g, need_U, need_V):
    """``dL/dU`` and ``dL/dV`` for one output row per iteration."""
    B, Co, H, W = grad_out.shape
    C = x.shape[1]
    r, rs = (k - 1) // 2, (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * Co * H):
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        if need_U:
            grad_U[b, v, :, y, :] = 0
        if need_V:
            grad_V[b, v, :, y, :] = 0
        gs = np.empty_like(grad_out[b, v, y])
        for m in range(s * s):
            dy, dx = (m // s - rs) * g, (m % s - rs) * g
            ym = y + dy
            if ym < 0 or ym >= H:
                continue
            lo, hi = valid_range(W, W, 1, dx)
            for xx in range(lo, hi):
                gs[xx] = grad_out[b, v, y, xx] * SA[b, v, m, y, xx]
            if need_V:
                for t in range(k * k):
                    py = ym + t // k - r
                    if py < 0 or py >= H:
                        continue
                    tx = t % k - r
                    lo2, hi2 = valid_range(W, W, 1, dx + tx)
                    for xx in range(max(lo, lo2), min(hi, hi2)):
                        grad_V[b, v, t, y, xx] += gs[xx] * PA[b, v, t, ym, xx + dx] * S[b, py, xx + dx + tx]
            if need_U:
                for xx in range(lo, hi):
                    gs[xx] *= PA[b, v, centre, ym, xx + dx]
                for u in range(C):
                    for xx in range(lo, hi):
                        grad_U[b, v, u, y, xx] += gs[xx] * x[b, u, ym, xx + dx]


@njit(parallel=True, cache=True)
def lsdfn_grad_position_attention_kernel(grad_out, x, S, U, V, SA, grad_PA, k, s, g):
    """One row ``p`` of ``dL/dA_pos`` per iteration, gathered from the outputs ``p - o_m``."""
    B, Co, H, W = grad_out.shape
    C = x.shape[1]
    r, rs = (k - 1) // 2, (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * Co * H):
        b, v, p = n // (Co * H), (n // H) % Co, n % H
        grad_PA[b, v, :, p, :] = 0
        gs = np.zeros_like(grad_out[b, v, p])
        tmp = np.zeros_like(gs)
        for m in range(s * s):
            dy, dx = (m // s - rs) * g, (m % s - rs) * g
            y = p - dy  # the output row whose sample m is centred on row p
            if y < 0 or y >= H:
                continue
            lo, hi = valid_range(W, W, 1, -dx)  # q with x = q - dx inside
            for q in range(lo, hi):
                gs[q] = grad_out[b, v, y, q - dx] * SA[b, v, m, y, q - dx]
                tmp[q] = 0
            for u in range(C):
                for q in range(lo, hi):
                    tmp[q] += U[b, v, u, y, q - dx] * x[b, u, p, q]
            for q in range(lo, hi):
                grad_PA[b, v, centre, p, q] += gs[q] * tmp[q]
            for t in range(k * k):
                py = p + t // k - r
                if py < 0 or py >= H:
                    continue
                tx = t % k - r
                lo2, hi2 = valid_range(W, W, 1, tx)
                for q in range(max(lo, lo2), min(hi, hi2)):
                    grad_PA[b, v, t, p, q] += gs[q] * V[b, v, t, y, q - dx] * S[b, py, q + tx]


@njit(parallel=True, cache=True)
def lsdfn_grad_channel_sum_kernel(grad_out, V, SA, PA, grad_S, k, s, g):
    """``dL/dS[b, p, q]``: the outputs ``p - o_t - o_m`` read ``S[p]`` through tap t, sample m."""
    B, Co, H, W = grad_out.shape
    r, rs = (k - 1) // 2, (s - 1) // 2
    for n in prange(B * H):
        b, p = n // H, n % H
        row = grad_S[b, p]
        row[:] = 0
        for v in range(Co):
            for t in range(k * k):
                ty, tx = t // k - r, t % k - r
                ym = p - ty
                if ym < 0 or ym >= H:
                    continue
                for m in range(s * s):
                    dy, dx = (m // s - rs) * g, (m % s - rs) * g
                    y = ym - dy
                    if y < 0 or y >= H:
                        continue
                    lo = max(0, tx, tx + dx)
                    hi = min(W, W + tx, W + tx + dx)
                    for q in range(lo, hi):
                        xm = q - tx
                        xx = xm - dx
                        row[q] += (grad_out[b, v, y, xx] * SA[b, v, m, y, xx]
                                   * PA[b, v, t, ym, xm] * V[b, v, t, y, xx])


@njit(parallel=True, cache=True)
def lsdfn_grad_input_kernel(grad_out, U, SA, PA, grad_S, grad_x, k, s, g):
    """``dL/dx[b, u, p, q] = dL/dS[b, p, q] + sum_{v, m} g * A_sam[m] * A_pos[c, p] * U[u]``."""
    B, Co, H, W = grad_out.shape
    C = grad_x.shape[1]
    rs = (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * C * H):
        b, u, p = n // (C * H), (n // H) % C, n % H
        row = grad_x[b, u, p]
        row[:] = grad_S[b, p]
        for v in range(Co):
            for m in range(s * s):
                dy, dx = (m // s - rs) * g, (m % s - rs) * g
                y = p - dy
                if y < 0 or y >= H:
                    continue
                lo, hi = valid_range(W, W, 1, -dx)
                for q in range(lo, hi):
                    row[q] += (grad_out[b, v, y, q - dx] * SA[b, v, m, y, q - dx]
                               * PA[b, v, centre, p, q] * U[b, v, u, y, q - dx])


def channel_sum(x):
    B, C, H, W = x.shape
    S = np.empty((B, H, W), dtype=x.dtype)
    channel_sum_kernel(x, S)
    return S


def forward(config, x, U, V, sample_attention, position_attention):
    k, s, g = config
    xs = numpy_view(x)
    out = torch.empty(x.shape[0], U.shape[1], x.shape[2], x.shape[3], dtype=x.dtype)
    lsdfn_forward_kernel(xs, channel_sum(xs), numpy_view(U), numpy_view(V),
                         numpy_view(sample_attention), numpy_view(position_attention),
                         out.numpy(), k, s, g)
    return out


def backward(config, grad_out, x, U, V, sample_attention, position_attention, needs):
    k, s, g = config
    need_x, need_U, need_V, need_SA, need_PA = needs
    go, xs, Us, Vs = numpy_view(grad_out), numpy_view(x), numpy_view(U), numpy_view(V)
    SA, PA = numpy_view(sample_attention), numpy_view(position_attention)
    S = channel_sum(xs)
    grad_x = grad_U = grad_V = grad_SA = grad_PA = None
    if need_x:
        grad_S = np.empty_like(S)
        lsdfn_grad_channel_sum_kernel(go, Vs, SA, PA, grad_S, k, s, g)
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        lsdfn_grad_input_kernel(go, Us, SA, PA, grad_S, grad_x.numpy(), k, s, g)
    if need_U or need_V:
        grad_U = torch.empty(U.shape, dtype=x.dtype)
        grad_V = torch.empty(V.shape, dtype=x.dtype)
        lsdfn_grad_kernels_kernel(go, xs, S, SA, PA, grad_U.numpy(), grad_V.numpy(), k, s, g,
                                  need_U, need_V)
    if need_SA:
        grad_SA = torch.empty(sample_attention.shape, dtype=x.dtype)
        lsdfn_grad_sample_attention_kernel(go, xs, S, Us, Vs, PA, grad_SA.numpy(), k, s, g)
    if need_PA:
        grad_PA = torch.empty(position_attention.shape, dtype=x.dtype)
        lsdfn_grad_position_attention_kernel(go, xs, S, Us, Vs, SA, grad_PA.numpy(), k, s, g)
    return grad_x, grad_U, grad_V, grad_SA, grad_PA


LARGE_SAMPLING_FILTER = KernelSet("numba", forward, backward)
