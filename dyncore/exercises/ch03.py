"""Checks for the exercises of Chapter 3, LS-DFN (``exercises/03_ls_dfn.md``).

* :func:`check_per_tap_factorized` -- the channel-sum factorization: ``sum_u W[u, t] x[u, p + o_t]``
  for every tap without building ``W``, against the materialized kernels of Eq. 6;
* :func:`check_sampling_field` -- the side of the window one output of ``large_sampling_filter``
  reads, against a table and against the measured gradient support of the operator;
* :func:`check_grad_sample_attention` -- ``dL/dA_sam`` written by hand, against PyTorch's
  autograd of the ``"torch"`` backend, in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..lsdfn import large_sampling_filter, materialize_kernels
from . import call, expect_close, passed

__all__ = ["CHECKS", "check_per_tap_factorized", "check_sampling_field",
           "check_grad_sample_attention", "measured_sampling_field"]


def _inputs(B, C, Co, H, W, k, s, seed):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, C, H, W), (B, Co, C, H, W), (B, Co, k * k, H, W), (B, Co, s * s, H, W),
              (B, Co, k * k, H, W)]
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes]


# --------------------------------------------------------------------------------------------
# Exercise 1: the channel-sum factorization
# --------------------------------------------------------------------------------------------

def reference_per_tap(x, U, V, kernel_size):
    """``T[b, v, t, y, x] = sum_u W[b, v, u, t, y, x] * x[b, u, y + oy_t, x + ox_t]``, materialized."""
    B, C, H, W = x.shape
    k = kernel_size
    patches = F.unfold(x, k, padding=(k - 1) // 2).view(B, C, k * k, H, W)
    kernels = materialize_kernels(U, V, k)                  # (B, H, W, k*k, Co, C)
    return torch.einsum("bhwtvu,buthw->bvthw", kernels, patches)


def check_per_tap_factorized(fn) -> None:
    """``fn(x, U, V, kernel_size)`` must return ``(B, Co, k*k, H, W)``: ``sum_u W x`` per tap."""
    for B, C, Co, H, W, k, seed in [(1, 3, 2, 5, 6, 3, 0), (2, 4, 1, 4, 4, 1, 1), (1, 2, 3, 7, 5, 5, 2)]:
        x, U, V, _, _ = _inputs(B, C, Co, H, W, k, 1, seed)
        what = f"per_tap_factorized(x {tuple(x.shape)}, U {tuple(U.shape)}, V {tuple(V.shape)}, kernel_size={k})"
        got = call(fn, x.clone(), U.clone(), V.clone(), k, name="per_tap_factorized")
        expected = reference_per_tap(x, U, V, k)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and k > 1:
            centre = k * k // 2
            wrong_u = expected.clone()
            wrong_u[:, :, :] += (U * x[:, None]).sum(2)[:, :, None]
            wrong_u[:, :, centre] -= (U * x[:, None]).sum(2)
            if torch.allclose(got, wrong_u):
                raise AssertionError(f"{what}: U is at every tap; Eq. 6 as the book reads it puts "
                                     "U at the centre tap only (W = V + [t == centre] U)")
        expect_close(got, expected, what, rtol=1e-10, atol=1e-10)
    passed("sum_u W x = V * (sum_u x) at every tap, plus U . x at the centre: "
           "C + k*k multiply-adds per output and tap row instead of C*k*k")


# --------------------------------------------------------------------------------------------
# Exercise 2: the sampling field
# --------------------------------------------------------------------------------------------

def measured_sampling_field(kernel_size, samples, sample_stride) -> int:
    """Side of the input window that the centre output reads, from the gradient's support."""
    k, s, g = kernel_size, samples, sample_stride
    side = (s - 1) * g + k + 4
    x, U, V, SA, PA = [t.abs() + 0.1 for t in _inputs(1, 1, 1, side, side, k, s, 0)]
    x.requires_grad_()
    out = large_sampling_filter(x, U, V, SA, PA, kernel_size=k, samples=s, sample_stride=g,
                                backend="torch")
    (grad,) = torch.autograd.grad(out[0, 0, side // 2, side // 2], x)
    rows = torch.nonzero(grad[0, 0].abs().sum(1)).flatten()
    return int(rows.max() - rows.min() + 1)


def check_sampling_field(fn) -> None:
    """``fn(kernel_size, samples, sample_stride)`` must return the side of the field one output reads."""
    for k, s, g in [(3, 1, 1), (3, 3, 1), (3, 5, 2), (1, 3, 4), (5, 3, 3), (3, 9, 2), (1, 1, 1)]:
        expected = measured_sampling_field(k, s, g)
        got = call(fn, k, s, g, name="sampling_field")
        what = f"sampling_field(kernel_size={k}, samples={s}, sample_stride={g})"
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
        if got != expected:
            hints = {s * g + k - 1: " The outermost sample centres are (s - 1)/2 * g from the "
                                    "centre on each side, not s/2 * g.",
                     s * k: " The samples overlap when g < k: the field is not s*k wide.",
                     (s - 1) * g + 1: " Each sample centre reads a k x k window around it: add the taps."}
            raise AssertionError(f"{what} returned {got}; the operator's gradient shows that the "
                                 f"centre output reads a {expected} x {expected} window."
                                 f"{hints.get(got, '')}")
    passed("one LS-DFN output reads a ((s - 1) g + k)-wide window: s = 9, g = 2, k = 3 "
           "sees 19 x 19 pixels with k*k + C weights per output channel")


# --------------------------------------------------------------------------------------------
# Exercise 3: the gradient of the sample attention
# --------------------------------------------------------------------------------------------

def check_grad_sample_attention(fn) -> None:
    """``fn(x, U, V, sample_attention, position_attention, grad_out, kernel_size, samples,
    sample_stride)`` must return ``dL/d sample_attention`` for ``L = sum(grad_out * out)``."""
    for B, C, Co, H, W, k, s, g, seed in [(1, 2, 2, 5, 6, 3, 3, 2, 0), (2, 1, 1, 4, 4, 1, 5, 1, 1),
                                          (1, 3, 1, 6, 5, 3, 1, 1, 2)]:
        x, U, V, SA, PA = _inputs(B, C, Co, H, W, k, s, seed)
        grad_out = torch.randn(B, Co, H, W, generator=torch.Generator().manual_seed(seed + 10),
                               dtype=torch.float64)
        SA_ = SA.clone().requires_grad_()
        out = large_sampling_filter(x, U, V, SA_, PA, kernel_size=k, samples=s, sample_stride=g,
                                    backend="torch")
        (expected,) = torch.autograd.grad(out, SA_, grad_out)
        what = (f"grad_sample_attention(..., kernel_size={k}, samples={s}, sample_stride={g}) "
                f"with x {tuple(x.shape)}")
        got = call(fn, x.clone(), U.clone(), V.clone(), SA.clone(), PA.clone(), grad_out.clone(),
                   k, s, g, name="grad_sample_attention")
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            ratio = expected / grad_out[:, :, None]
            if torch.allclose(got, torch.nan_to_num(ratio), atol=1e-9):
                raise AssertionError(f"{what}: you returned d out / d A_sam; multiply by grad_out "
                                     "(the chain rule)")
        expect_close(got, expected, what, rtol=1e-10, atol=1e-10)
    passed("dL/dA_sam[m] = grad_out * (the bracket of Eq. 4 for sample m): the forward's "
           "per-sample sums, kept instead of added")


CHECKS = {
    "per_tap_factorized": check_per_tap_factorized,
    "sampling_field": check_sampling_field,
    "grad_sample_attention": check_grad_sample_attention,
}
