"""The checks of Chapter 4's exercises accept the solutions and reject plausible wrong answers,
each with a message that says what is wrong."""


import pytest
import torch
import torch.nn.functional as F

import dyncore  # noqa: F401
from dyncore.exercises import StubError, ch04

from exercise_checks import find_the_bug_test, rejects
from solutions import load_solutions

SOL = load_solutions("04_dmnet")


@pytest.mark.parametrize("name", list(ch04.CHECKS))
def test_forgetting_to_return_is_named(name):
    def forgets(*args):
        getattr(SOL, name)(*args)

    with pytest.raises(AssertionError, match="returned None|return a pair"):
        ch04.CHECKS[name](forgets)


# ------------------------------------------------------------------------------------------
# Exercise 1: the groups trick
# ------------------------------------------------------------------------------------------

def groups_channel_major(x, filters):
    """Folds the filters in (c, b) order: plane b*C + c meets the filter of another plane."""
    B, C, H, W = x.shape
    k = filters.shape[-1]
    w = filters.transpose(0, 1).reshape(B * C, 1, k, k)
    return F.conv2d(x.reshape(1, B * C, H, W), w, padding=(k - 1) // 2, groups=B * C).reshape(B, C, H, W)


def groups_first_image_only(x, filters):
    """groups=C on the batch as it is: every image gets the filters of image 0."""
    k = filters.shape[-1]
    return F.conv2d(x, filters[0][:, None], padding=(k - 1) // 2, groups=x.shape[1])


def groups_no_padding(x, filters):
    B, C, H, W = x.shape
    k = filters.shape[-1]
    out = F.conv2d(x.reshape(1, B * C, H, W), filters.reshape(B * C, 1, k, k), groups=B * C)
    return out.reshape(B, C, out.shape[-2], out.shape[-1])


def groups_loop_over_images(x, filters):
    k = filters.shape[-1]
    return torch.cat([F.conv2d(x[b:b + 1], filters[b][:, None], padding=(k - 1) // 2, groups=x.shape[1])
                      for b in range(x.shape[0])])


def groups_without_conv(x, filters):
    from dyncore.dmnet.vectorized import context_filter_shifts

    return context_filter_shifts(x, filters)


#: Wrong answers to ``ch04.check_context_filter_groups`` and what its message must say.
GROUPS_WRONG = [
    (groups_channel_major, r"x of shape \(2, 3, 6, 7\).* is wrong"),
    (groups_first_image_only, r"x of shape \(2, 3, 6, 7\).* is wrong"),
    (groups_no_padding, r"expected shape \(1, 1, 5, 5\), got \(1, 1, 3, 3\)\. The output has the input's shape"),
    (groups_loop_over_images, r"\(2, 3, 6, 7\).* is right, but it called F\.conv2d 2 times \(once per image\?\)"),
    (groups_without_conv, r"is right, but it never called F\.conv2d"),
]


def test_groups_check_sees_positional_groups():
    def positional(x, filters):
        B, C, H, W = x.shape
        k = filters.shape[-1]
        r = (k - 1) // 2
        return F.conv2d(x.reshape(1, B * C, H, W), filters.reshape(B * C, 1, k, k), None, 1, r, 1,
                        B * C).reshape(B, C, H, W)

    ch04.check_context_filter_groups(positional)


def test_groups_check_restores_conv2d():
    original = F.conv2d
    with pytest.raises(StubError):
        ch04.check_context_filter_groups(lambda x, f: (_ for _ in ()).throw(NotImplementedError()))
    assert F.conv2d is original


# ------------------------------------------------------------------------------------------
# Exercise 2: parameter counts
# ------------------------------------------------------------------------------------------

def counts_with(mistake):
    def fn(c, cp, k):
        dcm, conv = SOL.parameter_counts(c, cp, k)
        if mistake == "k2":
            dcm += c * cp * (k * k - 1)
        elif mistake == "no_bn":
            dcm -= 6 * cp
        elif mistake == "no_gen_bias":
            dcm -= cp
        elif mistake == "conv_no_bias":
            conv -= cp
        elif mistake == "off_by_one":
            dcm += 1
        return dcm, conv
    return fn


@pytest.mark.parametrize("mistake,match", [
    ("k2", r"parameter_counts\(32, 16, 3\): the DCM has 1392 parameters, your count is 5488\. .*grow with k\*k"),
    ("no_bn", r"parameter_counts\(1, 1, 1\): the DCM has 10 parameters, your count is 4\. .*BatchNorm"),
    ("no_gen_bias", r"the DCM has 10 parameters, your count is 9\. .*generator's bias"),
    ("conv_no_bias", r"nn\.Conv2d\(1, 1, 1\) has 2 parameters, your count is 1 \(did you forget the bias"),
    ("off_by_one", r"your count is 11\. Print DCM"),
])
def test_count_check_rejects_wrong_answers(mistake, match):
    rejects(ch04.check_parameter_counts, counts_with(mistake), f"(?s){match}")


def test_count_check_wants_a_pair():
    rejects(ch04.check_parameter_counts, lambda c, cp, k: SOL.parameter_counts(c, cp, k)[0],
            r"returned 10; return a pair \(dcm, conv\)")


# ------------------------------------------------------------------------------------------
# Exercise 3: the filter generator
# ------------------------------------------------------------------------------------------

def generator_floor_bins(x, weight, bias, k):
    return ch04._floor_bins(x, weight, bias, k)


def generator_no_bias(x, weight, bias, k):
    return SOL.filter_generator(x, weight, torch.zeros_like(bias), k)


def generator_library(x, weight, bias, k):
    return F.conv2d(F.adaptive_avg_pool2d(x, k), weight[:, :, None, None], bias)


def generator_transposed(x, weight, bias, k):
    return SOL.filter_generator(x, weight, bias, k).transpose(2, 3)


def generator_per_pixel(x, weight, bias, k):
    return F.conv2d(x, weight[:, :, None, None], bias)  # no pooling at all


#: Wrong answers to ``ch04.check_filter_generator`` and what its message must say.
GENERATOR_WRONG = [
    (generator_floor_bins, r"H = 10 not a multiple of k = 3, the cells of adaptive average pooling overlap"),
    (generator_no_bias, r"equals the result without the bias"),
    (generator_library, r"F\.adaptive_avg_pool2d is hidden during this check"),
    (generator_transposed, r"x of shape \(1, 2, 6, 6\).* kernel_size=3\) is wrong"),
    (generator_per_pixel, r"expected shape \(1, 3, 3, 3\), got \(1, 3, 6, 6\)\. The filters are \(B, C, k, k\)"),
]


def test_generator_check_restores_adaptive_avg_pool2d():
    original = F.adaptive_avg_pool2d
    rejects(ch04.check_filter_generator, generator_library)
    assert F.adaptive_avg_pool2d is original


# ------------------------------------------------------------------------------------------
# Exercise 4: the filter gradient
# ------------------------------------------------------------------------------------------

def grad_flipped(x, grad_out, k):
    return SOL.context_filter_filter_grad(x, grad_out, k).flip(2, 3)


def grad_circular(x, grad_out, k):
    r = (k - 1) // 2
    g = x.new_zeros(x.shape[0], x.shape[1], k, k)
    for i in range(k):
        for j in range(k):
            shifted = torch.roll(x, shifts=(r - i, r - j), dims=(2, 3))  # wraps around the border
            g[:, :, i, j] = (grad_out * shifted).sum((2, 3))
    return g


def grad_summed_over_batch(x, grad_out, k):
    return SOL.context_filter_filter_grad(x, grad_out, k).sum(0)


def grad_with_autograd(x, grad_out, k):
    f = torch.zeros(x.shape[0], x.shape[1], k, k, dtype=x.dtype, requires_grad=True)
    out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), f.reshape(-1, 1, k, k), padding=(k - 1) // 2,
                   groups=x.shape[0] * x.shape[1])
    out.backward(grad_out.reshape(out.shape))
    return f.grad


#: Wrong answers to ``ch04.check_context_filter_filter_grad`` and what its message must say.
FILTER_GRAD_WRONG = [
    (grad_flipped, r"it is the right answer flipped in both axes"),
    (grad_circular, r"x of shape \(1, 1, 5, 5\).* is wrong"),
    (grad_summed_over_batch, r"expected shape \(1, 1, 3, 3\), got \(1, 3, 3\)\. dL/dfilters has the shape of the filters"),
    (grad_with_autograd, r"torch\.no_grad\(\), so autograd is off"),
]


WRONG_ANSWERS = ([(ch04.check_context_filter_groups, w, m) for w, m in GROUPS_WRONG]
                 + [(ch04.check_filter_generator, w, m) for w, m in GENERATOR_WRONG]
                 + [(ch04.check_context_filter_filter_grad, w, m) for w, m in FILTER_GRAD_WRONG])


@pytest.mark.parametrize("check,wrong,match", WRONG_ANSWERS,
                         ids=[f"{c.__name__}-{w.__name__}" for c, w, _ in WRONG_ANSWERS])
def test_checks_reject_wrong_answers(check, wrong, match):
    rejects(check, wrong, f"(?s){match}")


# ------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure
# ------------------------------------------------------------------------------------------

def sum_grad_no_border(H, W, k):
    return torch.full((k, k), float(H * W))


def sum_grad_from_corner(H, W, k):
    return torch.outer(H - torch.arange(k), W - torch.arange(k)).double()


def sum_grad_unclipped(H, W, k):
    off = (torch.arange(k) - (k - 1) // 2).abs()
    return torch.outer(H - off, W - off).double()


def sum_grad_transposed(H, W, k):
    return SOL.filter_grad_of_sum(W, H, k)


def sum_grad_as_list(H, W, k):
    return SOL.filter_grad_of_sum(H, W, k).tolist()


@pytest.mark.parametrize("wrong,match", [
    (sum_grad_no_border, r"filter_grad_of_sum\(H=5, W=5, kernel_size=3\) predicted.*as if the image had no border"),
    (sum_grad_from_corner, r"H=5, W=5.*from the filter's corner"),
    (sum_grad_unclipped, r"H=3, W=6, kernel_size=9\) predicted.*some counts are negative"),
    (sum_grad_transposed, r"H=4, W=7, kernel_size=5\) predicted.*print your prediction"),
])
def test_sum_grad_check_rejects_wrong_predictions(wrong, match):
    rejects(ch04.check_filter_grad_of_sum, wrong, f"(?s){match}")


def test_sum_grad_check_accepts_a_nested_list(capsys):
    ch04.check_filter_grad_of_sum(sum_grad_as_list)
    assert "Correct:" in capsys.readouterr().out


def test_sum_grad_measurement_is_autograd_of_the_operator():
    measured = ch04.measure_filter_grad_of_sum(4, 7, 5)
    assert measured[2, 2] == 4 * 7 and measured[0, 0] == 2 * 5  # centre tap: every pixel; corner: fewer


# ------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug
# ------------------------------------------------------------------------------------------

def input_grad_rows_fixed_only(filters, grad_out):
    """Reverses the row offset but not the column offset."""
    k = filters.shape[-1]
    H, W = grad_out.shape[-2:]
    r = (k - 1) // 2
    gp = F.pad(grad_out, (r, r, r, r))
    g = torch.zeros_like(grad_out)
    for i in range(k):
        for j in range(k):
            g += filters[:, :, i, j, None, None] * gp[:, :, 2 * r - i:2 * r - i + H, j:j + W]
    return g


def input_grad_summed_over_batch(filters, grad_out):
    return SOL.context_filter_input_grad(filters, grad_out).sum(0, keepdim=True).expand_as(grad_out)


def input_grad_circular(filters, grad_out):
    k = filters.shape[-1]
    r = (k - 1) // 2
    g = torch.zeros_like(grad_out)
    for i in range(k):
        for j in range(k):
            g += filters[:, :, i, j, None, None] * torch.roll(grad_out, shifts=(i - r, j - r), dims=(2, 3))
    return g


test_input_grad_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch04.check_context_filter_input_grad, ch04.planted_context_filter_input_grad, {
        "rows-fixed-only": (input_grad_rows_fixed_only, r"(?s)filters of shape \(1, 1, 3, 3\).* is wrong"),
        "summed-over-batch": (input_grad_summed_over_batch, r"(?s)filters of shape \(2, 3, 3, 3\).* is wrong"),
        "circular": (input_grad_circular, r"(?s)filters of shape \(1, 1, 3, 3\).* is wrong"),
    })


# ------------------------------------------------------------------------------------------
# Exercise 7: what the generator reads
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrong,match", [
    (lambda c, cp, reading: SOL.four_dcm_parameters(c, cp, reading) // 4,
     r"four_dcm_parameters\(4, 2, 'x'\): the four DCMs have 136 parameters, your count is 34\. That is one DCM"),
    (lambda c, cp, reading: SOL.four_dcm_parameters(c, cp, reading) - 4 * cp,
     r"your count is 128\. The generator's 1x1 convolution has a bias"),
    (lambda c, cp, reading: SOL.four_dcm_parameters(c, cp, "x"),
     r"four_dcm_parameters\(4, 2, 'reduced'\): the four DCMs have 120 parameters, your count is 136\.$"),
    (lambda c, cp, reading: None, r"returned None"),
])
def test_reading_check_rejects_wrong_counts(wrong, match):
    rejects(ch04.check_four_dcm_parameters, wrong, f"(?s){match}")


def test_reading_check_prints_the_verdict(capsys):
    ch04.check_four_dcm_parameters(SOL.four_dcm_parameters)
    out = capsys.readouterr().out
    assert "9.45M parameters if g_k reads x, 6.31M if it reads f_k(x)" in out and "so it read x" in out
