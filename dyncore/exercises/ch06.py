"""Checks for the exercises of Chapter 6, DDF (``exercises/06_ddf_exercises.md``).

* :func:`check_channel_filter_gradient` -- ``dL/dchannel`` of ``ddf`` by hand, with stride and
  dilation, against PyTorch's autograd of an unfold-based reference written here;
* :func:`check_ddf_flops` -- the paper's FLOP count of a DDF layer, part by part;
* :func:`check_subpixel_shuffle` -- DDF-Up's reassembly of ``scale**2`` branch outputs into the
  upsampled map, against ``F.pixel_shuffle`` of the right channel order;
* :func:`check_filter_normalize` -- the book's filter normalization (the paper's Eq. 3,
  Chapter 6, eq-ddf-fn, with the mean not restored), against :func:`dyncore.ddf.modules.filter_norm`;
* :func:`check_counted_ddf_flops` -- predict, then measure: what ``torch.utils.flop_counter``
  counts of a strided DDF layer;
* :func:`check_ddf_unfold` -- find and fix the bug: DDF with ``F.unfold`` and one planted
  mistake, against the operator;
* :func:`check_output_scaling_exponent` -- an ablation of the filter normalization: how the
  output grows with the input's scale, predicted, then measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ddf.spec import reference
from . import call, expect_close, passed, reject_planted_bug

__all__ = [
    "CHECKS",
    "check_channel_filter_gradient",
    "check_ddf_flops",
    "check_subpixel_shuffle",
    "check_filter_normalize",
    "reference_ddf",
    "reference_ddf_flops",
    "check_counted_ddf_flops",
    "measure_counted_ddf_flops",
    "check_ddf_unfold",
    "check_output_scaling_exponent",
    "measure_output_scaling",
]


def reference_ddf(x, spatial, channel, kernel_size, dilation=1, stride=1):
    """Chapter 6, eq-ddf-op with plain PyTorch (independent of the package's backends): the
    operator's reference, :func:`dyncore.ddf.spec.reference`."""
    return reference(x, spatial, channel, kernel_size=kernel_size, dilation=dilation, stride=stride)


# --------------------------------------------------------------------------------------------
# Exercise 1: the channel-filter gradient
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, dilation, stride)
CHANNEL_GRAD_CASES = [
    (1, 1, 4, 4, 3, 1, 1),
    (2, 3, 5, 7, 3, 1, 1),
    (1, 2, 7, 6, 3, 2, 1),   # dilation: taps further out
    (2, 2, 7, 9, 3, 1, 2),   # stride 2, odd sizes
    (1, 3, 6, 5, 5, 1, 2),   # k = 5, stride 2, even and odd
    (2, 1, 5, 5, 1, 1, 1),   # k = 1
]


def check_channel_filter_gradient(fn) -> None:
    """``fn(x, spatial, grad_out, kernel_size, dilation, stride)`` must return
    ``dL/dchannel`` ``(B, C, k*k)`` of ``out = ddf(x, spatial, channel, ...)`` when
    ``dL/dout = grad_out``. It runs under ``torch.no_grad()``."""
    gen = torch.Generator().manual_seed(601)
    for B, C, H, W, k, d, s in CHANNEL_GRAD_CASES:
        Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        spatial = torch.randn(B, k * k, Ho, Wo, generator=gen, dtype=torch.float64)
        channel = torch.randn(B, C, k * k, generator=gen, dtype=torch.float64, requires_grad=True)
        grad_out = torch.randn(B, C, Ho, Wo, generator=gen, dtype=torch.float64)
        with torch.enable_grad():
            (expected,) = torch.autograd.grad(reference_ddf(x, spatial, channel, k, d, s), channel, grad_out)
        what = (f"channel_filter_gradient(x of shape {tuple(x.shape)}, spatial of shape {tuple(spatial.shape)}, "
                f"grad_out of shape {tuple(grad_out.shape)}, kernel_size={k}, dilation={d}, stride={s})")
        with torch.no_grad():
            got = call(fn, x.clone(), spatial.clone(), grad_out.clone(), k, d, s, name="channel_filter_gradient")
        if got is not None and getattr(got, "shape", None) is not None and tuple(got.shape) != (B, C, k * k):
            raise AssertionError(f"{what}: expected shape (B, C, k*k) = {(B, C, k * k)}, got {tuple(got.shape)}. "
                                 "There is one channel filter per image and channel: sum over the pixels.")
        if got is not None and isinstance(got, torch.Tensor) and tuple(got.shape) == (B, C, k * k):
            flipped = expected.flip(-1)
            if k > 1 and torch.allclose(got.to(torch.float64), flipped) and not torch.allclose(flipped, expected):
                raise AssertionError(f"{what}: your taps are in reverse order. Tap t = i*k + j reads "
                                     "x at (yo*stride + (i - r)*dilation, xo*stride + (j - r)*dilation): "
                                     "the forward pass is a cross-correlation, not a convolution.")
        expect_close(got, expected, what, rtol=1e-9, atol=1e-9)
    passed(f"channel_filter_gradient matches autograd of Eq. 2 on {len(CHANNEL_GRAD_CASES)} shapes, "
           "kernel sizes, dilations and strides (float64)")


