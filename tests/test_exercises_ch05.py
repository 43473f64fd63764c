"""The checks of Chapter 5's exercises reject plausible wrong answers, with a useful message."""


import pytest
import torch
import torch.nn.functional as F

from dyncore.exercises import ch05
from dyncore.pad.spec import reference

from exercise_checks import find_the_bug_test, rejects
from solutions import load_solutions

SOL = load_solutions("05_pad_nets")


# ------------------------------------------------------------------------------------------
# Exercise 1: Gumbel-max sampling
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong,match", [
    (lambda h, u: h.argmax(-1), "the noise is missing"),
    (lambda h, u: (h + torch.log(u)).argmax(-1), r"expected .* The Gumbel\(0, 1\) noise is g = -log\(-log\(u\)\)"),
    (lambda h, u: (h - torch.log(u)).argmax(-1), "returned"),  # exponential noise, not Gumbel
    (lambda h, u: (h - torch.log(-torch.log(u))).argmax(0), r"expected indices of shape \(4,\)"),
    (lambda h, u: F.one_hot((h - torch.log(-torch.log(u))).argmax(-1), h.shape[-1]), "expected indices of shape"),
    (lambda h, u: (h - torch.log(-torch.log(u))).argmax(-1).double(), "return integer indices"),
    (lambda h, u: None, "returned None"),
    (lambda h, u: (h - torch.log(-torch.log(u))).argmax(-1).tolist(), "return a tensor of indices"),
])
def test_gumbel_max_check_rejects_wrong_answers(wrong, match):
    rejects(ch05.check_gumbel_max_sample, wrong, match)


