"""Checks for the exercises of Chapter 1, convolution (``exercises/01_convolution_exercises.md``).

Each check runs the reader's function on small inputs chosen to expose the usual mistakes
(odd sizes, ``H != W``, several channels, padding that is not ``'same'``, stride and
dilation above 1) and compares it with PyTorch, or, for the receptive field, with a
measurement made here:

* :func:`check_depthwise_conv2d_loops` -- a depthwise convolution in plain loops, against
  ``F.conv2d(..., groups=C)``;
* :func:`check_conv2d_weight_grad` -- ``dL/dweight`` of a convolution written by hand,
  against PyTorch's autograd in float64;
* :func:`check_receptive_field_of` -- the receptive field of a stack of layers, against
  :func:`dyncore.receptive_field.receptive_field` *and* against the support of a gradient
  (:func:`measured_receptive_field`), so the formula in the package is not the only judge;
* :func:`check_dilated_conv2d_cuda_kernel` -- a Numba CUDA kernel, launched through
  :func:`dyncore.cuda_bridge.launch` (on a GPU, or under the simulator), against ``F.conv2d``;
* :func:`check_predict_conv2d_flops` -- the reader's prediction of a layer's forward and
  backward FLOPs, against PyTorch's ``FlopCounterMode`` (:func:`measure_conv2d_flops`);
* :func:`check_conv2d_grad_input` -- find and fix the one mistake planted in
  :func:`planted_conv2d_grad_input`, checked against autograd and with ``gradcheck``;
* :func:`check_which_spelling` -- identify, by probing, which of the three spellings of the
  convolution sum (the book's, DDF's Eq. 1, LS-DFN's Eq. 1) a black-box layer computes.
"""

from __future__ import annotations

import operator
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..receptive_field import receptive_field
from . import call, expect_close, passed, reject_planted_bug
from . import shape_str as _shape
from .cuda_checks import (require_cuda_kernel, require_every_element_written, run_reader_kernel,
                          where_kernels_run)

__all__ = [
    "CHECKS",
    "check_depthwise_conv2d_loops",
    "check_conv2d_weight_grad",
    "check_receptive_field_of",
    "check_dilated_conv2d_cuda_kernel",
    "check_predict_conv2d_flops",
    "check_conv2d_grad_input",
    "check_which_spelling",
    "gradient_support",
    "measured_receptive_field",
    "measure_conv2d_flops",
    "planted_conv2d_grad_input",
    "show_kernel_error",
    "SPELLINGS",
]


# --------------------------------------------------------------------------------------------
# Exercise 1: a depthwise convolution in plain loops
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, padding, dilation): the simplest case first, so that a basic slip fails there.
DEPTHWISE_CASES = [
    (1, 1, 5, 5, 3, 1, 1),  # one channel, 3x3, 'same' padding
    (2, 3, 7, 6, 3, 1, 2),  # dilation 2 with less padding than 'same': the output shrinks
    (1, 2, 6, 9, 5, 4, 2),  # 5x5, dilation 2, 'same' padding d*r = 4: most taps fall outside
    (2, 4, 9, 7, 3, 0, 3),  # no padding ('valid'): the output is 3 x 1
    (1, 3, 4, 7, 1, 2, 1),  # a 1x1 kernel with padding 2: a scaled image in a zero frame
]


def check_depthwise_conv2d_loops(fn) -> None:
    """``fn(x, weight, padding, dilation)`` must equal ``F.conv2d(x, weight, padding=padding,
    dilation=dilation, groups=C)`` for numpy ``x: (B, C, H, W)`` and ``weight: (C, 1, k, k)``."""
    rng = np.random.default_rng(101)
    for B, C, H, W, k, p, d in DEPTHWISE_CASES:
        x = rng.standard_normal((B, C, H, W))
        weight = rng.standard_normal((C, 1, k, k))  # not symmetric: a flipped kernel shows
        expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), padding=p, dilation=d,
                            groups=C)
        what = (f"depthwise_conv2d_loops(x of shape {x.shape}, weight of shape {weight.shape}, "
                f"padding={p}, dilation={d})")
        result = call(fn, x.copy(), weight.copy(), p, d, name="depthwise_conv2d_loops")
        expect_close(result, expected, what, shape_hint=
                "The output is (B, C, Ho, Wo) with Ho = H + 2*padding - dilation*(k - 1) "
                "(and the same for Wo).", rtol=1e-10, atol=1e-12)
    passed(f"depthwise_conv2d_loops matches F.conv2d(..., groups=C) on "
           f"{len(DEPTHWISE_CASES)} shapes, paddings and dilations")


