"""Checks for the exercises of Chapter 5, PAD-Nets (``exercises/05_pad_nets_exercises.md``).

* :func:`check_gumbel_max_sample` -- Gumbel-max sampling from given uniform noise, against the
  formula, and by its frequencies against ``softmax(logits)``;
* :func:`check_straight_through_gates` -- the straight-through Gumbel-softmax: one-hot forward,
  the soft sample's gradient backward, against a reference computed here;
* :func:`check_gate_gradient` -- ``dL/dgates`` of ``adaptive_dilation_conv`` written by hand,
  against PyTorch's autograd of the gated sum, in float64;
* :func:`check_receptive_field_distribution` -- the law of the receptive field of a PAD stack
  whose layers draw their dilations at random, against enumeration, and every side against the
  measured gradient support of a plain dilated stack (:func:`dyncore.exercises.ch01.measured_receptive_field`);
* :func:`check_gate_grad_at_pixel` -- predict, then measure: the gradient of the gates at one
  pixel of an all-ones layer, predicted by counting, measured by autograd;
* :func:`check_pad_layer` -- find and fix the bug: a PAD layer from its priors with one planted
  mistake, against ``adaptive_dilation_conv``;
* :func:`check_welch_t_test` -- Welch's t-test by hand, against SciPy, then on the chapter's
  recorded experiment.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from ..pad.spec import reference as gated_sum
from ..receptive_field import receptive_field
from . import call, expect_close, passed, reject_planted_bug
from .ch01 import measured_receptive_field

__all__ = [
    "CHECKS",
    "check_gumbel_max_sample",
    "check_straight_through_gates",
    "check_gate_gradient",
    "check_receptive_field_distribution",
    "reference_receptive_field_distribution",
    "check_gate_grad_at_pixel",
    "measure_gate_grad_at_pixel",
    "check_pad_layer",
    "check_welch_t_test",
    "recorded_miou",
]


# --------------------------------------------------------------------------------------------
# Exercise 1: Gumbel-max sampling
# --------------------------------------------------------------------------------------------

#: Shapes of ``logits`` (the last axis holds the D options).
GUMBEL_SHAPES = [(3,), (4, 5), (2, 3, 2), (6, 1)]


def _reference_gumbel_max(logits, uniform):
    return (logits - torch.log(-torch.log(uniform))).argmax(-1)


def check_gumbel_max_sample(fn) -> None:
    """``fn(logits, uniform)`` must return ``argmax(logits - log(-log(uniform)))`` over the last
    axis, an integer tensor of shape ``logits.shape[:-1]``."""
    gen = torch.Generator().manual_seed(501)
    for shape in GUMBEL_SHAPES:
        logits = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
        uniform = torch.rand(shape, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        expected = _reference_gumbel_max(logits, uniform)
        what = f"gumbel_max_sample(logits of shape {shape}, uniform of shape {shape})"
        got = call(fn, logits.clone(), uniform.clone(), name="gumbel_max_sample")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{what} returned a {type(got).__name__}; return a tensor of indices")
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(
                f"{what}: expected indices of shape {tuple(expected.shape)} (one per row of logits, "
                f"the argmax over the last axis), got shape {tuple(got.shape)}")
        if got.dtype.is_floating_point:
            raise AssertionError(f"{what} returned a {got.dtype} tensor; return integer indices "
                                 "(argmax gives int64)")
        if not torch.equal(got.long(), expected):
            noiseless = logits.argmax(-1)
            hint = (" It equals argmax(logits): the noise is missing." if torch.equal(got.long(), noiseless)
                    and not torch.equal(noiseless, expected) else
                    " The Gumbel(0, 1) noise is g = -log(-log(u)).")
            raise AssertionError(f"{what} returned {got.tolist()}, expected {expected.tolist()}.{hint}")
    # the point of the trick: the samples follow softmax(logits)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    n = 40_000
    uniform = torch.rand(n, 4, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    samples = call(fn, logits.expand(n, 4).clone(), uniform, name="gumbel_max_sample").long()
    freq = torch.bincount(samples, minlength=4).double() / n
    p = torch.softmax(logits, 0)
    worst = ((freq - p).abs() / (p * (1 - p) / n).sqrt()).max().item()  # in standard errors
    if worst > 5:
        raise AssertionError(f"the frequencies of your samples, {freq.tolist()}, are not "
                             f"softmax(logits) = {p.tolist()}")
    passed(f"gumbel_max_sample is argmax(logits + g) with g = -log(-log(u)) on {len(GUMBEL_SHAPES)} "
           f"shapes, and {n} samples follow softmax(logits) (largest deviation {worst:.1f} "
           "standard errors)")


# --------------------------------------------------------------------------------------------
# Exercise 2: straight-through Gumbel-softmax gates
# --------------------------------------------------------------------------------------------

#: (B, D, H, W, tau)
STRAIGHT_THROUGH_CASES = [(1, 3, 2, 2, 1.0), (2, 3, 3, 4, 0.5), (1, 2, 5, 3, 2.0), (2, 4, 2, 3, 0.25)]


def check_straight_through_gates(fn) -> None:
    """``fn(priors, gumbel, tau)`` must return gates ``(B, D, H, W)`` whose *values* are the
    one-hot argmax over axis 1 of ``priors + gumbel`` and whose *gradient* with respect to
    ``priors`` is that of the soft sample ``softmax((priors + gumbel) / tau, dim=1)``."""
    gen = torch.Generator().manual_seed(502)
    for B, D, H, W, tau in STRAIGHT_THROUGH_CASES:
        priors = torch.randn(B, D, H, W, generator=gen, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(torch.rand(B, D, H, W, generator=gen, dtype=torch.float64)))
        upstream = torch.randn(B, D, H, W, generator=gen, dtype=torch.float64)
        what = f"straight_through_gates(priors of shape {(B, D, H, W)}, gumbel, tau={tau})"
        index = (priors + gumbel).argmax(1)
        hard = F.one_hot(index, D).permute(0, 3, 1, 2).to(torch.float64)
        p = priors.clone().requires_grad_()
        soft = torch.softmax((p + gumbel) / tau, dim=1)
        (expected_grad,) = torch.autograd.grad(soft, p, upstream)

        p = priors.clone().requires_grad_()
        with torch.enable_grad():
            gates = call(fn, p, gumbel.clone(), tau, name="straight_through_gates")
        if gates is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if tuple(gates.shape) != (B, D, H, W):
            raise AssertionError(f"{what}: expected gates of shape {(B, D, H, W)}, got {tuple(gates.shape)}")
        if torch.allclose(gates.detach(), soft.detach()) and not torch.allclose(soft.detach(), hard):
            raise AssertionError(f"{what} returned the soft sample: the forward value must be "
                                 "one-hot (the argmax), only the gradient is the soft sample's")
        expect_close(gates.detach(), hard, f"{what}, forward value (one-hot argmax over axis 1)",
                     rtol=0, atol=1e-12)
        if not gates.requires_grad:
            raise AssertionError(f"{what}: the gates do not depend on priors in the autograd graph "
                                 "(a detached one-hot has no gradient); add the soft sample back "
                                 "in, as y_hard - y_soft.detach() + y_soft")
        (grad,) = torch.autograd.grad(gates, p, upstream, allow_unused=True)
        if grad is None:
            raise AssertionError(f"{what}: no gradient reaches priors")
        expect_close(grad, expected_grad,
                     f"{what}, gradient with respect to priors (that of softmax((priors + gumbel) / tau))",
                     rtol=1e-9, atol=1e-12)
    passed(f"straight_through_gates is one-hot forward with the soft sample's gradient on "
           f"{len(STRAIGHT_THROUGH_CASES)} shapes and temperatures")


# --------------------------------------------------------------------------------------------
# Exercise 3: the gate gradient by hand
# --------------------------------------------------------------------------------------------

#: (B, Cin, Cout, H, W, k, dilations)
GATE_GRAD_CASES = [
    (1, 1, 1, 5, 5, 3, (1,)),
    (1, 2, 3, 6, 7, 3, (1, 2)),
    (2, 3, 2, 7, 5, 3, (1, 2, 4)),   # dilation 4: most taps fall outside a 5-wide image
    (1, 2, 2, 6, 6, 5, (1, 3)),
    (2, 1, 3, 4, 6, 1, (2, 5)),      # k = 1: every dilation gives the same response
]


def check_gate_gradient(fn) -> None:
    """``fn(x, weight, grad_out, dilations)`` must return ``dL/dgates`` ``(B, D, H, W)`` of
    ``out = adaptive_dilation_conv(x, weight, bias, gates, dilations=dilations)`` when
    ``dL/dout = grad_out``. The reader's function runs under ``torch.no_grad()``."""
    gen = torch.Generator().manual_seed(503)
    for B, Cin, Cout, H, W, k, dilations in GATE_GRAD_CASES:
        D = len(dilations)
        x = torch.randn(B, Cin, H, W, generator=gen, dtype=torch.float64)
        weight = torch.randn(Cout, Cin, k, k, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, Cout, H, W, generator=gen, dtype=torch.float64)
        gates = torch.softmax(torch.randn(B, D, H, W, generator=gen, dtype=torch.float64), 1)
        gates.requires_grad_()
        with torch.enable_grad():
            (expected,) = torch.autograd.grad(gated_sum(x, weight, None, gates, dilations=dilations), gates, grad_out)
        what = (f"gate_gradient(x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, "
                f"grad_out of shape {tuple(grad_out.shape)}, dilations={dilations})")
        try:
            with torch.no_grad():
                got = call(fn, x.clone(), weight.clone(), grad_out.clone(), dilations,
                           name="gate_gradient")
        except RuntimeError as exc:
            if "grad" not in str(exc):
                raise
            raise AssertionError(f"{what} raised RuntimeError: {exc}\nThe check calls your function "
                                 "under torch.no_grad(): compute the gradient by hand.") from None
        if got is not None and getattr(got, "shape", None) is not None and tuple(got.shape) != (B, D, H, W):
            raise AssertionError(f"{what}: expected shape (B, D, H, W) = {(B, D, H, W)}, got "
                                 f"{tuple(got.shape)}. There is one gate, and one gradient, per "
                                 "dilation and pixel: sum over the output channels.")
        expect_close(got, expected, what, rtol=1e-9, atol=1e-9)
    passed(f"gate_gradient matches autograd of the gated sum on {len(GATE_GRAD_CASES)} shapes, "
           "kernel sizes and dilation sets (float64)")


