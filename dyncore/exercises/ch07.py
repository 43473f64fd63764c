"""Checks for the exercises of Chapter 7, the kernels at the limit (``exercises/07_performance.md``).

The notebook imports this module only; the checks live by concern:

* here, the cost model: :func:`check_depthwise_cost` -- the minimum FLOPs and bytes of a strided
  depthwise convolution, against :func:`dyncore.conv.spec.depthwise_conv2d_cost` (the cost model of
  the depthwise benchmark case) and, for the FLOPs, ``torch.utils.flop_counter`` on
  ``F.conv2d(..., groups=C)``; :func:`check_roofline_bound` -- the roofline bound, the arithmetic
  intensity and the side of the ridge point, on synthetic machines whose answers are exact;
* :mod:`.ch07_fits`, fits to timings: :func:`check_loglog_slope` (the least-squares exponent of a
  power law) and :func:`check_row_and_term_costs` (a fixed cost per output row and a cost per term);
* :mod:`.ch07_kernels`, a compiled kernel: :func:`check_depthwise_rows` (a Numba kernel whose
  inner loop runs along contiguous rows, checked for its output and its packed (SIMD) multiplies).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..conv.spec import depthwise_conv2d_cost
from ..roofline import Cost, Machine, bound_seconds
from . import call, passed
from .ch07_fits import check_loglog_slope, check_row_and_term_costs
from .ch07_kernels import check_depthwise_rows, depthwise_rows_reference, depthwise_slow, simd_multiplies

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



#: Exercise function name -> its check (used by the notebook and by the tests).
CHECKS = {
    "depthwise_cost": check_depthwise_cost,
    "roofline_bound": check_roofline_bound,
    "loglog_slope": check_loglog_slope,
    "row_and_term_costs": check_row_and_term_costs,
    "depthwise_rows": check_depthwise_rows,
}