# --------------------------------------------------------------------------------------------
# Exercise 2: the weight gradient of a convolution, by hand
# --------------------------------------------------------------------------------------------

#: (B, Cin, Cout, H, W, k, stride, padding, dilation)
WEIGHT_GRAD_CASES = [
    (1, 1, 1, 5, 5, 3, 1, 1, 1),   # the plain 3x3 'same' convolution
    (2, 3, 2, 7, 6, 3, 1, 1, 2),   # dilation 2, several channels, H != W
    (2, 2, 3, 8, 9, 3, 2, 1, 1),   # stride 2: some input pixels are read by no output pixel
    (1, 3, 2, 9, 7, 5, 3, 2, 1),   # 5x5, stride 3
    (2, 2, 2, 10, 8, 3, 2, 2, 2),  # stride and dilation together
    (1, 2, 3, 6, 6, 1, 2, 0, 1),   # a strided 1x1 convolution
]


def _reference_weight_grad(x, grad_out, k, s, p, d):
    w = torch.zeros(grad_out.shape[1], x.shape[1], k, k, dtype=x.dtype, requires_grad=True)
    with torch.enable_grad():
        out = F.conv2d(x, w, stride=s, padding=p, dilation=d)
        (grad_w,) = torch.autograd.grad(out, w, grad_out)
    return grad_w


def check_conv2d_weight_grad(fn) -> None:
    """``fn(x, grad_out, kernel_size, stride, padding, dilation)`` must return ``dL/dweight``
    of ``out = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)`` when
    ``dL/dout = grad_out``. The reader's function runs under ``torch.no_grad()``."""
    gen = torch.Generator().manual_seed(102)
    for B, Cin, Cout, H, W, k, s, p, d in WEIGHT_GRAD_CASES:
        Ho = (H + 2 * p - d * (k - 1) - 1) // s + 1
        Wo = (W + 2 * p - d * (k - 1) - 1) // s + 1
        x = torch.randn(B, Cin, H, W, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, Cout, Ho, Wo, generator=gen, dtype=torch.float64)
        expected = _reference_weight_grad(x, grad_out, k, s, p, d)
        what = (f"conv2d_weight_grad(x of shape {_shape(x)}, grad_out of shape {_shape(grad_out)}, "
                f"kernel_size={k}, stride={s}, padding={p}, dilation={d})")
        try:
            with torch.no_grad():
                result = call(fn, x.clone(), grad_out.clone(), k, s, p, d, name="conv2d_weight_grad")
        except RuntimeError as exc:
            if "grad" not in str(exc):
                raise
            raise AssertionError(
                f"{what} raised RuntimeError: {exc}\nThe check calls your function under "
                "torch.no_grad(), so autograd is off: compute the gradient by hand (loops, or "
                "F.unfold and one product), as the exercise asks."
            ) from None
        expect_close(result, expected, what, shape_hint=
                "dL/dweight has the shape of the weight, (Cout, Cin, k, k).", rtol=1e-9, atol=1e-9)
    passed(f"conv2d_weight_grad matches autograd on {len(WEIGHT_GRAD_CASES)} shapes, "
           "strides, paddings and dilations (float64)")


# --------------------------------------------------------------------------------------------
# Exercise 3: the receptive field of a stack of convolutions
# --------------------------------------------------------------------------------------------