def test_gumbel_max_check_tests_the_frequencies():
    """A sampler that agrees on the fixed cases but is biased on the large draw is caught."""
    def biased(h, u):
        idx = SOL.gumbel_max_sample(h, u)
        if idx.numel() > 1000:
            idx = idx.clone()
            idx[: idx.numel() // 10] = 0
        return idx

    rejects(ch05.check_gumbel_max_sample, biased, "frequencies of your samples")


# ------------------------------------------------------------------------------------------
# Exercise 2: straight-through gates
# ------------------------------------------------------------------------------------------

def _soft(p, g, tau):
    return torch.softmax((p + g) / tau, dim=1)


def _hard(p, g):
    return F.one_hot((p + g).argmax(1), p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)


@pytest.mark.parametrize("wrong,match", [
    (lambda p, g, tau: _soft(p, g, tau), "returned the soft sample: the forward value must be one-hot"),
    (lambda p, g, tau: _hard(p, g), "do not depend on priors in the autograd graph"),
    (lambda p, g, tau: F.one_hot((p + g).argmax(1), p.shape[1]).to(p.dtype), "expected gates of shape"),
    (lambda p, g, tau: _hard(p, g) - _soft(p, g, 1.0).detach() + _soft(p, g, 1.0),
     r"tau=0\.5\), gradient with respect to priors .* is wrong"),
    (lambda p, g, tau: _hard(p, g) - torch.softmax(p / tau, 1).detach() + torch.softmax(p / tau, 1),
     "gradient with respect to priors"),
    (lambda p, g, tau: _hard(p, g) - _soft(p, g, tau) + _soft(p, g, tau).detach(),
     "gradient with respect to priors"),  # detaches the wrong term: the gradient is minus the right one
    (lambda p, g, tau: _hard(p, torch.zeros_like(g)) - _soft(p, g, tau).detach() + _soft(p, g, tau),
     r"forward value \(one-hot argmax over axis 1\) is wrong"),  # forgets the noise in the argmax
])
def test_straight_through_check_rejects_wrong_answers(wrong, match):
    rejects(ch05.check_straight_through_gates, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercise 3: the gate gradient
# ------------------------------------------------------------------------------------------

def _responses(x, w, dilations, pad):
    return [F.conv2d(x, w, padding=pad(dil, w), dilation=dil) for dil in dilations]


def test_gate_gradient_check_rejects_a_missing_channel_sum():
    def no_sum(x, w, G, dilations):
        r = (w.shape[-1] - 1) // 2
        return torch.cat([G * F.conv2d(x, w, padding=d * r, dilation=d) for d in dilations], 1)

    rejects(ch05.check_gate_gradient, no_sum, r"expected shape \(B, D, H, W\).*sum over the output channels")


def test_gate_gradient_check_rejects_a_flipped_kernel():
    def flipped(x, w, G, dilations):  # a true convolution, not the cross-correlation of eq-pad-relaxed
        r = (w.shape[-1] - 1) // 2
        return torch.stack([(G * F.conv2d(x, w.flip(2, 3), padding=d * r, dilation=d)).sum(1)
                            for d in dilations], 1)

    rejects(ch05.check_gate_gradient, flipped, r"dilations=\(1,\)\) is wrong")


def test_gate_gradient_check_rejects_a_response_without_its_weight_channel_sum():
    def weights_summed(x, w, G, dilations):  # sums the weights over the output channels first
        r = (w.shape[-1] - 1) // 2
        w1 = w.sum(0, keepdim=True)
        return torch.stack([(G.sum(1, keepdim=True) * F.conv2d(x, w1, padding=d * r, dilation=d)).sum(1)
                            for d in dilations], 1)

    rejects(ch05.check_gate_gradient, weights_summed, r"dilations=\(1, 2\)\) is wrong")


def test_gate_gradient_check_rejects_a_forgotten_dilation():
    def one_dilation(x, w, G, dilations):
        r = (w.shape[-1] - 1) // 2
        R = F.conv2d(x, w, padding=r)
        return torch.stack([(G * R).sum(1) for _ in dilations], 1)

    rejects(ch05.check_gate_gradient, one_dilation, r"dilations=\(1, 2\)\) is wrong")


def test_gate_gradient_check_explains_that_autograd_is_off():
    def with_autograd(x, w, G, dilations):
        gates = torch.ones(x.shape[0], len(dilations), *x.shape[2:], dtype=x.dtype, requires_grad=True)
        reference(x, w, None, gates, dilations=dilations).backward(G)
        return gates.grad

    rejects(ch05.check_gate_gradient, with_autograd, r"torch\.no_grad\(\): compute the gradient by hand")


def test_gate_gradient_check_says_when_nothing_is_returned():
    rejects(ch05.check_gate_gradient, lambda x, w, G, dilations: None, "returned None")


# ------------------------------------------------------------------------------------------
# Exercise 4: the receptive field of a PAD stack
# ------------------------------------------------------------------------------------------

def _law(kernel_size, dilations, probs, span):
    law = {1: 1.0}
    for layer in probs:
        folded = {}
        for side, ps in law.items():
            for d, pd in zip(dilations, layer):
                if pd:
                    folded[side + span(kernel_size, d)] = folded.get(side + span(kernel_size, d), 0.0) + ps * pd
        law = folded
    return law


@pytest.mark.parametrize("wrong,match", [
    (lambda k, dil, probs: _law(k, dil, probs, lambda k_, d: k_ * d),
     r"Its mean is .* is the span of one layer \(k - 1\) \* d\?"),
    (lambda k, dil, probs: _law(k, dil, probs, lambda k_, d: (k_ - 1) + d - 1), "expected"),
    (lambda k, dil, probs: 1 + (k - 1) * sum(sum(p * d for p, d in zip(layer, dil)) for layer in probs),
     r"returned float .*return a dict \{side: probability\}"),
    (lambda k, dil, probs: [(s, p) for s, p in SOL.receptive_field_distribution(k, dil, probs).items()],
     "return a dict"),
    (lambda k, dil, probs: {s: 1.0 for s in SOL.receptive_field_distribution(k, dil, probs)},
     "probabilities that sum to"),
])
def test_receptive_field_check_rejects_wrong_answers(wrong, match):
    rejects(ch05.check_receptive_field_distribution, wrong, f"(?s){match}")


def test_receptive_field_check_accepts_enumeration_and_numpy_values():
    import numpy as np

    def enumerated(k, dil, probs):
        return {np.int64(s): np.float64(p) for s, p in
                ch05.reference_receptive_field_distribution(k, dil, probs).items()}

    ch05.check_receptive_field_distribution(enumerated)


def test_the_law_has_the_mean_of_linearity():
    k, dil, probs = 3, (1, 2, 4), [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]]
    law = SOL.receptive_field_distribution(k, dil, probs)
    mean = sum(s * p for s, p in law.items())
    assert mean == pytest.approx(1 + (k - 1) * sum(sum(p * d for p, d in zip(layer, dil)) for layer in probs))


# ------------------------------------------------------------------------------------------
# Exercises 5-7: predict then measure, find the bug, the recorded experiment
# ------------------------------------------------------------------------------------------


def gate_point_no_border(y, x, H, W, k, dilations, cin):
    return [cin * k * k] * len(dilations)


def gate_point_no_channels(y, x, H, W, k, dilations, cin):
    return SOL.gate_grad_at_pixel(y, x, H, W, k, dilations, cin) / cin


def gate_point_undilated(y, x, H, W, k, dilations, cin):
    return SOL.gate_grad_at_pixel(y, x, H, W, k, (1,) * len(dilations), cin)


def gate_point_rows_only(y, x, H, W, k, dilations, cin):
    """Clips the rows at the border but not the columns."""
    r = (k - 1) // 2
    return [cin * k * sum(0 <= y + (i - r) * d < H for i in range(k)) for d in dilations]


@pytest.mark.parametrize("wrong,match", [
    (gate_point_rows_only, r"y=1, x=1.*you predicted \[18\.0, 12\.0, 6\.0\].*count, for each dilation d, the rows"),
    (gate_point_no_border, r"gate_grad_at_pixel\(y=1, x=1, H=5.*as if no tap left the image"),
    (gate_point_no_channels, r"y=1, x=1.*leaves out the input channels"),
    (gate_point_undilated, r"gate_grad_at_pixel\(y=1, x=1, H=5.*the taps of a dilated kernel reach further"),
    (lambda *args: SOL.gate_grad_at_pixel(*args)[:1], r"predict one value per dilation \(3\), got 1"),
])
def test_gate_point_check_rejects_wrong_predictions(wrong, match):
    rejects(ch05.check_gate_grad_at_pixel, wrong, f"(?s){match}")


def pad_layer_softmax_over_batch(x, weight, prior_weight, dilations):
    k = weight.shape[-1]
    gates = torch.softmax(F.conv2d(x, prior_weight), dim=0)
    return sum(gates[:, n:n + 1] * F.conv2d(x, weight, padding=d * (k // 2), dilation=d)
               for n, d in enumerate(dilations))


def pad_layer_gates_reversed(x, weight, prior_weight, dilations):
    """Gate n multiplies the response of the dilation at the other end of the list."""
    k = weight.shape[-1]
    gates = torch.softmax(F.conv2d(x, prior_weight), dim=1).flip(1)
    return sum(gates[:, n:n + 1] * F.conv2d(x, weight, padding=d * (k // 2), dilation=d)
               for n, d in enumerate(dilations))


def pad_layer_sigmoid(x, weight, prior_weight, dilations):
    k = weight.shape[-1]
    gates = torch.sigmoid(F.conv2d(x, prior_weight))
    return sum(gates[:, n:n + 1] * F.conv2d(x, weight, padding=d * (k // 2), dilation=d)
               for n, d in enumerate(dilations))


test_pad_layer_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch05.check_pad_layer, ch05.planted_pad_layer, {
        "softmax-over-batch": (pad_layer_softmax_over_batch,
                               r"(?s)pad_layer\(x of shape \(1, 2, 5, 7\).* is wrong"),
        "gates-reversed": (pad_layer_gates_reversed, r"(?s)pad_layer\(x of shape \(1, 2, 5, 7\).* is wrong"),
        "sigmoid": (pad_layer_sigmoid, r"(?s)pad_layer\(x of shape \(1, 2, 5, 7\).* is wrong"),
    })


def welch_pooled(a, b):
    import scipy.stats

    r = scipy.stats.ttest_ind(a, b, equal_var=True)
    return r.statistic, r.pvalue


def welch_one_sided(a, b):
    t, p = SOL.welch_t_test(a, b)
    return t, p / 2


def welch_biased_variance(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    sa, sb = a.var(correction=0) / len(a), b.var(correction=0) / len(b)
    return float((a.mean() - b.mean()) / (sa + sb).sqrt()), 0.5


def welch_pooled_dof(a, b):
    import scipy.stats

    t, _ = SOL.welch_t_test(a, b)
    return t, float(2 * scipy.stats.t.sf(abs(t), len(a) + len(b) - 2))


@pytest.mark.parametrize("wrong,match", [
    (welch_pooled, r"scipy\.stats\.ttest_ind is hidden"),
    (welch_one_sided, r"welch_t_test\(a=\[1\.0, 2\.0.*the one-sided p-value"),
    (welch_biased_variance, r"Use the unbiased variances"),
    (welch_pooled_dof, r"pooled degrees of freedom"),
    (lambda a, b: SOL.welch_t_test(a, b)[0], r"return a pair \(t, p\)"),
])
def test_welch_check_rejects_wrong_answers(wrong, match):
    rejects(ch05.check_welch_t_test, wrong, f"(?s){match}")


def test_welch_check_restores_scipy_and_prints_the_recorded_verdicts(capsys):
    import scipy.stats

    original = scipy.stats.ttest_ind
    ch05.check_welch_t_test(SOL.welch_t_test)
    assert scipy.stats.ttest_ind is original
    out = capsys.readouterr().out
    words = []
    for a, b in ch05.RECORDED_PAIRS:  # each verdict as scipy decides it on the recorded seeds
        t, p = original(ch05.recorded_miou(a), ch05.recorded_miou(b), equal_var=False)
        word = ("holds" if t > 0 else "does not hold at this scale") if p < 0.05 else "inconclusive"
        assert f"{a} beats {b} on mIoU: {word} (t = {t:+.2f}, p = {p:.2g})" in out
        words.append(word)
    assert words.count("inconclusive") == 2  # the exercise's question after the check says two of the three
