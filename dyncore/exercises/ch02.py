"""Checks for the exercises of Chapter 2, dynamic filters (``exercises/02_dynamic_filters.md``).

Each check runs the reader's function on small inputs chosen to expose the usual mistakes
(odd sizes, ``H != W``, several channels, dilation above 1, kernels wider than the image)
and compares it with a reference computed here, independently of the reader's code:

* :func:`check_dynamic_filter_grad_filters` -- ``dL/dfilters`` of Chapter 2, eq-dfn written by hand,
  against PyTorch's autograd in float64;
* :func:`check_dynamic_filter_unfold` -- the forward pass with ``F.unfold``, against
  :func:`reference_dynamic_filter` (zero padding and shifted slices);
* :func:`check_translation_filter` -- a filter that moves the image by ``(dy, dx)``, applied at
  every pixel with ``dyncore.dfn.dynamic_filter``, against the moved image; and the
  ``ValueError`` for a translation that no single tap can make;
* :func:`check_grad_input_cuda_kernel` -- ``dL/dx`` as a Numba CUDA kernel with one thread per
  element of ``grad_x``, launched through :func:`dyncore.cuda_bridge.launch` (on a GPU, or
  under the simulator), against autograd.
"""

from __future__ import annotations


import torch

from ..dfn.spec import reference
from . import call, expect_close, passed
from . import shape_str as _shape
from .cuda_checks import (require_cuda_kernel, require_every_element_written, run_reader_kernel,
                          where_kernels_run)

__all__ = [
    "CHECKS",
    "check_dynamic_filter_grad_filters",
    "check_dynamic_filter_unfold",
    "check_translation_filter",
    "check_grad_input_cuda_kernel",
    "reference_dynamic_filter",
    "moved",
]


def reference_dynamic_filter(x: torch.Tensor, filters: torch.Tensor, kernel_size: int, dilation: int):
    """Chapter 2, eq-dfn by padding once and summing ``k*k`` shifted slices (autograd works
    through it): the reference of ``dynamic_filter``'s spec (:mod:`dyncore.dfn.spec`)."""
    return reference(x, filters, kernel_size=kernel_size, dilation=dilation)


