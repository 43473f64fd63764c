"""The checks of Chapter 1's exercises reject plausible wrong answers, with clear messages.

``test_exercises.py`` proves that every check passes on its solution and fails on its stub;
this file proves that the checks also catch the mistakes readers make (a convolution that
forgets the dilation, a weight gradient that forgets the stride, a receptive field that
ignores strides, a kernel without its bounds guard, ...) and that the message says what is
wrong. The wrong answers below are written on purpose.
"""

from pathlib import Path

import dyncore  # noqa: F401  first: picks the GPU or the CUDA simulator before Numba loads
import jupytext
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numba import cuda

from dyncore._bootstrap import simulating
from dyncore.cuda_bridge import unravel4
from solutions import load_solutions
from dyncore.exercises import StubError, ch01, cuda_checks
from dyncore.receptive_field import receptive_field

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "exercises" / "01_convolution_exercises.md"


SOL = load_solutions("01_convolution")


def _notebook_stubs() -> dict:
    """The functions the notebook defines (its cells that are not meant to raise)."""
    namespace: dict = {}
    for cell in jupytext.read(NOTEBOOK).cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            exec(compile(cell.source, NOTEBOOK.name, "exec"), namespace)
    plt.close("all")  # the notebook's pictures
    return namespace


# ------------------------------------------------------------------------------------------
# The stubs fail as stubs: the message says to replace the stub, not that a value is wrong
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["depthwise_conv2d_loops", "conv2d_weight_grad",
                                  "receptive_field_of"])
def test_python_stub_gives_a_stub_error(name):
    stub = _notebook_stubs()[name]
    with pytest.raises(StubError, match=f"{name} still raises NotImplementedError"):
        ch01.CHECKS[name](stub)


def test_kernel_stub_gives_a_stub_error():
    """The stub raises inside the kernel: the simulator re-raises it from the thread (with the
    thread index in the message); on a GPU the exception is not reported and out stays empty."""
    stub = _notebook_stubs()["dilated_conv2d_cuda_kernel"]
    if simulating():
        with pytest.raises(StubError, match="still raises NotImplementedError"):
            ch01.check_dilated_conv2d_cuda_kernel(stub)
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
    with pytest.raises(StubError, match="still raises NotImplementedError"):
        ch01.check_dilated_conv2d_cuda_kernel(SOL.dilated_conv2d_cuda_kernel)
    assert cuda_checks.raised_not_implemented(RuntimeError("x: NotImplementedError: y"))
    assert not cuda_checks.raised_not_implemented(IndexError("index 9 is out of bounds"))


def test_checks_print_correct_on_the_solutions(capsys):
    for name, check in ch01.CHECKS.items():
        check(getattr(SOL, name))
    printed = capsys.readouterr().out
    assert printed.count("Correct:") == len(ch01.CHECKS), printed


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
    def wrong(x, weight, padding, dilation):
        return _depthwise(x, weight, padding, dilation, **mistake)

    with pytest.raises(AssertionError, match=match):
        ch01.check_depthwise_conv2d_loops(wrong)


def test_depthwise_check_says_when_nothing_is_returned():
    def forgets_return(x, weight, padding, dilation):
        SOL.depthwise_conv2d_loops(x, weight, padding, dilation)

    with pytest.raises(AssertionError, match="returned None: did you forget to `return`"):
        ch01.check_depthwise_conv2d_loops(forgets_return)


def test_depthwise_check_reports_the_largest_error():
    def slightly_off(x, weight, padding, dilation):
        return SOL.depthwise_conv2d_loops(x, weight, padding, dilation) + 1e-3

    with pytest.raises(AssertionError, match="(?s)is wrong.*Greatest absolute difference"):
        ch01.check_depthwise_conv2d_loops(slightly_off)


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
    def wrong(x, grad_out, k, s, p, d):
        return _weight_grad(x, grad_out, k, s, p, d, **mistake)

    with pytest.raises(AssertionError, match=match):
        ch01.check_conv2d_weight_grad(wrong)


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

    with pytest.raises(AssertionError, match=r"torch\.no_grad\(\).*compute the gradient by hand"):
        ch01.check_conv2d_weight_grad(with_autograd)


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
    with pytest.raises(AssertionError, match=f"(?s){match}"):
        ch01.check_receptive_field_of(wrong)


