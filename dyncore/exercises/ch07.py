"""Checks for the exercises of Chapter 7, the kernels at the limit (``exercises/07_performance.md``).

* :func:`check_depthwise_cost` -- the minimum FLOPs and bytes of a strided depthwise
  convolution, against :func:`dyncore.roofline.depthwise_conv2d_cost` and, for the FLOPs,
  ``torch.utils.flop_counter`` on ``F.conv2d(..., groups=C)``;
* :func:`check_roofline_bound` -- the roofline bound, the arithmetic intensity and the side of
  the ridge point, on synthetic machines whose answers are exact;
* :func:`check_loglog_slope` -- the least-squares exponent of a power law in log-log space,
  on synthetic timings with known exponents and noise;
* :func:`check_row_and_term_costs` -- the chapter's split of a kernel's time into a fixed cost
  per output row and a cost per term, by least squares on synthetic timings;
* :func:`check_depthwise_rows` -- a Numba kernel whose inner loop runs along contiguous rows:
  its output against ``F.conv2d`` in float64, and its compiled machine code for packed (SIMD)
  multiplies, against a reference kernel compiled on the same machine. No timing: the checks are
  exact.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch.utils.flop_counter import FlopCounterMode

from ..roofline import Cost, Machine, bound_seconds, depthwise_conv2d_cost
from . import call, expect_close, passed

__all__ = [
    "CHECKS",
    "check_depthwise_cost",
    "check_roofline_bound",
    "check_loglog_slope",
    "check_row_and_term_costs",
    "check_depthwise_rows",
    "depthwise_rows_reference",
    "depthwise_slow",
    "simd_multiplies",
]


# --------------------------------------------------------------------------------------------
# Exercise 1: the minimum cost of a strided depthwise convolution
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, stride, itemsize): odd and even sizes that the stride does not divide; every
#: stride is at most k, so that every input element is read (with stride > k some never are).
COST_CASES = [
    (1, 1, 5, 5, 3, 1, 4),
    (2, 3, 7, 9, 3, 2, 4),
    (1, 4, 10, 11, 5, 3, 8),
    (3, 2, 6, 13, 1, 1, 4),
    (2, 5, 9, 4, 7, 4, 2),
]


def _flop_counter_depthwise(B, C, H, W, k, stride) -> int:
    """FLOPs that ``torch.utils.flop_counter`` counts for the same operator in PyTorch."""
    x = torch.zeros(B, C, H, W)
    w = torch.zeros(C, 1, k, k)
    with FlopCounterMode(display=False) as counter:
        F.conv2d(x, w, stride=stride, padding=(k - 1) // 2, groups=C)
    return counter.get_total_flops()


def _as_cost(got, what):
    if got is None:
        raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
    if isinstance(got, Cost):
        return float(got.flops), float(got.bytes)
    if hasattr(got, "flops") and hasattr(got, "bytes"):
        return float(got.flops), float(got.bytes)
    raise AssertionError(f"{what} returned a {type(got).__name__}; return "
                         "dyncore.roofline.Cost(flops=..., bytes=...)")


def _first(hints, value, default):
    """The message of the first ``(value, message)`` that ``value`` matches, else ``default``."""
    return next((h for v, h in hints if math.isclose(value, v, rel_tol=1e-12)), default)


def check_depthwise_cost(fn) -> None:
    """``fn(B, C, H, W, k, stride, itemsize)`` must return the :class:`~dyncore.roofline.Cost`
    of a depthwise ``k x k`` convolution with padding ``(k - 1) // 2`` and ``stride``, no bias:
    FLOPs ``2 B C Ho Wo k^2`` (a multiply-add is 2 FLOPs), bytes ``itemsize`` times the input,
    the weight ``(C, 1, k, k)`` and the output, each counted once."""
    for B, C, H, W, k, s, itemsize in COST_CASES:
        what = f"depthwise_cost(B={B}, C={C}, H={H}, W={W}, k={k}, stride={s}, itemsize={itemsize})"
        ref = depthwise_conv2d_cost(B, C, H, W, k, stride=s, itemsize=itemsize)
        counted = _flop_counter_depthwise(B, C, H, W, k, s)
        assert counted == ref.flops, "the reference and torch.utils.flop_counter disagree"
        got_flops, got_bytes = _as_cost(call(fn, B, C, H, W, k, s, itemsize, name="depthwise_cost"), what)
        Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
        n_in, n_w, n_out = B * C * H * W, C * k * k, B * C * Ho * Wo
        if got_flops != ref.flops:
            hints = [
                (ref.flops / 2, "That is the number of multiply-adds: a multiply-add is 2 FLOPs, "
                               "as torch.utils.flop_counter counts."),
                (2 * B * C * H * W * k * k, "That is the count without the stride: the output has "
                                           f"Ho = (H - 1) // stride + 1 = {Ho} rows and "
                                           f"Wo = (W - 1) // stride + 1 = {Wo} columns."),
                (B * C * H * W * k * k, "That is the count without the stride, and in multiply-adds."),
                (2 * B * C * (H // s) * (W // s) * k * k,
                    f"The output size is not H // stride: with padding (k - 1) // 2 it is "
                    f"(H - 1) // stride + 1 = {Ho} rows (and {Wo} columns), ceil(H / stride)."),
                (2 * B * C * C * Ho * Wo * k * k, "That is a dense convolution's count: in a depthwise "
                                                 "convolution each output channel reads one input channel."),
            ]
            hint = _first(hints, got_flops, "Each output element (B C Ho Wo of them) needs k^2 multiply-adds.")
            raise AssertionError(f"{what}: {got_flops:.0f} FLOPs, expected {ref.flops:.0f} "
                                 f"(torch.utils.flop_counter agrees). {hint}")
        if got_bytes != ref.bytes:
            hints = [
                (ref.bytes / itemsize, f"That is the number of elements: multiply by itemsize = {itemsize} "
                                      "bytes per element."),
                (ref.bytes + itemsize * (k * k - 1) * n_in,
                    "That counts the input k^2 times, once per tap: the minimum reads every input "
                    "element once (caches hold it for its other taps)."),
                (ref.bytes + itemsize * (k * k * n_out - n_in),
                    "That counts one input read per tap and output element: the minimum reads every "
                    "input element once (caches hold it for its other taps)."),
                (ref.bytes - itemsize * n_w, "The weight (C, 1, k, k) has to be read too."),
                (ref.bytes - itemsize * n_out, "The output has to be written too."),
                (itemsize * (2 * n_in + n_w), "That writes an output as large as the input: with the stride "
                                             f"it is (B, C, Ho, Wo) = {(B, C, Ho, Wo)}."),
                (itemsize * (n_in + n_w + B * C * (H // s) * (W // s)),
                    f"The output size is not H // stride: it is (H - 1) // stride + 1 = {Ho} rows "
                    f"(and {Wo} columns)."),
            ]
            hint = _first(hints, got_bytes, f"Count input ({n_in}), weight ({n_w}) and output ({n_out}) "
                                        "elements once each, times itemsize.")
            raise AssertionError(f"{what}: {got_bytes:.0f} bytes, expected {ref.bytes:.0f}. {hint}")
    passed(f"depthwise_cost gives the minimum FLOPs and bytes on {len(COST_CASES)} strided shapes, "
           "and its FLOPs equal torch.utils.flop_counter's")


# --------------------------------------------------------------------------------------------
# Exercise 2: the roofline bound
# --------------------------------------------------------------------------------------------

def _machine(bandwidth, peak):
    return Machine("synthetic", "float32", float(bandwidth), float(peak), 1)


#: (bandwidth bytes/s, peak FLOP/s, flops, bytes): three machines with ridge points 4, 0.5 and 32
#: FLOP/byte, each with a memory-bound and a compute-bound operator; powers of two, so exact.
BOUND_CASES = [
    (2.0 ** 34, 2.0 ** 36, 2.0 ** 30, 2.0 ** 30),   # intensity 1 < ridge 4: memory
    (2.0 ** 34, 2.0 ** 36, 2.0 ** 33, 2.0 ** 29),   # intensity 16 > ridge 4: compute
    (2.0 ** 33, 2.0 ** 32, 2.0 ** 26, 2.0 ** 28),   # intensity 0.25 < ridge 0.5: memory
    (2.0 ** 33, 2.0 ** 32, 2.0 ** 30, 2.0 ** 28),   # intensity 4 > ridge 0.5: compute
    (2.0 ** 40, 2.0 ** 45, 2.0 ** 37, 2.0 ** 31),   # intensity 64 > ridge 32: compute
    (2.0 ** 40, 2.0 ** 45, 2.0 ** 34, 2.0 ** 31),   # intensity 8 < ridge 32: memory
]


def check_roofline_bound(fn) -> None:
    """``fn(flops, nbytes, bandwidth, peak_flops)`` must return ``(seconds, intensity, limit)``:
    the roofline's least time ``max(nbytes / bandwidth, flops / peak_flops)``, the arithmetic
    intensity ``flops / nbytes`` in FLOP/byte, and ``"memory"`` if the intensity is below the
    ridge point ``peak_flops / bandwidth``, ``"compute"`` if above."""
    for bw, peak, flops, nbytes in BOUND_CASES:
        machine = _machine(bw, peak)
        cost = Cost(flops, nbytes)
        seconds = bound_seconds(cost, machine)
        intensity = cost.intensity
        limit = "compute" if intensity > machine.ridge else "memory"
        what = (f"roofline_bound(flops=2**{math.log2(flops):.0f}, nbytes=2**{math.log2(nbytes):.0f}, "
                f"bandwidth=2**{math.log2(bw):.0f}, peak_flops=2**{math.log2(peak):.0f})")
        got = call(fn, flops, nbytes, bw, peak, name="roofline_bound")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise AssertionError(f"{what} returned {got!r}; return a tuple (seconds, intensity, limit)")
        got_s, got_i, got_limit = got
        t_mem, t_cmp = nbytes / bw, flops / peak
        if not math.isclose(float(got_s), seconds, rel_tol=1e-12):
            hints = [
                (min(t_mem, t_cmp), "That is the smaller of the two times: the kernel has to do both, "
                                   "so the slower one bounds it (max)."),
                (t_mem + t_cmp, "That adds the two times: the roofline assumes memory traffic and "
                               "arithmetic overlap, so the bound is the larger one (max), not the sum."),
                (max(nbytes * bw, flops * peak), "Bytes times bandwidth and FLOPs times peak are not "
                                                 "times: divide, nbytes / bandwidth and flops / peak_flops."),
                (nbytes * bw, "Bytes times bandwidth is not a time: divide, nbytes / bandwidth."),
                (flops * peak, "FLOPs times peak is not a time: divide, flops / peak_flops."),
                (max(nbytes / peak, flops / bw), "The bytes go with the bandwidth and the FLOPs with "
                                                 "the peak: nbytes / bandwidth, flops / peak_flops."),
            ]
            hint = next((h for v, h in hints if math.isclose(float(got_s), v, rel_tol=1e-9)),
                        f"memory time nbytes / bandwidth = {t_mem:.3g} s, arithmetic time "
                        f"flops / peak_flops = {t_cmp:.3g} s.")
            raise AssertionError(f"{what}: seconds {float(got_s):.6g}, expected {seconds:.6g}. {hint}")
        if not math.isclose(float(got_i), intensity, rel_tol=1e-12):
            hint = ("That is bytes per FLOP: the intensity is FLOPs per byte, flops / nbytes."
                    if math.isclose(float(got_i), 1 / intensity, rel_tol=1e-9)
                    else "The arithmetic intensity is flops / nbytes.")
            raise AssertionError(f"{what}: intensity {float(got_i):.6g}, expected {intensity:.6g}. {hint}")
        if not isinstance(got_limit, str) or got_limit not in ("memory", "compute"):
            raise AssertionError(f"{what}: limit {got_limit!r}; return the string 'memory' or 'compute'")
        if got_limit != limit:
            raise AssertionError(
                f"{what}: limit {got_limit!r}, expected {limit!r}. The ridge point is peak_flops / "
                f"bandwidth = {machine.ridge:g} FLOP/byte and the intensity is {intensity:g}: below the "
                "ridge the memory time is the larger one (memory-bound), above it the arithmetic time "
                "(compute-bound).")
    passed(f"roofline_bound gives the bound, the intensity and the limit on {len(BOUND_CASES)} "
           "operators of 3 synthetic machines, on both sides of their ridge points")


# --------------------------------------------------------------------------------------------
# Exercise 3: the measured exponent of a power law
# --------------------------------------------------------------------------------------------

#: (sizes, exponent, noise): multiplicative log-normal noise of that standard deviation.
SLOPE_CASES = [
    ([64, 128, 256, 512], 1.0, 0.0),
    ([1, 2, 3, 5, 8, 13], 2.0, 0.0),
    ([4096, 8100, 16384, 32400, 65536, 129600], 1.0, 0.15),
    ([8, 16, 32, 64, 128], 1.7, 0.2),
    ([3, 5, 7, 9, 11], 2.0, 0.1),
    ([10, 100, 1000, 10000], 0.5, 0.3),
]


def _lsq_slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def check_loglog_slope(fn) -> None:
    """``fn(sizes, seconds)`` must return the exponent ``p`` of the least-squares fit of
    ``log(seconds) = p log(sizes) + c`` (any base of logarithm: it cancels)."""
    rng = np.random.default_rng(703)
    for sizes, p, noise in SLOPE_CASES:
        x = np.array(sizes, dtype=float)
        y = 3e-4 * (x / x[0]) ** p * np.exp(noise * rng.standard_normal(len(x)))
        expected = _lsq_slope(x, y)
        what = f"loglog_slope(sizes={sizes}, seconds of a power law of exponent {p} with noise {noise})"
        got = call(fn, list(sizes), [float(v) for v in y], name="loglog_slope")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if np.ndim(got) != 0:
            raise AssertionError(f"{what} returned {got!r}; return one number, the slope "
                                 "(np.polyfit returns [slope, intercept])")
        got = float(got)
        if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        lx, ly = np.log(x), np.log(y)
        candidates = [
            (float(np.polyfit(x, y, 1)[0]), "That is the slope of a straight line through (size, "
             "seconds): fit log(seconds) against log(size)."),
            (float(np.polyfit(lx, ly, 1)[1]), "That is the intercept: np.polyfit returns "
             "[slope, intercept]."),
            (float(np.polyfit(ly, lx, 1)[0]), "That regresses log(size) on log(seconds): the exponent "
             "is the slope of log(seconds) against log(size)."),
            (float((ly[-1] - ly[0]) / (lx[-1] - lx[0])), "That uses only the first and last points: "
             "fit all of them by least squares, so that one noisy timing does not set the slope."),
            (float(np.polyfit(x, ly, 1)[0]), "That fits log(seconds) against the size itself: take the "
             "log of the sizes too."),
            (float(np.polyfit(lx, y, 1)[0]), "That fits the seconds themselves against log(size): take "
             "the log of the seconds too."),
            (float(np.mean(np.diff(ly) / np.diff(lx))), "That averages the slopes between neighbours: "
             "it is not the least-squares slope, and it weighs noisy points oddly."),
        ]
        hint = next((h for v, h in candidates if math.isclose(got, v, rel_tol=1e-9, abs_tol=1e-12)),
                    "Fit log(seconds) = p log(size) + c by least squares, e.g. "
                    "np.polyfit(np.log(sizes), np.log(seconds), 1).")
        raise AssertionError(f"{what}: slope {got:.6g}, expected {expected:.6g}. {hint}")
    passed(f"loglog_slope is the least-squares exponent on {len(SLOPE_CASES)} synthetic power laws, "
           "with and without noise")


# --------------------------------------------------------------------------------------------
# Exercise 4: a fixed cost per row and a cost per term
# --------------------------------------------------------------------------------------------

#: (widths, taps, ns per row, ns per term, noise): the model ns/term = a_row / (taps W) + b_term.
ROW_COST_CASES = [
    ([20, 40, 80, 160, 320, 640], 9, 60.0, 0.25, 0.0),
    ([16, 64, 256], 25, 200.0, 0.1, 0.0),
    ([20, 40, 80, 160, 320, 640], 9, 45.0, 0.4, 0.05),
    ([8, 12, 32, 100, 300, 1000], 9, 120.0, 0.3, 0.08),
]


def _row_term_fits(widths, per_term, taps):
    """Both least-squares fits of the model: on ns per term, and on ns per row."""
    w = np.asarray(widths, dtype=float)
    y = np.asarray(per_term, dtype=float)
    a1, b1 = np.polyfit(1 / (taps * w), y, 1)         # ns/term = a / (taps W) + b
    b2, a2 = np.polyfit(taps * w, y * taps * w, 1)    # ns/row  = a + b taps W
    return (float(a1), float(b1)), (float(a2), float(b2))


def check_row_and_term_costs(fn) -> None:
    """``fn(widths, ns_per_term, taps)`` must return ``(a_row, b_term)``, the least-squares fit of
    ``ns_per_term = a_row / (taps * width) + b_term`` (fitting ``ns per row = a_row + b_term taps
    width`` instead is accepted too: with noise the two weigh the points differently)."""
    rng = np.random.default_rng(705)
    for widths, taps, a, b, noise in ROW_COST_CASES:
        w = np.asarray(widths, dtype=float)
        y = (a / (taps * w) + b) * np.exp(noise * rng.standard_normal(len(w)))
        fits = _row_term_fits(widths, y, taps)
        what = (f"row_and_term_costs(widths={widths}, ns_per_term of a_row={a:g}, b_term={b:g}"
                f"{f' with noise {noise}' if noise else ''}, taps={taps})")
        got = call(fn, list(widths), [float(v) for v in y], taps, name="row_and_term_costs")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if np.ndim(got) != 1 or len(got) != 2:
            raise AssertionError(f"{what} returned {got!r}; return a tuple (a_row, b_term)")
        ga, gb = (float(v) for v in got)
        if any(math.isclose(ga, fa, rel_tol=1e-8) and math.isclose(gb, fb, rel_tol=1e-8, abs_tol=1e-12)
               for fa, fb in fits):
            continue
        (ea, eb), _ = fits
        if any(math.isclose(ga, fb, rel_tol=1e-8) and math.isclose(gb, fa, rel_tol=1e-8) for fa, fb in fits):
            hint = "Those are (b_term, a_row): return the cost per row first."
        elif any(math.isclose(ga * taps, fa, rel_tol=1e-8) or math.isclose(ga / taps, fa, rel_tol=1e-8)
                 for fa, _ in fits):
            hint = (f"a_row is off by a factor of taps = {taps}: a row of width W holds taps * W terms, so "
                    "the row's fixed cost adds a_row / (taps * W) to each term.")
        else:
            slope, icpt = np.polyfit(w, y, 1)
            hint = ("That fits ns per term against the width itself: the fixed cost is shared by the "
                    "taps * W terms of a row, so ns per term is linear in 1 / (taps * W)."
                    if math.isclose(ga, slope, rel_tol=1e-8) or math.isclose(gb, icpt, rel_tol=1e-8)
                    else "Fit ns_per_term against 1 / (taps * width) by least squares: the slope is "
                         "a_row, the intercept b_term.")
        raise AssertionError(f"{what}: returned ({ga:.6g}, {gb:.6g}), expected ({ea:.6g}, {eb:.6g}). {hint}")
    passed(f"row_and_term_costs recovers the cost per row and per term on {len(ROW_COST_CASES)} "
           "synthetic sweeps, with and without noise")


# --------------------------------------------------------------------------------------------
# Exercise 5: a kernel whose inner loop runs along the rows
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def depthwise_slow(x, weight, out):
    """Depthwise ``k x k`` convolution, same padding, written pixel by pixel: the loops run over
    columns, then rows, with the zero-padding test on every term. Correct, and slow."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    r = (k - 1) // 2
    for b in range(B):
        for c in range(C):
            for xx in range(W):
                for y in range(H):
                    acc = 0.0
                    for i in range(k):
                        for j in range(k):
                            ys, xs = y + i - r, xx + j - r
                            if 0 <= ys < H and 0 <= xs < W:
                                acc += weight[c, i, j] * x[b, c, ys, xs]
                    out[b, c, y, xx] = acc


