"""The checks of Chapter 3's exercises accept the solutions and reject plausible mistakes."""


import pytest
import torch
import torch.nn.functional as F

from dyncore.exercises import ch03

from exercise_checks import find_the_bug_test, rejects, switched
from solutions import load_solutions

sol = load_solutions("03_ls_dfn")


def test_measured_sampling_field_matches_the_formula():
    for k, s, g in [(3, 5, 2), (1, 3, 1), (5, 1, 7)]:
        assert ch03.measured_sampling_field(k, s, g) == (s - 1) * g + k


def u_at_every_tap(x, U, V, kernel_size):
    B, C, H, W = x.shape
    k = kernel_size
    S = F.unfold(x.sum(1, keepdim=True), k, padding=(k - 1) // 2).view(B, 1, k * k, H, W)
    return V * S + (U * x[:, None]).sum(2, keepdim=True)


def forgets_padding(x, U, V, kernel_size):
    out = sol.per_tap_factorized(x, U, V, kernel_size)
    return out + 0 * out + (1e-3 if kernel_size > 1 else 0)


@pytest.mark.parametrize("wrong,match", [
    (u_at_every_tap, "U is at every tap"),
    (forgets_padding, "is wrong"),
    (lambda x, U, V, k: None, "returned None"),
])
def test_per_tap_check_rejects_mistakes(wrong, match):
    rejects(ch03.check_per_tap_factorized, wrong, match)


@pytest.mark.parametrize("wrong,match", [
    (lambda k, s, g: s * g + k - 1, r"\(s - 1\)/2 \* g"),
    (lambda k, s, g: s * k, "overlap"),
    (lambda k, s, g: (s - 1) * g + 1, "add the taps"),
    (lambda k, s, g: None, "returned None"),
])
def test_sampling_field_check_rejects_mistakes(wrong, match):
    rejects(ch03.check_sampling_field, wrong, match)


def no_chain_rule(x, U, V, SA, PA, grad_out, k, s, g):
    return sol.grad_sample_attention(x, U, V, SA, PA, torch.ones_like(grad_out), k, s, g)


def centre_only(x, U, V, SA, PA, grad_out, k, s, g):
    out = sol.grad_sample_attention(x, U, V, SA, PA, grad_out, k, s, g)
    return out[:, :, (s * s) // 2: (s * s) // 2 + 1].expand_as(out).clone()


@pytest.mark.parametrize("wrong,match", [
    (no_chain_rule, "chain rule"),
    (centre_only, "is wrong"),
    (lambda *a: torch.zeros(1), "expected shape"),
])
def test_grad_check_rejects_mistakes(wrong, match):
    rejects(ch03.check_grad_sample_attention, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercise 4: predict, then measure: the FLOPs of the materialized backend
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong,match", [
    (lambda B, C, Co, H, W, k, s, g: 2 * B * Co * H * W * s * s * (C + k * k), "the factorized count"),
    (lambda B, C, Co, H, W, k, s, g: B * Co * H * W * s * s * C * k * k, "multiply-adds"),
    (lambda B, C, Co, H, W, k, s, g: 2 * B * Co * H * W * C * k * k, "one sample"),
    (lambda B, C, Co, H, W, k, s, g: 2 * B * Co * H * W * s * s * C * k * k * g,
     r"returned \d+, FlopCounterMode"),
    (lambda *a: "many", "return a number"),
])
def test_lsdfn_flop_check_rejects_wrong_predictions(wrong, match):
    rejects(ch03.check_predict_lsdfn_flops, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercise 5: find and fix the bug in the forward pass
# ------------------------------------------------------------------------------------------

def _forward(x, U, V, A_sam, A_pos, k, s, g, *, swap_samples=False, u_everywhere=False,
             pos_unshifted=False, detach_v=False):
    """The shifted-maps forward with switchable mistakes."""
    r, rs = (k - 1) // 2, (s - 1) // 2
    S = x.sum(1, keepdim=True)
    out = torch.zeros_like(A_sam[:, :, 0])
    for m in range(s * s):
        a, b = (m % s, m // s) if swap_samples else (m // s, m % s)
        my, mx = (a - rs) * g, (b - rs) * g
        bracket = torch.zeros_like(out)
        for t in range(k * k):
            v = V[:, :, t].detach() if detach_v else V[:, :, t]
            term = v * ch03.shifted(S, my + t // k - r, mx + t % k - r)
            if u_everywhere or t == k * k // 2:
                term = term + (U * ch03.shifted(x, my, mx)[:, None]).sum(2)
            a_pos = A_pos[:, :, t] if pos_unshifted else ch03.shifted(A_pos[:, :, t], my, mx)
            bracket += a_pos * term
        out += A_sam[:, :, m] * bracket
    return out


def test_the_switchable_forward_is_right_without_a_mistake():
    ch03.check_lsdfn_forward(_forward)


#: (The notebook gives the planted function statement for statement: ``test_exercises.py``.)
test_forward_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch03.check_lsdfn_forward, ch03.planted_lsdfn_forward, {
        "samples-swapped": (switched(_forward, swap_samples=True), "is wrong"),  # rows and columns swapped
        "u-everywhere": (switched(_forward, u_everywhere=True), "is wrong"),  # Eq. 6 as typeset: U at every tap
        "pos-unshifted": (switched(_forward, pos_unshifted=True), "is wrong"),  # A_pos read at the output pixel
        "v-detached": (switched(_forward, detach_v=True), "autograd finds no path from V"),  # breaks autograd
    })


def test_shifted_moves_a_map():
    z = torch.arange(12.0).view(3, 4)
    assert torch.equal(ch03.shifted(z, 1, 0)[0], z[1])
    assert torch.equal(ch03.shifted(z, 1, 0)[2], torch.zeros(4))
    assert torch.equal(ch03.shifted(z, 0, -1)[:, 1:], z[:, :-1])
    assert torch.equal(ch03.shifted(z, 5, 0), torch.zeros(3, 4))


# ------------------------------------------------------------------------------------------
# Exercise 6: which reading of Eq. 3-4
# ------------------------------------------------------------------------------------------

def test_the_two_readings_agree_with_one_sample_and_differ_with_more():
    inputs = ch03._inputs(1, 2, 2, 6, 5, 3, 1, 0)
    centre, output = (ch03._reading(name) for name in ch03.READINGS)
    torch.testing.assert_close(centre(*inputs, 3, 1, 2), output(*inputs, 3, 1, 2))
    inputs = ch03._inputs(1, 2, 2, 6, 5, 3, 3, 0)
    assert not torch.allclose(centre(*inputs, 3, 3, 2), output(*inputs, 3, 3, 2))


def _uniform_probe(op, k, s, g):
    """A probe whose position attention is the same everywhere: both readings look alike."""
    n = 9
    ones = dict(dtype=torch.float64)
    out = op(torch.ones(1, 1, n, n, **ones), torch.zeros(1, 1, 1, n, n, **ones),
             torch.ones(1, 1, k * k, n, n, **ones), torch.ones(1, 1, s * s, n, n, **ones),
             torch.ones(1, 1, k * k, n, n, **ones), k, s, g)
    return "sample centre" if float(out[0, 0, 0, 0]) < float(out[0, 0, n // 2, n // 2]) else "output pixel"


@pytest.mark.parametrize("wrong", [
    lambda op, k, s, g: "sample centre",
    lambda op, k, s, g: "output pixel",
    _uniform_probe,
    lambda op, k, s, g: "centre",
])
def test_reading_check_rejects_wrong_answers(wrong):
    rejects(ch03.check_position_attention_reading, wrong)
