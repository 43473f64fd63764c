"""Checks for the exercises of Chapter 4, DMNet (``exercises/04_dmnet_exercises.md``).

* :func:`check_context_filter_groups` -- the groups trick by hand: one ``F.conv2d`` call for
  the whole batch, against the ``"loops"`` backend of :func:`dyncore.dmnet.context_filter`;
* :func:`check_parameter_counts` -- the parameters of a DCM and of a standard ``k x k``
  convolution, against the modules themselves;
* :func:`check_filter_generator` -- ``g_k``: adaptive average pooling written by hand (the
  check hides ``F.adaptive_avg_pool2d``), then a 1x1 convolution, against PyTorch;
* :func:`check_context_filter_filter_grad` -- ``dL/dfilters`` of the context filter by hand,
  against PyTorch's autograd in float64;
* :func:`check_filter_grad_of_sum` -- predict, then measure: the filter gradient of a sum over
  an all-ones image, predicted by counting, measured by autograd;
* :func:`check_context_filter_input_grad` -- find and fix the bug: an input gradient with one
  planted mistake, against autograd and ``gradcheck``;
* :func:`check_four_dcm_parameters` -- what the generator reads, ``x`` or ``f_k(x)``, decided
  by the paper's Table 3 parameter count.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..dmnet import DCM, context_filter
from . import call, expect_close, passed, reject_planted_bug

__all__ = [
    "CHECKS",
    "check_context_filter_groups",
    "check_parameter_counts",
    "check_filter_generator",
    "check_context_filter_filter_grad",
    "check_filter_grad_of_sum",
    "measure_filter_grad_of_sum",
    "check_context_filter_input_grad",
    "check_four_dcm_parameters",
]


def _shape(t) -> str:
    return str(tuple(t.shape))


@contextlib.contextmanager
def _replaced(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


# --------------------------------------------------------------------------------------------
# Exercise 1: the groups trick
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k): the simplest case first; then several images *and* channels, a kernel
#: larger than the image, a 1x1 filter.
GROUPS_CASES = [(1, 1, 5, 5, 3), (2, 3, 6, 7, 3), (3, 2, 5, 4, 5), (2, 4, 7, 5, 1), (2, 2, 4, 6, 7)]


def check_context_filter_groups(fn) -> None:
    """``fn(x, filters)`` must equal ``context_filter(x, filters)`` for ``x: (B, C, H, W)``,
    ``filters: (B, C, k, k)``, with a single ``F.conv2d`` call for the whole batch."""
    gen = torch.Generator().manual_seed(401)
    for B, C, H, W, k in GROUPS_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        filters = torch.randn(B, C, k, k, generator=gen, dtype=torch.float64)
        expected = context_filter(x, filters, backend="loops")
        what = f"context_filter_groups(x of shape {_shape(x)}, filters of shape {_shape(filters)})"
        groups_seen = []
        conv2d = F.conv2d

        def spy(*args, **kwargs):
            groups_seen.append(kwargs.get("groups", args[6] if len(args) > 6 else 1))
            return conv2d(*args, **kwargs)

        with _replaced(F, "conv2d", spy):
            result = call(fn, x.clone(), filters.clone(), name="context_filter_groups")
        expect_close(result, expected, what, shape_hint=
                "The output has the input's shape (B, C, H, W): pad by r = (k - 1) // 2 and "
                "reshape the (1, B*C, H, W) result back.", rtol=1e-10, atol=1e-12)
        if not groups_seen:
            raise AssertionError(
                f"{what} is right, but it never called F.conv2d. The exercise is the groups "
                "trick: one call of F.conv2d (through `import torch.nn.functional as F`, so the "
                "check can see it) with groups=B*C."
            )
        if len(groups_seen) != 1:
            raise AssertionError(
                f"{what} is right, but it called F.conv2d {len(groups_seen)} times (once per "
                "image?). The trick is one call for the whole batch: fold the batch into the "
                "channels, (1, B*C, H, W), with groups=B*C."
            )
        if groups_seen[0] != B * C:
            raise AssertionError(f"{what} is right, but it called F.conv2d with groups="
                                 f"{groups_seen[0]}; the trick uses groups=B*C = {B * C}.")
    passed(f"context_filter_groups matches context_filter on {len(GROUPS_CASES)} shapes with one "
           "grouped F.conv2d call each")


# --------------------------------------------------------------------------------------------
# Exercise 2: parameters of a DCM and of a standard convolution
# --------------------------------------------------------------------------------------------

#: (in_channels, channels, kernel_size); the last is one DCM of the paper's head.
COUNT_CASES = [(1, 1, 1), (32, 16, 1), (32, 16, 3), (5, 3, 5), (64, 48, 7), (2048, 512, 7)]


def _n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count_mistakes(c, cp, k) -> dict:
    return {
        "makes the DCM's count grow with k*k: the generator is a 1x1 convolution applied to the "
        "k x k pooled context, so its weights do not depend on k": c * cp * k * k + c * cp + cp * cp + 7 * cp,
        "leaves out the BatchNorm layers: each has 2 learnable parameters per channel (weight "
        "and bias; its running statistics are buffers, not parameters)": 2 * c * cp + cp * cp + cp,
        "leaves out the generator's bias": 2 * c * cp + cp * cp + 6 * cp,
    }


def check_parameter_counts(fn) -> None:
    """``fn(in_channels, channels, kernel_size)`` must return ``(dcm, conv)``: the number of
    parameters of ``DCM(in_channels, channels, kernel_size)`` and of
    ``nn.Conv2d(in_channels, channels, kernel_size)`` (with its bias)."""
    for c, cp, k in COUNT_CASES:
        with torch.device("meta"):  # no memory is needed to count
            expected_dcm = _n_params(DCM(c, cp, k))
            expected_conv = _n_params(nn.Conv2d(c, cp, k))
        what = f"parameter_counts({c}, {cp}, {k})"
        result = call(fn, c, cp, k, name="parameter_counts")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{what} returned {result!r}; return a pair (dcm, conv) of ints")
        dcm, conv = result
        if dcm != expected_dcm:
            hints = [why for why, wrong in _count_mistakes(c, cp, k).items() if wrong == dcm]
            raise AssertionError(
                f"{what}: the DCM has {expected_dcm} parameters, your count is {dcm}."
                + (f" Your count looks like one that {hints[0]}." if hints else
                   " Print DCM(in_channels, channels, kernel_size) to see its layers.")
            )
        if conv != expected_conv:
            no_bias = " (did you forget the bias, one per output channel?)" if conv == c * cp * k * k else ""
            raise AssertionError(f"{what}: nn.Conv2d({c}, {cp}, {k}) has {expected_conv} "
                                 f"parameters, your count is {conv}{no_bias}.")
    passed(f"parameter_counts matches DCM and nn.Conv2d on {len(COUNT_CASES)} configurations")


# --------------------------------------------------------------------------------------------
# Exercise 3: the filter generator g_k
# --------------------------------------------------------------------------------------------

#: (B, Cin, C, H, W, k): bins that divide the image, overlapping bins (H % k != 0), more
#: cells than pixels (k > H), one cell (k = 1, the global average).
GENERATOR_CASES = [(1, 2, 3, 6, 6, 3), (2, 4, 3, 10, 7, 3), (2, 3, 2, 3, 4, 5), (1, 3, 4, 5, 9, 1),
                   (2, 2, 5, 13, 11, 7)]


def _hidden(*args, **kwargs):
    raise AssertionError(
        "F.adaptive_avg_pool2d is hidden during this check: compute the k x k cell averages "
        "yourself (cell i covers rows floor(i*H/k) to ceil((i+1)*H/k) - 1)"
    )


def check_filter_generator(fn) -> None:
    """``fn(x, weight, bias, kernel_size)`` must return ``g_k(x)``: the 1x1 convolution
    (``weight: (C, Cin)``, ``bias: (C,)``) of ``x: (B, Cin, H, W)`` adaptively average-pooled
    to ``k x k`` cells, as ``(B, C, k, k)`` filters."""
    gen = torch.Generator().manual_seed(403)
    for B, Cin, C, H, W, k in GENERATOR_CASES:
        x = torch.randn(B, Cin, H, W, generator=gen, dtype=torch.float64)
        weight = torch.randn(C, Cin, generator=gen, dtype=torch.float64)
        bias = torch.randn(C, generator=gen, dtype=torch.float64)
        expected = F.conv2d(F.adaptive_avg_pool2d(x, k), weight[:, :, None, None], bias)
        what = (f"filter_generator(x of shape {_shape(x)}, weight of shape {_shape(weight)}, "
                f"bias, kernel_size={k})")
        with _replaced(F, "adaptive_avg_pool2d", _hidden):
            result = call(fn, x.clone(), weight.clone(), bias.clone(), k, name="filter_generator")
        if result is not None and getattr(result, "shape", None) == expected.shape:
            no_bias = F.conv2d(F.adaptive_avg_pool2d(x, k), weight[:, :, None, None])
            if torch.allclose(torch.as_tensor(result, dtype=expected.dtype), no_bias):
                raise AssertionError(f"{what} is wrong: it equals the result without the bias; "
                                     "add bias[c] to every tap of channel c's filter.")
            if H % k and not torch.allclose(torch.as_tensor(result, dtype=expected.dtype), expected):
                floor_bins = _floor_bins(x, weight, bias, k)
                if torch.allclose(torch.as_tensor(result, dtype=expected.dtype), floor_bins):
                    raise AssertionError(
                        f"{what} is wrong: with H = {H} not a multiple of k = {k}, the cells of "
                        "adaptive average pooling overlap. Cell i covers rows floor(i*H/k) up to "
                        "ceil((i+1)*H/k) - 1, not up to floor((i+1)*H/k) - 1.")
        expect_close(result, expected, what, shape_hint="The filters are (B, C, k, k): one k x k filter per "
                "image and output channel of the 1x1 convolution.", rtol=1e-10, atol=1e-12)
    passed(f"filter_generator matches a 1x1 convolution of F.adaptive_avg_pool2d on "
           f"{len(GENERATOR_CASES)} shapes, with overlapping cells and k > H")


def _floor_bins(x, weight, bias, k):
    """The usual mistake: cells that end at floor((i+1)*H/k)."""
    B, Cin, H, W = x.shape
    pooled = torch.zeros(B, Cin, k, k, dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            y0, y1 = i * H // k, max(i * H // k + 1, (i + 1) * H // k)
            x0, x1 = j * W // k, max(j * W // k + 1, (j + 1) * W // k)
            pooled[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean((2, 3))
    return torch.einsum("cu,buij->bcij", weight, pooled) + bias[None, :, None, None]


# --------------------------------------------------------------------------------------------
# Exercise 4: the gradient of the filters, by hand
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k)
GRAD_CASES = [(1, 1, 5, 5, 3), (2, 3, 6, 7, 3), (2, 2, 7, 5, 5), (1, 2, 3, 4, 5), (3, 1, 4, 4, 1)]


def _reference_filter_grad(x, grad_out, k):
    filters = torch.zeros(x.shape[0], x.shape[1], k, k, dtype=x.dtype, requires_grad=True)
    with torch.enable_grad():
        out = context_filter(x, filters, backend="torch")
        (grad,) = torch.autograd.grad(out, filters, grad_out)
    return grad


def check_context_filter_filter_grad(fn) -> None:
    """``fn(x, grad_out, kernel_size)`` must return ``dL/dfilters`` of
    ``out = context_filter(x, filters)`` when ``dL/dout = grad_out``, shape ``(B, C, k, k)``.
    The reader's function runs under ``torch.no_grad()``."""
    gen = torch.Generator().manual_seed(404)
    for B, C, H, W, k in GRAD_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        expected = _reference_filter_grad(x, grad_out, k)
        what = (f"context_filter_filter_grad(x of shape {_shape(x)}, grad_out of shape "
                f"{_shape(grad_out)}, kernel_size={k})")
        try:
            with torch.no_grad():
                result = call(fn, x.clone(), grad_out.clone(), k, name="context_filter_filter_grad")
        except RuntimeError as exc:
            if "grad" not in str(exc):
                raise
            raise AssertionError(
                f"{what} raised RuntimeError: {exc}\nThe check calls your function under "
                "torch.no_grad(), so autograd is off: compute the sum of the equation by hand."
            ) from None
        if result is not None and getattr(result, "shape", None) == expected.shape and k > 1:
            if torch.allclose(torch.as_tensor(result, dtype=expected.dtype), expected.flip(2, 3)):
                raise AssertionError(
                    f"{what} is wrong: it is the right answer flipped in both axes. Tap (i, j) "
                    "multiplies x at offset (i - r, j - r) from the output pixel, so its gradient "
                    "pairs grad_out[y, x] with x[y + i - r, x + j - r].")
        expect_close(result, expected, what, shape_hint=
                "dL/dfilters has the shape of the filters, (B, C, k, k): one filter per image "
                "and channel, so do not sum over the batch.", rtol=1e-10, atol=1e-12)
    passed(f"context_filter_filter_grad matches autograd on {len(GRAD_CASES)} shapes (float64)")