def test_receptive_field_check_wants_an_int():
    with pytest.raises(AssertionError, match=r"returned 3\.0 \(float\); return an int"):
        ch01.check_receptive_field_of(lambda layers: float(SOL.receptive_field_of(layers)))


def test_receptive_field_check_accepts_numpy_ints():
    ch01.check_receptive_field_of(lambda layers: np.int64(SOL.receptive_field_of(layers)))


# ------------------------------------------------------------------------------------------
# Exercise 4: the CUDA kernel (under the simulator without a GPU)
# ------------------------------------------------------------------------------------------

@cuda.jit
def kernel_without_dilation(x, weight, out, dilation):
    n = cuda.grid(1)
    B, Cout, H, W = out.shape
    if n >= B * Cout * H * W:
        return
    b, o, yo, xo = unravel4(n, out.shape)
    k = weight.shape[2]
    r = (k - 1) // 2
    acc = 0.0
    for c in range(weight.shape[1]):
        for i in range(k):
            for j in range(k):
                y, xx = yo + i - r, xo + j - r  # forgets the dilation
                if 0 <= y < H and 0 <= xx < W:
                    acc += weight[o, c, i, j] * x[b, c, y, xx]
    out[b, o, yo, xo] = acc


@cuda.jit
def kernel_without_guard(x, weight, out, dilation):
    n = cuda.grid(1)
    B, Cout, H, W = out.shape
    # no `if n >= B*Cout*H*W: return`
    b, o, yo, xo = unravel4(n, out.shape)
    k = weight.shape[2]
    r = (k - 1) // 2
    acc = 0.0
    for c in range(weight.shape[1]):
        for i in range(k):
            for j in range(k):
                y, xx = yo + (i - r) * dilation, xo + (j - r) * dilation
                if 0 <= y < H and 0 <= xx < W:
                    acc += weight[o, c, i, j] * x[b, c, y, xx]
    out[b, o, yo, xo] = acc


@cuda.jit
def kernel_without_zero_padding(x, weight, out, dilation):
    n = cuda.grid(1)
    B, Cout, H, W = out.shape
    if n >= B * Cout * H * W:
        return
    b, o, yo, xo = unravel4(n, out.shape)
    k = weight.shape[2]
    r = (k - 1) // 2
    acc = 0.0
    for c in range(weight.shape[1]):
        for i in range(k):
            for j in range(k):  # reads outside the image: wraps around, or out of bounds
                acc += weight[o, c, i, j] * x[b, c, yo + (i - r) * dilation, xo + (j - r) * dilation]
    out[b, o, yo, xo] = acc


