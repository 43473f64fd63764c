"""The decoupled dynamic filter compiled with Numba for the CPU: fused forward and backward kernels.

Nothing of size ``C * k*k * Ho * Wo`` is ever built: the kernels read ``x``, ``spatial`` and
``channel`` and write the output directly (the paper's "no intermediate multiplied filters").

Two forwards:

* :func:`ddf_forward_simple` -- the loops of :mod:`dyncore.ddf.loops` compiled as they are:
  ``prange`` over the planes ``(b, c)``, then pixel by pixel, tap by tap, with the padding test
  on every term. It is the *untuned* version, kept (and tested) for Chapter 7's before/after.
* :func:`ddf_forward_kernel` -- the tuned one the ``"numba"`` backend uses. Within a plane the
  loops are reordered so that the innermost loop runs along contiguous memory (``out``,
  ``spatial`` and, at stride 1, ``x``), over zero-based slices, with the padding test hoisted
  into the loop bounds (:func:`dyncore.geometry.valid_range`) and the channel weights
  ``channel[b, c, t]`` hoisted out as scalars, so that LLVM vectorizes the loop body. In general
  it goes plane by plane (``prange`` over ``(b, c)``), row by row, tap by tap
  (:func:`_forward_row`); with ``k = 3`` a row of three taps is added per pass over the output
  row (:func:`_tap_row3_stride1`). With ``k = 3`` at stride 1 (the paper's setting) the interior
  of each plane, where no tap reads padding, is one flattened run swept once with all nine taps
  in the loop body (:func:`_flat_pass9`): short rows paid a fixed cost each (slices, loop
  start-up, a scalar remainder, the padding tests at their ends), and passes of three taps
  re-read and re-wrote every output three times. That run is cut into pieces of
  :data:`~dyncore.geometry.FLAT_RUN` outputs, and one ``prange`` iteration sweeps one piece for up to
  :data:`~dyncore.geometry.CHANNEL_GROUP` channels of one image (:func:`_runs3_stride1`): the piece's nine rows
  of spatial filter, read for every channel, then come from the L2 cache (a whole plane's nine
  rows, 2.2 MB at Table 2's size, do not fit in it). Every path forms each output's sum in the
  same order, so they give equal outputs bit for bit. Its host function :func:`forward`
  advises a large output into 2 MiB pages (:func:`empty_output`): on these virtual machines the
  page faults of a fresh 123 MB tensor cost more than the kernel.

The host functions :func:`forward_simple` (untuned kernel, ``torch.empty`` output) and
:func:`forward` (tuned kernel, output advised into huge pages) give Chapter 7 its before and after; timing
the kernels on preallocated numpy arrays separates the kernel from the allocation.

Backward, with ``G = dL/d out``, each kernel a gather in which one ``prange`` iteration owns the
elements it writes (deterministic, no atomics):

* ``dL/dx[b, c, y, x] = sum_t G[b, c, yo, xo] * spatial[b, t, yo, xo] * channel[b, c, t]`` with
  ``(yo, xo) = ((y - oy_t)/s, (x - ox_t)/s)`` where those are integers inside the output: the
  taps flipped. An iteration owns the row ``dL/dx[b, c, y]`` (:func:`ddf_grad_input_kernel`);
  with ``k = 3`` at stride 1 it sweeps the flattened interiors in the forward's runs instead
  (:func:`_runs3_stride1`, nine flipped taps per pass), bit for bit the row path's sums.
* ``dL/dspatial[b, t, yo, xo] = sum_c G[b, c, yo, xo] * channel[b, c, t] * x[b, c, yo*s + oy_t, xo*s + ox_t]``
  and ``dL/dchannel[b, c, t] = sum_{yo, xo} G[b, c, yo, xo] * spatial[b, t, yo, xo] * x[b, c, yo*s + oy_t, xo*s + ox_t]``
  share their products ``G * x``: :func:`ddf_grad_filters_kernel` forms each once and feeds
  both (when only one is asked for, the other is dropped). An iteration owns a row of the output
  (:func:`_grad_filters_row`: the rows of ``dL/dspatial`` of every tap, summed over the channels
  in order, and the row's partial sums of ``dL/dchannel``), or with ``k = 3`` at stride 1 a run
  of :data:`GRAD_RUN` elements of an image's flattened interior (:func:`_grad_filters_run3`):
  per channel and tap one loop over the whole run instead of one per row, the short rows' fixed
  cost (slices, loop start-up, the reduction's remainder) paid once per run. A last loop adds
  the partial sums of ``dL/dchannel`` in a fixed order. ``dL/dspatial`` is the row path's bit
  for bit on both paths; ``dL/dchannel`` groups the pixels' sum by runs, not rows, so it
  differs from the row path's in the last bits (deterministic all the same).
"""

import ctypes
import mmap

import numpy as np
import torch
from numba import njit, prange