def moved(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` moved by ``(dy, dx)`` pixels: ``out[..., y, x] = x[..., y - dy, x - dx]``, zero where that is outside."""
    H, W = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) < H and abs(dx) < W:
        out[..., max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx)] = \
            x[..., max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
    return out


def _no_autograd(what: str, exc: RuntimeError) -> AssertionError:
    return AssertionError(
        f"{what} raised RuntimeError: {exc}\nThe check calls your function under torch.no_grad(), "
        "so autograd is off: compute the gradient by hand, as the exercise asks."
    )


# --------------------------------------------------------------------------------------------
# Exercise 1: the filter gradient, by hand
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, dilation): the simplest case first, so that a basic slip fails there.
GRAD_FILTER_CASES = [
    (1, 1, 5, 5, 3, 1),   # one channel, 3x3
    (2, 3, 6, 7, 3, 1),   # several channels: the filter is shared, so their terms add up
    (1, 2, 7, 6, 3, 2),   # dilation 2
    (2, 2, 5, 9, 5, 1),   # 5x5, H != W
    (1, 3, 4, 5, 5, 2),   # the dilated 5x5 (9 x 9) is wider than the image: most taps read zeros
    (2, 2, 6, 4, 1, 3),   # a 1x1 filter: the dilation changes nothing
]


def _reference_grad_filters(x, grad_out, k, d):
    B, _, H, W = x.shape
    filters = torch.zeros(B, k * k, H, W, dtype=x.dtype, requires_grad=True)
    with torch.enable_grad():
        out = reference_dynamic_filter(x, filters, k, d)
        (grad,) = torch.autograd.grad(out, filters, grad_out)
    return grad


def check_dynamic_filter_grad_filters(fn) -> None:
    """``fn(x, grad_out, kernel_size, dilation)`` must return ``dL/dfilters`` of
    ``out = dynamic_filter(x, filters, kernel_size=kernel_size, dilation=dilation)`` when
    ``dL/dout = grad_out``: a tensor ``(B, k*k, H, W)``. It runs under ``torch.no_grad()``."""
    gen = torch.Generator().manual_seed(201)
    for B, C, H, W, k, d in GRAD_FILTER_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        expected = _reference_grad_filters(x, grad_out, k, d)
        what = (f"dynamic_filter_grad_filters(x of shape {_shape(x)}, grad_out of shape "
                f"{_shape(grad_out)}, kernel_size={k}, dilation={d})")
        try:
            with torch.no_grad():
                result = call(fn, x.clone(), grad_out.clone(), k, d, name="dynamic_filter_grad_filters")
        except RuntimeError as exc:
            if "grad" not in str(exc):
                raise
            raise _no_autograd(what, exc) from None
        expect_close(result, expected, what, shape_hint=
                "dL/dfilters has the shape of the filters, (B, k*k, H, W): one value per tap and "
                "pixel, summed over the channels (the filter is shared by all of them).",
                rtol=1e-9, atol=1e-9)
    passed(f"dynamic_filter_grad_filters matches autograd on {len(GRAD_FILTER_CASES)} shapes, "
           "kernel sizes and dilations (float64)")


# --------------------------------------------------------------------------------------------
# Exercise 2: the unfold formulation, from scratch
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, dilation, dtype)
UNFOLD_CASES = [
    (1, 1, 5, 5, 3, 1, torch.float64),
    (2, 3, 6, 7, 3, 1, torch.float64),   # several channels share one filter per pixel
    (1, 2, 7, 6, 3, 2, torch.float64),   # dilation 2: padding d*r, not r
    (2, 2, 5, 9, 5, 1, torch.float64),
    (1, 3, 4, 5, 5, 2, torch.float64),   # wider than the image
    (2, 3, 6, 5, 3, 3, torch.float32),   # float32 in, float32 out
]


def check_dynamic_filter_unfold(fn) -> None:
    """``fn(x, filters, kernel_size, dilation)`` must equal Chapter 2, eq-dfn (``dynamic_filter``) for
    ``x: (B, C, H, W)`` and ``filters: (B, k*k, H, W)``, and keep the dtype."""
    gen = torch.Generator().manual_seed(202)
    for B, C, H, W, k, d, dtype in UNFOLD_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64).to(dtype)
        filters = torch.randn(B, k * k, H, W, generator=gen, dtype=torch.float64).to(dtype)
        expected = reference_dynamic_filter(x, filters, k, d)
        what = (f"dynamic_filter_unfold(x of shape {_shape(x)}, filters of shape {_shape(filters)}, "
                f"kernel_size={k}, dilation={d})")
        result = call(fn, x.clone(), filters.clone(), k, d, name="dynamic_filter_unfold")
        if isinstance(result, torch.Tensor) and result.dtype != dtype:
            raise AssertionError(f"{what}: the input is {dtype} but the result is {result.dtype}; "
                                 "the output must keep the input's dtype")
        tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
        expect_close(result, expected, what, shape_hint=
                "The output has the shape of x, (B, C, H, W).", **tol)
    passed(f"dynamic_filter_unfold matches eq-dfn on {len(UNFOLD_CASES)} shapes, kernel sizes, "
           "dilations and dtypes")


# --------------------------------------------------------------------------------------------
# Exercise 3: a filter that implements a translation
# --------------------------------------------------------------------------------------------

#: (dy, dx, kernel_size, dilation): translations one tap can make.
TRANSLATION_CASES = [
    (0, 1, 3, 1),    # one pixel to the right: a filter with rows and columns swapped fails here
    (1, 0, 3, 1),    # one pixel down
    (-1, 1, 3, 1),   # up and to the right
    (2, -1, 5, 1),
    (0, 0, 5, 1),    # no motion: the centre tap
    (-2, 2, 3, 2),   # with dilation 2 the taps are 2 pixels apart: one tap up, one across
    (4, -2, 5, 2),
    (3, -3, 3, 3),
]
#: Translations no single tap can make: not a multiple of the dilation, or too far.
UNREACHABLE_CASES = [(0, 2, 3, 1), (3, 0, 5, 1), (1, 0, 3, 2), (0, -3, 5, 2)]


def check_translation_filter(fn) -> None:
    """``fn(dy, dx, kernel_size, dilation)`` must return one filter, a tensor of ``k*k`` taps,
    that moves an image by ``(dy, dx)`` when applied at every pixel:
    ``out[y, x] = image[y - dy, x - dx]``; and raise ``ValueError`` when no tap can do it."""
    from ..dfn import dynamic_filter

    gen = torch.Generator().manual_seed(203)
    image = torch.randn(1, 2, 9, 11, generator=gen, dtype=torch.float64)
    for dy, dx, k, d in TRANSLATION_CASES:
        what = f"translation_filter({dy}, {dx}, kernel_size={k}, dilation={d})"
        try:
            result = call(fn, dy, dx, k, d, name="translation_filter")
        except ValueError as exc:
            r = (k - 1) // 2
            raise AssertionError(
                f"{what} raised ValueError ({exc}), but one tap can do it: tap (i, j) = "
                f"({r - dy // d}, {r - dx // d}) reads at offset ({-dy}, {-dx}), since taps sit "
                f"{d} pixels apart"
            ) from None
        if result is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the filter?")
        result = torch.as_tensor(result, dtype=torch.float64)
        if result.numel() != k * k:
            raise AssertionError(f"{what}: a filter has k*k = {k * k} taps; got a tensor of shape "
                                 f"{tuple(result.shape)}")
        filters = result.reshape(1, k * k, 1, 1).expand(1, k * k, 9, 11)
        out = dynamic_filter(image, filters, kernel_size=k, dilation=d, backend="torch")
        expected = moved(image, dy, dx)
        if torch.allclose(out, expected):
            continue
        hints = []
        if torch.allclose(out, moved(image, -dy, -dx)):
            hints.append(f"Your filter moves the image by ({-dy}, {-dx}), the opposite way: to make "
                         f"out[y, x] = image[y - dy, x - dx], keep the tap that reads at offset (-dy, -dx).")
        elif torch.allclose(out, moved(image, dx, dy)) and dx != dy:
            hints.append(f"Your filter moves the image by ({dx}, {dy}): rows and columns are swapped. "
                         "Tap t = i*k + j has its row offset from i and its column offset from j.")
        raise AssertionError(f"{what}: applied at every pixel, the filter does not move the image by "
                             f"({dy}, {dx}).\nThe filter you returned, as a {k} x {k} grid:\n"
                             f"{result.reshape(k, k)}" + ("\n" + hints[0] if hints else ""))
    for dy, dx, k, d in UNREACHABLE_CASES:
        what = f"translation_filter({dy}, {dx}, kernel_size={k}, dilation={d})"
        try:
            call(fn, dy, dx, k, d, name="translation_filter")
        except ValueError:
            continue
        raise AssertionError(
            f"{what} returned a filter, but no single tap of a {k} x {k} filter with dilation {d} "
            f"reads at offset ({-dy}, {-dx}): the taps sit at multiples of {d} up to "
            f"{(k - 1) // 2 * d} pixels away. Raise a ValueError that says so."
        )
    passed(f"translation_filter moves the image right in {len(TRANSLATION_CASES)} cases and "
           f"refuses the {len(UNREACHABLE_CASES)} translations no tap can make")


# --------------------------------------------------------------------------------------------
# Exercise 4: the input gradient as a CUDA kernel
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, dilation). Under the simulator each thread costs a fraction of a millisecond:
#: a few hundred threads in all; no size is a multiple of the block size.
CUDA_CASES = [
    (1, 1, 5, 6, 3, 1),   # 30 threads: the plain 3x3
    (1, 2, 5, 7, 3, 2),   # 70 threads: dilation 2, H != W
    (2, 2, 4, 5, 5, 1),   # 80 threads: two images, 5x5 wider than the image
    (1, 3, 6, 5, 3, 3),   # 90 threads
]
def check_grad_input_cuda_kernel(kernel) -> None:
    """``kernel(grad_out, filters, grad_x, kernel_size, dilation)``, a ``@cuda.jit`` kernel with
    one thread per element of ``grad_x: (B, C, H, W)``, must write ``dL/dx`` of Chapter 2, eq-dfn into
    ``grad_x`` (eq-dfn-grad-x), given ``grad_out = dL/dout`` and ``filters: (B, k*k, H, W)``."""
    name = require_cuda_kernel(kernel, "grad_input_cuda_kernel")
    gen = torch.Generator().manual_seed(204)
    for B, C, H, W, k, d in CUDA_CASES:
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
        filters = torch.randn(B, k * k, H, W, generator=gen, dtype=torch.float64)
        grad_out = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        with torch.enable_grad():
            (expected,) = torch.autograd.grad(reference_dynamic_filter(x, filters, k, d), x, grad_out)
        what = (f"{name}(grad_out of shape {_shape(grad_out)}, filters of shape {_shape(filters)}, "
                f"grad_x of shape {_shape(grad_out)}, kernel_size={k}, dilation={d})")
        grad_x = run_reader_kernel(
            kernel, name, (grad_out, filters), tuple(grad_out.shape), (k, d), what,
            out_name="grad_x", size_label="B*C*H*W",
            bounds_hint="skip the taps whose output pixel (y - oy, x - ox) falls outside the "
                        "image before reading grad_out and filters")
        require_every_element_written(grad_x, what, "grad_x", ("b", "c", "y", "x"), ("C", "H", "W"))
        try:
            expect_close(grad_x, expected, what, rtol=1e-10, atol=1e-12)
        except AssertionError as exc:
            # a common slip: reading grad_out and filters at (y + oy, x + ox), the forward's pixel
            flipped = torch.zeros_like(expected)
            offsets = [((t // k - (k - 1) // 2) * d, (t % k - (k - 1) // 2) * d) for t in range(k * k)]
            for t, (oy, ox) in enumerate(offsets):  # the right answer moves by (+oy, +ox)
                flipped += moved(grad_out * filters[:, t:t + 1], -oy, -ox)
            hint = ""
            if torch.allclose(grad_x, flipped):
                hint = ("\nYour kernel reads the output pixel at (y + oy, x + ox). Input pixel (y, x) "
                        "was read by tap t of the output pixel (y - oy, x - ox): gather from there.")
            raise AssertionError(f"{exc}{hint}") from None
    passed(f"{name} matches autograd's dL/dx on {len(CUDA_CASES)} shapes, kernel sizes and "
           f"dilations ({where_kernels_run()})")


CHECKS = {
    "dynamic_filter_grad_filters": check_dynamic_filter_grad_filters,
    "dynamic_filter_unfold": check_dynamic_filter_unfold,
    "translation_filter": check_translation_filter,
    "grad_input_cuda_kernel": check_grad_input_cuda_kernel,
}