@cuda.jit
def kernel_that_forgets_the_batch(x, weight, out, dilation):
    n = cuda.grid(1)
    B, Cout, H, W = out.shape
    if n >= Cout * H * W:  # only image 0
        return
    xo, yo, o = n % W, (n // W) % H, n // (W * H)
    k = weight.shape[2]
    r = (k - 1) // 2
    acc = 0.0
    for c in range(weight.shape[1]):
        for i in range(k):
            for j in range(k):
                y, xx = yo + (i - r) * dilation, xo + (j - r) * dilation
                if 0 <= y < H and 0 <= xx < W:
                    acc += weight[o, c, i, j] * x[0, c, y, xx]
    out[0, o, yo, xo] = acc


@cuda.jit
def kernel_that_writes_nothing(x, weight, out, dilation):
    # What a stub does on a real GPU, where a kernel's exception is not reported.
    return


def test_kernel_check_rejects_a_kernel_without_dilation():
    with pytest.raises(AssertionError, match=r"out of shape \(1, 3, 5, 7\), dilation=2\) is wrong"):
        ch01.check_dilated_conv2d_cuda_kernel(kernel_without_dilation)


def test_kernel_check_rejects_a_kernel_without_its_guard():
    # The simulator stops the thread at its first index out of bounds; on a GPU the stray
    # threads write past the end of out, into the NaN guard the check puts there.
    match = (r"Thread n = 3[01] has no element \(out has 30\): every thread with n >= out\.size must "
             r"return at once" if simulating() else r"wrote past the end of out.*n >= out\.size")
    with pytest.raises(AssertionError, match=f"(?s){match}"):
        ch01.check_dilated_conv2d_cuda_kernel(kernel_without_guard)


def test_kernel_check_rejects_a_kernel_without_zero_padding():
    match = (r"Thread n = \d+ owns an element of out but indexed outside an array: skip the taps "
             r"whose input pixel falls outside the image" if simulating() else r"is wrong")
    with pytest.raises(AssertionError, match=match):
        ch01.check_dilated_conv2d_cuda_kernel(kernel_without_zero_padding)


def test_index_error_hint_without_a_thread_index():
    hint = cuda_checks.index_error_hint("index 7 is out of bounds for axis 0 with size 7", 30)
    assert "n >= out.size" in hint and "zero padding" in hint


def test_kernel_check_names_the_elements_never_written():
    with pytest.raises(AssertionError, match=r"60 of 120 elements of out were never written, the "
                                             r"first at \(b, o, y, x\) = \(1, 0, 0, 0\)"):
        ch01.check_dilated_conv2d_cuda_kernel(kernel_that_forgets_the_batch)


def test_kernel_check_says_when_nothing_is_written():
    with pytest.raises(AssertionError, match="wrote no element of out"):
        ch01.check_dilated_conv2d_cuda_kernel(kernel_that_writes_nothing)


def test_kernel_check_wants_a_cuda_kernel():
    with pytest.raises(AssertionError, match=r"plain Python function, not a CUDA kernel: decorate it "
                                             r"with @cuda\.jit"):
        ch01.check_dilated_conv2d_cuda_kernel(SOL.dilated_conv2d_cuda_kernel.py_func)


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
    with pytest.raises(AssertionError, match=match):
        ch01.check_predict_conv2d_flops(lambda *a: _flops(*a, **mistake))


def test_flop_check_names_the_output_size_mistake():
    def same_size(x_shape, weight_shape, s, p, d):
        B, Cin, H, W = x_shape
        Cout, _, k, _ = weight_shape
        forward = 2 * B * Cout * H * W * Cin * k * k
        return forward, 2 * forward
    with pytest.raises(AssertionError, match="uses the input's size for the output"):
        ch01.check_predict_conv2d_flops(same_size)


def test_flop_check_wants_two_numbers():
    with pytest.raises(AssertionError, match="return two numbers"):
        ch01.check_predict_conv2d_flops(lambda *a: 12)


# ------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug in the scattered input gradient
# ------------------------------------------------------------------------------------------

def test_the_notebook_gives_the_planted_bug():
    """The notebook's function and the check's copy of it are the same broken code."""
    stub = _notebook_stubs()["conv2d_grad_input"]
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(2, 3, 4, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(stub(g, w, (8, 7), 2, 1, 1),
                               ch01.planted_conv2d_grad_input(g, w, (8, 7), 2, 1, 1))
    with pytest.raises(StubError, match="the planted mistake is still there"):
        ch01.check_conv2d_grad_input(stub)


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


@pytest.mark.parametrize("mistake", [
    {"slice_step": 1},    # forgets the stride: scatters to neighbouring pixels
    {"crop": 0},          # crops the padded gradient at the wrong corner
    {"flip_rows": True},  # a half-fix: flips the rows only
])
def test_grad_input_check_rejects_wrong_fixes(mistake):
    with pytest.raises(AssertionError) as info:
        ch01.check_conv2d_grad_input(lambda *a: _grad_input(*a, **mistake))
    assert not isinstance(info.value, StubError)


def test_grad_input_gradcheck_catches_what_slips_past_the_cases(monkeypatch):
    """A function right on the cases but wrong elsewhere fails on gradcheck's own case."""
    monkeypatch.setattr(ch01, "GRAD_INPUT_CASES", ch01.GRAD_INPUT_CASES[:1])
    wrong = lambda g, w, size, s, p, d: _grad_input(g, w, size, s, p, d, slice_step=1)  # noqa: E731
    with pytest.raises(AssertionError, match="gradcheck"):
        ch01.check_conv2d_grad_input(wrong)


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
    with pytest.raises(AssertionError):
        ch01.check_which_spelling(wrong)


def test_spelling_black_box_names_bad_shapes():
    op = ch01._black_box(ch01.SPELLINGS["convolution"])
    with pytest.raises(ValueError, match=r"op takes x of shape \(1, 1, H, W\)"):
        op(torch.zeros(2, 1, 5, 5), torch.zeros(1, 1, 3, 3))


def test_show_kernel_error_is_zero_for_the_solution(capsys):
    error = ch01.show_kernel_error(SOL.dilated_conv2d_cuda_kernel)
    assert error.shape == (5, 7) and float(error.max()) < 1e-10
    assert "largest error per output pixel" in capsys.readouterr().out