# --------------------------------------------------------------------------------------------
# Exercise 5 (predict, then measure): the filter gradient of a sum, at the border
# --------------------------------------------------------------------------------------------

#: (H, W, k): the reader's prediction is compared with autograd on each; the last two have a
#: kernel larger than the image, where some taps read only zeros.
SUM_GRAD_CASES = [(5, 5, 3), (4, 7, 5), (6, 3, 3), (3, 6, 9), (1, 1, 1), (2, 9, 5)]


def measure_filter_grad_of_sum(H: int, W: int, kernel_size: int) -> torch.Tensor:
    """The measurement: ``dL/dfilters`` of ``L = context_filter(x, filters).sum()`` for an
    all-ones image ``x: (1, 1, H, W)``, by PyTorch's autograd (float64), as a ``(k, k)`` tensor."""
    x = torch.ones(1, 1, H, W, dtype=torch.float64)
    filters = torch.randn(1, 1, kernel_size, kernel_size, dtype=torch.float64, requires_grad=True)
    context_filter(x, filters, backend="torch").sum().backward()
    return filters.grad[0, 0]


def check_filter_grad_of_sum(fn) -> None:
    """``fn(H, W, kernel_size)`` predicts the ``(k, k)`` gradient that
    :func:`measure_filter_grad_of_sum` measures; they must agree to 1e-9 (counts are integers)."""
    for H, W, k in SUM_GRAD_CASES:
        measured = measure_filter_grad_of_sum(H, W, k)
        what = f"filter_grad_of_sum(H={H}, W={W}, kernel_size={k})"
        predicted = call(fn, H, W, k, name="filter_grad_of_sum")
        if predicted is not None and not isinstance(predicted, torch.Tensor):
            predicted = torch.as_tensor(predicted, dtype=torch.float64)
        if predicted is not None and predicted.shape == measured.shape:
            predicted = predicted.to(torch.float64)
            r = (k - 1) // 2
            offsets = torch.arange(k, dtype=torch.float64) - r
            corner = torch.outer(H - torch.arange(k, dtype=torch.float64), W - torch.arange(k, dtype=torch.float64))
            unclipped = torch.outer(H - offsets.abs(), W - offsets.abs())
            if not torch.allclose(predicted, measured, atol=1e-9):
                if torch.allclose(predicted, torch.full_like(measured, H * W)):
                    why = ("every tap gets H*W, as if the image had no border: a tap at offset "
                           "(i - r, j - r) reads zeros for the output pixels near the border")
                elif torch.allclose(predicted, corner):
                    why = ("it counts the offsets from the filter's corner (i, j) instead of from "
                           "its centre (i - r, j - r)")
                elif torch.allclose(predicted, unclipped):
                    why = ("some counts are negative: when |i - r| >= H the tap reads the image "
                           "for no output pixel at all, so its count is 0, not H - |i - r|")
                else:
                    why = "print your prediction next to the measurement to see which taps differ"
                raise AssertionError(
                    f"{what} predicted\n{predicted}\nbut autograd measured\n{measured}\n({why}).")
        expect_close(predicted, measured, what, rtol=0, atol=1e-9, shape_hint=
                     "The gradient of the filters has the shape of one filter, (k, k).")
    H, W, k = SUM_GRAD_CASES[1]
    passed(f"your predictions match autograd's gradient on {len(SUM_GRAD_CASES)} image and kernel "
           f"sizes (tolerance 1e-9); for H={H}, W={W}, k={k} both are\n"
           f"{measure_filter_grad_of_sum(H, W, k).to(torch.int64)}")


