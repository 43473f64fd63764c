"""Chapter 7's exercise 5: a Numba kernel whose inner loop runs along contiguous rows, checked
for its output against ``F.conv2d`` in float64 and for packed (SIMD) multiplies in its compiled
machine code, against a reference kernel compiled on the same machine. No timing: the checks
are exact. The notebook reaches it through :mod:`dyncore.exercises.ch07`."""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

from . import call, expect_close, passed

__all__ = ["check_depthwise_rows", "depthwise_rows_reference", "depthwise_slow", "simd_multiplies"]


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