#: Stacks of (kernel_size, stride, dilation).
RF_CASES = [
    [(3, 1, 1)],
    [(3, 1, 1), (3, 1, 1), (3, 1, 1)],
    [(3, 2, 1), (3, 2, 1), (3, 2, 1)],  # strides compound
    [(3, 1, 1), (3, 1, 2), (3, 1, 4)],  # dilations add up (the context module of Yu & Koltun)
    [(7, 2, 1), (3, 2, 1), (3, 1, 2), (1, 1, 1)],  # a ResNet-like stem, then a dilated layer
    [(5, 3, 1), (3, 1, 3), (3, 2, 1)],  # a stride on the last layer changes nothing
    [],  # no layer at all: one pixel sees itself
]


def _output_size(n: int, layers) -> int:
    """Side of the output of the stack (no padding) for an ``n x n`` input; 0 when empty."""
    for k, s, d in layers:
        if n < d * (k - 1) + 1:
            return 0
        n = (n - d * (k - 1) - 1) // s + 1
    return n


def gradient_support(layers) -> torch.Tensor:
    """``|d out[0, 0] / d x|`` for a stack of all-ones convolutions without padding.

    The input is the smallest power-of-two square for which the stack's output is not empty.
    All-ones weights make every path's contribution positive, so nothing cancels: the map is
    non-zero exactly on the input pixels that output pixel ``(0, 0)`` can see.
    """
    n = 2
    while _output_size(n, layers) < 1:
        n *= 2
    with torch.enable_grad():
        x = torch.zeros(1, 1, n, n, dtype=torch.float64, requires_grad=True)
        h = x
        for k, s, d in layers:
            h = F.conv2d(h, torch.ones(1, 1, k, k, dtype=torch.float64), stride=s, dilation=d)
        (grad,) = torch.autograd.grad(h[0, 0, 0, 0], x)
    return grad[0, 0].abs()


def measured_receptive_field(layers) -> int:
    """Side of the receptive field, measured: the extent of :func:`gradient_support`'s rows."""
    rows = torch.nonzero(gradient_support(layers).sum(1)).flatten()
    return int(rows.max() - rows.min() + 1)


def _known_mistakes(layers) -> dict[str, int]:
    """What some plausible wrong formulas give, to name the mistake in the message."""
    no_stride = 1 + sum((k - 1) * d for k, s, d in layers)
    no_dilation = receptive_field([(k, s, 1) for k, s, d in layers])
    own_stride, jump = 1, 1
    for k, s, d in layers:  # multiplies by a layer's own stride before using it
        jump *= s
        own_stride += (k - 1) * d * jump
    return {
        "ignores the strides: after a stride-s layer, one step of the next layer's grid is "
        "s input pixels": no_stride,
        "ignores the dilations: a k x k kernel with dilation d spans (k - 1)*d + 1 pixels of "
        "its input": no_dilation,
        "counts each layer's own stride: a layer's stride spaces its outputs, not its own taps; "
        "only the strides of the layers before it matter": own_stride,
    }


def check_receptive_field_of(fn) -> None:
    """``fn(layers)`` must return the side of the receptive field of ``layers``, a list of
    ``(kernel_size, stride, dilation)``, as an int."""
    for layers in RF_CASES:
        expected = receptive_field(layers)
        measured = measured_receptive_field(layers)
        if measured != expected:  # the check's own two references disagree: not the reader's fault
            raise RuntimeError(
                f"internal error in the check: for {layers} the formula gives {expected} but the "
                f"gradient support is {measured} pixels wide; please report this"
            )
        what = f"receptive_field_of({layers})"
        result = call(fn, [tuple(layer) for layer in layers], name="receptive_field_of")
        try:
            value = operator.index(result)
        except TypeError:
            raise AssertionError(
                f"{what} returned {result!r} ({type(result).__name__}); return an int "
                "(use // rather than / if you divide)"
            ) from None
        if value != expected:
            hints = [why for why, wrong in _known_mistakes(layers).items()
                     if wrong == value and wrong != expected]
            raise AssertionError(
                f"{what} returned {value}, but the receptive field is {expected} pixels wide: "
                f"the gradient of output pixel (0, 0) reaches input pixels 0 to {expected - 1} "
                "(measured with all-ones convolutions, see ch01.gradient_support), and "
                "dyncore.receptive_field.receptive_field agrees."
                + (f"\nYour answer looks like a formula that {hints[0]}." if hints else "")
            )
    passed(f"receptive_field_of agrees with the formula and with the measured gradient "
           f"support on {len(RF_CASES)} stacks")


