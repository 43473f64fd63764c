"""The checks of Chapter 2's exercises reject plausible wrong answers, with clear messages.

``test_exercises.py`` proves that every check passes on its solution and fails on its stub;
this file proves that the checks also catch the mistakes readers make (a filter gradient that
forgets to sum the channels or reads the wrong neighbour, an unfold with the axes in the wrong
order or the padding of an undilated kernel, a translation filter that moves the image the
wrong way, a CUDA kernel that scatters instead of gathering) and that the message says what is
wrong. The wrong answers below are written on purpose.
"""

import dyncore  # noqa: F401  first: picks the GPU or the CUDA simulator before Numba loads
import pytest
import torch
import torch.nn.functional as F
from numba import cuda

from dyncore.dfn import dynamic_filter
from dyncore.exercises import ch02

from exercise_checks import (find_the_bug_test, owned_element, rejects, rejects_as_stub, switched,
                             wrong_kernels)
from solutions import load_solutions

SOL = load_solutions("02_dynamic_filters")


def test_the_loops_solution_of_the_filter_gradient_passes_too():
    ch02.check_dynamic_filter_grad_filters(SOL.dynamic_filter_grad_filters_loops)


def test_the_reference_of_the_checks_is_the_package_operator():
    """The checks' own reference (shifted slices) agrees with dyncore.dfn in every backend."""
    x, f = torch.randn(2, 3, 6, 7, dtype=torch.float64), torch.randn(2, 25, 6, 7, dtype=torch.float64)
    for backend in dyncore.backends():
        torch.testing.assert_close(ch02.reference_dynamic_filter(x, f, 5, 2),
                                   dynamic_filter(x, f, kernel_size=5, dilation=2, backend=backend))


def test_moved_moves_down_and_right_for_positive_values():
    image = torch.arange(12.0).reshape(3, 4)
    assert ch02.moved(image, 1, 2).tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 4, 5]]
    assert torch.equal(ch02.moved(image, 0, 0), image)
    assert torch.equal(ch02.moved(image, 5, 0), torch.zeros(3, 4))


# ------------------------------------------------------------------------------------------
# Exercise 1: the filter gradient
# ------------------------------------------------------------------------------------------

