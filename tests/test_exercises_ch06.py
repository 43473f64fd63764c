"""The checks of Chapter 6's exercises reject plausible wrong answers, with a useful message."""

import pytest
import torch
import torch.nn.functional as F

from solutions import load_solutions
from dyncore.ddf.functional import ddf
from dyncore.exercises import StubError, ch06

SOL = load_solutions("06_ddf")


def test_reference_ddf_of_the_check_is_the_package_operator():
    g = torch.Generator().manual_seed(0)
    for k, d, s in [(3, 1, 1), (3, 2, 2), (5, 1, 2), (1, 1, 1)]:
        x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
        Ho, Wo = (7 - 1) // s + 1, (6 - 1) // s + 1
        sp = torch.randn(2, k * k, Ho, Wo, generator=g, dtype=torch.float64)
        ch = torch.randn(2, 3, k * k, generator=g, dtype=torch.float64)
        torch.testing.assert_close(ch06.reference_ddf(x, sp, ch, k, d, s),
                                   ddf(x, sp, ch, kernel_size=k, dilation=d, stride=s, backend="loops"))


def test_solution_agrees_with_the_numba_backward():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    sp = torch.randn(2, 9, 5, 4, generator=g, dtype=torch.float64)
    ch = torch.randn(2, 3, 9, generator=g, dtype=torch.float64, requires_grad=True)
    G = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64)
    (want,) = torch.autograd.grad(ddf(x, sp, ch, kernel_size=3, dilation=2, stride=2, backend="numba"), ch, G)
    torch.testing.assert_close(SOL.channel_filter_gradient(x, sp, G, 3, 2, 2), want)


# ------------------------------------------------------------------------------------------
# Exercise 1
# ------------------------------------------------------------------------------------------