# --------------------------------------------------------------------------------------------
# Exercise 6 (find and fix the bug): the input gradient of the context filter
# --------------------------------------------------------------------------------------------

def planted_context_filter_input_grad(filters, grad_out):
    """The exercise's function as the notebook gives it, with its one mistake (used by the
    check to recognise an unchanged function)."""
    B, C, k, _ = filters.shape
    H, W = grad_out.shape[-2:]
    r = (k - 1) // 2
    gp = F.pad(grad_out, (r, r, r, r))
    grad_x = torch.zeros_like(grad_out)
    for i in range(k):
        for j in range(k):
            grad_x += filters[:, :, i, j, None, None] * gp[:, :, i:i + H, j:j + W]
    return grad_x


#: (B, C, H, W, k): odd and even sizes, a kernel larger than the image, a 1x1 kernel.
INPUT_GRAD_CASES = [(1, 1, 5, 5, 3), (2, 3, 5, 7, 3), (1, 2, 4, 6, 5), (1, 1, 3, 3, 7), (2, 2, 5, 4, 1)]


class _ReaderInputGrad(torch.autograd.Function):
    """``context_filter`` in ``x`` with the reader's input gradient as its backward."""

    @staticmethod
    def forward(ctx, x, filters, fn):
        ctx.save_for_backward(filters)
        ctx.fn = fn
        return context_filter(x, filters, backend="torch")

    @staticmethod
    def backward(ctx, grad_out):
        (filters,) = ctx.saved_tensors
        return ctx.fn(filters, grad_out), None, None