# --------------------------------------------------------------------------------------------
# Exercise 4: the receptive field of a PAD stack
# --------------------------------------------------------------------------------------------

#: (kernel_size, dilations, probs): one probability vector over the dilations per layer.
RF_CASES = [
    (3, (1,), [[1.0]]),
    (3, (1, 2, 4), [[0.0, 0.0, 1.0]]),
    (3, (1, 2, 4), [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]),
    (3, (1, 2, 4), [[0.2, 0.3, 0.5]] * 3),  # sides coincide: 1 + 2 + 4 = 2 + 2 + 2 + ...
    (5, (1, 3), [[0.6, 0.4], [0.3, 0.7], [1.0, 0.0]]),
    (1, (1, 2), [[0.5, 0.5], [0.5, 0.5]]),  # 1 x 1 kernels see one pixel, whatever the dilation
]


def reference_receptive_field_distribution(kernel_size, dilations, probs) -> dict[int, float]:
    """By enumeration of every choice of one dilation per layer."""
    law: dict[int, float] = {}
    for choice in itertools.product(range(len(dilations)), repeat=len(probs)):
        p = math.prod(probs[layer][d] for layer, d in enumerate(choice))
        if p == 0:
            continue
        side = receptive_field([(kernel_size, 1, dilations[d]) for d in choice])
        law[side] = law.get(side, 0.0) + p
    return law