# --------------------------------------------------------------------------------------------
# Exercise 4: a dilated convolution as a Numba CUDA kernel
# --------------------------------------------------------------------------------------------

#: (B, Cin, Cout, H, W, k, dilation). Under the simulator each thread costs a fraction of a
#: millisecond: a few hundred threads in all (no size is a multiple of the block size, so a
#: kernel without its ``n >= size`` guard is caught).
CUDA_CASES = [
    (1, 1, 1, 5, 6, 3, 1),   # 30 threads: the plain 3x3 'same' convolution
    (1, 2, 3, 5, 7, 3, 2),   # 105 threads: dilation 2, Cin != Cout, H != W
    (2, 2, 2, 6, 5, 3, 3),   # 120 threads: two images, dilation 3
    (1, 3, 2, 7, 6, 5, 2),   # 84 threads: 5x5 with dilation 2 (padding 4)
]
def check_dilated_conv2d_cuda_kernel(kernel) -> None:
    """``kernel(x, weight, out, dilation)``, a ``@cuda.jit`` kernel with one thread per element
    of ``out: (B, Cout, H, W)``, must write ``F.conv2d(x, weight, padding=dilation*r,
    dilation=dilation)`` into ``out`` (``weight: (Cout, Cin, k, k)``, ``r = (k - 1) // 2``)."""
    name = require_cuda_kernel(kernel, "dilated_conv2d_cuda_kernel")
    gen = torch.Generator().manual_seed(104)
    for B, Cin, Cout, H, W, k, d in CUDA_CASES:
        x = torch.randn(B, Cin, H, W, generator=gen, dtype=torch.float64)
        weight = torch.randn(Cout, Cin, k, k, generator=gen, dtype=torch.float64)
        r = (k - 1) // 2
        expected = F.conv2d(x, weight, padding=d * r, dilation=d)
        what = (f"{name}(x of shape {_shape(x)}, weight of shape {_shape(weight)}, out of shape "
                f"{tuple(expected.shape)}, dilation={d})")
        out = run_reader_kernel(kernel, name, (x, weight), tuple(expected.shape), (d,), what,
                                out_name="out", size_label="B*Cout*H*W")
        require_every_element_written(out, what, "out", ("b", "o", "y", "x"), ("Cout", "H", "W"))
        expect_close(out, expected, what, rtol=1e-10, atol=1e-12)
    passed(f"{name} matches F.conv2d with padding d*r and dilation d on "
           f"{len(CUDA_CASES)} shapes ({where_kernels_run()})")


# --------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the FLOPs of a convolution layer
# --------------------------------------------------------------------------------------------

