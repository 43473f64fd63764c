"""Checks for the exercises of Chapter 2, dynamic filters (``exercises/02_dynamic_filters_exercises.md``).

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
  under the simulator), against autograd;
* :func:`check_predict_best_shared_loss` -- the reader's prediction of the loss the best
  shared kernel leaves on the chapter's toy, against a least-squares fit;
* :func:`check_dfn_grad_input` -- find and fix the one mistake planted in
  :func:`planted_dfn_grad_input`, against autograd and with ``gradcheck``;
* :func:`check_fit_free_filters` -- an ablation of the softmax that DFN puts on its filters:
  free per-pixel filters trained with and without it on two tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..dfn.spec import reference
from . import call, expect_close, passed, reject_planted_bug
from . import shape_str as _shape
from .cuda_checks import (require_cuda_kernel, require_every_element_written, run_reader_kernel,
                          where_kernels_run)

__all__ = [
    "CHECKS",
    "check_dynamic_filter_grad_filters",
    "check_dynamic_filter_unfold",
    "check_translation_filter",
    "check_grad_input_cuda_kernel",
    "check_predict_best_shared_loss",
    "check_dfn_grad_input",
    "check_fit_free_filters",
    "reference_dynamic_filter",
    "moved",
    "show_kernel_error",
    "toy_problem",
    "measure_best_shared_loss",
    "planted_dfn_grad_input",
    "ablation_tasks",
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
def _grad_input_case(gen, B, C, H, W, k, d):
    """Random ``filters`` and ``grad_out`` (float64) and autograd's ``dL/dx`` for them."""
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(B, k * k, H, W, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    with torch.enable_grad():
        (expected,) = torch.autograd.grad(reference_dynamic_filter(x, filters, k, d), x, grad_out)
    return filters, grad_out, expected


def check_grad_input_cuda_kernel(kernel) -> None:
    """``kernel(grad_out, filters, grad_x, kernel_size, dilation)``, a ``@cuda.jit`` kernel with
    one thread per element of ``grad_x: (B, C, H, W)``, must write ``dL/dx`` of Chapter 2, eq-dfn into
    ``grad_x`` (eq-dfn-grad-x), given ``grad_out = dL/dout`` and ``filters: (B, k*k, H, W)``."""
    name = require_cuda_kernel(kernel, "grad_input_cuda_kernel")
    gen = torch.Generator().manual_seed(204)
    for B, C, H, W, k, d in CUDA_CASES:
        filters, grad_out, expected = _grad_input_case(gen, B, C, H, W, k, d)
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


def show_kernel_error(kernel, kernel_size: int = 3, dilation: int = 1) -> torch.Tensor:
    """Launch the reader's Exercise 4 kernel as the check does on one small case
    (``grad_out (1, 2, 5, 6)``) and print, per pixel, the largest error of ``grad_x`` against
    autograd over the batch and the channels (NaN where no thread wrote). Returns that map."""
    name = require_cuda_kernel(kernel, "grad_input_cuda_kernel")
    gen = torch.Generator().manual_seed(205)
    k, d = kernel_size, dilation
    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(1, k * k, 5, 6, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    with torch.enable_grad():
        (expected,) = torch.autograd.grad(reference_dynamic_filter(x, filters, k, d), x, grad_out)
    grad_x = run_reader_kernel(kernel, name, (grad_out, filters), (1, 2, 5, 6), (k, d),
                               f"{name}(grad_out (1, 2, 5, 6), kernel_size={k}, dilation={d})",
                               out_name="grad_x")
    error = (grad_x - expected).abs().amax(dim=(0, 1))
    print(f"largest error of grad_x per pixel (rows y, columns x), k = {k}, d = {d}:")
    print(error.numpy().round(3))
    return error


# --------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the best a shared kernel can do
# --------------------------------------------------------------------------------------------

SOBEL_QUARTER = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                             dtype=torch.float64) / 4
#: (tiles that need -K, tiles in all): the fraction q of the image that asks for -K.
SHARED_CASES = [(1, 4), (1, 8), (1, 3), (1, 2), (3, 4), (0, 4)]
#: What the check accepts: the prediction ignores the image's border, the measurement does not.
SHARED_TOL = 0.05


def toy_problem(flipped_tiles: int, tiles: int, height: int = 24, tile: int = 8, seed: int = 0):
    """Chapter 2's toy, generalized: one noise tile repeated ``tiles`` times along x (the same
    texture everywhere); the ``flipped_tiles`` leftmost tiles must be filtered with ``-K``, the
    others with ``K`` (``K`` = Sobel-x / 4). Returns ``(x, target)``, both ``(1, 1, H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, height, tile, generator=gen, dtype=torch.float64).repeat(1, 1, 1, tiles)
    sign = torch.ones_like(x)
    sign[..., : flipped_tiles * tile] = -1
    return x, sign * F.conv2d(x, SOBEL_QUARTER.view(1, 1, 3, 3), padding=1)


def measure_best_shared_loss(flipped_tiles: int, tiles: int) -> float:
    """The loss of the best shared 3 x 3 kernel (least squares over all pixels), as a fraction
    of the zero kernel's loss, on :func:`toy_problem`."""
    x, target = toy_problem(flipped_tiles, tiles)
    cols = F.unfold(x, 3, padding=1)[0].T                # (H*W, 9): every pixel's neighbourhood
    w = torch.linalg.lstsq(cols, target.flatten()).solution
    return float(((cols @ w - target.flatten()) ** 2).sum() / (target ** 2).sum())


def check_predict_best_shared_loss(fn) -> None:
    """``fn(q)`` must predict :func:`measure_best_shared_loss` for a fraction ``q`` of the image
    asking for ``-K``, to within ``SHARED_TOL``."""
    rows = []
    for flipped, tiles in SHARED_CASES:
        q = flipped / tiles
        predicted = call(fn, q, name="predict_best_shared_loss")
        try:
            predicted = float(predicted)
        except (TypeError, ValueError):
            raise AssertionError(f"predict_best_shared_loss({q:.3f}) returned {predicted!r}; "
                                 "return a number") from None
        measured = measure_best_shared_loss(flipped, tiles)
        rows.append(f"q = {q:.3f}: predicted {predicted:.3f}, measured {measured:.3f}")
        if not abs(predicted - measured) <= SHARED_TOL:
            hint = ""
            if abs(predicted - (1 - 2 * q)) < 1e-9:
                hint = ("\n1 - 2q is the best kernel's multiple of K; the question is the loss "
                        "it leaves.")
            elif abs(predicted - (1 - 2 * q) ** 2) < 1e-9:
                hint = "\n(1 - 2q)^2 is the share of the loss the best kernel removes, not what it leaves."
            raise AssertionError(
                f"predict_best_shared_loss({q:.3f}) returned {predicted:.3f}, but the best shared "
                f"kernel leaves {measured:.3f} of the zero kernel's loss (least squares over all "
                f"pixels, measure_best_shared_loss({flipped}, {tiles})); tolerance {SHARED_TOL}."
                + hint)
    passed("your prediction matches the least-squares fit within "
           f"{SHARED_TOL}:\n  " + "\n  ".join(rows))


# --------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: the input gradient, tap by tap
# --------------------------------------------------------------------------------------------

def planted_dfn_grad_input(grad_out, filters, kernel_size, dilation):
    """The exercise's broken function, as the notebook gives it (one line is wrong)."""
    B, C, H, W = grad_out.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    R = r * d
    Gp = F.pad(grad_out, (R, R, R, R))  # zero outside the image
    Fp = F.pad(filters, (R, R, R, R))
    grad_x = torch.zeros_like(grad_out)
    for t in range(k * k):
        oy, ox = (t // k - r) * d, (t % k - r) * d
        # input pixel (y, x) was read through tap t by output pixel (y - oy, x - ox)
        G_t = Gp[:, :, R - oy: R - oy + H, R - ox: R - ox + W]
        f_t = filters[:, t: t + 1]
        grad_x += G_t * f_t
    return grad_x


#: (B, C, H, W, k, dilation)
DFN_GRAD_INPUT_CASES = [
    (1, 1, 5, 5, 3, 1),
    (2, 3, 6, 7, 3, 1),
    (1, 2, 7, 6, 3, 2),   # dilation 2
    (2, 2, 5, 9, 5, 1),   # 5x5, H != W
    (1, 3, 4, 5, 5, 2),   # the dilated 5x5 is wider than the image
    (1, 2, 6, 4, 1, 3),   # a 1x1 filter
]


class _DfnGradInputFunction(torch.autograd.Function):
    """Chapter 2's operator whose backward for ``x`` is the reader's function (for ``gradcheck``)."""

    @staticmethod
    def forward(ctx, x, filters, fn, k, d):
        ctx.save_for_backward(filters)
        ctx.args = (fn, k, d)
        return reference_dynamic_filter(x, filters, k, d)

    @staticmethod
    def backward(ctx, grad_out):
        (filters,) = ctx.saved_tensors
        fn, k, d = ctx.args
        with torch.no_grad():
            return fn(grad_out, filters, k, d), None, None, None, None


def check_dfn_grad_input(fn) -> None:
    """``fn(grad_out, filters, kernel_size, dilation)`` must return ``dL/dx`` of Chapter 2's
    operator for ``dL/dout = grad_out``: against autograd on every case, then ``gradcheck``."""
    gen = torch.Generator().manual_seed(206)
    for B, C, H, W, k, d in DFN_GRAD_INPUT_CASES:
        filters, grad_out, expected = _grad_input_case(gen, B, C, H, W, k, d)
        what = (f"dfn_grad_input(grad_out of shape {_shape(grad_out)}, filters of shape "
                f"{_shape(filters)}, kernel_size={k}, dilation={d})")
        with torch.no_grad():
            got = call(fn, grad_out.clone(), filters.clone(), k, d, name="dfn_grad_input")
            planted = planted_dfn_grad_input(grad_out, filters, k, d)
        reject_planted_bug(got, planted, expected, what, reference="autograd")
        expect_close(got, expected, what, shape_hint="dL/dx has the shape of x.", rtol=1e-9, atol=1e-9)
    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(1, 9, 5, 6, generator=gen, dtype=torch.float64)
    if not torch.autograd.gradcheck(lambda x: _DfnGradInputFunction.apply(x, filters, fn, 3, 2), (x,),
                                    fast_mode=True, raise_exception=False):
        raise AssertionError("dfn_grad_input disagrees with finite differences (gradcheck) at "
                             "k = 3, dilation 2")
    passed(f"dfn_grad_input matches autograd on {len(DFN_GRAD_INPUT_CASES)} shapes, kernel sizes "
           "and dilations, and passes gradcheck: each tap's gradient uses the filter of the pixel "
           "that read")


# --------------------------------------------------------------------------------------------
# Exercise 7: an ablation: softmax-normalized filters
# --------------------------------------------------------------------------------------------

#: The ablation's fixed settings: free filters for a (1, 4, 8, 8) noise image, Adam.
ABLATION_STEPS, ABLATION_LR, ABLATION_K = 40, 0.2, 3


def ablation_tasks() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Two targets for per-pixel filters on one noise image: ``(x, target)`` per task."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    return {"move down by 1": (x, moved(x, 1, 0)), "invert the contrast": (x, -x)}


def _as_float(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} returned {value!r}; return the loss fraction as a float") from None


def _loss_fraction(x, filters, target, k):
    return float(((reference_dynamic_filter(x, filters, k, 1) - target) ** 2).sum() / (target ** 2).sum())


def check_fit_free_filters(fn) -> dict:
    """``fn(x, target, kernel_size, softmax, steps, lr)`` must train free per-pixel filters as
    the exercise says and return the final loss as a fraction of ``sum(target**2)``; the check
    runs the 2 x 2 ablation (two tasks, with and without softmax) and returns its table."""
    k = ABLATION_K
    table = {}
    for task, (x, target) in ablation_tasks().items():
        B, _, H, W = x.shape
        untrained = {False: 1.0, True: _loss_fraction(x, torch.full((B, k * k, H, W), 1 / k ** 2,
                                                                    dtype=x.dtype), target, k)}
        for softmax in (False, True):
            what = f"fit_free_filters(x, target of {task!r}, kernel_size={k}, softmax={softmax}"
            at_start = _as_float(call(fn, x.clone(), target.clone(), k, softmax, 0, ABLATION_LR,
                                      name="fit_free_filters"), f"{what}, steps=0)")
            if not abs(at_start - untrained[softmax]) < 1e-6:
                raise AssertionError(
                    f"{what}, steps=0) returned {at_start!r}; untrained filters (zero logits) give "
                    f"{untrained[softmax]:.4f}: " + ("zero filters give out = 0, a fraction of 1."
                                                      if not softmax else
                                                      "the softmax over the k*k taps (dim=1) of zero "
                                                      "logits is 1/k^2 at every tap: a box filter."))
            final = call(fn, x.clone(), target.clone(), k, softmax, ABLATION_STEPS, ABLATION_LR,
                         name="fit_free_filters")
            table[task, softmax] = _as_float(final, f"{what}, steps={ABLATION_STEPS})")
    rows = "\n  ".join(f"{task:>20s}: {table[task, False]:.4f} free, {table[task, True]:.4f} softmax"
                       for task in ablation_tasks())
    expected = {("move down by 1", False): "< 0.05", ("invert the contrast", False): "< 0.05",
                ("move down by 1", True): "< 0.05", ("invert the contrast", True): "> 0.25"}
    for (task, softmax), bound in expected.items():
        value = table[task, softmax]
        if not (value < 0.05 if bound == "< 0.05" else value > 0.25):
            raise AssertionError(
                f"after {ABLATION_STEPS} Adam steps (lr {ABLATION_LR}) the loss fraction for "
                f"{task!r} with softmax={softmax} is {value:.4f}, but free filters reach {bound} "
                f"on this task:\n  {rows}\nCheck the loss (the sum of squared errors), that the "
                "filters start at zero logits, and that the optimizer updates the logits.")
    passed("a softmax filter is a weighted average of its neighbours: it moves an image as well "
           "as a free filter but cannot invert it:\n  " + rows)
    return table


CHECKS = {
    "dynamic_filter_grad_filters": check_dynamic_filter_grad_filters,
    "dynamic_filter_unfold": check_dynamic_filter_unfold,
    "translation_filter": check_translation_filter,
    "grad_input_cuda_kernel": check_grad_input_cuda_kernel,
    "predict_best_shared_loss": check_predict_best_shared_loss,
    "dfn_grad_input": check_dfn_grad_input,
    "fit_free_filters": check_fit_free_filters,
}