def check_receptive_field_distribution(fn) -> None:
    """``fn(kernel_size, dilations, probs)`` must return a dict ``{side: probability}``: the law
    of the receptive field's side when layer ``l`` of a stack of ``k x k`` convolutions (stride 1)
    uses dilation ``dilations[d]`` with probability ``probs[l][d]``, independently of the others."""
    for k, dilations, probs in RF_CASES:
        expected = reference_receptive_field_distribution(k, dilations, probs)
        for choice in itertools.product(dilations, repeat=len(probs)):  # the check's own judge
            layers = [(k, 1, d) for d in choice]
            if receptive_field(layers) != measured_receptive_field(layers):
                raise RuntimeError(f"internal error in the check for {layers}; please report this")
        what = f"receptive_field_distribution({k}, {dilations}, {probs})"
        got = call(fn, k, tuple(dilations), [list(p) for p in probs], name="receptive_field_distribution")
        if not isinstance(got, dict):
            raise AssertionError(f"{what} returned {type(got).__name__} {got!r}; return a dict "
                                 "{side: probability}")
        got = {int(s): float(p) for s, p in got.items() if float(p) != 0.0}
        total = sum(got.values())
        if abs(total - 1) > 1e-9:
            raise AssertionError(f"{what} returned probabilities that sum to {total}, not 1: {got}")
        if set(got) != set(expected) or any(abs(got[s] - expected[s]) > 1e-9 for s in expected):
            mean = sum(s * p for s, p in got.items())
            want_mean = sum(s * p for s, p in expected.items())
            hint = ""
            if abs(mean - want_mean) > 1e-9:
                hint = (f"\nIts mean is {mean:g}, but E[side] = 1 + (k - 1) * sum over layers of "
                        f"E[dilation] = {want_mean:g}: is the span of one layer (k - 1) * d?")
            raise AssertionError(f"{what} returned {dict(sorted(got.items()))}, expected "
                                 f"{dict(sorted(expected.items()))}{hint}")
    passed(f"receptive_field_distribution agrees with enumeration on {len(RF_CASES)} stacks, and "
           "every side with the measured gradient support of its plain dilated stack")