# --------------------------------------------------------------------------------------------
# Exercise 2: the FLOP count
# --------------------------------------------------------------------------------------------

def reference_ddf_flops(n, c, k, mid) -> dict:
    """The paper's Sec. 4.1 count, with ``sigma*c`` replaced by the squeeze width ``mid``."""
    spatial = 2 * n * c * k * k
    channel = 2 * mid * c * (1 + k * k)
    apply = 3 * n * c * k * k
    return {"spatial": spatial, "channel": channel, "apply": apply, "total": spatial + channel + apply}


FLOP_CASES = [(1, 1, 1, 1), (64, 16, 3, 3), (200 * 300, 256, 3, 51), (49, 10, 5, 2), (1024, 64, 7, 13)]


def check_ddf_flops(fn) -> None:
    """``fn(n, c, k, mid)`` must return a dict with the FLOPs (a multiply-add counts 2) of DDF's
    ``"spatial"`` filter branch, ``"channel"`` filter branch, filter combination and application
    (``"apply"``) and their ``"total"``, for ``n`` pixels, ``c`` channels, kernel ``k`` and a
    squeeze layer of width ``mid``."""
    for n, c, k, mid in FLOP_CASES:
        expected = reference_ddf_flops(n, c, k, mid)
        what = f"ddf_flops(n={n}, c={c}, k={k}, mid={mid})"
        got = call(fn, n, c, k, mid, name="ddf_flops")
        if not isinstance(got, dict):
            raise AssertionError(f"{what} returned {type(got).__name__}; return a dict with keys "
                                 "'spatial', 'channel', 'apply', 'total'")
        missing = set(expected) - set(got)
        if missing:
            raise AssertionError(f"{what} has no {sorted(missing)}; return a dict with keys "
                                 "'spatial', 'channel', 'apply', 'total'")
        hints = {
            "spatial": "a 1 x 1 convolution from c channels to k*k at each of the n pixels",
            "channel": ("two fully connected layers on the pooled vector, c -> mid and mid -> c*k*k, "
                        "once per image, not once per pixel"),
            "apply": ("per pixel, channel and tap: one multiplication to combine the two filters "
                      "and a multiply-add to apply the result"),
            "total": "the sum of the three parts",
        }
        for part in ("spatial", "channel", "apply", "total"):
            if got[part] != expected[part]:
                raise AssertionError(f"{what}['{part}'] = {got[part]}, expected {expected[part]}: "
                                     f"{hints[part]}.")
    passed(f"ddf_flops gives the paper's 5nck^2 + 2*sigma*c^2*(1 + k^2), part by part, on "
           f"{len(FLOP_CASES)} layers")


# --------------------------------------------------------------------------------------------
# Exercise 3: DDF-Up's sub-pixel shuffle
# --------------------------------------------------------------------------------------------

#: (B, scale, C, H, W)
SHUFFLE_CASES = [(1, 2, 1, 1, 1), (2, 2, 3, 4, 5), (1, 3, 2, 3, 2), (1, 4, 2, 2, 3)]


def _reference_shuffle(branches, scale):
    B, P, C, H, W = branches.shape
    return F.pixel_shuffle(branches.transpose(1, 2).reshape(B, C * P, H, W), scale)


