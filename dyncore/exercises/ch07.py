"""Checks for the exercises of Chapter 7, the kernels at the limit (``exercises/07_performance_exercises.md``).

The notebook imports this module only; the checks live by concern:

* here, the cost model: :func:`check_depthwise_cost` -- the minimum FLOPs and bytes of a strided
  depthwise convolution, against :func:`dyncore.conv.spec.depthwise_conv2d_cost` (the cost model of
  the depthwise benchmark case) and, for the FLOPs, ``torch.utils.flop_counter`` on
  ``F.conv2d(..., groups=C)``; :func:`check_roofline_bound` -- the roofline bound, the arithmetic
  intensity and the side of the ridge point, on synthetic machines whose answers are exact;
* :mod:`.ch07_fits`, fits to timings: :func:`check_loglog_slope` (the least-squares exponent of a
  power law) and :func:`check_row_and_term_costs` (a fixed cost per output row and a cost per term);
* :mod:`.ch07_kernels`, a compiled kernel: :func:`check_depthwise_rows` (a Numba kernel whose
  inner loop runs along contiguous rows, checked for its output and its packed (SIMD) multiplies);
* here again, three exercises of another kind: :func:`check_saved_bytes` (predict, then measure:
  the bytes autograd keeps for the backward pass of two formulations), :func:`check_depthwise_strided`
  (find and fix the bug in a strided kernel) and :func:`check_fraction_of_bound` (the recorded GPU
  run against its roofline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..conv.spec import depthwise_conv2d_cost
from ..roofline import Cost, Machine, bound_seconds
from . import call, expect_close, passed, reject_planted_bug
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
    "check_saved_bytes",
    "measure_saved_bytes",
    "depthwise_native",
    "depthwise_unfold",
    "check_depthwise_strided",
    "check_fraction_of_bound",
    "recorded_gpu_run",
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

# --------------------------------------------------------------------------------------------
# Exercise 6 (predict, then measure): the bytes autograd keeps for the backward pass
# --------------------------------------------------------------------------------------------

def depthwise_unfold(x, weight):
    """A depthwise convolution (stride 1, padding r) as the unfold formulation: every output
    pixel's k*k inputs copied out, then multiplied by the weight and summed over the taps."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(B, C, k * k, H * W)
    return (cols * weight.reshape(1, C, k * k, 1)).sum(2).view(B, C, H, W)


