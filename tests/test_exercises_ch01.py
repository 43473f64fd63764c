"""The checks of Chapter 1's exercises reject plausible wrong answers, with clear messages.

``test_exercises.py`` proves that every check passes on its solution and fails on its stub;
this file proves that the checks also catch the mistakes readers make (a convolution that
forgets the dilation, a weight gradient that forgets the stride, a receptive field that
ignores strides, a kernel without its bounds guard, ...) and that the message says what is
wrong. The wrong answers below are written on purpose.
"""

import dyncore  # noqa: F401  first: picks the GPU or the CUDA simulator before Numba loads
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numba import cuda

from dyncore._bootstrap import simulating
from dyncore.exercises import ch01, cuda_checks
from dyncore.receptive_field import receptive_field

from exercise_checks import (find_the_bug_test, notebook_stubs, owned_element, rejects, rejects_as_stub,
                             switched, wrong_kernels)
from solutions import load_solutions

SOL = load_solutions("01_convolution")


# ------------------------------------------------------------------------------------------
# The stubs fail as stubs: the message says to replace the stub, not that a value is wrong
# ------------------------------------------------------------------------------------------

def test_kernel_stub_gives_a_stub_error():
    """The stub raises inside the kernel: the simulator re-raises it from the thread (with the
    thread index in the message); on a GPU the exception is not reported and out stays empty."""
    stub = notebook_stubs("01_convolution")["dilated_conv2d_cuda_kernel"]
    if simulating():
        rejects_as_stub(ch01.check_dilated_conv2d_cuda_kernel, stub)
    else:  # pragma: no cover - needs a GPU
        with pytest.raises(AssertionError, match="wrote no element of out|NotImplementedError"):
            ch01.check_dilated_conv2d_cuda_kernel(stub)


def test_a_wrapped_not_implemented_error_is_still_a_stub(monkeypatch):
    """Whatever wraps the kernel's exception (another simulator version, a launch helper),
    a NotImplementedError anywhere in the chain means the stub."""

    def launch_that_wraps(*args):
        try:
            raise NotImplementedError("tid=[3, 0, 0] ctaid=[0, 0, 0]")
        except NotImplementedError as exc:
            raise RuntimeError("kernel launch failed") from exc

    monkeypatch.setattr(cuda_checks, "launch", launch_that_wraps)
    rejects_as_stub(ch01.check_dilated_conv2d_cuda_kernel, SOL.dilated_conv2d_cuda_kernel)
    assert cuda_checks.raised_not_implemented(RuntimeError("x: NotImplementedError: y"))
    assert not cuda_checks.raised_not_implemented(IndexError("index 9 is out of bounds"))


def test_the_loops_solution_of_the_weight_gradient_passes_too():
    ch01.check_conv2d_weight_grad(SOL.conv2d_weight_grad_loops)


# ------------------------------------------------------------------------------------------
# Exercise 1: depthwise convolution in loops
# ------------------------------------------------------------------------------------------

def _depthwise(x, weight, padding, dilation, *, tap_step=None, flip=False, mix_channels=False,
               shape_dilation=None):
    """A depthwise convolution in loops with switchable mistakes."""
    B, C, H, W = x.shape
    k = weight.shape[-1]
    step = dilation if tap_step is None else tap_step
    sd = dilation if shape_dilation is None else shape_dilation
    Ho, Wo = H + 2 * padding - sd * (k - 1), W + 2 * padding - sd * (k - 1)
    out = np.zeros((B, C, Ho, Wo))
    for b in range(B):
        for c in range(C):
            for yo in range(Ho):
                for xo in range(Wo):
                    for i in range(k):
                        for j in range(k):
                            y, xx = yo - padding + i * step, xo - padding + j * step
                            if not (0 <= y < H and 0 <= xx < W):
                                continue
                            wij = weight[c, 0, k - 1 - i, k - 1 - j] if flip else weight[c, 0, i, j]
                            sources = range(C) if mix_channels else [c]
                            for cs in sources:
                                out[b, c, yo, xo] += wij * x[b, cs, y, xx]
    return out


