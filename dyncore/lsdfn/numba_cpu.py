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

The centre tap's channel sums ``Z[v, m, y, x] = sum_u U[v, u, y, x] * x[u, ym, xm]`` cost ``C``
multiply-adds per sample, the rest of the bracket ``k*k``: the backward computes ``Z`` once
(:func:`lsdfn_centre_kernel`) for both attention gradients. Wherever a factor does not depend on
the channel ``u`` (``g * A_sam * A_pos[c]`` in ``dL/dU`` and ``dL/dx``), it is formed once per
row and multiplies one row per channel.
"""

import numpy as np
import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
from ..geometry import shifted_row, valid_range


@njit(cache=True, inline="always")
def _centre_terms(x, U, b, v, y, s, g, ux):
    """``ux[m, x] = sum_u U[u, y, x] * x[u, ym, x + dx]``: the centre tap of every sample.

    Entries whose sample centre is outside the image are 0.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    ux[:, :] = 0
    for m in range(s * s):
        ym, dx, lo, hi = shifted_row(m, s, g, y, H, W, 1)
        if hi <= lo:
            continue
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
    for n in prange(B * Co * H):  # one output row per iteration
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        row = out[b, v, y]
        row[:] = 0
        acc = np.empty_like(row)
        ux = np.empty((s * s, W), dtype=row.dtype)
        _centre_terms(x, U, b, v, y, s, g, ux)
        for m in range(s * s):
            ym, dx, lo, hi = shifted_row(m, s, g, y, H, W, 1)
            if hi <= lo:
                continue  # A_pos is zero outside the image
            _sample_row(S, V, PA, b, v, y, ym, dx, k, ux[m], acc)
            for xx in range(W):
                row[xx] += SA[b, v, m, y, xx] * acc[xx]


@njit(parallel=True, cache=True)
def lsdfn_centre_kernel(x, U, Z, s, g):
    """``Z[b, v, m, y, x] = sum_u U[b, v, u, y, x] * x[b, u, ym, xm]``: the centre tap's channel
    sum of every sample, which the gradients of both attentions read (0 where the centre is out)."""
    B, Co, _, H, W = Z.shape
    for n in prange(B * Co * H):
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        ux = np.empty((s * s, W), dtype=Z.dtype)
        _centre_terms(x, U, b, v, y, s, g, ux)
        for m in range(s * s):
            Z[b, v, m, y, :] = ux[m]


@njit(parallel=True, cache=True)
def lsdfn_grad_sample_attention_kernel(grad_out, S, V, PA, Z, grad_SA, k, s, g):
    """eq-grad-sam: the forward's bracket, per sample, times ``G``; its centre term read from ``Z``."""
    B, Co, H, W = grad_out.shape
    for n in prange(B * Co * H):
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        acc = np.empty_like(grad_out[b, v, y])
        for m in range(s * s):
            ym, dx, lo, hi = shifted_row(m, s, g, y, H, W, 1)
            if hi <= lo:
                grad_SA[b, v, m, y, :] = 0
                continue
            _sample_row(S, V, PA, b, v, y, ym, dx, k, Z[b, v, m, y], acc)
            for xx in range(W):
                grad_SA[b, v, m, y, xx] = grad_out[b, v, y, xx] * acc[xx]