def _depthwise_rows(x, weight, out):
    B, C, H, W = x.shape
    k = weight.shape[-1]
    r = (k - 1) // 2
    for n in prange(B * C * H):  # one output row (b, c, y) per iteration: it writes only that row
        b, c, y = n // (C * H), (n // H) % C, n % H
        row = out[b, c, y]
        row[:] = 0
        for i in range(k):
            ys = y + i - r
            if ys < 0 or ys >= H:
                continue
            for j in range(k):
                ox = j - r
                lo, hi = max(0, -ox), min(W, W - ox)  # columns whose tap (i, j) is inside
                if lo >= hi:
                    continue
                w = weight[c, i, j]
                src = x[b, c, ys, lo + ox:hi + ox]  # zero-based views: no index is negative
                dst = row[lo:hi]
                for t in range(hi - lo):
                    dst[t] += w * src[t]


#: The reference of Exercise 5 (the same loops as the solution, kept with the checks).
depthwise_rows_reference = njit(parallel=True, cache=True)(_depthwise_rows)

#: (B, C, H, W, k): odd sizes, a 1 x 1 kernel, and images narrower than the kernel.
ROWS_CASES = [(1, 1, 5, 5, 3), (2, 3, 7, 9, 3), (1, 2, 6, 11, 5), (2, 2, 4, 3, 5), (1, 3, 3, 8, 1),
              (1, 1, 2, 2, 7)]