#: (x_shape, weight_shape, stride, padding, dilation): odd sizes, H != W, strides that do not
#: divide the padded size, and a dilation, so that every term of the output size counts.
FLOP_CASES = [
    ((1, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1),
    ((2, 3, 9, 7), (4, 3, 3, 3), 2, 1, 2),
    ((1, 5, 11, 10), (2, 5, 5, 5), 3, 2, 1),
    ((3, 2, 12, 9), (6, 2, 1, 1), 2, 0, 1),
    ((1, 4, 16, 13), (3, 4, 3, 3), 1, 0, 3),
]
#: What the check accepts: the relative difference between prediction and measurement.
FLOP_RTOL = 1e-3


def measure_conv2d_flops(x_shape, weight_shape, stride, padding, dilation) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of ``F.conv2d`` with these shapes, counted by PyTorch's
    ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add counts 2); the backward is
    ``out.backward(g)`` with both ``x`` and ``weight`` requiring their gradient."""
    x = torch.randn(*x_shape, requires_grad=True)
    weight = torch.randn(*weight_shape, requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        out = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)
    with FlopCounterMode(display=False) as backward:
        out.backward(torch.ones_like(out))
    return forward.get_total_flops(), backward.get_total_flops()


def _flop_mistakes(x_shape, weight_shape, s, p, d) -> dict[str, tuple[int, int]]:
    B, Cin, H, W = x_shape
    Cout, _, k, _ = weight_shape
    Ho, Wo = ((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (H, W))
    macs = B * Cout * Ho * Wo * Cin * k * k
    same = B * Cout * H * W * Cin * k * k
    return {
        "counts multiply-adds: FlopCounterMode counts a multiply and an add, 2 FLOPs each":
            (macs, 2 * macs),
        "gives the backward the forward's cost: it computes two gradients, dL/dx and dL/dweight, "
        "each as costly as the forward": (2 * macs, 2 * macs),
        "uses the input's size for the output: Ho = (H + 2p - d(k - 1) - 1) // s + 1":
            (2 * same, 4 * same),
    }


def check_predict_conv2d_flops(fn) -> None:
    """``fn(x_shape, weight_shape, stride, padding, dilation)`` must return ``(forward, backward)``,
    the FLOPs of ``F.conv2d`` and of its backward (``dL/dx`` and ``dL/dweight``), as counted by
    :func:`measure_conv2d_flops`, to within ``FLOP_RTOL``."""
    for x_shape, weight_shape, s, p, d in FLOP_CASES:
        what = (f"predict_conv2d_flops(x_shape={x_shape}, weight_shape={weight_shape}, stride={s}, "
                f"padding={p}, dilation={d})")
        predicted = call(fn, x_shape, weight_shape, s, p, d, name="predict_conv2d_flops")
        try:
            fwd, bwd = (float(v) for v in predicted)
        except (TypeError, ValueError):
            raise AssertionError(f"{what} returned {predicted!r}: return two numbers, "
                                 "(forward FLOPs, backward FLOPs)") from None
        measured = measure_conv2d_flops(x_shape, weight_shape, s, p, d)
        for label, guess, count in [("forward", fwd, measured[0]), ("backward", bwd, measured[1])]:
            if abs(guess - count) > FLOP_RTOL * count:
                why = [m for m, wrong in _flop_mistakes(x_shape, weight_shape, s, p, d).items()
                       if (fwd, bwd) == tuple(map(float, wrong))]
                raise AssertionError(
                    f"{what}: you predicted {guess:.0f} {label} FLOPs, FlopCounterMode counts "
                    f"{count} (tolerance {FLOP_RTOL:.1%})." + (f"\nYour prediction {why[0]}." if why else ""))
    passed(f"your FLOP predictions match PyTorch's FlopCounterMode on {len(FLOP_CASES)} layers: "
           "forward 2*B*Cout*Ho*Wo*Cin*k*k, backward twice that")


# --------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: the input gradient, scattered tap by tap
# --------------------------------------------------------------------------------------------

def planted_conv2d_grad_input(grad_out, weight, input_size, stride, padding, dilation):
    """The exercise's broken function, as the notebook gives it (one line is wrong)."""
    B, Cout, Ho, Wo = grad_out.shape
    _, Cin, k, _ = weight.shape
    H, W = input_size
    s, p, d = stride, padding, dilation
    grad_xp = grad_out.new_zeros(B, Cin, H + 2 * p, W + 2 * p)  # the gradient of the padded input
    for i in range(k):
        for j in range(k):
            w_ij = weight[:, :, k - 1 - i, k - 1 - j]  # the backward pass flips the kernel
            contrib = torch.einsum("oc,bohw->bchw", w_ij, grad_out)
            # tap (i, j) of output pixel (yo, xo) read padded pixel (yo*s + i*d, xo*s + j*d)
            grad_xp[:, :, i * d: i * d + s * (Ho - 1) + 1: s,
                    j * d: j * d + s * (Wo - 1) + 1: s] += contrib
    return grad_xp[:, :, p: p + H, p: p + W]