def depthwise_native(x, weight):
    """The same convolution as one ``F.conv2d`` call with ``groups=C``."""
    k = weight.shape[-1]
    return F.conv2d(x, weight[:, None], padding=(k - 1) // 2, groups=x.shape[1])


def measure_saved_bytes(fn, x, weight) -> int:
    """The measurement: the bytes of the distinct storages that autograd saves for the backward
    pass of ``fn(x, weight)`` (``x`` and ``weight`` require gradients), seen through
    ``torch.autograd.graph.saved_tensors_hooks``."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, weight)
    return sum(storages.values())


#: (B, C, H, W, k, dtype)
SAVED_CASES = [(1, 1, 5, 5, 3, torch.float32), (2, 3, 7, 9, 3, torch.float32), (1, 4, 6, 5, 5, torch.float64),
               (2, 2, 4, 3, 1, torch.float32)]


def check_saved_bytes(fn) -> None:
    """``fn(B, C, H, W, kernel_size, itemsize)`` predicts ``(native, unfold)``: the bytes that
    :func:`measure_saved_bytes` measures for :func:`depthwise_native` and
    :func:`depthwise_unfold`; they must agree exactly."""
    for B, C, H, W, k, dtype in SAVED_CASES:
        x, weight = torch.randn(B, C, H, W, dtype=dtype), torch.randn(C, k, k, dtype=dtype)
        measured = (measure_saved_bytes(depthwise_native, x, weight), measure_saved_bytes(depthwise_unfold, x, weight))
        itemsize = x.element_size()
        what = f"saved_bytes(B={B}, C={C}, H={H}, W={W}, kernel_size={k}, itemsize={itemsize})"
        got = call(fn, B, C, H, W, k, itemsize, name="saved_bytes")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the pair?")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{what} returned {got!r}; return a pair (native, unfold) of byte counts")
        got = tuple(int(v) for v in got)
        if got != measured:
            n, w = B * C * H * W * itemsize, C * k * k * itemsize
            hints = {
                (n, B * C * k * k * H * W * itemsize): "leaves out the weight, which the backward "
                "pass needs too (for dL/dx)",
                (n + w + n, B * C * k * k * H * W * itemsize + w + n): "counts the output: the "
                "backward pass of these operations needs their inputs, not their outputs",
                (n + w, B * C * k * H * W * itemsize + w): "copies k values per output pixel; unfold "
                "copies all k*k taps of it",
                (n // itemsize + w // itemsize, (B * C * k * k * H * W + C * k * k)): "counts elements, not bytes",
            }
            why = hints.get(got)
            raise AssertionError(f"{what}: you predicted {got}, autograd saved {measured}"
                                 + (f"; your count {why}." if why else "."))
    B, C, H, W, k, dtype = SAVED_CASES[1]
    x, weight = torch.randn(B, C, H, W, dtype=dtype), torch.randn(C, k, k, dtype=dtype)
    native, unfold = measure_saved_bytes(depthwise_native, x, weight), measure_saved_bytes(depthwise_unfold, x, weight)
    passed(f"your predictions equal what autograd saved in {len(SAVED_CASES)} cases; for B={B}, C={C}, "
           f"{H}x{W}, k={k}: {native:,} bytes for F.conv2d, {unfold:,} for the unfold formulation "
           f"({unfold / native:.1f}x)")


# --------------------------------------------------------------------------------------------
# Exercise 7 (find and fix the bug): a strided depthwise kernel
# --------------------------------------------------------------------------------------------

def planted_depthwise_strided(x, weight, stride, out):
    """The exercise's kernel as the notebook gives it (here in plain Python, without ``@njit``),
    with its one mistake (used by the check to recognise an unchanged kernel)."""
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
                            xs = (xo + j - r) * stride
                            if 0 <= xs < W:
                                acc += weight[c, i, j] * x[b, c, ys, xs]
                    out[b, c, yo, xo] = acc


#: (B, C, H, W, k, stride): stride 1 first, then odd sizes the stride does not divide, a 5x5
#: and a 1x1 kernel, a stride larger than the kernel.
STRIDED_CASES = [(1, 1, 5, 5, 3, 1), (1, 2, 7, 9, 3, 2), (2, 1, 8, 7, 5, 3), (1, 2, 6, 5, 1, 2), (1, 1, 9, 9, 3, 4)]


def check_depthwise_strided(fn) -> None:
    """``fn(x, weight, stride, out)`` (numpy arrays, float64) must write into ``out`` the
    depthwise convolution with padding ``r = (k - 1) // 2`` and ``stride``, against ``F.conv2d``."""
    import numpy as np

    rng = np.random.default_rng(707)
    for B, C, H, W, k, s in STRIDED_CASES:
        x, weight = rng.standard_normal((B, C, H, W)), rng.standard_normal((C, k, k))
        expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight)[:, None], stride=s,
                            padding=(k - 1) // 2, groups=C)
        out = np.full(tuple(expected.shape), np.nan)
        what = f"depthwise_strided(x of shape {(B, C, H, W)}, weight of shape {(C, k, k)}, stride={s}, out)"
        returned = call(fn, x, weight, s, out, name="depthwise_strided")
        if returned is not None:
            raise AssertionError(f"{what} returned a value; a kernel writes into `out` and returns nothing.")
        planted = np.full_like(out, np.nan)
        planted_depthwise_strided(x, weight, s, planted)
        reject_planted_bug(torch.from_numpy(out), torch.from_numpy(planted), expected, what,
                           reference="F.conv2d", clue="Find the one mistake: it passed with stride 1; "
                           "which pixel does tap (i, j) of output pixel (yo, xo) read?")
        expect_close(torch.from_numpy(out), expected, what, rtol=1e-10, atol=1e-12)
    passed(f"depthwise_strided matches F.conv2d on {len(STRIDED_CASES)} shapes with strides 1 to 4")


# --------------------------------------------------------------------------------------------
# Exercise 8 (an experiment): the recorded GPU run against its roofline
# --------------------------------------------------------------------------------------------