def test_depthwise_reference_of_the_wrong_answers_is_right():
    ch01.check_depthwise_conv2d_loops(_depthwise)  # the switchable version, with no mistake on


@pytest.mark.parametrize("mistake,match", [
    # forgets the dilation in the taps (but not in the output size)
    ({"tap_step": 1}, r"padding=1, dilation=2\) is wrong"),
    # forgets the dilation in the output size
    ({"shape_dilation": 1}, r"expected shape \(2, 3, 5, 4\), got \(2, 3, 7, 6\)\. The output is"),
    # flips the kernel: a true convolution, not PyTorch's cross-correlation
    ({"flip": True}, r"is wrong"),
    # sums over all input channels: a full convolution, not a depthwise one
    ({"mix_channels": True}, r"x of shape \(2, 3, 7, 6\).* is wrong"),
])
def test_depthwise_check_rejects_wrong_answers(mistake, match):
    rejects(ch01.check_depthwise_conv2d_loops, switched(_depthwise, **mistake), match)


def test_depthwise_check_says_when_nothing_is_returned():
    def forgets_return(x, weight, padding, dilation):
        SOL.depthwise_conv2d_loops(x, weight, padding, dilation)

    rejects(ch01.check_depthwise_conv2d_loops, forgets_return, "returned None: did you forget to `return`")


def test_depthwise_check_reports_the_largest_error():
    def slightly_off(x, weight, padding, dilation):
        return SOL.depthwise_conv2d_loops(x, weight, padding, dilation) + 1e-3

    rejects(ch01.check_depthwise_conv2d_loops, slightly_off, "(?s)is wrong.*Greatest absolute difference")


# ------------------------------------------------------------------------------------------
# Exercise 2: the weight gradient
# ------------------------------------------------------------------------------------------

def _weight_grad(x, grad_out, k, s, p, d, *, row_stride=None, offset=None, tap_step=None):
    """The vectorized weight gradient, built from shifted slices so mistakes can be switched on."""
    B, Cout, Ho, Wo = grad_out.shape
    Cin, H, W = x.shape[1:]
    s_used = s if row_stride is None else row_stride
    p_used = p if offset is None else offset
    d_used = d if tap_step is None else tap_step
    big = max(H, W) + 4 * (p + d * k + s * max(Ho, Wo))
    xp = F.pad(x, (big, big, big, big))  # generous zero padding: any index is inside
    grad_w = torch.zeros(Cout, Cin, k, k, dtype=x.dtype)
    ys = torch.arange(Ho) * s_used - p_used + big
    xs = torch.arange(Wo) * s_used - p_used + big
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, ys + i * d_used][:, :, :, xs + j * d_used]  # (B, Cin, Ho, Wo)
            grad_w[:, :, i, j] = torch.einsum("bohw,bchw->oc", grad_out, patch)
    return grad_w


def test_weight_grad_reference_of_the_wrong_answers_is_right():
    ch01.check_conv2d_weight_grad(lambda x, g, k, s, p, d: _weight_grad(x, g, k, s, p, d))


@pytest.mark.parametrize("mistake,match", [
    ({"row_stride": 1}, r"stride=2, padding=1, dilation=1\) is wrong"),  # forgets the stride
    ({"offset": 0}, r"is wrong"),                                          # forgets the padding
    ({"tap_step": 1}, r"dilation=2\) is wrong"),                           # forgets the dilation
])
def test_weight_grad_check_rejects_wrong_answers(mistake, match):
    rejects(ch01.check_conv2d_weight_grad, switched(_weight_grad, **mistake), match)


def test_weight_grad_check_names_the_expected_shape():
    def transposed(x, grad_out, k, s, p, d):
        return SOL.conv2d_weight_grad(x, grad_out, k, s, p, d).transpose(0, 1)

    with pytest.raises(AssertionError, match=r"expected shape \(2, 3, 3, 3\), got \(3, 2, 3, 3\)\. "
                                             r"dL/dweight has the shape of the weight"):
        ch01.check_conv2d_weight_grad(transposed)


