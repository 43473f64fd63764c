"""Reference solutions to the exercises of Chapter 7, the kernels at the limit
(``exercises/07_performance_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch07.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import numpy as np
from numba import njit, prange

from dyncore.roofline import Cost


# ---------------------------------------------------------------------------------------------
# Exercise 1: the minimum cost of a strided depthwise convolution
# ---------------------------------------------------------------------------------------------

def depthwise_cost(B, C, H, W, k, stride, itemsize):
    """FLOPs ``2 B C Ho Wo k^2`` and bytes ``itemsize (B C H W + C k^2 + B C Ho Wo)``.

    With padding ``r = (k - 1) // 2`` the output has ``Ho = (H + 2r - k) // stride + 1
    = (H - 1) // stride + 1`` rows (``ceil(H / stride)``): output row ``yo`` is centred on input
    row ``yo * stride``, and the last one that fits is the last multiple of the stride below H.
    Each output element is a sum of ``k^2`` products: ``k^2`` multiply-adds, ``2 k^2`` FLOPs.
    The stride shrinks the arithmetic and the output, not the input: every input element is
    still read (for ``stride <= k``), once at the least.
    """
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    flops = 2 * B * C * Ho * Wo * k * k
    elements = B * C * H * W + C * k * k + B * C * Ho * Wo  # input, weight (C, 1, k, k), output
    return Cost(flops, itemsize * elements)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the roofline bound
# ---------------------------------------------------------------------------------------------

def roofline_bound(flops, nbytes, bandwidth, peak_flops):
    """``(max(nbytes / bandwidth, flops / peak_flops), flops / nbytes, limit)``.

    The memory time exceeds the arithmetic time exactly when ``nbytes / bandwidth >
    flops / peak_flops``, i.e. when the intensity ``flops / nbytes`` is below the ridge point
    ``peak_flops / bandwidth``: comparing the two times and comparing intensity with ridge are
    the same test.
    """
    seconds = max(nbytes / bandwidth, flops / peak_flops)
    intensity = flops / nbytes
    limit = "compute" if intensity > peak_flops / bandwidth else "memory"
    return seconds, intensity, limit


# ---------------------------------------------------------------------------------------------
# Exercise 3: the measured exponent of a power law
# ---------------------------------------------------------------------------------------------

def loglog_slope(sizes, seconds):
    """Least-squares slope of ``log(seconds)`` against ``log(sizes)``.

    ``t = a n^p`` is ``log t = p log n + log a``: a straight line in log-log space whose slope is
    the exponent. Least squares over every point averages the noise of the timings; the base of
    the logarithm cancels in the slope.
    """
    slope, _intercept = np.polyfit(np.log(np.asarray(sizes, dtype=float)),
                                   np.log(np.asarray(seconds, dtype=float)), 1)
    return float(slope)


# ---------------------------------------------------------------------------------------------
# Exercise 4: a fixed cost per row and a cost per term
# ---------------------------------------------------------------------------------------------

def row_and_term_costs(widths, ns_per_term, taps):
    """Least squares of ``ns_per_term = a_row * u + b_term`` with ``u = 1 / (taps * width)``.

    A row of width W holds ``taps * W`` terms and costs ``a_row + b_term * taps * W``; divided
    by its terms that is ``a_row / (taps W) + b_term``, a straight line in ``u``: the slope is the
    fixed cost of a row, the intercept the cost of one term (what an infinitely long row would
    cost per term).
    """
    u = 1 / (taps * np.asarray(widths, dtype=float))
    a_row, b_term = np.polyfit(u, np.asarray(ns_per_term, dtype=float), 1)
    return float(a_row), float(b_term)


# ---------------------------------------------------------------------------------------------
# Exercise 5: a kernel whose inner loop runs along the rows
# ---------------------------------------------------------------------------------------------

@njit(parallel=True)  # no cache=True: the tests load this file by path, outside any package
def depthwise_rows(x, weight, out):
    """One output row ``(b, c, y)`` per ``prange`` iteration (it writes that row only); for each
    tap, the columns whose tap is inside the image are ``lo <= xx < hi``, so the inner loop needs
    no padding test, and it runs over zero-based views of contiguous rows, so no index can be
    negative and LLVM vectorizes it. The taps are added in the same order as the pixel-by-pixel
    loops, so the result is the same bit for bit.
    """
    B, C, H, W = x.shape
    k = weight.shape[-1]
    r = (k - 1) // 2
    for n in prange(B * C * H):
        b, c, y = n // (C * H), (n // H) % C, n % H
        row = out[b, c, y]
        row[:] = 0
        for i in range(k):
            ys = y + i - r
            if ys < 0 or ys >= H:
                continue
            for j in range(k):
                ox = j - r
                lo, hi = max(0, -ox), min(W, W - ox)
                if lo >= hi:
                    continue
                w = weight[c, i, j]            # hoisted: the same for the whole row
                src = x[b, c, ys, lo + ox:hi + ox]
                dst = row[lo:hi]
                for t in range(hi - lo):
                    dst[t] += w * src[t]


# ---------------------------------------------------------------------------------------------
# Exercise 6: predict, then measure: the bytes autograd keeps for the backward pass
# ---------------------------------------------------------------------------------------------

def saved_bytes(B, C, H, W, kernel_size, itemsize):
    """``(native, unfold)``: both keep the weight (C k^2 values) for dL/dx; F.conv2d keeps its
    input x (B C H W values), the unfold formulation keeps the unfolded input, k^2 copies of it
    (B C k^2 H W values), which the product needs for dL/dweight."""
    x = B * C * H * W
    w = C * kernel_size * kernel_size
    cols = x * kernel_size * kernel_size
    return (x + w) * itemsize, (cols + w) * itemsize


# ---------------------------------------------------------------------------------------------
# Exercise 7: find and fix the bug: a strided depthwise kernel
# ---------------------------------------------------------------------------------------------

@njit
def depthwise_strided(x, weight, stride, out):
    """The planted mistake was ``xs = (xo + j - r) * stride``: the stride applied to the tap's
    offset too (a dilation by the stride). The stride moves the window; the taps stay one
    pixel apart: ``xs = xo * stride + j - r``, as for the rows."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    r = (k - 1) // 2
    Ho, Wo = out.shape[2], out.shape[3]
    for b in range(B):
        for c in range(C):
            for yo in range(Ho):
                for xo in range(Wo):
                    acc = 0.0
                    for i in range(k):
                        ys = yo * stride + i - r
                        if ys < 0 or ys >= H:
                            continue
                        for j in range(k):
                            xs = xo * stride + j - r
                            if 0 <= xs < W:
                                acc += weight[c, i, j] * x[b, c, ys, xs]
                    out[b, c, yo, xo] = acc


# ---------------------------------------------------------------------------------------------
# Exercise 8: the recorded GPU run against its roofline
# ---------------------------------------------------------------------------------------------

def fraction_of_bound(record, machine):
    """``bound / median`` with the roofline bound ``max(bytes / bandwidth, flops / peak)``."""
    bound = max(record["bytes"] / machine["bandwidth_bytes_per_s"], record["flops"] / machine["peak_flops_per_s"])
    return bound / record["median_s"]
