"""The checks of Chapter 3's exercises accept the solutions and reject plausible mistakes."""


import pytest
import torch
import torch.nn.functional as F

from solutions import load_solutions
from dyncore.exercises import StubError, ch03

sol = load_solutions("03_ls_dfn")


def test_solutions_pass(capsys):
    ch03.check_per_tap_factorized(sol.per_tap_factorized)
    ch03.check_sampling_field(sol.sampling_field)
    ch03.check_grad_sample_attention(sol.grad_sample_attention)
    assert capsys.readouterr().out.count("Correct:") == 3


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
    with pytest.raises(AssertionError, match=match):
        ch03.check_per_tap_factorized(wrong)


@pytest.mark.parametrize("wrong,match", [
    (lambda k, s, g: s * g + k - 1, r"\(s - 1\)/2 \* g"),
    (lambda k, s, g: s * k, "overlap"),
    (lambda k, s, g: (s - 1) * g + 1, "add the taps"),
    (lambda k, s, g: None, "returned None"),
])
def test_sampling_field_check_rejects_mistakes(wrong, match):
    with pytest.raises(AssertionError, match=match):
        ch03.check_sampling_field(wrong)


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
    with pytest.raises(AssertionError, match=match):
        ch03.check_grad_sample_attention(wrong)


def test_stub_error_is_an_assertion_error():
    def stub(*a):
        raise NotImplementedError
    with pytest.raises(StubError):
        ch03.check_sampling_field(stub)