def recorded_gpu_run() -> tuple:
    """``(machine, forward_records)`` of the newest ``results/gpu-*.json`` (the records whose
    roofline bound was computed), or ``(None, [])`` when none is recorded."""
    import json
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "results").glob("gpu-*.json"))
    if not files:
        return None, []
    data = json.loads(files[-1].read_text())
    return data["machine"], [r for r in data["records"] if r["mode"] == "forward" and r.get("bound_s")]


def check_fraction_of_bound(fn) -> None:
    """``fn(record, machine)`` (one forward record and the machine of a ``dyncore-bench/1``
    result file) must return the record's fraction of its roofline bound, ``bound / median``,
    as the benchmark computed it; first on a synthetic record, then on the recorded GPU run."""
    synthetic_machine = {"bandwidth_bytes_per_s": 2.0 ** 40, "peak_flops_per_s": 2.0 ** 44,
                         "copy_bandwidth_bytes_per_s": 2.0 ** 39}
    synthetic = [{"op": "made-up memory-bound", "flops": 2.0 ** 30, "bytes": 2.0 ** 30, "median_s": 2.0 ** -8},
                 {"op": "made-up compute-bound", "flops": 2.0 ** 40, "bytes": 2.0 ** 30, "median_s": 2.0 ** -2}]
    machine, records = recorded_gpu_run()
    cases = [(synthetic_machine, r) for r in synthetic] + [(machine, r) for r in records]
    for m, r in cases:
        bound = max(r["bytes"] / m["bandwidth_bytes_per_s"], r["flops"] / m["peak_flops_per_s"])
        expected = bound / r["median_s"]
        got = call(fn, dict(r), dict(m), name="fraction_of_bound")
        what = f"fraction_of_bound(the record of {r['op']}" + (
            f" on {r['backend']!r} at {r['B']}x{r['C']}x{r['H']}x{r['W']})" if "backend" in r else ")")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the fraction?")
        if not math.isclose(float(got), expected, rel_tol=1e-9):
            hints = {
                1 / expected: "That is median / bound, the number of times slower than the bound; "
                              "the fraction is bound / median (1 at the machine's limit).",
                r["bytes"] / m["bandwidth_bytes_per_s"] / r["median_s"]: "That uses the memory time only; "
                              "the bound is the larger of the memory and the compute times.",
                (r["bytes"] / m["bandwidth_bytes_per_s"] + r["flops"] / m["peak_flops_per_s"]) / r["median_s"]:
                    "That adds the two times; the roofline takes the larger one.",
            }
            why = next((h for v, h in hints.items() if math.isclose(float(got), v, rel_tol=1e-9)), "")
            raise AssertionError(f"{what}: the fraction is {expected:.6g}, yours is {float(got):.6g}. {why}".rstrip())
        if "fraction_of_bound" in r and not math.isclose(expected, r["fraction_of_bound"], rel_tol=1e-9):
            raise AssertionError(f"the recorded fraction of {what} is {r['fraction_of_bound']}, not {expected}")
    if not records:
        passed("fraction_of_bound is right on synthetic records; no GPU run is recorded in results/ to apply it to")
        return
    lines = []
    for r in records:
        f = fn(dict(r), dict(machine))
        side = "compute" if r["flops"] / r["bytes"] > machine["peak_flops_per_s"] / machine["bandwidth_bytes_per_s"] else "memory"
        size = f"{r['B']}x{r['C']}x{r['H']}x{r['W']}"
        lines.append(f"  {r['op']:<10}{r['backend']:<8}{size:<15}{side:<9}{f:8.3f}")
    above = [r for r in records if fn(dict(r), dict(machine)) > 1]
    passed(f"fraction_of_bound matches the benchmark's on {len(records)} recorded GPU records "
           f"({machine.get('device_name')}):\n  {'op':<10}{'backend':<8}{'size':<15}{'bound':<9}{'fraction':>8}\n"
           + "\n".join(lines) + f"\n{len(above)} of them run faster than their bound")


CHECKS = {
    "depthwise_cost": check_depthwise_cost,
    "roofline_bound": check_roofline_bound,
    "loglog_slope": check_loglog_slope,
    "row_and_term_costs": check_row_and_term_costs,
    "depthwise_rows": check_depthwise_rows,
    "saved_bytes": check_saved_bytes,
    "depthwise_strided": check_depthwise_strided,
    "fraction_of_bound": check_fraction_of_bound,
}