# --------------------------------------------------------------------------------------------
# Exercise 5 (predict, then measure): the gradient of the gates at one pixel
# --------------------------------------------------------------------------------------------

#: (y, x, H, W, kernel_size, dilations, in_channels): near a corner, the interior, near an edge
#: with a dilation that leaves the image, and a 1x1 kernel.
GATE_POINT_CASES = [(1, 1, 5, 5, 3, (1, 2, 4), 2), (3, 4, 7, 9, 3, (1, 2, 3), 1),
                    (1, 4, 6, 6, 5, (1, 2), 3), (2, 1, 5, 3, 3, (1, 3), 2), (3, 3, 7, 7, 1, (1, 2), 2)]


def measure_gate_grad_at_pixel(y, x, H, W, kernel_size, dilations, in_channels) -> torch.Tensor:
    """The measurement: ``dL/dgates[0, :, y, x]`` of ``L = adaptive_dilation_conv(...).sum()``
    with ``x``, ``weight`` all ones (one output channel) and random gates, by autograd (float64)."""
    from ..pad import adaptive_dilation_conv

    xs = torch.ones(1, in_channels, H, W, dtype=torch.float64)
    weight = torch.ones(1, in_channels, kernel_size, kernel_size, dtype=torch.float64)
    gates = torch.rand(1, len(dilations), H, W, dtype=torch.float64, requires_grad=True)
    adaptive_dilation_conv(xs, weight, None, gates, dilations=tuple(dilations), backend="torch").sum().backward()
    return gates.grad[0, :, y, x]


def check_gate_grad_at_pixel(fn) -> None:
    """``fn(y, x, H, W, kernel_size, dilations, in_channels)`` predicts the ``D`` values that
    :func:`measure_gate_grad_at_pixel` measures; they must agree to 1e-9 (they are counts)."""
    for y, x, H, W, k, dil, cin in GATE_POINT_CASES:
        measured = measure_gate_grad_at_pixel(y, x, H, W, k, dil, cin)
        what = f"gate_grad_at_pixel(y={y}, x={x}, H={H}, W={W}, kernel_size={k}, dilations={dil}, in_channels={cin})"
        predicted = call(fn, y, x, H, W, k, dil, cin, name="gate_grad_at_pixel")
        if predicted is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the prediction?")
        predicted = torch.as_tensor(predicted, dtype=torch.float64).reshape(-1)
        if predicted.shape != measured.shape:
            raise AssertionError(f"{what}: predict one value per dilation ({len(dil)}), got {predicted.numel()}.")
        if not torch.allclose(predicted, measured, rtol=0, atol=1e-9):
            hints = {
                "every dilation gets in_channels * k * k, as if no tap left the image: the taps "
                "of a dilated kernel reach further, and read zeros past the border": torch.full_like(measured, cin * k * k),
                "the count leaves out the input channels: each tap reads all in_channels of them":
                    measured / cin,
            }
            why = next((h for h, v in hints.items() if torch.allclose(predicted, v)),
                       "count, for each dilation d, the rows y + (i - r) d and columns x + (j - r) d "
                       "inside the image")
            raise AssertionError(f"{what}: you predicted {predicted.tolist()}, autograd measured "
                                 f"{measured.tolist()} ({why}).")
    y, x, H, W, k, dil, cin = GATE_POINT_CASES[0]
    passed(f"your predictions match autograd at {len(GATE_POINT_CASES)} pixels (tolerance 1e-9); at pixel "
           f"({y}, {x}) of a {H}x{W} image with dilations {dil}: "
           f"{measure_gate_grad_at_pixel(y, x, H, W, k, dil, cin).tolist()}")


