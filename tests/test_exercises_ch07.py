"""The checks of Chapter 7's exercises reject plausible wrong answers, with a useful message."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from numba import njit, prange

from dyncore.exercises import ch07, ch07_fits, ch07_kernels
from dyncore.conv.spec import depthwise_conv2d_cost
from dyncore.roofline import Cost

from exercise_checks import find_the_bug_test, rejects
from solutions import load_solutions

SOL = load_solutions("07_performance")


# ------------------------------------------------------------------------------------------
# Exercise 1: the cost of a strided depthwise convolution
# ------------------------------------------------------------------------------------------

def _cost(out_rows, flops_per_output=2, input_reads=lambda n_in, n_out, k: n_in, weight=True,
          output=True, itemsize_used=True):
    def fn(B, C, H, W, k, s, itemsize):
        Ho, Wo = out_rows(H, s), out_rows(W, s)
        n_in, n_out = B * C * H * W, B * C * Ho * Wo
        elements = input_reads(n_in, n_out, k) + (C * k * k if weight else 0) + (n_out if output else 0)
        return Cost(flops_per_output * n_out * k * k, elements * (itemsize if itemsize_used else 1))
    return fn


def _right(n, s):
    return (n - 1) // s + 1


@pytest.mark.parametrize("wrong,match", [
    (_cost(_right, flops_per_output=1), "multiply-adds: a multiply-add is 2 FLOPs"),
    (_cost(lambda n, s: n), r"without the stride: the output has Ho = \(H - 1\) // stride \+ 1"),
    (_cost(lambda n, s: n // s), r"not H // stride: with padding \(k - 1\) // 2 it is \(H - 1\) // stride \+ 1"),
    (_cost(lambda n, s: (n + 1) // s), "FLOPs, expected"),  # an off-by-one of its own
    (_cost(_right, input_reads=lambda n_in, n_out, k: n_in * k * k), "counts the input k\\^2 times"),
    (_cost(_right, input_reads=lambda n_in, n_out, k: n_out * k * k), "the minimum reads every input element once"),
    (_cost(_right, itemsize_used=False), "number of elements: multiply by itemsize"),
    (_cost(_right, weight=False), r"The weight \(C, 1, k, k\) has to be read too"),
    (_cost(_right, output=False), "The output has to be written too"),
    (lambda B, C, H, W, k, s, i: (depthwise_conv2d_cost(B, C, H, W, k, stride=s, itemsize=i).flops,
                                  depthwise_conv2d_cost(B, C, H, W, k, stride=s, itemsize=i).bytes),
     r"returned a tuple; return dyncore\.roofline\.Cost"),
    (lambda *a: None, "returned None"),
])
def test_depthwise_cost_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_depthwise_cost, wrong, match)


def test_depthwise_cost_check_rejects_a_dense_count_and_an_input_sized_output():
    def dense(B, C, H, W, k, s, itemsize):
        right = SOL.depthwise_cost(B, C, H, W, k, s, itemsize)
        return Cost(right.flops * C, right.bytes)

    def input_sized_output(B, C, H, W, k, s, itemsize):
        right = SOL.depthwise_cost(B, C, H, W, k, s, itemsize)
        return Cost(right.flops, itemsize * (2 * B * C * H * W + C * k * k))

    rejects(ch07.check_depthwise_cost, dense, "a dense convolution's count")
    rejects(ch07.check_depthwise_cost, input_sized_output, "writes an output as large as the input")


def test_depthwise_cost_check_accepts_ceil_and_any_cost_like_object():
    from types import SimpleNamespace

    def with_ceil(B, C, H, W, k, s, itemsize):  # ceil(H / s) is (H - 1) // s + 1
        Ho, Wo = math.ceil(H / s), math.ceil(W / s)
        return SimpleNamespace(flops=2 * B * C * Ho * Wo * k * k,
                               bytes=itemsize * (B * C * H * W + C * k * k + B * C * Ho * Wo))

    ch07.check_depthwise_cost(with_ceil)


# ------------------------------------------------------------------------------------------
# Exercise 2: the roofline bound
# ------------------------------------------------------------------------------------------

def _limit(f, q, bw, pk):
    return "compute" if f / q > pk / bw else "memory"


@pytest.mark.parametrize("wrong,match", [
    (lambda f, q, bw, pk: (min(q / bw, f / pk), f / q, _limit(f, q, bw, pk)), "smaller of the two times"),
    (lambda f, q, bw, pk: (q / bw + f / pk, f / q, _limit(f, q, bw, pk)), "adds the two times"),
    (lambda f, q, bw, pk: (max(q * bw, f * pk), f / q, _limit(f, q, bw, pk)), "are not times: divide"),
    (lambda f, q, bw, pk: (max(q / pk, f / bw), f / q, _limit(f, q, bw, pk)), "The bytes go with the bandwidth"),
    (lambda f, q, bw, pk: (max(q / bw, f / pk), q / f, _limit(f, q, bw, pk)), "That is bytes per FLOP"),
    (lambda f, q, bw, pk: (max(q / bw, f / pk), f / q, "compute" if f / q > bw / pk else "memory"),
     r"limit 'compute', expected 'memory'\. The ridge point is peak_flops / bandwidth"),
    (lambda f, q, bw, pk: (max(q / bw, f / pk), f / q, "memory" if f / q > pk / bw else "compute"),
     "below the ridge the memory time is the larger one"),
    (lambda f, q, bw, pk: (max(q / bw, f / pk), f / q, "memory-bound"), "return the string 'memory' or 'compute'"),
    (lambda f, q, bw, pk: max(q / bw, f / pk), r"return a tuple \(seconds, intensity, limit\)"),
    (lambda f, q, bw, pk: None, "returned None"),
])
def test_roofline_bound_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_roofline_bound, wrong, match)


def test_roofline_bound_check_accepts_a_comparison_of_the_times_and_a_list():
    def by_times(f, q, bw, pk):
        t_mem, t_cmp = q / bw, f / pk
        return [max(t_mem, t_cmp), f / q, "memory" if t_mem > t_cmp else "compute"]

    ch07.check_roofline_bound(by_times)


def test_roofline_bound_cases_lie_on_both_sides_of_every_ridge():
    sides = {}
    for bw, pk, f, q in ch07.BOUND_CASES:
        assert f / q != pk / bw
        sides.setdefault(pk / bw, set()).add(_limit(f, q, bw, pk))
    assert len(sides) == 3 and all(s == {"memory", "compute"} for s in sides.values())


# ------------------------------------------------------------------------------------------
# Exercise 3: the exponent of a scaling curve
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong,match", [
    (lambda n, t: np.polyfit(n, t, 1)[0], "straight line through \\(size, seconds\\)"),
    (lambda n, t: np.polyfit(np.log(n), np.log(t), 1)[1], "That is the intercept"),
    (lambda n, t: np.polyfit(np.log(t), np.log(n), 1)[0], "regresses log\\(size\\) on log\\(seconds\\)"),
    (lambda n, t: math.log(t[-1] / t[0]) / math.log(n[-1] / n[0]), "only the first and last points"),
    (lambda n, t: np.polyfit(n, np.log(t), 1)[0], "take the log of the sizes too"),
    (lambda n, t: np.polyfit(np.log(n), t, 1)[0], "take the log of the seconds too"),
    (lambda n, t: np.mean(np.diff(np.log(t)) / np.diff(np.log(n))), "averages the slopes between neighbours"),
    (lambda n, t: np.polyfit(np.log(n), np.log(t), 1), "return one number"),
    (lambda n, t: None, "returned None"),
    (lambda n, t: np.polyfit(np.log(n), np.log(t), 2)[1], "slope .*, expected"),
])
def test_loglog_slope_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_loglog_slope, wrong, match)


def test_loglog_slope_check_does_not_penalize_the_base_of_the_logarithm():
    ch07.check_loglog_slope(lambda n, t: np.polyfit(np.log10(n), np.log10(t), 1)[0])
    ch07.check_loglog_slope(lambda n, t: np.polyfit(np.log2(n), np.log2(t), 1)[0])


def test_loglog_slope_solution_recovers_known_exponents():
    n = np.array([3.0, 7, 20, 55, 150])
    for p in (0.5, 1, 2, 3.2):
        assert SOL.loglog_slope(n, 2.5 * n ** p) == pytest.approx(p, rel=1e-12)


# ------------------------------------------------------------------------------------------
# Exercise 4: a cost per row and a cost per term
# ------------------------------------------------------------------------------------------

def _fit(x_of, y_of, order="ab"):
    def fn(widths, per_term, taps):
        w, y = np.asarray(widths, float), np.asarray(per_term, float)
        slope, icpt = np.polyfit(x_of(w, taps), y_of(y, w, taps), 1)
        return (slope, icpt) if order == "ab" else (icpt, slope)
    return fn


@pytest.mark.parametrize("wrong,match", [
    (_fit(lambda w, T: 1 / (T * w), lambda y, w, T: y, order="ba"), r"Those are \(b_term, a_row\)"),
    (_fit(lambda w, T: 1 / w, lambda y, w, T: y), "off by a factor of taps = 9"),
    (_fit(lambda w, T: w, lambda y, w, T: y), "against the width itself"),
    (_fit(lambda w, T: np.log(w), lambda y, w, T: np.log(y)), "Fit ns_per_term against 1 / \\(taps \\* width\\)"),
    (lambda w, y, T: np.polyfit(1 / (T * np.asarray(w)), y, 1)[0], r"return a tuple \(a_row, b_term\)"),
    (lambda w, y, T: None, "returned None"),
])
def test_row_and_term_costs_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_row_and_term_costs, wrong, match)


def test_row_and_term_costs_check_accepts_the_per_row_fit():
    def per_row(widths, per_term, taps):
        terms = taps * np.asarray(widths, float)
        b_term, a_row = np.polyfit(terms, np.asarray(per_term) * terms, 1)
        return a_row, b_term

    ch07.check_row_and_term_costs(per_row)


def test_the_two_fits_differ_with_noise_and_agree_without():
    w = [20, 40, 80, 160, 320, 640]
    exact = [60 / (9 * x) + 0.25 for x in w]
    (a1, b1), (a2, b2) = ch07_fits._row_term_fits(w, exact, 9)
    assert (a1, b1) == pytest.approx((60, 0.25)) and (a2, b2) == pytest.approx((60, 0.25))
    noisy = [t * (1 + 0.05 * (-1) ** i) for i, t in enumerate(exact)]
    (a1, _), (a2, _) = ch07_fits._row_term_fits(w, noisy, 9)
    assert not math.isclose(a1, a2, rel_tol=1e-6)  # so accepting both is a real choice


# ------------------------------------------------------------------------------------------
# Exercise 5: an inner loop along the rows
# ------------------------------------------------------------------------------------------

def _rows_kernel(*, zero_rows=True, last_row=True, inner="views", parallel=False):
    """The row kernel with switchable mistakes and inner loops (Numba compiles each switch in as a
    constant): ``inner`` is "views" (zero-based views, src[t]), "offset" (the chapter's "before":
    right rows, but x_row[xx + ox], an index that could be negative) or "slices" (whole-slice
    updates: Numba writes the row loop itself)."""
    views, slices = inner == "views", inner == "slices"
    skipped = 0 if last_row else 1  # an off-by-one in the row test: ys >= H - 1

    @njit(parallel=parallel)
    def kernel(x, weight, out):
        B, C, H, W = x.shape
        k = weight.shape[-1]
        r = (k - 1) // 2
        for n in prange(B * C * H):
            b, c, y = n // (C * H), (n // H) % C, n % H
            row = out[b, c, y]
            if zero_rows:
                row[:] = 0
            for i in range(k):
                ys = y + i - r
                if ys < 0 or ys >= H - skipped:
                    continue
                x_row = x[b, c, ys]
                for j in range(k):
                    ox = j - r
                    lo, hi = max(0, -ox), min(W, W - ox)
                    if lo >= hi:
                        continue
                    if views:
                        src, dst = x_row[lo + ox:hi + ox], row[lo:hi]
                        for t in range(hi - lo):
                            dst[t] += weight[c, i, j] * src[t]
                    elif slices:
                        row[lo:hi] += weight[c, i, j] * x_row[lo + ox:hi + ox]
                    else:
                        for xx in range(lo, hi):
                            row[xx] += weight[c, i, j] * x_row[xx + ox]

    return kernel


@njit
def _flipped(x, weight, out):  # a true convolution: the kernel turned by 180 degrees
    ch07_kernels.depthwise_rows_reference(x, weight[:, ::-1, ::-1].copy(), out)


def _python_rows(x, weight, out):
    SOL.depthwise_rows.py_func(x, weight, out)


def _returns_new(x, weight, out):
    res = np.empty_like(out)
    SOL.depthwise_rows(x, weight, res)
    return res


@pytest.mark.parametrize("wrong,match", [
    (ch07_kernels.depthwise_slow, r"no packed \(SIMD\) multiply .* zero-based views"),
    (_rows_kernel(inner="offset"), r"no packed \(SIMD\) multiply .* xx \+ ox, which could be negative"),
    (_rows_kernel(zero_rows=False), "unwritten .*zero each output row"),
    (_flipped, r"out, against F\.conv2d.* is wrong"),
    (_rows_kernel(last_row=False, parallel=True), r"out, against F\.conv2d.* is wrong"),
    (_python_rows, "not compiled by Numba: decorate it with @numba.njit"),
    (_returns_new, "returned a new array and left out untouched"),
])
def test_depthwise_rows_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_depthwise_rows, wrong, f"(?s){match}")


def test_depthwise_rows_check_accepts_a_serial_kernel():
    ch07.check_depthwise_rows(njit(SOL.depthwise_rows.py_func))


def test_depthwise_rows_check_accepts_the_switchable_kernel_without_a_mistake():
    ch07.check_depthwise_rows(_rows_kernel())


def test_the_slow_kernel_and_the_reference_agree_bit_for_bit():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((3, 5, 5))
    a, b = np.empty_like(x), np.empty_like(x)
    ch07_kernels.depthwise_slow(x, w, a)
    ch07_kernels.depthwise_rows_reference(x, w, b)
    assert np.array_equal(a, b)


def test_depthwise_rows_check_accepts_slice_arithmetic():
    ch07.check_depthwise_rows(_rows_kernel(inner="slices", parallel=True))


# ------------------------------------------------------------------------------------------
# Exercises 6-8: predict then measure, find the bug, the recorded GPU run
# ------------------------------------------------------------------------------------------


def _sizes(B, C, H, W, k):
    return B * C * H * W, C * k * k


def saved_no_weight(B, C, H, W, k, itemsize):
    x, w = _sizes(B, C, H, W, k)
    return x * itemsize, x * k * k * itemsize


def saved_with_output(B, C, H, W, k, itemsize):
    x, w = _sizes(B, C, H, W, k)
    return (2 * x + w) * itemsize, (x * k * k + w + x) * itemsize


def saved_k_not_k2(B, C, H, W, k, itemsize):
    x, w = _sizes(B, C, H, W, k)
    return (x + w) * itemsize, (x * k + w) * itemsize


def saved_elements(B, C, H, W, k, itemsize):
    x, w = _sizes(B, C, H, W, k)
    return x + w, x * k * k + w


@pytest.mark.parametrize("wrong,match", [
    (saved_no_weight, r"saved_bytes\(B=1, C=1, H=5, W=5, kernel_size=3, itemsize=4\).*leaves out the weight"),
    (saved_with_output, r"counts the output"),
    (saved_k_not_k2, r"copies k values per output pixel"),
    (saved_elements, r"counts elements, not bytes"),
    (lambda *a: SOL.saved_bytes(*a)[1], r"return a pair \(native, unfold\)"),
])
def test_saved_bytes_check_rejects_wrong_predictions(wrong, match):
    rejects(ch07.check_saved_bytes, wrong, f"(?s){match}")


def test_saved_bytes_formulations_agree():
    x, w = torch.randn(2, 3, 7, 9, dtype=torch.float64), torch.randn(3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ch07.depthwise_unfold(x, w), ch07.depthwise_native(x, w))


def test_planted_strided_output_is_what_the_notebook_kernel_writes():
    """The check recognises the notebook's unchanged kernel by ``planted_depthwise_strided``
    (``F.conv2d`` with dilation ``(1, stride)``): run the notebook's cell itself, uncompiled."""
    import jupytext

    notebook = Path(__file__).resolve().parents[1] / "exercises" / "07_performance_exercises.md"
    [cell] = [c.source for c in jupytext.read(notebook).cells
              if c.cell_type == "code" and "def depthwise_strided(" in c.source]
    namespace = {"njit": lambda fn: fn}
    exec(compile(cell, notebook.name, "exec"), namespace)
    rng = np.random.default_rng(12)
    for B, C, H, W, k, s in ch07.STRIDED_CASES + [(2, 3, 1, 1, 5, 2), (1, 2, 4, 11, 7, 3), (1, 1, 6, 2, 3, 5)]:
        x, weight = rng.standard_normal((B, C, H, W)), rng.standard_normal((C, k, k))
        notebook_out, planted = (np.full((B, C, (H - 1) // s + 1, (W - 1) // s + 1), np.nan) for _ in range(2))
        namespace["depthwise_strided"](x, weight, s, notebook_out)
        ch07.planted_depthwise_strided(x, weight, s, planted)
        np.testing.assert_allclose(planted, notebook_out, rtol=1e-12, atol=1e-12)


def _strided(*, stride_the_row_offset=False, centred=True):
    """The strided kernel with switchable mistakes: the stride applied to the row offset (after
    the columns are fixed), or taps read from the window's corner (no -r: the output shifted by r)."""

    def fn(x, weight, stride, out):
        B, C, H, W = x.shape
        k = weight.shape[-1]
        r = (k - 1) // 2 if centred else 0
        for b, c, yo, xo in np.ndindex(B, C, *out.shape[2:]):
            acc = 0.0
            for i, j in np.ndindex(k, k):
                ys = (yo + i - r) * stride if stride_the_row_offset else yo * stride + i - r
                xs = xo * stride + j - r
                if 0 <= ys < H and 0 <= xs < W:
                    acc += weight[c, i, j] * x[b, c, ys, xs]
            out[b, c, yo, xo] = acc

    return fn


def test_the_switchable_strided_kernel_is_right_without_a_mistake():
    ch07.check_depthwise_strided(_strided())


def strided_returns_out(x, weight, stride, out):
    SOL.depthwise_strided(x, weight, stride, out)
    return out


test_strided_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch07.check_depthwise_strided, ch07.planted_depthwise_strided, {
        "stride-the-row-offset": (_strided(stride_the_row_offset=True),
                                  r"(?s)x of shape \(1, 2, 7, 9\).*stride=2, out\) is wrong"),
        "not-centred": (_strided(centred=False), r"(?s)x of shape \(1, 1, 5, 5\).*stride=1, out\) is wrong"),
        "returns-out": (strided_returns_out, r"returned a value; a kernel writes into `out`"),
    })


def fraction_inverted(record, machine):
    return 1 / SOL.fraction_of_bound(record, machine)


def fraction_memory_only(record, machine):
    return record["bytes"] / machine["bandwidth_bytes_per_s"] / record["median_s"]


def fraction_sum(record, machine):
    return (record["bytes"] / machine["bandwidth_bytes_per_s"]
            + record["flops"] / machine["peak_flops_per_s"]) / record["median_s"]


def fraction_copy_bandwidth(record, machine):
    bound = max(record["bytes"] / machine["copy_bandwidth_bytes_per_s"], record["flops"] / machine["peak_flops_per_s"])
    return bound / record["median_s"]


@pytest.mark.parametrize("wrong,match", [
    (fraction_inverted, r"made-up memory-bound\).*median / bound"),
    (fraction_memory_only, r"made-up compute-bound\).*memory time only"),
    (fraction_sum, r"made-up memory-bound\).*adds the two times"),
    (fraction_copy_bandwidth, r"made-up memory-bound\): the fraction is 0\.25, yours is 0\.5\.$"),
    (lambda r, m: None, r"returned None"),
])
def test_fraction_check_rejects_wrong_answers(wrong, match):
    rejects(ch07.check_fraction_of_bound, wrong, f"(?s){match}")


def test_fraction_check_covers_the_recorded_run(capsys):
    machine, records = ch07.recorded_gpu_run()
    ch07.check_fraction_of_bound(SOL.fraction_of_bound)
    out = capsys.readouterr().out
    if records:
        assert f"on {len(records)} recorded GPU records" in out and "ddf" in out