def test_weight_grad_check_explains_that_autograd_is_off():
    def with_autograd(x, grad_out, k, s, p, d):
        w = torch.zeros(grad_out.shape[1], x.shape[1], k, k, dtype=x.dtype, requires_grad=True)
        F.conv2d(x, w, stride=s, padding=p, dilation=d).backward(grad_out)
        return w.grad

    rejects(ch01.check_conv2d_weight_grad, with_autograd, r"torch\.no_grad\(\).*compute the gradient by hand")


# ------------------------------------------------------------------------------------------
# Exercise 3: the receptive field
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", ch01.RF_CASES + [
    [(5, 1, 1), (3, 2, 2), (3, 3, 1), (5, 1, 3)],
    [(1, 2, 1), (3, 1, 1)],
    [(3, 4, 2), (3, 1, 1)],
    [(9, 1, 1)],
], ids=str)
def test_measured_receptive_field_agrees_with_the_formula(layers):
    """The check has two judges; they must agree with each other (here, beyond its cases)."""
    assert ch01.measured_receptive_field(layers) == receptive_field(layers)


def test_gradient_support_has_the_holes_of_a_dilated_kernel():
    support = ch01.gradient_support([(3, 1, 2)])
    assert support.shape == (8, 8)
    rows = torch.nonzero(support.sum(1)).flatten().tolist()
    assert rows == [0, 2, 4]


def _rf_without_stride(layers):
    return 1 + sum((k - 1) * d for k, s, d in layers)