def _grad_filters(x, grad_out, k, d, *, sign=1, channel_sum=True, wrap=False, tap_step=None):
    """The filter gradient from shifted slices, with switchable mistakes."""
    B, C, H, W = x.shape
    r = (k - 1) // 2
    step = d if tap_step is None else tap_step
    grads = []
    for t in range(k * k):
        oy, ox = sign * (t // k - r) * step, sign * (t % k - r) * step
        if wrap:
            shifted = torch.roll(x, (-oy, -ox), dims=(2, 3))  # forgets the zero padding
        else:
            shifted = ch02.moved(x, -oy, -ox)  # shifted[y, x] = x[y + oy, x + ox]
        prod = grad_out * shifted
        grads.append(prod.sum(1) if channel_sum else prod[:, 0])
    return torch.stack(grads, dim=1)


def test_grad_filters_reference_of_the_wrong_answers_is_right():
    ch02.check_dynamic_filter_grad_filters(lambda x, g, k, d: _grad_filters(x, g, k, d))


@pytest.mark.parametrize("mistake,match", [
    ({"sign": -1}, r"x of shape \(1, 1, 5, 5\).*kernel_size=3, dilation=1\) is wrong"),  # x at y - oy
    ({"channel_sum": False}, r"x of shape \(2, 3, 6, 7\).* is wrong"),                   # channel 0 only
    ({"wrap": True}, r"kernel_size=3, dilation=1\) is wrong"),                           # no zero padding
    ({"tap_step": 1}, r"kernel_size=3, dilation=2\) is wrong"),                          # forgets the dilation
])
def test_grad_filters_check_rejects_wrong_answers(mistake, match):
    rejects(ch02.check_dynamic_filter_grad_filters, switched(_grad_filters, **mistake), f"(?s){match}")


def test_grad_filters_check_names_the_expected_shape():
    def per_channel(x, grad_out, k, d):  # forgets to sum the channels: (B, C, k*k, H, W)
        B, C, H, W = x.shape
        r = (k - 1) // 2
        cols = F.unfold(x, k, dilation=d, padding=d * r).view(B, C, k * k, H, W)
        return grad_out.unsqueeze(2) * cols

    with pytest.raises(AssertionError, match=r"expected shape \(1, 9, 5, 5\), got \(1, 1, 9, 5, 5\)\. "
                                             r"dL/dfilters has the shape of the filters.*summed over the channels"):
        ch02.check_dynamic_filter_grad_filters(per_channel)


def test_grad_filters_check_explains_that_autograd_is_off():
    def with_autograd(x, grad_out, k, d):
        f = torch.zeros(x.shape[0], k * k, *x.shape[2:], dtype=x.dtype, requires_grad=True)
        dynamic_filter(x, f, kernel_size=k, dilation=d, backend="torch").backward(grad_out)
        return f.grad

    rejects(ch02.check_dynamic_filter_grad_filters, with_autograd,
            r"torch\.no_grad\(\).*compute the gradient by hand")


def test_grad_filters_check_says_when_nothing_is_returned():
    rejects(ch02.check_dynamic_filter_grad_filters, lambda x, g, k, d: None,
            "returned None: did you forget to `return`")


# ------------------------------------------------------------------------------------------
# Exercise 2: the unfold formulation
# ------------------------------------------------------------------------------------------

def _unfold(x, filters, k, d, *, taps_first=False, padding=None, dilate=True, cast=None):
    B, C, H, W = x.shape
    r = (k - 1) // 2
    p = d * r if padding is None else padding(k, d)
    cols = F.unfold(x, k, dilation=d if dilate else 1, padding=p)
    Ho = cols.shape[-1] // W if cols.shape[-1] % W == 0 else None
    if Ho != H:
        cols = cols[..., : H * W] if cols.shape[-1] >= H * W else F.pad(cols, (0, H * W - cols.shape[-1]))
    if taps_first:
        cols = cols.view(B, k * k, C, H, W).transpose(1, 2)  # reads the rows as (t, c): wrong
    else:
        cols = cols.view(B, C, k * k, H, W)
    out = (cols * filters.unsqueeze(1)).sum(dim=2)
    return out.to(cast) if cast is not None else out


def test_unfold_reference_of_the_wrong_answers_is_right():
    ch02.check_dynamic_filter_unfold(lambda x, f, k, d: _unfold(x, f, k, d))


@pytest.mark.parametrize("mistake,match", [
    ({"taps_first": True}, r"x of shape \(2, 3, 6, 7\).* is wrong"),                # axes in the wrong order
    ({"padding": lambda k, d: (k - 1) // 2}, r"kernel_size=3, dilation=2\)"),       # padding r, not d*r
    ({"dilate": False, "padding": lambda k, d: (k - 1) // 2}, r"dilation=2\) is wrong"),  # forgets the dilation
    ({"cast": torch.float64}, r"the input is torch\.float32 but the result is torch\.float64"),
])
def test_unfold_check_rejects_wrong_answers(mistake, match):
    rejects(ch02.check_dynamic_filter_unfold, switched(_unfold, **mistake), f"(?s){match}")


def test_unfold_check_names_the_expected_shape():
    def no_sum(x, filters, k, d):
        B, C, H, W = x.shape
        cols = F.unfold(x, k, dilation=d, padding=d * (k - 1) // 2).view(B, C, k * k, H, W)
        return cols * filters.unsqueeze(1)  # forgets to sum over the taps

    rejects(ch02.check_dynamic_filter_unfold, no_sum, r"expected shape \(1, 1, 5, 5\), got \(1, 1, 9, 5, 5\)")


# ------------------------------------------------------------------------------------------
# Exercise 3: the translation filter
# ------------------------------------------------------------------------------------------

def _translation(dy, dx, k, d, *, sign=1, swap=False, check=True, ignore_dilation=False):
    r = (k - 1) // 2
    step = 1 if ignore_dilation else d
    if check and (dy % step or dx % step or abs(dy) > r * step or abs(dx) > r * step):
        raise ValueError("unreachable")
    i, j = r - sign * dy // step, r - sign * dx // step
    if swap:
        i, j = j, i
    taps = torch.zeros(k * k)
    if 0 <= i < k and 0 <= j < k:
        taps[i * k + j] = 1.0
    return taps


def test_translation_reference_of_the_wrong_answers_is_right():
    ch02.check_translation_filter(lambda dy, dx, k, d: _translation(dy, dx, k, d))


@pytest.mark.parametrize("mistake,match", [
    ({"sign": -1}, r"translation_filter\(0, 1, kernel_size=3, dilation=1\).*moves the image by \(0, -1\), the opposite way"),
    ({"swap": True}, r"translation_filter\(0, 1, kernel_size=3, dilation=1\).*moves the image by \(1, 0\): rows and columns are swapped"),
    ({"check": False}, r"translation_filter\(0, 2, kernel_size=3, dilation=1\) returned a filter, but no single tap"),
    ({"ignore_dilation": True}, r"translation_filter\(-2, 2, kernel_size=3, dilation=2\) raised ValueError "
                                r"\(unreachable\), but one tap can do it: tap \(i, j\) = \(2, 0\)"),
])
def test_translation_check_rejects_wrong_answers(mistake, match):
    rejects(ch02.check_translation_filter, switched(_translation, **mistake), f"(?s){match}")


def test_translation_check_wants_k_squared_taps():
    rejects(ch02.check_translation_filter, lambda dy, dx, k, d: _translation(dy, dx, k, d)[:-1],
            r"a filter has k\*k = 9 taps; got a tensor of shape \(8,\)")
    rejects(ch02.check_translation_filter, lambda dy, dx, k, d: None, "returned None")


def test_translation_check_accepts_a_k_by_k_grid_and_lists():
    ch02.check_translation_filter(lambda dy, dx, k, d: _translation(dy, dx, k, d).reshape(k, k))
    ch02.check_translation_filter(lambda dy, dx, k, d: _translation(dy, dx, k, d).tolist())


# ------------------------------------------------------------------------------------------
# Exercise 4: the CUDA kernel (under the simulator without a GPU)
# ------------------------------------------------------------------------------------------

def _kernel(*, gather=True, zero_padding=True, **switches):
    """The exercise's kernel with switchable mistakes (Numba compiles each switch in as a constant)."""
    sign = -1 if gather else 1  # +1 reads the forward's neighbour, not the pixel that read (y, x)
    element = owned_element(**switches)

    @cuda.jit
    def kernel(grad_out, filters, grad_x, kernel_size, dilation):
        b, c, y, xx = element(cuda.grid(1), grad_x.shape)
        if b < 0:
            return
        H, W = grad_x.shape[2], grad_x.shape[3]
        k, d = kernel_size, dilation
        r = (k - 1) // 2
        acc = 0.0
        for t in range(k * k):
            yo = y + sign * (t // k - r) * d
            xo = xx + sign * (t % k - r) * d
            if not zero_padding or (0 <= yo < H and 0 <= xo < W):  # else it reads outside the image
                acc += grad_out[b, c, yo, xo] * filters[b, t, yo, xo]
        grad_x[b, c, y, xx] = acc

    return kernel


@cuda.jit
def kernel_stub(grad_out, filters, grad_x, kernel_size, dilation):
    raise NotImplementedError


def test_the_switchable_kernel_is_right_without_a_mistake():
    ch02.check_grad_input_cuda_kernel(_kernel())


#: Wrong kernels and what the check must say.
WRONG_KERNELS = {
    "reads-the-forward-pixel": (_kernel(gather=False), r"is wrong.*reads the output pixel at \(y \+ oy, x \+ ox\)"
                                                       r".*gather from there"),
    **wrong_kernels(_kernel, SOL.grad_input_cuda_kernel, "grad_x", "whose output pixel",
                    r"40 of 80 elements of grad_x were never written, the first at \(b, c, y, x\) "
                    r"= \(1, 0, 0, 0\)"),
}


@pytest.mark.parametrize("kernel,match", WRONG_KERNELS.values(), ids=WRONG_KERNELS)
def test_kernel_check_rejects_wrong_kernels(kernel, match):
    rejects(ch02.check_grad_input_cuda_kernel, kernel, f"(?s){match}")


def test_kernel_check_recognizes_a_stub_kernel():
    rejects_as_stub(ch02.check_grad_input_cuda_kernel, kernel_stub)


# ------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the best shared kernel
# ------------------------------------------------------------------------------------------

def test_shared_measurement_is_close_to_the_formula_and_the_chapters_half():
    assert abs(ch02.measure_best_shared_loss(1, 2) - 1.0) < 0.05   # the chapter's toy: no progress
    assert ch02.measure_best_shared_loss(0, 4) < 1e-12              # all ask for K: K fits exactly


@pytest.mark.parametrize("wrong,match", [
    (lambda q: 1 - 2 * q, "1 - 2q is the best kernel's multiple of K"),
    (lambda q: (1 - 2 * q) ** 2, r"\(1 - 2q\)\^2 is the share of the loss"),
    (lambda q: 2 * q, r"returned 0.500, but the best shared kernel leaves 0.751"),
    (lambda q: q, r"returned 0.250"),
    (lambda q: 1.0, r"returned 1.000, but the best shared kernel leaves 0.751"),  # "never helps"
    (lambda q: "0.75", r"returned 0.750, but the best shared kernel leaves 0.433"),  # one number
    (lambda q: None, "return a number"),
])
def test_shared_check_rejects_wrong_predictions(wrong, match):
    rejects(ch02.check_predict_best_shared_loss, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug in the tap-by-tap input gradient
# ------------------------------------------------------------------------------------------

def _dfn_grad_input(grad_out, filters, k, d, *, sign=-1, filter_shift=True, flip_tap=False):
    """The tap-by-tap input gradient with switchable mistakes."""
    B, C, H, W = grad_out.shape
    r = (k - 1) // 2
    R = r * d
    Gp = F.pad(grad_out, (R, R, R, R))
    Fp = F.pad(filters, (R, R, R, R))
    grad_x = torch.zeros_like(grad_out)
    for t in range(k * k):
        oy, ox = sign * (t // k - r) * d, sign * (t % k - r) * d
        G_t = Gp[:, :, R + oy: R + oy + H, R + ox: R + ox + W]
        u = k * k - 1 - t if flip_tap else t
        f_t = (Fp[:, u: u + 1, R + oy: R + oy + H, R + ox: R + ox + W] if filter_shift
               else filters[:, u: u + 1])
        grad_x += G_t * f_t
    return grad_x


def test_the_switchable_dfn_grad_input_is_right_without_a_mistake():
    ch02.check_dfn_grad_input(_dfn_grad_input)


#: (The notebook gives the planted function statement for statement: ``test_exercises.py``.)
test_dfn_grad_input_check_tells_the_planted_bug_from_wrong_fixes = find_the_bug_test(
    ch02.check_dfn_grad_input, ch02.planted_dfn_grad_input, {
        "forward-pixel": (switched(_dfn_grad_input, sign=+1), None),  # gathers from (y + oy, x + ox)
        "flipped-offsets": (switched(_dfn_grad_input, sign=+1, filter_shift=False), None),  # not a shifted filter
        "flipped-tap": (switched(_dfn_grad_input, flip_tap=True), None),  # right pixel, flipped tap's filter
    })


def test_dfn_grad_input_gradcheck_catches_what_slips_past_the_cases(monkeypatch):
    monkeypatch.setattr(ch02, "DFN_GRAD_INPUT_CASES", [(1, 2, 6, 4, 1, 3)])  # 1x1: no offset to get wrong
    rejects(ch02.check_dfn_grad_input, switched(_dfn_grad_input, sign=+1), "gradcheck")


# ------------------------------------------------------------------------------------------
# Exercise 7: the softmax ablation
# ------------------------------------------------------------------------------------------

def _fit(x, target, k, softmax, steps, lr, *, axis=1, init=0.0, optimizer=torch.optim.Adam, scale=1.0):
    """fit_free_filters with switchable mistakes (the chapter's reference forward, for speed)."""
    B, _, H, W = x.shape
    logits = torch.full((B, k * k, H, W), init, dtype=x.dtype, requires_grad=True)
    opt = optimizer([logits], lr=lr)

    def loss():
        f = logits.softmax(dim=axis) if softmax else logits
        return ((ch02.reference_dynamic_filter(x, f, k, 1) - target) ** 2).sum()

    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        return float(loss() / (target ** 2).sum()) * scale


def test_the_switchable_fit_is_right_without_a_mistake():
    table = ch02.check_fit_free_filters(_fit)
    assert table["invert the contrast", True] > 0.25 > 0.05 > table["move down by 1", True]


@pytest.mark.parametrize("mistake,match", [
    ({"axis": -1}, "the softmax over the k\\*k taps"),          # softmax over the width
    ({"init": 1.0}, "zero filters give out = 0"),               # does not start from zero
    ({"optimizer": torch.optim.SGD}, "after 40 Adam steps"),    # SGD at Adam's learning rate
    ({"scale": 0.5}, "steps=0\\) returned"),                    # divides by 2 * sum(target**2)
])
def test_fit_check_rejects_wrong_answers(mistake, match):
    rejects(ch02.check_fit_free_filters, switched(_fit, **mistake), match)


def test_fit_check_wants_a_number():
    rejects(ch02.check_fit_free_filters, lambda *a: None, "returned None; return the loss fraction as a float")
    with pytest.raises(AssertionError, match="steps=0\\) returned 0.0"):  # a 0-d tensor is fine, 0 is not
        ch02.check_fit_free_filters(lambda *a: torch.tensor(0.0))


def test_show_kernel_error_is_zero_for_the_solution(capsys):
    error = ch02.show_kernel_error(SOL.grad_input_cuda_kernel)
    assert error.shape == (5, 6) and float(error.max()) < 1e-10
    assert "largest error of grad_x per pixel" in capsys.readouterr().out
