"""Checks for the exercises of Chapter 1, convolution (``exercises/01_convolution.md``).

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
  :func:`dyncore.cuda_bridge.launch` (on a GPU, or under the simulator), against ``F.conv2d``.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

from ..receptive_field import receptive_field
from . import call, expect_close, passed
from . import shape_str as _shape
from .cuda_checks import (require_cuda_kernel, require_every_element_written, run_reader_kernel,
                          where_kernels_run)

__all__ = [
    "CHECKS",
    "check_depthwise_conv2d_loops",
    "check_conv2d_weight_grad",
    "check_receptive_field_of",
    "check_dilated_conv2d_cuda_kernel",
    "gradient_support",
    "measured_receptive_field",
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


CHECKS = {
    "depthwise_conv2d_loops": check_depthwise_conv2d_loops,
    "conv2d_weight_grad": check_conv2d_weight_grad,
    "receptive_field_of": check_receptive_field_of,
    "dilated_conv2d_cuda_kernel": check_dilated_conv2d_cuda_kernel,
}