def check_subpixel_shuffle(fn) -> None:
    """``fn(branches, scale)``: ``branches: (B, scale**2, C, H, W)``, the output of branch
    ``p = i*scale + j`` at low-resolution pixel ``(y, x)``; return ``(B, C, scale*H, scale*W)``
    with ``out[b, c, scale*y + i, scale*x + j] = branches[b, i*scale + j, c, y, x]``."""
    gen = torch.Generator().manual_seed(603)
    for B, s, C, H, W in SHUFFLE_CASES:
        branches = torch.randn(B, s * s, C, H, W, generator=gen, dtype=torch.float64)
        expected = _reference_shuffle(branches, s)
        what = f"subpixel_shuffle(branches of shape {tuple(branches.shape)}, scale={s})"
        got = call(fn, branches.clone(), s, name="subpixel_shuffle")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{what} returned {type(got).__name__}; return a tensor")
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"{what}: expected shape (B, C, scale*H, scale*W) = {tuple(expected.shape)}, "
                                 f"got {tuple(got.shape)}")
        if not torch.allclose(got.double(), expected):
            wrong_order = F.pixel_shuffle(branches.reshape(B, s * s * C, H, W), s)  # branch-major channels
            swapped = _reference_shuffle(branches.view(B, s, s, C, H, W).transpose(1, 2).reshape(B, s * s, C, H, W), s)
            if torch.allclose(got.double(), wrong_order):
                raise AssertionError(f"{what}: F.pixel_shuffle reads channel c*scale**2 + p as branch p of "
                                     "channel c, but branches.reshape(B, scale**2 * C, H, W) puts branch p of "
                                     "channel c at p*C + c. Move the branch axis after the channel axis first.")
            if s > 1 and torch.allclose(got.double(), swapped):
                raise AssertionError(f"{what}: rows and columns are swapped: branch p = i*scale + j goes "
                                     "to row offset i and column offset j.")
            expect_close(got, expected, what, rtol=0, atol=0)
    passed(f"subpixel_shuffle reassembles the scale**2 branches on {len(SHUFFLE_CASES)} shapes and scales")


# --------------------------------------------------------------------------------------------
# Exercise 4: filter normalization
# --------------------------------------------------------------------------------------------

#: (N, taps, M)
NORM_CASES = [(3, 9, 4), (2, 25, 3), (1, 9, 1), (4, 49, 1)]


def check_filter_normalize(fn) -> None:
    """``fn(filters, eps)``: ``filters: (N, T, M)``, N*M filters of T taps along axis 1; return
    ``(f - mean) / (std + eps)`` over axis 1, with the *unbiased* standard deviation."""
    from ..ddf.modules import filter_norm

    gen = torch.Generator().manual_seed(604)
    for N, T, M in NORM_CASES:
        filters = torch.randn(N, T, M, generator=gen, dtype=torch.float64) * 3 + 1
        eps = 1e-3
        expected = filter_norm(filters, T, eps=eps)
        what = f"filter_normalize(filters of shape {(N, T, M)}, eps={eps})"
        got = call(fn, filters.clone(), eps, name="filter_normalize")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (N, T, M):
            centred = filters - filters.mean(1, keepdim=True)
            biased = centred / (centred.std(1, keepdim=True, unbiased=False) + eps)
            if torch.allclose(got.double(), biased) and not torch.allclose(biased, expected):
                raise AssertionError(f"{what}: you used the biased standard deviation (divide by T); "
                                     "the book's choice, as the public implementation's, divides by T - 1 "
                                     "(torch.std's default)")
            wrong_axis = ((filters - filters.mean(0, keepdim=True)) / (filters.std(0, keepdim=True) + eps)
                          if N > 1 else None)
            if wrong_axis is not None and torch.allclose(got.double(), wrong_axis):
                raise AssertionError(f"{what}: you normalized over axis 0 (across filters, like batch "
                                     "norm); normalize each filter over its taps, axis 1")
        expect_close(got, expected, what, rtol=1e-9, atol=1e-9)
    passed(f"filter_normalize standardizes each filter over its taps on {len(NORM_CASES)} shapes")



# --------------------------------------------------------------------------------------------
# Exercise 5 (predict, then measure): what the FLOP counter sees of a strided DDF layer
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, stride, mid): stride 1, then strides 2 and 3 on odd sizes, two images.
COUNTER_CASES = [(1, 16, 16, 16, 3, 1, 3), (2, 8, 7, 9, 3, 2, 2), (1, 6, 5, 5, 5, 3, 3), (3, 4, 6, 3, 3, 2, 1)]