def check_context_filter_input_grad(fn) -> None:
    """``fn(filters, grad_out)`` must return ``dL/dx`` of ``context_filter(x, filters)`` for
    ``dL/dout = grad_out``: compared with autograd in float64 on odd sizes, a kernel larger than
    the image and a 1x1 kernel, then ``torch.autograd.gradcheck`` with it as the backward."""
    gen = torch.Generator().manual_seed(406)
    for B, C, H, W, k in INPUT_GRAD_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
        filters = torch.randn(B, C, k, k, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        context_filter(x, filters, backend="torch").backward(grad_out)
        expected = x.grad
        what = (f"context_filter_input_grad(filters of shape {_shape(filters)}, grad_out of shape "
                f"{_shape(grad_out)})")
        with torch.no_grad():
            result = call(fn, filters.clone(), grad_out.clone(), name="context_filter_input_grad")
        reject_planted_bug(result, planted_context_filter_input_grad(filters, grad_out), expected, what,
                           reference="autograd", clue="Find the one mistake: write down which output "
                           "pixels the input pixel x[u, v] feeds through tap (i, j), and compare with "
                           "the slice the loop reads.")
        expect_close(result, expected, what, rtol=1e-10, atol=1e-12, shape_hint=
                     "dL/dx has the shape of x, which is the shape of grad_out.")
    x = torch.randn(1, 2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64)
    if not torch.autograd.gradcheck(lambda x_: _ReaderInputGrad.apply(x_, filters, fn), (x,), raise_exception=False):
        raise AssertionError("context_filter_input_grad matches autograd but fails "
                             "torch.autograd.gradcheck as the backward of the context filter.")
    passed(f"context_filter_input_grad matches autograd on {len(INPUT_GRAD_CASES)} shapes (float64) and "
           "passes gradcheck")


# --------------------------------------------------------------------------------------------
# Exercise 7 (a question the paper leaves open): what does g_k read? Table 3 decides
# --------------------------------------------------------------------------------------------

#: (in_channels, channels); the last is the paper's head (2048 backbone channels, 512 per branch).
READING_CASES = [(4, 2), (32, 16), (5, 3), (2048, 512)]
TABLE3_KERNEL_SIZES = (1, 3, 5, 7)
TABLE3_DMNET_MILLIONS = 9  # the paper's Table 3: "Ours" has 9M parameters


def _dcm_reading_reduced(c, cp, k):
    """A DCM whose generator reads the reduced features f_k(x): c' -> c' instead of c -> c'."""
    dcm = DCM(c, cp, k)
    dcm.generate = nn.Conv2d(cp, cp, 1)
    return dcm


def check_four_dcm_parameters(fn) -> None:
    """``fn(in_channels, channels, generator_reads)`` must count the parameters of four DCMs with
    ``k = 1, 3, 5, 7`` when ``g_k`` reads ``x`` (``"x"``, the book's reading: the modules of
    ``DMHead``) or the reduced features (``"reduced"``); then the paper's 9M decides."""
    counts = {}
    for c, cp in READING_CASES:
        with torch.device("meta"):
            expected = {"x": sum(_n_params(DCM(c, cp, k)) for k in TABLE3_KERNEL_SIZES),
                        "reduced": sum(_n_params(_dcm_reading_reduced(c, cp, k)) for k in TABLE3_KERNEL_SIZES)}
        for reading, number in expected.items():
            got = call(fn, c, cp, reading, name="four_dcm_parameters")
            what = f"four_dcm_parameters({c}, {cp}, {reading!r})"
            if got is None:
                raise AssertionError(f"{what} returned None: did you forget to `return` the count?")
            if got != number:
                per_dcm = number // len(TABLE3_KERNEL_SIZES)
                hint = (" That is one DCM: the head has four, one per kernel size 1, 3, 5, 7."
                        if got == per_dcm else
                        " The generator's 1x1 convolution has a bias in both readings."
                        if got == number - len(TABLE3_KERNEL_SIZES) * cp else "")
                raise AssertionError(f"{what}: the four DCMs have {number} parameters, your count is "
                                     f"{got}.{hint}")
        counts = expected
    millions = {reading: n / 1e6 for reading, n in counts.items()}
    supported = [reading for reading, m in millions.items() if round(m) == TABLE3_DMNET_MILLIONS]
    assert supported == ["x"], millions  # the book's reading, decided by the paper's own count
    passed(f"four_dcm_parameters matches the modules on {len(READING_CASES)} widths. With c = 2048, "
           f"c' = 512: {millions['x']:.2f}M parameters if g_k reads x, {millions['reduced']:.2f}M if it "
           f"reads f_k(x); the paper's Table 3 says {TABLE3_DMNET_MILLIONS}M, so it read x")


CHECKS = {
    "context_filter_groups": check_context_filter_groups,
    "parameter_counts": check_parameter_counts,
    "filter_generator": check_filter_generator,
    "context_filter_filter_grad": check_context_filter_filter_grad,
    "filter_grad_of_sum": check_filter_grad_of_sum,
    "context_filter_input_grad": check_context_filter_input_grad,
    "four_dcm_parameters": check_four_dcm_parameters,
}
