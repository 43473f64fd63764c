"""The checks of Chapter 6's exercises reject plausible wrong answers, with a useful message."""

import pytest
import torch
import torch.nn.functional as F

from dyncore.ddf.functional import ddf
from dyncore.exercises import ch06

from exercise_checks import find_the_bug_test, rejects
from solutions import load_solutions

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
    rejects(ch06.check_channel_filter_gradient, wrong, match)


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
    rejects(ch06.check_ddf_flops, wrong, match)


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
    rejects(ch06.check_subpixel_shuffle, wrong, match)


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
    rejects(ch06.check_filter_normalize, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercises 5-7: predict then measure, find the bug, an ablation
# ------------------------------------------------------------------------------------------

def _n_out(H, W, s):
    return ((H - 1) // s + 1) * ((W - 1) // s + 1)


def counted_paper_total(B, C, H, W, k, s, mid):
    return B * (5 * _n_out(H, W, s) * C * k * k + 2 * mid * C * (1 + k * k))


def counted_input_pixels(B, C, H, W, k, s, mid):
    return B * (4 * H * W * C * k * k + 2 * mid * C * (1 + k * k))


def counted_floor_size(B, C, H, W, k, s, mid):
    return B * (4 * (H // s) * (W // s) * C * k * k + 2 * mid * C * (1 + k * k))


def counted_branch_once(B, C, H, W, k, s, mid):
    return B * 4 * _n_out(H, W, s) * C * k * k + 2 * mid * C * (1 + k * k)


@pytest.mark.parametrize("wrong,match", [
    (counted_paper_total, r"B=1, C=16, H=16.*combine the two filters"),
    (counted_input_pixels, r"B=2, C=8, H=7, W=9, kernel_size=3, stride=2.*input's H\*W pixels"),
    (counted_floor_size, r"stride=2.*rounds the output size down"),
    (counted_branch_once, r"B=2, C=8.*once per image"),
    (lambda *a: None, r"returned None"),
])
def test_counter_check_rejects_wrong_predictions(wrong, match):
    rejects(ch06.check_counted_ddf_flops, wrong, f"(?s){match}")


def ddf_unfold_no_dilated_padding(x, spatial, channel, k, d, s):
    B, C = x.shape[:2]
    Ho, Wo = spatial.shape[-2:]
    cols = F.unfold(x, k, dilation=d, padding=(k - 1) // 2, stride=s)
    if cols.shape[-1] != Ho * Wo:
        return x.new_zeros(B, C, *_out_hw(cols, x, k, d, s))
    cols = cols.view(B, C, k * k, Ho, Wo)
    return (cols * spatial[:, None] * channel[:, :, :, None, None]).sum(2)


def _out_hw(cols, x, k, d, s):
    H, W = x.shape[-2:]
    p = (k - 1) // 2
    return (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1


def ddf_unfold_flipped_taps(x, spatial, channel, k, d, s):
    return SOL.ddf_unfold(x, spatial.flip(1), channel, k, d, s)


def ddf_unfold_channel_transposed(x, spatial, channel, k, d, s):
    B, C, T = channel.shape
    return SOL.ddf_unfold(x, spatial, channel.reshape(B, T, C).transpose(1, 2), k, d, s)


test_unfold_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch06.check_ddf_unfold, ch06.planted_ddf_unfold, {
        "no-dilated-padding": (ddf_unfold_no_dilated_padding,
                               r"(?s)kernel_size=3, dilation=2, stride=2\): expected shape \(1, 2, 5, 4\), got"),
        "flipped-taps": (ddf_unfold_flipped_taps, r"(?s)ddf_unfold\(x of shape \(1, 1, 5, 5\).* is wrong"),
        "channel-transposed": (ddf_unfold_channel_transposed,
                               r"(?s)ddf_unfold\(x of shape \(2, 3, 7, 6\).* is wrong"),
    })


@pytest.mark.parametrize("wrong,match", [
    (lambda norm: 1, r"output_scaling_exponent\('batch'\): you predicted 1, the measured slope is [23]\.\d+.*running statistics"),
    (lambda norm: {"filter": 0}.get(norm, 1), r"output_scaling_exponent\('filter'\): you predicted 0.*scaled"),
    (lambda norm: {"none": 2}.get(norm, SOL.output_scaling_exponent(norm)), r"'none'\): you predicted 2.*linear in the input"),
    (lambda norm: {"sigmoid": 0}.get(norm, SOL.output_scaling_exponent(norm)), r"'sigmoid'\): you predicted 0.*saturates"),
    (lambda norm: None, r"returned None"),
])
def test_scaling_check_rejects_wrong_exponents(wrong, match):
    rejects(ch06.check_output_scaling_exponent, wrong, f"(?s){match}")


def test_scaling_measurements_are_robust_to_the_seed():
    for seed in range(3):
        for norm in ch06.SCALING_NORMALIZATIONS:
            measured = ch06.measure_output_scaling(norm, seed=seed)
            assert abs(measured - SOL.output_scaling_exponent(norm)) < ch06.SCALING_TOLERANCE / 2, (norm, seed, measured)