_PACKED = re.compile(r"\bv?(?:mul|fmadd\w*|fmsub\w*|fnmadd\w*)p[sd]\b")
_SCALAR = re.compile(r"\bv?muls[sd]\b")


def simd_multiplies(py_func, *args) -> tuple[int, int]:
    """``(packed, scalar)`` multiply instructions in the machine code of ``py_func``, compiled
    afresh for ``args`` (serially: ``prange`` becomes ``range``, the inner loops are the same)."""
    fresh = njit(cache=False)(py_func)
    fresh(*args)
    asm = "\n".join(fresh.inspect_asm().values())
    return len(_PACKED.findall(asm)), len(_SCALAR.findall(asm))


_REFERENCE_SIMD: list = []


def _reference_simd(args):
    if not _REFERENCE_SIMD:
        _REFERENCE_SIMD.append(simd_multiplies(_depthwise_rows, *args)[0])
    return _REFERENCE_SIMD[0]


def check_depthwise_rows(fn) -> None:
    """``fn(x, weight, out)``, a Numba ``@njit`` function, must write the depthwise convolution of
    ``x (B, C, H, W)`` with ``weight (C, k, k)`` (same padding, zero outside) into ``out``, and its
    innermost loop must compile to packed (SIMD) multiplies where the reference's does."""
    gen = torch.Generator().manual_seed(704)
    for B, C, H, W, k in ROWS_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        weight = torch.randn(C, k, k, generator=gen, dtype=torch.float64)
        expected = F.conv2d(x, weight[:, None], padding=(k - 1) // 2, groups=C)
        out = np.full((B, C, H, W), np.nan)
        what = f"depthwise_rows(x of shape {(B, C, H, W)}, weight of shape {(C, k, k)}, out)"
        returned = call(fn, x.numpy().copy(), weight.numpy().copy(), out, name="depthwise_rows")
        if returned is not None and np.shape(returned) == out.shape and np.isnan(out).all():
            raise AssertionError(f"{what} returned a new array and left out untouched: write the "
                                 "result into out (out[...] = ..., or row = out[b, c, y]; row[...])")
        if np.isnan(out).any():
            missing = int(np.isnan(out).sum())
            raise AssertionError(f"{what} left {missing} of {out.size} elements of out unwritten (out "
                                 "started as NaN): zero each output row before adding the taps into "
                                 "it, or write every element")
        expect_close(torch.from_numpy(out), expected,
                     f"{what}: out, against F.conv2d(x, weight[:, None], padding=(k - 1) // 2, groups=C)",
                     rtol=1e-12, atol=1e-12)
    if not hasattr(fn, "py_func"):
        raise AssertionError("depthwise_rows computes the right numbers, but it is not compiled by "
                             "Numba: decorate it with @numba.njit (or @njit(parallel=True))")
    args = (np.ones((1, 2, 8, 16), np.float32), np.ones((2, 3, 3), np.float32),
            np.empty((1, 2, 8, 16), np.float32))
    packed, scalar = simd_multiplies(fn.py_func, *args)
    reference = _reference_simd(args)
    if reference > 0 and packed == 0:
        raise AssertionError(
            f"depthwise_rows computes the right numbers, but its machine code has no packed (SIMD) "
            f"multiply ({scalar} scalar ones), where the reference kernel has {reference}: LLVM did "
            "not vectorize the innermost loop. Make it run along a row, with the zero-padding test "
            "moved into its bounds, over zero-based views (src = x[b, c, ys, lo + ox:hi + ox], "
            "src[t] with t >= 0): an index such as xx + ox, which could be negative, gets a "
            "wrap-around test that stops the vectorizer.")
    passed(f"depthwise_rows equals F.conv2d on {len(ROWS_CASES)} shapes in float64, and its inner "
           f"loop compiles to {packed} packed (SIMD) multiplies (reference: {reference})")


#: Exercise function name -> its check (used by the notebook and by the tests).
CHECKS = {
    "depthwise_cost": check_depthwise_cost,
    "roofline_bound": check_roofline_bound,
    "loglog_slope": check_loglog_slope,
    "row_and_term_costs": check_row_and_term_costs,
    "depthwise_rows": check_depthwise_rows,
}