def _rf_without_dilation(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += (k - 1) * jump
        jump *= s
    return rf


def _rf_own_stride(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        jump *= s
        rf += (k - 1) * d * jump
    return rf


def _rf_kd(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += k * d * jump - 1  # counts the span of the dilated kernel wrongly
        jump *= s
    return rf


@pytest.mark.parametrize("wrong,match", [
    (_rf_without_stride, r"\(3, 2, 1\)\]\) returned 7, but the receptive field is 15 pixels wide"
                         r".*a formula that ignores the strides"),
    (_rf_without_dilation, r"\(3, 1, 4\)\]\) returned 7, but the receptive field is 15 pixels wide"
                           r".*a formula that ignores the dilations"),
    (_rf_own_stride, r"\(3, 2, 1\)\]\) returned 29, but the receptive field is 15 pixels wide"
                     r".*a formula that counts each layer's own stride"),
    (_rf_kd, r"\(3, 2, 1\)\]\) returned 19, but the receptive field is 15 pixels wide: the "
             r"gradient of output pixel \(0, 0\) reaches input pixels 0 to 14"),
])
def test_receptive_field_check_rejects_wrong_formulas(wrong, match):
    rejects(ch01.check_receptive_field_of, wrong, f"(?s){match}")


def test_receptive_field_check_wants_an_int():
    rejects(ch01.check_receptive_field_of, lambda layers: float(SOL.receptive_field_of(layers)),
            r"returned 3\.0 \(float\); return an int")


def test_receptive_field_check_accepts_numpy_ints():
    ch01.check_receptive_field_of(lambda layers: np.int64(SOL.receptive_field_of(layers)))


# ------------------------------------------------------------------------------------------
# Exercise 4: the CUDA kernel (under the simulator without a GPU)
# ------------------------------------------------------------------------------------------

def _kernel(*, dilate=True, zero_padding=True, **switches):
    """The exercise's kernel with switchable mistakes (Numba compiles each switch in as a constant)."""
    element = owned_element(**switches)

    @cuda.jit
    def kernel(x, weight, out, dilation):
        b, o, yo, xo = element(cuda.grid(1), out.shape)
        if b < 0:
            return
        H, W = out.shape[2], out.shape[3]
        d = dilation if dilate else 1
        k = weight.shape[2]
        r = (k - 1) // 2
        acc = 0.0
        for c in range(weight.shape[1]):
            for i in range(k):
                for j in range(k):
                    y, xx = yo + (i - r) * d, xo + (j - r) * d
                    if not zero_padding or (0 <= y < H and 0 <= xx < W):  # else it reads outside the image
                        acc += weight[o, c, i, j] * x[b, c, y, xx]
        out[b, o, yo, xo] = acc

    return kernel


def test_the_switchable_kernel_is_right_without_a_mistake():
    ch01.check_dilated_conv2d_cuda_kernel(_kernel())


#: Wrong kernels and what the check must say.
WRONG_KERNELS = {
    "without-dilation": (_kernel(dilate=False), r"out of shape \(1, 3, 5, 7\), dilation=2\) is wrong"),
    **wrong_kernels(_kernel, SOL.dilated_conv2d_cuda_kernel, "out", "whose input pixel falls outside the image",
                    r"60 of 120 elements of out were never written, the first at \(b, o, y, x\) = \(1, 0, 0, 0\)"),
}


@pytest.mark.parametrize("kernel,match", WRONG_KERNELS.values(), ids=WRONG_KERNELS)
def test_kernel_check_rejects_wrong_kernels(kernel, match):
    rejects(ch01.check_dilated_conv2d_cuda_kernel, kernel, f"(?s){match}")


def test_index_error_hint_without_a_thread_index():
    hint = cuda_checks.index_error_hint("index 7 is out of bounds for axis 0 with size 7", 30)
    assert "n >= out.size" in hint and "zero padding" in hint


# ------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: FLOPs
# ------------------------------------------------------------------------------------------

def _flops(x_shape, weight_shape, s, p, d, *, macs=False, backward_factor=2, ignore_stride=False):
    B, Cin, H, W = x_shape
    Cout, _, k, _ = weight_shape
    sd = 1 if ignore_stride else s
    Ho, Wo = ((n + 2 * p - d * (k - 1) - 1) // sd + 1 for n in (H, W))
    forward = (1 if macs else 2) * B * Cout * Ho * Wo * Cin * k * k
    return forward, backward_factor * forward


def test_flop_measurement_is_what_the_formula_says():
    for case in ch01.FLOP_CASES:
        assert ch01.measure_conv2d_flops(*case) == SOL.predict_conv2d_flops(*case)


@pytest.mark.parametrize("mistake,match", [
    ({"macs": True}, "counts multiply-adds"),
    ({"backward_factor": 1}, "gives the backward the forward's cost"),
    ({"ignore_stride": True}, r"you predicted \d+ forward FLOPs"),
    ({"backward_factor": 3}, r"you predicted \d+ backward FLOPs"),
])
def test_flop_check_rejects_wrong_predictions(mistake, match):
    rejects(ch01.check_predict_conv2d_flops, switched(_flops, **mistake), match)


def test_flop_check_names_the_output_size_mistake():
    def same_size(x_shape, weight_shape, s, p, d):
        B, Cin, H, W = x_shape
        Cout, _, k, _ = weight_shape
        forward = 2 * B * Cout * H * W * Cin * k * k
        return forward, 2 * forward
    rejects(ch01.check_predict_conv2d_flops, same_size, "uses the input's size for the output")


def test_flop_check_wants_two_numbers():
    rejects(ch01.check_predict_conv2d_flops, lambda *a: 12, "return two numbers")


# ------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug in the scattered input gradient
# ------------------------------------------------------------------------------------------

def _grad_input(grad_out, weight, input_size, s, p, d, *, slice_step=None, crop=None, flip_rows=False):
    """The scattered input gradient with switchable mistakes."""
    B, Cout, Ho, Wo = grad_out.shape
    _, Cin, k, _ = weight.shape
    H, W = input_size
    step = s if slice_step is None else slice_step
    grad_xp = grad_out.new_zeros(B, Cin, H + 2 * p + 2 * k * d * s, W + 2 * p + 2 * k * d * s)
    for i in range(k):
        for j in range(k):
            w_ij = weight[:, :, k - 1 - i if flip_rows else i, j]
            contrib = torch.einsum("oc,bohw->bchw", w_ij, grad_out)
            grad_xp[:, :, i * d: i * d + step * (Ho - 1) + 1: step,
                    j * d: j * d + step * (Wo - 1) + 1: step] += contrib
    c = p if crop is None else crop
    return grad_xp[:, :, c: c + H, c: c + W]


def test_the_switchable_grad_input_is_right_without_a_mistake():
    ch01.check_conv2d_grad_input(_grad_input)


#: (The notebook gives the planted function statement for statement: ``test_exercises.py``.)
test_grad_input_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch01.check_conv2d_grad_input, ch01.planted_conv2d_grad_input, {
        "forgets-the-stride": (switched(_grad_input, slice_step=1), None),  # scatters to neighbouring pixels
        "crops-at-the-corner": (switched(_grad_input, crop=0), None),  # crops the padded gradient there
        "flips-the-rows-only": (switched(_grad_input, flip_rows=True), None),  # a half-fix
    })


def test_grad_input_gradcheck_catches_what_slips_past_the_cases(monkeypatch):
    """A function right on the cases but wrong elsewhere fails on gradcheck's own case."""
    monkeypatch.setattr(ch01, "GRAD_INPUT_CASES", ch01.GRAD_INPUT_CASES[:1])
    wrong = switched(_grad_input, slice_step=1)
    rejects(ch01.check_conv2d_grad_input, wrong, "gradcheck")


# ------------------------------------------------------------------------------------------
# Exercise 7: which spelling of the sum
# ------------------------------------------------------------------------------------------

def _probe_with(kernel_value, image_value):
    """A which_spelling that probes with a given kernel and image (too symmetric to tell)."""
    def which(op, k):
        r = (k - 1) // 2
        n = 2 * k + 1
        x = torch.zeros(1, 1, n, n, dtype=torch.float64)
        x[0, 0, k, k] = image_value
        w = torch.full((1, 1, k, k), 0.0, dtype=torch.float64)
        w[0, 0, r, r] = kernel_value  # the centre tap only: a flip or a shift changes nothing
        out = op(x, w)[0, 0]
        y, _ = divmod(int(out.abs().argmax()), n)
        return {k + r: "cross-correlation", k - r: "convolution"}.get(y, "top-left")
    return which


def test_spelling_layers_are_the_chapters_three_readings():
    x = torch.randn(1, 1, 7, 8, dtype=torch.float64)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ch01.SPELLINGS["cross-correlation"](x, w), F.conv2d(x, w, padding=1))
    torch.testing.assert_close(ch01.SPELLINGS["convolution"](x, w),
                               F.conv2d(x, w.flip(-2, -1), padding=1))
    book = F.conv2d(x, w, padding=1)
    torch.testing.assert_close(ch01.SPELLINGS["top-left"](x, w)[..., :-1, :-1], book[..., 1:, 1:])


@pytest.mark.parametrize("wrong", [
    lambda op, k: "cross-correlation",   # the book's spelling, always
    lambda op, k: "top-left",
    _probe_with(1.0, 1.0),               # a symmetric probe: every layer looks the same
    lambda op, k: "correlation",         # not one of the three names
])
def test_spelling_check_rejects_wrong_answers(wrong):
    rejects(ch01.check_which_spelling, wrong)


def test_spelling_black_box_names_bad_shapes():
    op = ch01._black_box(ch01.SPELLINGS["convolution"])
    with pytest.raises(ValueError, match=r"op takes x of shape \(1, 1, H, W\)"):
        op(torch.zeros(2, 1, 5, 5), torch.zeros(1, 1, 3, 3))


def test_show_kernel_error_is_zero_for_the_solution(capsys):
    error = ch01.show_kernel_error(SOL.dilated_conv2d_cuda_kernel)
    assert error.shape == (5, 7) and float(error.max()) < 1e-10
    assert "largest error per output pixel" in capsys.readouterr().out