#: (B, Cin, Cout, H, W, k, stride, padding, dilation)
GRAD_INPUT_CASES = [
    (1, 1, 1, 5, 5, 3, 1, 1, 1),
    (2, 3, 2, 7, 6, 3, 2, 1, 1),   # stride 2: the last row and column are read by no output
    (1, 2, 3, 9, 8, 3, 1, 2, 2),   # dilation 2
    (2, 2, 2, 11, 9, 5, 3, 2, 1),  # 5x5, stride 3
    (1, 3, 2, 10, 7, 3, 2, 0, 2),  # stride and dilation, no padding
    (1, 2, 2, 6, 5, 1, 2, 1, 1),   # a strided 1x1 convolution with padding
]



class _GradInputFunction(torch.autograd.Function):
    """``F.conv2d`` whose backward for ``x`` is the reader's function (for ``gradcheck``)."""

    @staticmethod
    def forward(ctx, x, weight, fn, stride, padding, dilation):
        ctx.save_for_backward(weight)
        ctx.args = (fn, x.shape[-2:], stride, padding, dilation)
        return F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        fn, size, s, p, d = ctx.args
        with torch.no_grad():
            grad_x = fn(grad_out, weight, tuple(size), s, p, d)
        return grad_x, None, None, None, None, None


def check_conv2d_grad_input(fn) -> None:
    """``fn(grad_out, weight, input_size, stride, padding, dilation)`` must return ``dL/dx`` of
    ``out = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)`` for
    ``dL/dout = grad_out``: against autograd on every case, then with ``gradcheck``."""
    gen = torch.Generator().manual_seed(106)
    for B, Cin, Cout, H, W, k, s, p, d in GRAD_INPUT_CASES:
        x = torch.randn(B, Cin, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(Cout, Cin, k, k, generator=gen, dtype=torch.float64)  # not symmetric
        out = F.conv2d(x, weight, stride=s, padding=p, dilation=d)
        grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        (expected,) = torch.autograd.grad(out, x, grad_out)
        what = (f"conv2d_grad_input(grad_out of shape {_shape(grad_out)}, weight of shape "
                f"{_shape(weight)}, input_size={(H, W)}, stride={s}, padding={p}, dilation={d})")
        with torch.no_grad():
            got = call(fn, grad_out.clone(), weight.clone(), (H, W), s, p, d, name="conv2d_grad_input")
            planted = planted_conv2d_grad_input(grad_out, weight, (H, W), s, p, d)
        reject_planted_bug(got, planted, expected, what, reference="autograd")
        expect_close(got, expected, what, shape_hint="dL/dx has the shape of x, (B, Cin, H, W).",
                     rtol=1e-9, atol=1e-9)
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64)
    if not torch.autograd.gradcheck(lambda x: _GradInputFunction.apply(x, weight, fn, 2, 1, 2), (x,),
                                    fast_mode=True, raise_exception=False):
        raise AssertionError("conv2d_grad_input disagrees with finite differences (gradcheck) at "
                             "stride 2, padding 1, dilation 2")
    passed(f"conv2d_grad_input matches autograd on {len(GRAD_INPUT_CASES)} shapes, strides, "
           "paddings and dilations, and passes gradcheck: scattering needs no flip")


# --------------------------------------------------------------------------------------------
# Exercise 7: which spelling of the sum? Probe a black box
# --------------------------------------------------------------------------------------------