def _cols(x, k, d, s, Ho, Wo):
    B, C = x.shape[:2]
    return F.unfold(x, k, dilation=d, padding=d * (k - 1) // 2, stride=s).view(B, C, k * k, Ho * Wo)


def _no_pixel_sum(x, sp, G, k, d, s):
    B, C = x.shape[:2]
    Ho, Wo = G.shape[2:]
    return _cols(x, k, d, s, Ho, Wo) * sp.reshape(B, 1, k * k, -1) * G.reshape(B, C, 1, -1)


def _flipped(x, sp, G, k, d, s):
    return SOL.channel_filter_gradient(x, sp, G, k, d, s).flip(-1)


def _ignores_stride(x, sp, G, k, d, s):
    if s == 1:
        return SOL.channel_filter_gradient(x, sp, G, k, d, s)
    B, C = x.shape[:2]
    Ho, Wo = G.shape[2:]
    cols = F.unfold(x, k, dilation=d, padding=d * (k - 1) // 2).view(B, C, k * k, x.shape[2], x.shape[3])
    cols = cols[..., :Ho, :Wo].reshape(B, C, k * k, -1)  # reads the wrong pixels
    return (cols * sp.reshape(B, 1, k * k, -1) * G.reshape(B, C, 1, -1)).sum(-1)


def _ignores_dilation(x, sp, G, k, d, s):
    return SOL.channel_filter_gradient(x, sp, G, k, 1, s)


def _missing_spatial(x, sp, G, k, d, s):
    return SOL.channel_filter_gradient(x, torch.ones_like(sp), G, k, d, s)


@pytest.mark.parametrize("wrong,match", [
    (_no_pixel_sum, r"expected shape \(B, C, k\*k\).*sum over the pixels"),
    (_flipped, "reverse order"),
    (_ignores_stride, r"stride=2\) is wrong"),
    (_ignores_dilation, r"dilation=2, stride=1\) is wrong"),
    (_missing_spatial, "is wrong"),
    (lambda *a: None, "returned None"),
])
def test_channel_gradient_check_rejects_wrong_answers(wrong, match):
    with pytest.raises(AssertionError, match=match):
        ch06.check_channel_filter_gradient(wrong)


def test_channel_gradient_check_runs_without_autograd():
    def by_autograd(x, sp, G, k, d, s):
        ch = torch.ones(x.shape[0], x.shape[1], k * k, dtype=x.dtype, requires_grad=True)
        return torch.autograd.grad(ch06.reference_ddf(x, sp, ch, k, d, s), ch, G)[0]

    with pytest.raises(RuntimeError):
        ch06.check_channel_filter_gradient(by_autograd)


# ------------------------------------------------------------------------------------------
# Exercise 2
# ------------------------------------------------------------------------------------------

def _flops_with(**changes):
    def fn(n, c, k, mid):
        d = SOL.ddf_flops(n, c, k, mid)
        for part, f in changes.items():
            d[part] = f(n, c, k, mid)
        d["total"] = d["spatial"] + d["channel"] + d["apply"] if "total" not in changes else d["total"]
        return d
    return fn


@pytest.mark.parametrize("wrong,match", [
    (_flops_with(channel=lambda n, c, k, m: 2 * n * m * c * (1 + k * k)), r"\['channel'\].*once per image"),
    (_flops_with(apply=lambda n, c, k, m: 2 * n * c * k * k), r"\['apply'\].*one multiplication to combine"),
    (_flops_with(spatial=lambda n, c, k, m: n * c * k * k), r"\['spatial'\]"),
    (_flops_with(total=lambda n, c, k, m: 5 * n * c * k * k), r"\['total'\]"),
    (lambda n, c, k, m: 5 * n * c * k * k + 2 * m * c * (1 + k * k), "returned int"),
    (lambda n, c, k, m: {"total": 0}, "has no"),
])
def test_flops_check_rejects_wrong_answers(wrong, match):
    with pytest.raises(AssertionError, match=match):
        ch06.check_ddf_flops(wrong)


def test_flops_match_the_flop_counter_for_the_spatial_branch_and_the_paper_total():
    from torch.utils.flop_counter import FlopCounterMode

    n, c, k = 12 * 10, 16, 3
    conv = torch.nn.Conv2d(c, k * k, 1, bias=False)
    with FlopCounterMode(display=False) as counter:
        conv(torch.randn(1, c, 12, 10))
    assert counter.get_total_flops() == SOL.ddf_flops(n, c, k, 3)["spatial"]
    sigma = 0.25
    counts = SOL.ddf_flops(n, c, k, int(sigma * c))
    assert counts["total"] == 5 * n * c * k * k + 2 * sigma * c * c * (1 + k * k)


# ------------------------------------------------------------------------------------------
# Exercise 3
# ------------------------------------------------------------------------------------------

def _branch_major(branches, s):
    B, P, C, H, W = branches.shape
    return F.pixel_shuffle(branches.reshape(B, P * C, H, W), s)


def _swapped(branches, s):
    B, P, C, H, W = branches.shape
    return branches.view(B, s, s, C, H, W).permute(0, 3, 4, 2, 5, 1).reshape(B, C, H * s, W * s)


def _blocks(branches, s):  # puts each branch in its own block instead of interleaving
    B, P, C, H, W = branches.shape
    return branches.view(B, s, s, C, H, W).permute(0, 3, 1, 4, 2, 5).reshape(B, C, s * H, s * W)


@pytest.mark.parametrize("wrong,match", [
    (_branch_major, "Move the branch axis after the channel axis"),
    (_swapped, "rows and columns are swapped"),
    (_blocks, "is wrong"),
    (lambda b, s: b.sum(1), "expected shape"),
    (lambda b, s: None, "returned None"),
    (lambda b, s: b.numpy(), "return a tensor"),
])
def test_shuffle_check_rejects_wrong_answers(wrong, match):
    with pytest.raises(AssertionError, match=match):
        ch06.check_subpixel_shuffle(wrong)


def test_shuffle_solution_is_what_ddfup_does():
    from dyncore.ddf.modules import DDFUp

    torch.manual_seed(0)
    m = DDFUp(3, 2, 3).double()
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    sp, ch = m.filters(x)
    branches = torch.stack([ddf(x, sp[:, p], ch[:, p], kernel_size=3) for p in range(4)], 1)
    torch.testing.assert_close(SOL.subpixel_shuffle(branches, 2), m(x))


# ------------------------------------------------------------------------------------------
# Exercise 4
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong,match", [
    (lambda f, e: (f - f.mean(1, keepdim=True)) / (f.std(1, keepdim=True, unbiased=False) + e), "biased"),
    (lambda f, e: (f - f.mean(0, keepdim=True)) / (f.std(0, keepdim=True) + e), "axis 0"),
    (lambda f, e: f / (f.std(1, keepdim=True) + e), "is wrong"),  # forgets the mean
    (lambda f, e: (f - f.mean(1, keepdim=True)) / (f.std(1, keepdim=True) + e) + f.mean(1, keepdim=True),
     "is wrong"),  # restores the mean
    (lambda f, e: None, "returned None"),
])
def test_filter_normalize_check_rejects_wrong_answers(wrong, match):
    with pytest.raises(AssertionError, match=match):
        ch06.check_filter_normalize(wrong)


def test_stub_errors_are_stub_errors():
    def stub(*args):
        raise NotImplementedError

    for check in ch06.CHECKS.values():
        with pytest.raises(StubError):
            check(stub)
