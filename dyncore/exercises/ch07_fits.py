"""Chapter 7's exercises 3 and 4: fits to timings (checked on synthetic timings with known
answers). The notebook reaches them through :mod:`dyncore.exercises.ch07`."""

from __future__ import annotations

import math

import numpy as np

from . import call, passed

__all__ = ["check_loglog_slope", "check_row_and_term_costs"]


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