def _centred_correlation(x, w):
    return F.conv2d(x, w, padding=(w.shape[-1] - 1) // 2)


def _centred_convolution(x, w):
    return F.conv2d(x, w.flip(-2, -1), padding=(w.shape[-1] - 1) // 2)


def _top_left_correlation(x, w):
    r = (w.shape[-1] - 1) // 2
    return F.conv2d(F.pad(x, (0, 2 * r, 0, 2 * r)), w)


#: The three readings of Chapter 1's "Two papers, two spellings": name -> the layer.
SPELLINGS = {
    "cross-correlation": _centred_correlation,  # the book and F.conv2d: w[i, j] reads x[p + (i-r, j-r)]
    "convolution": _centred_convolution,        # DDF's Eq. 1 as written: W[p_i - p_j], flipped
    "top-left": _top_left_correlation,          # LS-DFN's Eq. 1 as printed: x[y + j, x + i]
}


def _black_box(layer):
    def op(x, w):
        """A 'same'-size layer: ``x (1, 1, H, W)`` and ``w (1, 1, k, k)`` -> ``(1, 1, H, W)``."""
        if x.dim() != 4 or w.dim() != 4 or x.shape[:2] != (1, 1) or w.shape[:2] != (1, 1):
            raise ValueError(f"op takes x of shape (1, 1, H, W) and w of shape (1, 1, k, k); got "
                             f"{tuple(x.shape)} and {tuple(w.shape)}")
        return layer(x.to(torch.float64), w.to(torch.float64))
    return op


def check_which_spelling(fn) -> None:
    """``fn(op, kernel_size)`` must return which of :data:`SPELLINGS` the black box ``op`` is,
    for each of the three, for ``k = 3`` and ``k = 5``, in an order the reader cannot guess."""
    cases = [(name, k) for name in SPELLINGS for k in (3, 5)]
    random.Random(107).shuffle(cases)
    for name, k in cases:
        answer = call(fn, _black_box(SPELLINGS[name]), k, name="which_spelling")
        if answer not in SPELLINGS:
            raise AssertionError(f"which_spelling(op, kernel_size={k}) returned {answer!r}; return "
                                 f"one of {sorted(SPELLINGS)}")
        if answer != name:
            raise AssertionError(
                f"which_spelling(op, kernel_size={k}) returned {answer!r}, but op is the "
                f"{name!r} layer. A probe that tells the three apart needs an asymmetric kernel "
                "(a flip must change it) and an image whose bright spot you can follow (a shift "
                "must move it).")
    passed("which_spelling tells the book's cross-correlation, DDF's flipped Eq. 1 and LS-DFN's "
           "top-left Eq. 1 apart, for k = 3 and k = 5")


def show_kernel_error(kernel, dilation: int = 2) -> torch.Tensor:
    """Launch the reader's Exercise 4 kernel as the check does on one small case (``x (1, 2, 5, 7)``,
    a 3 x 3 kernel, ``Cout = 3``) and print, per output pixel, the largest error against
    ``F.conv2d`` over the batch and the channels (NaN where no thread wrote). Returns that map."""
    name = require_cuda_kernel(kernel, "dilated_conv2d_cuda_kernel")
    gen = torch.Generator().manual_seed(105)
    x = torch.randn(1, 2, 5, 7, generator=gen, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    expected = F.conv2d(x, weight, padding=dilation, dilation=dilation)
    out = run_reader_kernel(kernel, name, (x, weight), tuple(expected.shape), (dilation,),
                            f"{name}(x (1, 2, 5, 7), weight (3, 2, 3, 3), dilation={dilation})")
    error = (out - expected).abs().amax(dim=(0, 1))
    print(f"largest error per output pixel (rows y, columns x), dilation {dilation}:")
    print(error.numpy().round(3))
    return error


CHECKS = {
    "depthwise_conv2d_loops": check_depthwise_conv2d_loops,
    "conv2d_weight_grad": check_conv2d_weight_grad,
    "receptive_field_of": check_receptive_field_of,
    "dilated_conv2d_cuda_kernel": check_dilated_conv2d_cuda_kernel,
    "predict_conv2d_flops": check_predict_conv2d_flops,
    "conv2d_grad_input": check_conv2d_grad_input,
    "which_spelling": check_which_spelling,
}