# --------------------------------------------------------------------------------------------
# Exercise 6 (find and fix the bug): a PAD layer from its priors
# --------------------------------------------------------------------------------------------

def planted_pad_layer(x, weight, prior_weight, dilations):
    """The exercise's layer as the notebook gives it, with its one mistake (used by the check
    to recognise an unchanged function)."""
    k = weight.shape[-1]
    r = (k - 1) // 2
    priors = F.conv2d(x, prior_weight)
    gates = torch.softmax(priors, dim=-1)
    out = 0
    for n, d in enumerate(dilations):
        out = out + gates[:, n:n + 1] * F.conv2d(x, weight, padding=d * r, dilation=d)
    return out


#: (B, Cin, Cout, H, W, k, dilations)
PAD_LAYER_CASES = [(1, 2, 3, 5, 7, 3, (1, 2, 3)), (2, 1, 2, 6, 5, 5, (1, 2)), (1, 3, 1, 4, 4, 1, (1, 2, 4)),
                   (2, 2, 2, 7, 3, 3, (1,))]


def check_pad_layer(fn) -> None:
    """``fn(x, weight, prior_weight, dilations)`` must equal ``adaptive_dilation_conv`` with the
    gates ``softmax`` of the priors ``F.conv2d(x, prior_weight)`` over the dilations."""
    from ..pad import adaptive_dilation_conv

    gen = torch.Generator().manual_seed(506)
    for B, cin, cout, H, W, k, dil in PAD_LAYER_CASES:
        x = torch.randn(B, cin, H, W, generator=gen, dtype=torch.float64)
        weight = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64)
        prior_weight = torch.randn(len(dil), cin, 1, 1, generator=gen, dtype=torch.float64)
        gates = torch.softmax(F.conv2d(x, prior_weight), dim=1)
        expected = adaptive_dilation_conv(x, weight, None, gates, dilations=dil, backend="loops")
        what = (f"pad_layer(x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, "
                f"dilations={dil})")
        result = call(fn, x.clone(), weight.clone(), prior_weight.clone(), dil, name="pad_layer")
        reject_planted_bug(result, planted_pad_layer(x, weight, prior_weight, dil), expected, what,
                           clue="Find the one mistake: at every pixel, what should the gates of the "
                           "dilations add up to?")
        expect_close(result, expected, what, rtol=1e-10, atol=1e-12, shape_hint=
                     "The output is (B, Cout, H, W), the size of the input.")
    passed(f"pad_layer matches adaptive_dilation_conv on {len(PAD_LAYER_CASES)} shapes, kernel sizes "
           "1, 3 and 5 and dilations up to 4")


# --------------------------------------------------------------------------------------------
# Exercise 7 (an experiment): Welch's t-test on the chapter's recorded run
# --------------------------------------------------------------------------------------------

#: Synthetic samples (a, b) with known answers, then the recorded run's comparisons.
WELCH_SYNTHETIC = [([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]),
                   ([0.5, 0.52, 0.49, 0.51], [0.47, 0.48, 0.5]),
                   ([3.0, 1.0, 2.0], [2.0, 3.0, 1.0])]
RECORDED_PAIRS = [("PAD markov", "multi-dilation average"), ("PAD markov", "fixed d=2"),
                  ("PAD markov", "fixed d=1")]