def _ddf_layer(C, k, stride, mid):
    from ..ddf import DDF
    from ..ddf.modules import squeeze_width

    se_ratio = mid / C
    assert squeeze_width(C, se_ratio) == mid
    return DDF(C, k, stride=stride, se_ratio=se_ratio, backend="torch")


def measure_counted_ddf_flops(B, C, H, W, kernel_size, stride, mid) -> int:
    """The measurement: ``dyncore.utils.count_flops`` (``torch.utils.flop_counter``, convolutions
    and matrix products, 2 FLOPs per multiply-add) of one forward pass of
    ``DDF(C, kernel_size, stride=stride)`` with a squeeze width ``mid`` on ``(B, C, H, W)``."""
    from ..utils import count_flops

    layer = _ddf_layer(C, kernel_size, stride, mid)
    return count_flops(layer, torch.randn(B, C, H, W))


def check_counted_ddf_flops(fn) -> None:
    """``fn(B, C, H, W, kernel_size, stride, mid)`` predicts what
    :func:`measure_counted_ddf_flops` counts; they must agree exactly (integers)."""
    for B, C, H, W, k, s, mid in COUNTER_CASES:
        what = f"counted_ddf_flops(B={B}, C={C}, H={H}, W={W}, kernel_size={k}, stride={s}, mid={mid})"
        predicted = call(fn, B, C, H, W, k, s, mid, name="counted_ddf_flops")
        measured = measure_counted_ddf_flops(B, C, H, W, k, s, mid)
        if predicted is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the count?")
        if predicted != measured:
            Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
            n = Ho * Wo
            branches = 2 * B * mid * C * (1 + k * k)
            hints = {
                "it counts the nck^2 products that combine the two filters, which the counter "
                "does not see (it counts convolutions and matrix products only)": B * 5 * n * C * k * k + branches,
                "it counts the input's H*W pixels; the spatial branch and the application run at the "
                "output's Ho*Wo = ceil(H/stride) * ceil(W/stride)": B * 4 * H * W * C * k * k + branches,
                "it rounds the output size down (H // stride); with zero padding r the output has "
                "(H - 1) // stride + 1 rows": B * 4 * (H // s) * (W // s) * C * k * k + branches,
                "the channel branch runs once per image: multiply it by B too": B * 4 * n * C * k * k + branches // B,
            }
            why = next((h for h, v in hints.items() if v == predicted and v != measured), "")
            raise AssertionError(f"{what}: you predicted {predicted}, the counter measured {measured}"
                                 + (f"; your count looks like one where {why}." if why else "."))
    B, C, H, W, k, s, mid = COUNTER_CASES[1]
    passed(f"your predictions equal the FLOP counter's on {len(COUNTER_CASES)} layers; e.g. "
           f"B={B}, C={C}, {H}x{W}, k={k}, stride {s}: {measure_counted_ddf_flops(B, C, H, W, k, s, mid):,} FLOPs")


# --------------------------------------------------------------------------------------------
# Exercise 6 (find and fix the bug): DDF with unfold
# --------------------------------------------------------------------------------------------

def planted_ddf_unfold(x, spatial, channel, kernel_size, dilation, stride):
    """The exercise's function as the notebook gives it, with its one mistake (used by the
    check to recognise an unchanged function)."""
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    Ho, Wo = spatial.shape[-2:]
    cols = F.unfold(x, k, dilation=d, padding=d * ((k - 1) // 2), stride=stride)
    cols = cols.view(B, k * k, C, Ho, Wo).transpose(1, 2)
    return (cols * spatial[:, None] * channel[:, :, :, None, None]).sum(2)


#: (B, C, H, W, k, dilation, stride): odd sizes, strides 1-3, dilation 2, a 5x5 and a 1x1 kernel.
UNFOLD_CASES = [(1, 1, 5, 5, 3, 1, 1), (2, 3, 7, 6, 3, 1, 1), (1, 2, 9, 7, 3, 2, 2), (2, 4, 7, 8, 5, 1, 3),
                (1, 3, 6, 5, 1, 1, 2)]


def check_ddf_unfold(fn) -> None:
    """``fn(x, spatial, channel, kernel_size, dilation, stride)`` must equal the operator
    ``ddf`` (Chapter 6, eq-ddf-op) in float64."""
    gen = torch.Generator().manual_seed(606)
    for B, C, H, W, k, d, s in UNFOLD_CASES:
        Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
        x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
        spatial = torch.randn(B, k * k, Ho, Wo, generator=gen, dtype=torch.float64)
        channel = torch.randn(B, C, k * k, generator=gen, dtype=torch.float64)
        expected = reference_ddf(x, spatial, channel, k, d, s)
        what = (f"ddf_unfold(x of shape {tuple(x.shape)}, kernel_size={k}, dilation={d}, stride={s})")
        result = call(fn, x.clone(), spatial.clone(), channel.clone(), k, d, s, name="ddf_unfold")
        reject_planted_bug(result, planted_ddf_unfold(x, spatial, channel, k, d, s), expected, what,
                           reference="the operator ddf", clue="Find the one mistake: it was right on the check's "
                           "first case, with one channel; what changes with several?")
        expect_close(result, expected, what, rtol=1e-10, atol=1e-12, shape_hint=
                     "The output is (B, C, Ho, Wo) with Ho = (H - 1) // stride + 1.")
    passed(f"ddf_unfold matches ddf on {len(UNFOLD_CASES)} shapes, with strides 1-3, dilation 2 and "
           "kernel sizes 1, 3, 5")


# --------------------------------------------------------------------------------------------
# Exercise 7 (an ablation): how the output scales with the input, per filter normalization
# --------------------------------------------------------------------------------------------

SCALING_NORMALIZATIONS = ("filter", "sigmoid", "batch", "none")
SCALES = (1e2, 1e3, 1e4)
SCALING_TOLERANCE = 0.15


def measure_output_scaling(normalization: str, seed: int = 0) -> float:
    """The measurement: the slope of ``log ||DDF(a x)||`` against ``log a`` for ``a`` in
    ``SCALES``, for an eval-mode ``DDF(16, 3, se_ratio=0.5)`` in float64 with the given
    ``normalization`` and a random (not zero) spatial branch weight, as after training."""
    from ..ddf import DDF

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the layer's initialization too, without touching the global stream
        torch.manual_seed(seed)
        layer = DDF(16, 3, se_ratio=0.5, normalization=normalization, backend="torch").double().eval()
    with torch.no_grad():
        layer.spatial_branch.weight.copy_(torch.randn(layer.spatial_branch.weight.shape, generator=gen))
        x = torch.randn(1, 16, 9, 9, generator=gen, dtype=torch.float64)
        a = torch.tensor(SCALES, dtype=torch.float64)
        norms = torch.stack([layer(s * x).norm() for s in a])
    la, ln = a.log(), norms.log()
    return float(((la - la.mean()) * (ln - ln.mean())).sum() / ((la - la.mean()) ** 2).sum())


def check_output_scaling_exponent(fn) -> None:
    """``fn(normalization)`` predicts the exponent ``p`` of ``||DDF(a x)|| ~ a^p`` for large
    ``a``; the check measures it (:func:`measure_output_scaling`) and wants it within 0.15."""
    rows = []
    for norm in SCALING_NORMALIZATIONS:
        predicted = call(fn, norm, name="output_scaling_exponent")
        measured = measure_output_scaling(norm)
        what = f"output_scaling_exponent({norm!r})"
        if predicted is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the exponent?")
        if abs(float(predicted) - measured) > SCALING_TOLERANCE:
            hint = {
                "filter": " A standardized filter does not change when its raw values are scaled.",
                "sigmoid": " For large inputs a sigmoid saturates at 0 or 1.",
                "batch": " In eval mode, batch norm uses its running statistics: a fixed affine map.",
                "none": " Without normalization, each filter is (asymptotically) linear in the input.",
            }[norm]
            raise AssertionError(f"{what}: you predicted {predicted}, the measured slope is "
                                 f"{measured:.3f} (tolerance {SCALING_TOLERANCE}).{hint}")
        rows.append(f"{norm} {measured:.2f}")
    passed("your exponents match the measured slopes (" + ", ".join(rows) + "): only a normalization "
           "that is scale-invariant at inference keeps the filters bounded whatever the input")


CHECKS = {
    "channel_filter_gradient": check_channel_filter_gradient,
    "ddf_flops": check_ddf_flops,
    "subpixel_shuffle": check_subpixel_shuffle,
    "filter_normalize": check_filter_normalize,
    "counted_ddf_flops": check_counted_ddf_flops,
    "ddf_unfold": check_ddf_unfold,
    "output_scaling_exponent": check_output_scaling_exponent,
}