@njit(parallel=True, cache=True)
def lsdfn_grad_kernels_kernel(grad_out, x, S, SA, PA, grad_U, grad_V, k, s, g, need_U, need_V):
    """eq-grad-u and eq-grad-v for one output row per iteration: first ``G_m`` (and ``G_m``
    times the centre's position attention) for every sample, then each row of ``dL/dU`` and
    ``dL/dV`` summed over the samples in a local row and written once."""
    B, Co, H, W = grad_out.shape
    C = x.shape[1]
    r, rs = (k - 1) // 2, (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * Co * H):
        b, v, y = n // (Co * H), (n // H) % Co, n % H
        gm = np.zeros((s * s, W), dtype=grad_out.dtype)   # G_m, 0 where the sample is outside
        gc = np.zeros((s * s, W), dtype=grad_out.dtype)   # G_m * A_pos[c] at the sample centre
        acc = np.empty(W, dtype=grad_out.dtype)
        for m in range(s * s):
            ym, dx, lo, hi = shifted_row(m, s, g, y, H, W, 1)
            if hi <= lo:
                continue
            for xx in range(lo, hi):
                gm[m, xx] = grad_out[b, v, y, xx] * SA[b, v, m, y, xx]
                gc[m, xx] = gm[m, xx] * PA[b, v, centre, ym, xx + dx]
        if need_U:
            for u in range(C):
                acc[:] = 0
                for m in range(s * s):
                    ym, dx, lo, hi = shifted_row(m, s, g, y, H, W, 1)
                    if hi <= lo:
                        continue
                    a, gcm, xrow = acc[lo:hi], gc[m, lo:hi], x[b, u, ym, lo + dx:hi + dx]
                    for i in range(hi - lo):
                        a[i] += gcm[i] * xrow[i]
                grad_U[b, v, u, y, :] = acc
        if need_V:
            for t in range(k * k):
                ty, tx = t // k - r, t % k - r
                acc[:] = 0
                for m in range(s * s):
                    dy, dx = (m // s - rs) * g, (m % s - rs) * g
                    ym, py = y + dy, y + dy + ty
                    if ym < 0 or ym >= H or py < 0 or py >= H:
                        continue
                    lo, hi = valid_range(W, W, 1, dx)
                    lo2, hi2 = valid_range(W, W, 1, dx + tx)
                    lo, hi = max(lo, lo2), min(hi, hi2)
                    if hi <= lo:
                        continue
                    a, gmm = acc[lo:hi], gm[m, lo:hi]
                    pa, srow = PA[b, v, t, ym, lo + dx:hi + dx], S[b, py, lo + dx + tx:hi + dx + tx]
                    for i in range(hi - lo):
                        a[i] += gmm[i] * pa[i] * srow[i]
                grad_V[b, v, t, y, :] = acc


@njit(parallel=True, cache=True)
def lsdfn_grad_position_attention_kernel(grad_out, S, V, SA, Z, grad_PA, k, s, g):
    """eq-grad-pos: one row ``q`` of ``dL/dA_pos`` per iteration, gathered from the output rows
    ``q - o_m``; the centre tap's channel sum is read from ``Z``."""
    B, Co, H, W = grad_out.shape
    r, rs = (k - 1) // 2, (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * Co * H):
        b, v, p = n // (Co * H), (n // H) % Co, n % H
        grad_PA[b, v, :, p, :] = 0
        gs = np.empty_like(grad_out[b, v, p])
        for m in range(s * s):
            dy, dx = (m // s - rs) * g, (m % s - rs) * g
            y = p - dy  # the output row whose sample m is centred on row p
            if y < 0 or y >= H:
                continue
            lo, hi = valid_range(W, W, 1, -dx)  # q with x = q - dx inside
            grow, sa = grad_out[b, v, y, lo - dx:hi - dx], SA[b, v, m, y, lo - dx:hi - dx]
            gq, zrow, out = gs[lo:hi], Z[b, v, m, y, lo - dx:hi - dx], grad_PA[b, v, centre, p, lo:hi]
            for i in range(hi - lo):
                gq[i] = grow[i] * sa[i]
                out[i] += gq[i] * zrow[i]
            for t in range(k * k):
                py = p + t // k - r
                if py < 0 or py >= H:
                    continue
                tx = t % k - r
                lo2, hi2 = valid_range(W, W, 1, tx)
                lo2, hi2 = max(lo, lo2), min(hi, hi2)
                if hi2 <= lo2:
                    continue
                gq, out = gs[lo2:hi2], grad_PA[b, v, t, p, lo2:hi2]
                vrow, srow = V[b, v, t, y, lo2 - dx:hi2 - dx], S[b, py, lo2 + tx:hi2 + tx]
                for i in range(hi2 - lo2):
                    out[i] += gq[i] * vrow[i] * srow[i]


@njit(parallel=True, cache=True)
def lsdfn_grad_input_kernel(grad_out, U, V, SA, PA, grad_x, k, s, g):
    """eq-grad-s and eq-lsdfn-grad-x for one image row ``q`` of every channel per iteration.

    ``dL/dS`` first: for each output channel and tap, the sample centres ``q - o_t`` sum
    ``G_m V_t`` over the samples whose output reads them, then times ``A_pos[t]``; the row
    starts every channel's gradient. Then the centre path: ``G_m A_pos[c, q]`` does not depend
    on the input channel, so it is formed once per sample and multiplies a row of ``U`` per
    channel."""
    B, Co, H, W = grad_out.shape
    C = grad_x.shape[1]
    r, rs = (k - 1) // 2, (s - 1) // 2
    centre = k * k // 2
    for n in prange(B * H):
        b, p = n // H, n % H
        gS = np.zeros(W, dtype=grad_out.dtype)
        T = np.empty(W, dtype=grad_out.dtype)
        w = np.empty(W, dtype=grad_out.dtype)
        for v in range(Co):
            for t in range(k * k):
                ty, tx = t // k - r, t % k - r
                ym = p - ty  # the sample centre row whose tap t reads row p
                if ym < 0 or ym >= H:
                    continue
                T[:] = 0  # T[xm] = sum_m G_m[ym - dy, xm - dx] V[t, ym - dy, xm - dx]
                for m in range(s * s):
                    dy, dx = (m // s - rs) * g, (m % s - rs) * g
                    y = ym - dy
                    if y < 0 or y >= H:
                        continue
                    lo, hi = valid_range(W, W, 1, -dx)
                    tt, grow = T[lo:hi], grad_out[b, v, y, lo - dx:hi - dx]
                    sa, vrow = SA[b, v, m, y, lo - dx:hi - dx], V[b, v, t, y, lo - dx:hi - dx]
                    for i in range(hi - lo):
                        tt[i] += grow[i] * sa[i] * vrow[i]
                lo, hi = valid_range(W, W, 1, -tx)  # q with xm = q - tx inside
                for q in range(lo, hi):
                    gS[q] += PA[b, v, t, ym, q - tx] * T[q - tx]
        for u in range(C):
            grad_x[b, u, p, :] = gS
        for v in range(Co):
            for m in range(s * s):
                dy, dx = (m // s - rs) * g, (m % s - rs) * g
                y = p - dy
                if y < 0 or y >= H:
                    continue
                lo, hi = valid_range(W, W, 1, -dx)
                for q in range(lo, hi):
                    w[q] = grad_out[b, v, y, q - dx] * SA[b, v, m, y, q - dx] * PA[b, v, centre, p, q]
                wq = w[lo:hi]
                for u in range(C):
                    out, urow = grad_x[b, u, p, lo:hi], U[b, v, u, y, lo - dx:hi - dx]
                    for i in range(hi - lo):
                        out[i] += wq[i] * urow[i]


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
        grad_x = torch.empty(x.shape, dtype=x.dtype)
        lsdfn_grad_input_kernel(go, Us, Vs, SA, PA, grad_x.numpy(), k, s, g)
    if need_U or need_V:
        grad_U = torch.empty(U.shape, dtype=x.dtype)
        grad_V = torch.empty(V.shape, dtype=x.dtype)
        lsdfn_grad_kernels_kernel(go, xs, S, SA, PA, grad_U.numpy(), grad_V.numpy(), k, s, g,
                                  need_U, need_V)
    if need_SA or need_PA:  # both read the centre tap's channel sums: computed once
        Z = np.empty(SA.shape, dtype=SA.dtype)
        lsdfn_centre_kernel(xs, Us, Z, s, g)
    if need_SA:
        grad_SA = torch.empty(sample_attention.shape, dtype=x.dtype)
        lsdfn_grad_sample_attention_kernel(go, S, Vs, PA, Z, grad_SA.numpy(), k, s, g)
    if need_PA:
        grad_PA = torch.empty(position_attention.shape, dtype=x.dtype)
        lsdfn_grad_position_attention_kernel(go, S, Vs, SA, Z, grad_PA.numpy(), k, s, g)
    return grad_x, grad_U, grad_V, grad_SA, grad_PA


LARGE_SAMPLING_FILTER = KernelSet("numba", forward, backward)