def recorded_miou(variant: str) -> list:
    """Test mIoU of every seed of ``variant`` in the chapter's recorded run."""
    from ..experiments import runner

    result = runner.load("05_pad_dilation")
    return [r["metrics"]["miou"] for r in result["variants"][variant]["runs"]]


def check_welch_t_test(fn) -> None:
    """``fn(a, b)`` must return ``(t, p)``: Welch's t statistic of ``mean(a) - mean(b)`` and its
    two-sided p-value, against ``scipy.stats.ttest_ind(a, b, equal_var=False)`` (hidden while
    ``fn`` runs) to 1e-6; then the verdicts of the chapter's recorded run."""
    call(fn, *WELCH_SYNTHETIC[0], name="welch_t_test")  # a stub fails here, before the slow imports
    import scipy.stats

    samples = WELCH_SYNTHETIC + [(recorded_miou(a), recorded_miou(b)) for a, b in RECORDED_PAIRS]
    ttest = scipy.stats.ttest_ind

    def hidden(*args, **kwargs):
        raise AssertionError("scipy.stats.ttest_ind is hidden during this check: compute t, the "
                             "Welch-Satterthwaite degrees of freedom and p yourself")

    verdicts = []
    for n, (a, b) in enumerate(samples):
        ref = ttest(a, b, equal_var=False)
        scipy.stats.ttest_ind = hidden
        try:
            result = call(fn, list(a), list(b), name="welch_t_test")
        finally:
            scipy.stats.ttest_ind = ttest
        what = f"welch_t_test(a={[round(v, 4) for v in a]}, b={[round(v, 4) for v in b]})"
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{what} returned {result!r}; return a pair (t, p)")
        t, p = (float(v) for v in result)
        if not math.isclose(t, ref.statistic, rel_tol=1e-6, abs_tol=1e-9):
            pooled = ttest(a, b, equal_var=True).statistic
            ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
            biased = float((ta.mean() - tb.mean()) / (ta.var(correction=0) / len(a) + tb.var(correction=0) / len(b)).sqrt())
            hint = (" That is Student's t with a pooled variance; Welch's divides by "
                    "sqrt(var(a)/n_a + var(b)/n_b)." if math.isclose(t, pooled, rel_tol=1e-6) else
                    " Use the unbiased variances (divide by n - 1)." if math.isclose(t, biased, rel_tol=1e-6) else "")
            raise AssertionError(f"{what}: t = {ref.statistic:.6g}, yours is {t:.6g}.{hint}")
        if not math.isclose(p, ref.pvalue, rel_tol=1e-6, abs_tol=1e-12):
            hint = (" That is the one-sided p-value; the test is two-sided." if math.isclose(p, ref.pvalue / 2, rel_tol=1e-6)
                    else " Is that the p-value of the pooled degrees of freedom n_a + n_b - 2? Welch's "
                    "uses the Welch-Satterthwaite degrees of freedom." if math.isclose(
                        p, 2 * scipy.stats.t.sf(abs(ref.statistic), len(a) + len(b) - 2), rel_tol=1e-6) else "")
            raise AssertionError(f"{what}: p = {ref.pvalue:.6g}, yours is {p:.6g}.{hint}")
        if n >= len(WELCH_SYNTHETIC):
            verdicts.append((t, p))
    lines = []
    for (a, b), (t, p) in zip(RECORDED_PAIRS, verdicts):
        verdict = ("holds" if t > 0 else "does not hold at this scale") if p < 0.05 else "inconclusive"
        lines.append(f"  {a} beats {b} on mIoU: {verdict} (t = {t:+.2f}, p = {p:.2g})")
    passed(f"welch_t_test matches scipy on {len(samples)} pairs of samples (to 1e-6); on the chapter's "
           "recorded run, over its five seeds:\n" + "\n".join(lines))


CHECKS = {
    "gumbel_max_sample": check_gumbel_max_sample,
    "straight_through_gates": check_straight_through_gates,
    "gate_gradient": check_gate_gradient,
    "receptive_field_distribution": check_receptive_field_distribution,
    "gate_grad_at_pixel": check_gate_grad_at_pixel,
    "pad_layer": check_pad_layer,
    "welch_t_test": check_welch_t_test,
}