from ..autograd import KernelSet, numpy_view
# the flattened sweep's constants are re-exported: the tests and Chapter 7 read them here
from ..geometry import CHANNEL_GROUP, FLAT_RUN, MIN_ITERATIONS, flat_runs, valid_range  # noqa: F401

#: Outputs at least this large are advised into transparent huge pages (:func:`empty_output`):
#: glibc's largest threshold for serving an allocation by a fresh ``mmap`` (32 MiB on 64-bit
#: Linux), so below it the advice would mostly land on memory ``malloc`` recycles anyway.
HUGE_PAGE_THRESHOLD = 32 << 20
#: The size of a transparent huge page on x86-64 Linux.
HUGE_PAGE = 2 << 20


def _find_madvise():
    """libc's ``madvise(addr, length, advice)`` through ctypes, or None (not Linux, or no
    ``MADV_HUGEPAGE``)."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        fn = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


_madvise = _find_madvise()


def empty_output(shape, dtype) -> torch.Tensor:
    """An uninitialized CPU tensor for a kernel to fill; if large, advised into 2 MiB pages.

    The tensor comes from ``torch.empty``, so from the process's allocator. With glibc's
    defaults a large one is a fresh ``mmap`` that the OS fills page by page on first touch, one
    fault per 4 KiB page: for a 123 MB output (Table 2's) those faults cost more than the DDF
    kernel that writes it, on the book's virtual machines. So the whole 2 MiB pages inside the
    tensor are advised into transparent huge pages (``madvise(MADV_HUGEPAGE)``, honoured when
    ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``), which cuts
    the faults 512-fold. An allocator that keeps freed memory (jemalloc, tcmalloc, or glibc
    told to, as :func:`dyncore.bench.reuse_freed_memory` does) hands back pages that are
    already mapped, and then nothing is faulted or zeroed at all; the advice costs one system
    call. (An earlier version mapped its own memory for large outputs, which that allocator
    could never recycle: at Table 2's size a third of the forward's time went to the OS
    zeroing fresh pages.)
    """
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    if nbytes >= HUGE_PAGE_THRESHOLD and _madvise is not None:
        start = out.data_ptr()
        lo = -(-start // HUGE_PAGE) * HUGE_PAGE  # the whole huge pages inside the tensor
        hi = (start + nbytes) // HUGE_PAGE * HUGE_PAGE
        if hi > lo:
            _madvise(lo, hi - lo, mmap.MADV_HUGEPAGE)  # advice: if refused, nothing changes
    return out


@njit(parallel=True, cache=True)
def ddf_forward_simple(x, spatial, channel, out, k, d, s):
    """The untuned fused forward, kept for Chapter 7's before/after: the loops, compiled.

    One ``prange`` iteration per plane ``(b, c)``; pixel by pixel, tap by tap, with the padding
    test inside the innermost loop, exactly as :func:`dyncore.ddf.loops.ddf_loops` reads.
    """
    B, C, H, W = x.shape
    Ho, Wo = out.shape[2], out.shape[3]
    r = (k - 1) // 2
    for n in prange(B * C):
        b, c = n // C, n % C
        for yo in range(Ho):
            for xo in range(Wo):
                acc = out.dtype.type(0)
                for t in range(k * k):
                    y = yo * s + (t // k - r) * d
                    xx = xo * s + (t % k - r) * d
                    if 0 <= y < H and 0 <= xx < W:
                        acc += spatial[b, t, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
                out[b, c, yo, xo] = acc


@njit(cache=True, inline="always")
def _edge3(orow, xr, s0, s1, s2, w0, w1, w2, xo, d, W):
    """One output pixel of a 3-tap row, with the padding tests (the row's ends)."""
    acc = orow[xo]
    if xo - d >= 0:
        acc += w0 * s0[xo] * xr[xo - d]
    acc += w1 * s1[xo] * xr[xo]
    if xo + d < W:
        acc += w2 * s2[xo] * xr[xo + d]
    orow[xo] = acc


@njit(cache=True, inline="always")
def _tap_row3_stride1(orow, xr, s0, s1, s2, w0, w1, w2, d, W):
    """``orow += w0*s0*xr[. - d] + w1*s1*xr[.] + w2*s2*xr[. + d]``: one row of a 3 x 3 filter.

    The interior columns ``[d, W - d)``, where all three taps are inside the image, in one
    vectorizable loop over zero-based slices; the ``d`` columns at each end one by one.
    """
    lo = min(d, W)
    hi = max(lo, W - d)
    if hi > lo:
        o = orow[lo:hi]
        a0, a1, a2 = s0[lo:hi], s1[lo:hi], s2[lo:hi]
        xm, xc, xp = xr[lo - d:hi - d], xr[lo:hi], xr[lo + d:hi + d]
        for i in range(hi - lo):
            o[i] += w0 * a0[i] * xm[i] + w1 * a1[i] * xc[i] + w2 * a2[i] * xp[i]
    for xo in range(lo):
        _edge3(orow, xr, s0, s1, s2, w0, w1, w2, xo, d, W)
    for xo in range(hi, W):
        _edge3(orow, xr, s0, s1, s2, w0, w1, w2, xo, d, W)


@njit(cache=True, inline="always")
def _flat_pass9(o, xp, sp, w, lo, hi, W, d):
    """``o[j] = sum_t w[t] * sp[t, j] * xp[j + oy_t W + ox_t]`` for ``j`` in ``[lo, hi)``: a 3 x 3
    filter over a run of a plane flattened to 1-D, in one vectorizable loop over zero-based
    slices, each output written once. The sum is formed as the row path forms it (three taps of
    a filter row added together, then added to the sum of the rows above), so both give equal
    outputs bit for bit."""
    oo = o[lo:hi]
    a0, a1, a2 = sp[0, lo:hi], sp[1, lo:hi], sp[2, lo:hi]
    a3, a4, a5 = sp[3, lo:hi], sp[4, lo:hi], sp[5, lo:hi]
    a6, a7, a8 = sp[6, lo:hi], sp[7, lo:hi], sp[8, lo:hi]
    up, down = lo - d * W, lo + d * W  # the input under the first output of the top and bottom filter rows
    x0, x1, x2 = xp[up - d:], xp[up:], xp[up + d:]
    x3, x4, x5 = xp[lo - d:], xp[lo:], xp[lo + d:]
    x6, x7, x8 = xp[down - d:], xp[down:], xp[down + d:]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    for i in range(hi - lo):  # summed filter row by filter row, as the row path sums them
        oo[i] = ((w0 * a0[i] * x0[i] + w1 * a1[i] * x1[i] + w2 * a2[i] * x2[i])
                 + (w3 * a3[i] * x3[i] + w4 * a4[i] * x4[i] + w5 * a5[i] * x5[i])) \
            + (w6 * a6[i] * x6[i] + w7 * a7[i] * x7[i] + w8 * a8[i] * x8[i])


@njit(cache=True, inline="always")
def _wrapped_columns3(o, xp, sp, w, lo, hi, W, d):
    """(Re)compute the outputs of ``[lo, hi)`` (a flattened plane's interior rows) that lie in
    the ``d`` columns at either end of a row: there the horizontal taps of the flattened sweep
    (:func:`_flat_pass9`) wrapped into the neighbouring row instead of reading padding. Each is
    the sum of its six taps that read inside the image (``W > 2d``), added one by one in tap
    order, as the row path adds them at a row's ends."""
    dW = d * W  # the offset of the filter rows above and below
    for y in range(lo // W, (hi - 1) // W + 1):
        for j in range(2 * d):
            xo = j if j < d else W - 2 * d + j
            p = y * W + xo
            if p < lo or p >= hi:
                continue
            if j < d:  # left end: the taps at ox = -d read padding
                o[p] = (w[1] * sp[1, p] * xp[p - dW] + w[2] * sp[2, p] * xp[p - dW + d]
                        + w[4] * sp[4, p] * xp[p] + w[5] * sp[5, p] * xp[p + d]
                        + w[7] * sp[7, p] * xp[p + dW] + w[8] * sp[8, p] * xp[p + dW + d])
            else:  # right end: the taps at ox = +d read padding
                o[p] = (w[0] * sp[0, p] * xp[p - dW - d] + w[1] * sp[1, p] * xp[p - dW]
                        + w[3] * sp[3, p] * xp[p - d] + w[4] * sp[4, p] * xp[p]
                        + w[6] * sp[6, p] * xp[p + dW - d] + w[7] * sp[7, p] * xp[p + dW])


@njit(cache=True, inline="always")
def _runs3_stride1(src, spatial, channel, out, b, run, group, size, d, backward):
    """Run ``run`` (of :data:`~dyncore.geometry.FLAT_RUN` outputs) of the flattened interiors of image ``b``'s
    planes, for the ``group``-th group of ``size`` channels, 3 x 3 DDF at stride 1, planes larger
    than ``2d`` each way: the forward (``src`` is ``x``, ``out`` the output) or, with
    ``backward``, the input gradient (``src`` is ``dL/d out``, ``out`` is ``dL/dx``).

    Inside the rows and columns that lie ``d`` or more from the border, every tap reads inside
    the image, and the tap at offset ``(oy, ox)`` of output ``j`` (the plane flattened to 1-D)
    reads input ``j + oy W + ox``. So the interior, the flattened plane from ``(d, d)`` to
    ``(H-d-1, W-d-1)``, is one long run, not ``H`` short rows, swept once with all nine taps
    (:func:`_flat_pass9`; :func:`_grad_flat_pass9` for the gradient, which gathers over the
    flipped taps: input ``j`` receives from output ``j - oy W - ox``). The run also covers the
    ``d`` columns at each end of the interior rows, where a horizontal tap wraps into the
    neighbouring row; those are then redone while they are in the cache
    (:func:`_wrapped_columns3`, :func:`_grad_wrapped_columns3`). The ``d`` rows at the top and
    the bottom take the row path (:func:`_forward_row`, :func:`_grad_input_row`). Every element
    is the same sum, added in the same order, as the row path gives: equal bit for bit.
    """
    C, H, W = src.shape[1], src.shape[2], src.shape[3]
    HW = H * W
    start, stop = d * W + d, (H - d) * W - d  # every tap of these flattened elements is inside
    lo = start + run * FLAT_RUN
    hi = min(lo + FLAT_RUN, stop)
    sp = spatial[b].reshape((9, HW))
    # the first and the last run also own the d elements just outside the sweep, in the wrapped
    # columns of the first and the last interior row
    wlo, whi = lo - d if lo == start else lo, hi + d if hi == stop else hi
    for c in range(group * size, min((group + 1) * size, C)):
        o, xp, w = out[b, c].reshape(HW), src[b, c].reshape(HW), channel[b, c]
        if backward:
            _grad_flat_pass9(o, xp, sp, w, lo, hi, W, d)
            _grad_wrapped_columns3(o, xp, sp, w, wlo, whi, W, d)
        else:
            _flat_pass9(o, xp, sp, w, lo, hi, W, d)
            _wrapped_columns3(o, xp, sp, w, wlo, whi, W, d)


@njit(cache=True, inline="always")
def _forward_row(x, spatial, channel, out, b, c, yo, k, d, s):
    """The output row ``out[b, c, yo]``, tap by tap over contiguous slices (any ``k`` and stride)."""
    H, W = x.shape[2], x.shape[3]
    Wo = out.shape[3]
    r = (k - 1) // 2
    orow = out[b, c, yo]
    orow[:] = 0
    if k == 3 and s == 1:  # a whole row of 3 taps per pass over orow
        for i in range(3):
            y = yo + (i - 1) * d
            if y < 0 or y >= H:
                continue
            t = 3 * i
            _tap_row3_stride1(orow, x[b, c, y], spatial[b, t, yo], spatial[b, t + 1, yo],
                              spatial[b, t + 2, yo], channel[b, c, t],
                              channel[b, c, t + 1], channel[b, c, t + 2], d, W)
        return
    for t in range(k * k):
        oy, ox = (t // k - r) * d, (t % k - r) * d
        y = yo * s + oy
        if y < 0 or y >= H:
            continue  # the whole row of this tap reads padding
        lo, hi = valid_range(Wo, W, s, ox)
        if hi <= lo:
            continue
        w = channel[b, c, t]  # the channel filter's tap: one scalar for the whole row
        o = orow[lo:hi]
        sp = spatial[b, t, yo, lo:hi]
        if s == 1:
            xr = x[b, c, y, lo + ox:hi + ox]
            for i in range(hi - lo):  # from 0 over slices: LLVM vectorizes it
                o[i] += w * sp[i] * xr[i]
        else:
            xr = x[b, c, y, lo * s + ox:(hi - 1) * s + ox + 1:s]
            for i in range(hi - lo):
                o[i] += w * sp[i] * xr[i]


@njit(parallel=True, cache=True)
def ddf_forward_kernel(x, spatial, channel, out, k, d, s):
    """The tuned fused forward (see the module docstring)."""
    B, C, H, W = x.shape
    Ho = out.shape[2]
    if k == 3 and s == 1 and H > 2 * d and W > 2 * d:  # the paper's setting: flattened runs
        runs, group, groups = flat_runs(B, C, H, W, d)
        for n in prange(B * runs * groups):  # a run of the interiors of a group of channels
            b, rest = n // (runs * groups), n % (runs * groups)
            _runs3_stride1(x, spatial, channel, out, b, rest // groups, rest % groups, group, d, False)
        for n in prange(B * C):  # the d rows at the top and at the bottom of each plane
            b, c = n // C, n % C
            for y in range(H):
                if y < d or y >= H - d:
                    _forward_row(x, spatial, channel, out, b, c, y, 3, d, 1)
    else:
        for n in prange(B * C):  # one output plane (b, c) per iteration, row by row
            b, c = n // C, n % C
            for yo in range(Ho):
                _forward_row(x, spatial, channel, out, b, c, yo, k, d, s)


@njit(cache=True, inline="always")
def _grad_edge3(row, go, s0, s1, s2, w0, w1, w2, xx, d, W):
    """One input-gradient pixel of a 3-tap row, with the padding tests (the row's ends)."""
    acc = row[xx]
    if xx + d < W:
        acc += w0 * go[xx + d] * s0[xx + d]
    acc += w1 * go[xx] * s1[xx]
    if xx - d >= 0:
        acc += w2 * go[xx - d] * s2[xx - d]
    row[xx] = acc


@njit(cache=True, inline="always")
def _grad_row3_stride1(row, go, s0, s1, s2, w0, w1, w2, d, W):
    """``row[x] += w0*go*s0 at x + d + w1*go*s1 at x + w2*go*s2 at x - d``: the three taps of
    one filter row read backwards, in one vectorized pass over the interior ``[d, W - d)``."""
    lo = min(d, W)
    hi = max(lo, W - d)
    if hi > lo:
        o = row[lo:hi]
        gp, g0, gm = go[lo + d:hi + d], go[lo:hi], go[lo - d:hi - d]
        a0, a1, a2 = s0[lo + d:hi + d], s1[lo:hi], s2[lo - d:hi - d]
        for i in range(hi - lo):
            o[i] += w0 * gp[i] * a0[i] + w1 * g0[i] * a1[i] + w2 * gm[i] * a2[i]
    for xx in range(lo):
        _grad_edge3(row, go, s0, s1, s2, w0, w1, w2, xx, d, W)
    for xx in range(hi, W):
        _grad_edge3(row, go, s0, s1, s2, w0, w1, w2, xx, d, W)


@njit(cache=True, inline="always")
def _grad_flat_pass9(o, gp, sp, w, lo, hi, W, d):
    """``o[j] = sum_t w[t] * gp[j - off_t] * sp[t, j - off_t]`` for ``j`` in ``[lo, hi)``, with
    ``off_t = oy_t W + ox_t``: the input gradient of a 3 x 3 DDF over a run of a flattened
    plane (output ``j - off_t`` read input ``j`` through tap ``t``), each element written once.
    Summed as the row path sums it (:func:`_grad_row3_stride1`: the three taps of a filter row
    together, the rows in order), so both give equal gradients bit for bit."""
    oo = o[lo:hi]
    n = hi - lo
    dW = d * W
    # the outputs that read element lo through taps 0..8 (filter row 0 is the output row below)
    g0, g1, g2 = gp[lo + dW + d:lo + dW + d + n], gp[lo + dW:lo + dW + n], gp[lo + dW - d:lo + dW - d + n]
    g3, g4, g5 = gp[lo + d:lo + d + n], gp[lo:lo + n], gp[lo - d:lo - d + n]
    g6, g7, g8 = gp[lo - dW + d:lo - dW + d + n], gp[lo - dW:lo - dW + n], gp[lo - dW - d:lo - dW - d + n]
    a0, a1, a2 = sp[0, lo + dW + d:lo + dW + d + n], sp[1, lo + dW:lo + dW + n], sp[2, lo + dW - d:lo + dW - d + n]
    a3, a4, a5 = sp[3, lo + d:lo + d + n], sp[4, lo:lo + n], sp[5, lo - d:lo - d + n]
    a6, a7, a8 = sp[6, lo - dW + d:lo - dW + d + n], sp[7, lo - dW:lo - dW + n], sp[8, lo - dW - d:lo - dW - d + n]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    for i in range(n):
        oo[i] = ((w0 * g0[i] * a0[i] + w1 * g1[i] * a1[i] + w2 * g2[i] * a2[i])
                 + (w3 * g3[i] * a3[i] + w4 * g4[i] * a4[i] + w5 * g5[i] * a5[i])) \
            + (w6 * g6[i] * a6[i] + w7 * g7[i] * a7[i] + w8 * g8[i] * a8[i])


@njit(cache=True, inline="always")
def _grad_wrapped_columns3(o, gp, sp, w, lo, hi, W, d):
    """(Re)compute the input-gradient elements of ``[lo, hi)`` (a flattened plane's interior
    rows) in the ``d`` columns at either end of a row, where a flipped horizontal tap of
    :func:`_grad_flat_pass9` wrapped into the neighbouring row: each is the sum of its six taps
    that come from inside the image, added one by one in tap order, as the row path adds them at
    a row's ends (:func:`_grad_edge3`)."""
    dW = d * W
    for y in range(lo // W, (hi - 1) // W + 1):
        for j in range(2 * d):
            xo = j if j < d else W - 2 * d + j
            p = y * W + xo
            if p < lo or p >= hi:
                continue
            if j < d:  # left end: the taps at ox = +d came from column xo - d < 0
                o[p] = (w[0] * gp[p + dW + d] * sp[0, p + dW + d] + w[1] * gp[p + dW] * sp[1, p + dW]
                        + w[3] * gp[p + d] * sp[3, p + d] + w[4] * gp[p] * sp[4, p]
                        + w[6] * gp[p - dW + d] * sp[6, p - dW + d] + w[7] * gp[p - dW] * sp[7, p - dW])
            else:  # right end: the taps at ox = -d came from column xo + d >= W
                o[p] = (w[1] * gp[p + dW] * sp[1, p + dW] + w[2] * gp[p + dW - d] * sp[2, p + dW - d]
                        + w[4] * gp[p] * sp[4, p] + w[5] * gp[p - d] * sp[5, p - d]
                        + w[7] * gp[p - dW] * sp[7, p - dW] + w[8] * gp[p - dW - d] * sp[8, p - dW - d])


@njit(cache=True, inline="always")
def _grad_input_row(grad_out, spatial, channel, grad_x, b, c, y, k, d, s):
    """The input-gradient row ``grad_x[b, c, y]``, gathered over the flipped taps (any ``k``
    and stride)."""
    Ho, Wo, W = grad_out.shape[2], grad_out.shape[3], grad_x.shape[3]
    r = (k - 1) // 2
    row = grad_x[b, c, y]
    row[:] = 0
    if k == 3 and s == 1:  # as in the forward: a filter row of 3 taps per pass
        for i in range(3):
            yo = y - (i - 1) * d  # the output row whose filter row i read row y
            if yo < 0 or yo >= Ho:
                continue
            t = 3 * i
            _grad_row3_stride1(row, grad_out[b, c, yo], spatial[b, t, yo], spatial[b, t + 1, yo],
                               spatial[b, t + 2, yo], channel[b, c, t], channel[b, c, t + 1],
                               channel[b, c, t + 2], d, W)
        return
    for t in range(k * k):
        oy, ox = (t // k - r) * d, (t % k - r) * d
        dy = y - oy  # flipped tap: the output row whose tap t read input row y
        if dy < 0 or dy % s != 0:
            continue
        yo = dy // s
        if yo >= Ho:
            continue
        lo, hi = valid_range(Wo, W, s, ox)  # the output columns whose tap t is inside
        if hi <= lo:
            continue
        w = channel[b, c, t]
        go = grad_out[b, c, yo, lo:hi]
        sp = spatial[b, t, yo, lo:hi]
        if s == 1:
            g = row[lo + ox:hi + ox]
            for i in range(hi - lo):
                g[i] += w * go[i] * sp[i]
        else:
            g = row[lo * s + ox:(hi - 1) * s + ox + 1:s]
            for i in range(hi - lo):
                g[i] += w * go[i] * sp[i]


@njit(parallel=True, cache=True)
def ddf_grad_input_kernel(grad_out, spatial, channel, grad_x, k, d, s):
    """``dL/dx``: with ``k = 3`` at stride 1 the flattened interiors in runs, as the forward
    sweeps them (:func:`_runs3_stride1`), and the ``d`` rows at the top and the bottom of each
    plane by rows; otherwise one row per iteration (:func:`_grad_input_row`)."""
    B, C, H, W = grad_x.shape
    if k == 3 and s == 1 and H > 2 * d and W > 2 * d:
        runs, group, groups = flat_runs(B, C, H, W, d)
        for n in prange(B * runs * groups):
            b, rest = n // (runs * groups), n % (runs * groups)
            _runs3_stride1(grad_out, spatial, channel, grad_x, b, rest // groups, rest % groups, group, d, True)
        for n in prange(B * C):
            b, c = n // C, n % C
            for y in range(H):
                if y < d or y >= H - d:
                    _grad_input_row(grad_out, spatial, channel, grad_x, b, c, y, 3, d, 1)
    else:
        for n in prange(B * C * H):  # one input-gradient row (b, c, y) per iteration
            b, c, y = n // (C * H), (n // H) % C, n % H
            _grad_input_row(grad_out, spatial, channel, grad_x, b, c, y, k, d, s)


#: The flattened interior is swept for both filter gradients in runs of this many outputs: the
#: run's nine rows of ``dL/dspatial`` and of the spatial filter stay in the L1/L2 cache while
#: the channels stream past them.
GRAD_RUN = 2048


@njit(cache=True, inline="always")
def _grad_filters_row(grad_out, x, spatial, channel, grad_spatial, part, b, yo, k, d, s):
    """Both filter gradients of output row ``yo`` of image ``b`` (any ``k`` and stride): the
    row ``grad_spatial[b, :, yo]`` (summed over the channels in order) and, per channel and tap,
    the row's part of ``dL/dchannel`` into ``part[c, t]``."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Wo = grad_out.shape[3]
    r = (k - 1) // 2
    T = k * k
    for t in range(T):
        grad_spatial[b, t, yo, :] = 0
    for c in range(C):
        go_row = grad_out[b, c, yo]
        for t in range(T):
            part[c, t] = 0
            oy, ox = (t // k - r) * d, (t % k - r) * d
            y = yo * s + oy
            if y < 0 or y >= H:
                continue  # a tap that read padding has no gradient
            lo, hi = valid_range(Wo, W, s, ox)
            if hi <= lo:
                continue
            w = channel[b, c, t]
            g = grad_spatial[b, t, yo, lo:hi]
            go = go_row[lo:hi]
            sp = spatial[b, t, yo, lo:hi]
            acc = part.dtype.type(0)
            if s == 1:
                xr = x[b, c, y, lo + ox:hi + ox]
                for i in range(hi - lo):
                    p = go[i] * xr[i]
                    g[i] += w * p
                    acc += sp[i] * p
            else:
                xr = x[b, c, y, lo * s + ox:(hi - 1) * s + ox + 1:s]
                for i in range(hi - lo):
                    p = go[i] * xr[i]
                    g[i] += w * p
                    acc += sp[i] * p
            part[c, t] = acc


@njit(cache=True, inline="always")
def _grad_filters_edge3(grad_out, x, sp, channel, gs, part, b, p, left, W, d):
    """Both filter gradients at one element ``p`` of a flattened plane in the first ``d``
    (``left``) or the last ``d`` columns of an interior row, 3 x 3 taps at stride 1: the taps
    that read padding there get no gradient."""
    C, HW = x.shape[1], sp.shape[1]
    dW = d * W
    for t in range(9):
        if (left and t % 3 == 0) or (not left and t % 3 == 2):
            gs[t, p] = 0  # the tap read padding
            continue
        q = p + (t // 3 - 1) * dW + (t % 3 - 1) * d  # the input tap t read
        acc = gs.dtype.type(0)
        for c in range(C):
            pr = grad_out[b, c].reshape(HW)[p] * x[b, c].reshape(HW)[q]
            acc += channel[b, c, t] * pr
            part[c, t] += sp[t, p] * pr
        gs[t, p] = acc


@njit(cache=True, inline="always")
def _zero_wrapped_taps(a, lo, hi, W, d):
    """Zero ``a[t, p - lo]`` for the elements ``p`` of ``[lo, hi)`` (a flattened plane of width
    ``W``) in the ``d`` columns at either end of a row and the taps ``t`` that wrap there into
    the neighbouring row: those at ``ox = -d`` on the left, at ``ox = +d`` on the right."""
    for y in range(lo // W, (hi - 1) // W + 1):
        for j in range(2 * d):
            p = y * W + (j if j < d else W - 2 * d + j)
            if lo <= p < hi:
                for t in range(0 if j < d else 2, 9, 3):
                    a[t, p - lo] = 0


@njit(cache=True, inline="always")
def _grad_filters_run3(grad_out, x, spatial, channel, grad_spatial, part, b, run, d):
    """Both filter gradients over run ``run`` (of :data:`GRAD_RUN` outputs) of the flattened
    interior of image ``b``'s output (3 x 3 taps, stride 1, planes larger than ``2d`` each way;
    the interior as :func:`_runs3_stride1` defines it), every channel in turn: the run's rows of
    ``grad_spatial[b]``, and into ``part[c, t]`` the run's part of ``dL/dchannel[b, c, t]``.

    Per channel and tap, one loop over the whole run (not one per short row), in which the
    product ``G * x`` is formed once and feeds both gradients; ``dL/dspatial`` is summed in a
    local buffer of the run (nine taps in one loop body, with nine such rows written, measured
    slower). Where a horizontal tap wrapped into the neighbouring row (the ``d`` columns at each
    end of a row), a copy of the spatial filter with those taps zeroed keeps the wrapped
    products out of ``dL/dchannel``, and their ``dL/dspatial`` is zeroed before it is written
    (a tap that read padding has no gradient). The first and the last run also own the ``d``
    elements just outside the sweep (:func:`_grad_filters_edge3`)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    HW, dW = H * W, d * W
    start, stop = dW + d, (H - d) * W - d
    lo = start + run * GRAD_RUN
    hi = min(lo + GRAD_RUN, stop)
    n = hi - lo
    sp = spatial[b].reshape((9, HW))
    gs = grad_spatial[b].reshape((9, HW))
    m = np.empty((9, n), dtype=spatial.dtype)  # the spatial filter, wrapped taps zeroed
    acc = np.zeros((9, n), dtype=grad_spatial.dtype)  # dL/dspatial of the run, summed here
    for t in range(9):
        m[t, :] = sp[t, lo:hi]
    _zero_wrapped_taps(m, lo, hi, W, d)
    for c in range(C):
        go = grad_out[b, c].reshape(HW)[lo:hi]
        xp = x[b, c].reshape(HW)
        for t in range(9):
            q = lo + (t // 3 - 1) * dW + (t % 3 - 1) * d  # the input tap t read for element lo
            xr, mt, st = xp[q:q + n], m[t], acc[t]
            w = channel[b, c, t]
            a = part.dtype.type(0)
            for i in range(n):
                pr = go[i] * xr[i]
                st[i] += w * pr
                a += mt[i] * pr
            part[c, t] = a
    _zero_wrapped_taps(acc, lo, hi, W, d)  # the wrapped taps read padding: no gradient
    for t in range(9):
        gs[t, lo:hi] = acc[t]
    if lo == start:
        for p in range(start - d, start):
            _grad_filters_edge3(grad_out, x, sp, channel, gs, part, b, p, True, W, d)
    if hi == stop:
        for p in range(stop, stop + d):
            _grad_filters_edge3(grad_out, x, sp, channel, gs, part, b, p, False, W, d)


# fastmath "reassoc" lets LLVM split the dot products into SIMD lanes; the order it chooses is
# fixed at compile time, so every run (and every thread count) gives the same bits.
@njit(parallel=True, cache=True, fastmath={"reassoc"})
def ddf_grad_filters_kernel(grad_out, x, spatial, channel, grad_spatial, grad_channel, k, d, s):
    """Both filter gradients in one sweep: the product ``G[b, c, yo, xo] * x[b, c, y, x]`` of
    every channel and tap is formed once and feeds ``dL/dspatial`` (weighted by the channel
    filter, summed over the channels in order) and ``dL/dchannel`` (weighted by the spatial
    filter, summed over the pixels). An iteration owns a piece of image ``b``'s output -- a run
    of its flattened interior with ``k = 3`` at stride 1 (:func:`_grad_filters_run3`), else a
    row (:func:`_grad_filters_row`, also the ``d`` rows at the top and the bottom) -- : its
    elements of ``dL/dspatial``, and one partial sum per channel and tap of ``dL/dchannel``,
    which a last loop adds up over the pieces in a fixed order (deterministic, no atomics).
    ``G`` and ``x`` are read once, instead of once per gradient."""
    B, C, H, W = x.shape
    Ho = grad_out.shape[2]
    T = k * k
    flat = k == 3 and s == 1 and H > 2 * d and W > 2 * d
    runs = ((H - 2 * d) * W - 2 * d + GRAD_RUN - 1) // GRAD_RUN if flat else 0
    rows = 2 * d if flat else Ho  # the rows that take the row path
    parts = np.empty((B, runs + rows, C, T), dtype=grad_channel.dtype)
    for n in prange(B * (runs + rows)):
        b, i = n // (runs + rows), n % (runs + rows)
        if i < runs:
            _grad_filters_run3(grad_out, x, spatial, channel, grad_spatial, parts[b, i], b, i, d)
        else:
            yo = i - runs
            if flat and yo >= d:
                yo += Ho - 2 * d  # the rows at the bottom
            _grad_filters_row(grad_out, x, spatial, channel, grad_spatial, parts[b, i], b, yo, k, d, s)
    for n in prange(B * C):  # dL/dchannel: the pieces' partial sums, added in order
        b, c = n // C, n % C
        for t in range(T):
            total = grad_channel.dtype.type(0)
            for i in range(runs + rows):
                total += parts[b, i, c, t]
            grad_channel[b, c, t] = total


def _out_shape(config, x):
    _, _, stride = config
    B, C, H, W = x.shape
    return B, C, (H - 1) // stride + 1, (W - 1) // stride + 1


def forward(config, x, spatial, channel):
    kernel_size, dilation, stride = config
    out = empty_output(_out_shape(config, x), x.dtype)
    ddf_forward_kernel(numpy_view(x), numpy_view(spatial), numpy_view(channel), out.numpy(),
                       kernel_size, dilation, stride)
    return out


def forward_simple(config, x, spatial, channel):
    """Host function of :func:`ddf_forward_simple` (Chapter 7's "before")."""
    kernel_size, dilation, stride = config
    out = torch.empty(_out_shape(config, x), dtype=x.dtype)
    ddf_forward_simple(numpy_view(x), numpy_view(spatial), numpy_view(channel), out.numpy(),
                       kernel_size, dilation, stride)
    return out


def backward(config, grad_out, x, spatial, channel, needs):
    kernel_size, dilation, stride = config
    need_x, need_spatial, need_channel = needs
    g = numpy_view(grad_out)
    grad_x = grad_spatial = grad_channel = None
    if need_x:
        grad_x = empty_output(x.shape, x.dtype)
        ddf_grad_input_kernel(g, numpy_view(spatial), numpy_view(channel), grad_x.numpy(),
                              kernel_size, dilation, stride)
    if need_spatial or need_channel:  # one sweep gives both (a gradient not asked for is dropped)
        grad_spatial = torch.empty(spatial.shape, dtype=spatial.dtype)
        grad_channel = torch.empty(channel.shape, dtype=channel.dtype)
        ddf_grad_filters_kernel(g, numpy_view(x), numpy_view(spatial), numpy_view(channel),
                                grad_spatial.numpy(), grad_channel.numpy(), kernel_size, dilation, stride)
        grad_spatial = grad_spatial if need_spatial else None
        grad_channel = grad_channel if need_channel else None
    return grad_x, grad_spatial, grad_channel


DDF = KernelSet("numba", forward, backward)
#: The untuned forward with the same backward, for Chapter 7's before/after comparisons.
DDF_SIMPLE = KernelSet("numba", forward_simple, backward)
