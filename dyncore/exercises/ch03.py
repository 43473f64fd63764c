"""Checks for the exercises of Chapter 3, LS-DFN (``exercises/03_ls_dfn_exercises.md``).

* :func:`check_per_tap_factorized` -- the channel-sum factorization: ``sum_u W[u, t] x[u, p + o_t]``
  for every tap without building ``W``, against the materialized kernels of Eq. 6;
* :func:`check_sampling_field` -- the side of the window one output of ``large_sampling_filter``
  reads, against a table and against the measured gradient support of the operator;
* :func:`check_grad_sample_attention` -- ``dL/dA_sam`` written by hand, against PyTorch's
  autograd of the ``"torch"`` backend, in float64;
* :func:`check_predict_lsdfn_flops` -- the reader's prediction of what the ``"torch"`` backend
  computes, against PyTorch's ``FlopCounterMode``;
* :func:`check_lsdfn_forward` -- find and fix the one mistake planted in
  :func:`planted_lsdfn_forward`, against the operator (values and gradients);
* :func:`check_position_attention_reading` -- tell, by probing a black box, whether a layer
  reads the position attention at the sample centre (Eq. 3-4, the book) or at the output pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..lsdfn import large_sampling_filter, materialize_kernels
from . import call, expect_close, passed, reject_planted_bug

__all__ = ["CHECKS", "check_per_tap_factorized", "check_sampling_field",
           "check_grad_sample_attention", "measured_sampling_field", "check_predict_lsdfn_flops",
           "check_lsdfn_forward", "check_position_attention_reading", "measure_lsdfn_flops",
           "planted_lsdfn_forward", "shifted", "READINGS"]


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


# --------------------------------------------------------------------------------------------
# Exercise 4: predict, then measure: what the materialized backend computes
# --------------------------------------------------------------------------------------------

#: (B, C, Co, H, W, k, s, g)
LSDFN_FLOP_CASES = [
    (1, 5, 3, 6, 7, 3, 3, 2),
    (2, 4, 2, 5, 5, 3, 5, 1),
    (1, 8, 1, 4, 6, 5, 3, 3),
    (1, 3, 4, 7, 5, 1, 5, 2),
]
FLOP_RTOL = 1e-3


def measure_lsdfn_flops(B, C, Co, H, W, k, s, g) -> int:
    """FLOPs of one ``large_sampling_filter(..., backend="torch")`` forward, as PyTorch's
    ``FlopCounterMode`` counts them (matrix products and convolutions; a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = _inputs(B, C, Co, H, W, k, s, 0)
    with FlopCounterMode(display=False) as counter:
        large_sampling_filter(*inputs, kernel_size=k, samples=s, sample_stride=g, backend="torch")
    return counter.get_total_flops()


def check_predict_lsdfn_flops(fn) -> None:
    """``fn(B, C, Co, H, W, k, s, g)`` must predict :func:`measure_lsdfn_flops` to ``FLOP_RTOL``."""
    rows = []
    for B, C, Co, H, W, k, s, g in LSDFN_FLOP_CASES:
        what = f"predict_lsdfn_flops(B={B}, C={C}, Co={Co}, H={H}, W={W}, k={k}, s={s}, g={g})"
        predicted = call(fn, B, C, Co, H, W, k, s, g, name="predict_lsdfn_flops")
        try:
            predicted = float(predicted)
        except (TypeError, ValueError):
            raise AssertionError(f"{what} returned {predicted!r}; return a number") from None
        measured = measure_lsdfn_flops(B, C, Co, H, W, k, s, g)
        outputs = B * Co * H * W
        if abs(predicted - measured) > FLOP_RTOL * measured:
            known = {2 * outputs * s * s * (C + k * k): "the factorized count, s^2 (C + k^2) per "
                     "output: the \"torch\" backend does not use eq-factor, it builds W",
                     outputs * s * s * C * k * k: "multiply-adds: FlopCounterMode counts 2 per "
                     "multiply-add",
                     2 * outputs * C * k * k: "one sample: every output reads s*s of them"}
            hint = known.get(int(round(predicted)))
            raise AssertionError(f"{what} returned {predicted:.0f}, FlopCounterMode counts {measured} "
                                 f"(tolerance {FLOP_RTOL:.1%})"
                                 + (f"; yours looks like {hint}." if hint else "."))
        rows.append(f"C={C}, k={k}, s={s}: {measured} FLOPs; the factorization needs "
                    f"{(C + k * k) / (C * k * k):.2f} of them")
    passed("your predictions match FlopCounterMode's count of the \"torch\" backend:\n  " + "\n  ".join(rows))


# --------------------------------------------------------------------------------------------
# Exercise 5: find and fix the bug: the forward pass, sample by sample and tap by tap
# --------------------------------------------------------------------------------------------

def shifted(z: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = z[..., y + dy, x + dx]``, zero where that is outside the image."""
    H, W = z.shape[-2:]
    out = torch.zeros_like(z)
    if abs(dy) < H and abs(dx) < W:
        out[..., max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)] = \
            z[..., max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx)]
    return out


def planted_lsdfn_forward(x, U, V, sample_attention, position_attention, kernel_size, samples,
                          sample_stride):
    """The exercise's broken function, as the notebook gives it (one line is wrong)."""
    k, s, g = kernel_size, samples, sample_stride
    r, rs = (k - 1) // 2, (s - 1) // 2
    S = x.sum(1, keepdim=True)                           # (B, 1, H, W): the channel-sum map
    out = torch.zeros_like(sample_attention[:, :, 0])    # (B, Co, H, W)
    for m in range(s * s):
        my, mx = (m // s - rs) * g, (m % s - rs) * g     # sample m's centre, from the pixel
        bracket = torch.zeros_like(out)
        for t in range(k * k):
            ty, tx = (t // k - r) * g, (t % k - r) * g   # tap t, from the sample's centre
            term = V[:, :, t] * shifted(S, my + ty, mx + tx)
            if t == k * k // 2:                          # U at the centre tap (eq-kernels)
                term = term + (U * shifted(x, my, mx)[:, None]).sum(2)
            bracket += shifted(position_attention[:, :, t], my, mx) * term
        out += sample_attention[:, :, m] * bracket
    return out


def _lsdfn_by_shifts(x, U, V, A_sam, A_pos, k, s, g, *, position_at_output=False):
    """Eq. (eq-lsdfn) by shifted maps; ``position_at_output`` reads ``A_pos`` at ``p``, not ``p_m``."""
    r, rs = (k - 1) // 2, (s - 1) // 2
    S = x.sum(1, keepdim=True)
    out = torch.zeros_like(A_sam[:, :, 0])
    for m in range(s * s):
        my, mx = (m // s - rs) * g, (m % s - rs) * g
        bracket = torch.zeros_like(out)
        for t in range(k * k):
            term = V[:, :, t] * shifted(S, my + t // k - r, mx + t % k - r)
            if t == k * k // 2:
                term = term + (U * shifted(x, my, mx)[:, None]).sum(2)
            a_pos = A_pos[:, :, t] if position_at_output else shifted(A_pos[:, :, t], my, mx)
            bracket += a_pos * term
        out += A_sam[:, :, m] * bracket
    return out


#: (B, C, Co, H, W, k, s, g): odd sizes, sample strides 1 to 3, samples past the border.
FORWARD_CASES = [
    (1, 2, 1, 5, 6, 3, 3, 1),
    (1, 3, 2, 7, 6, 3, 3, 2),
    (2, 2, 2, 6, 7, 3, 5, 2),
    (1, 2, 3, 9, 8, 5, 3, 3),
    (1, 4, 1, 5, 5, 1, 3, 2),
]


def check_lsdfn_forward(fn) -> None:
    """``fn(x, U, V, sample_attention, position_attention, kernel_size, samples, sample_stride)``
    must equal ``large_sampling_filter`` (float64), and its autograd gradients must too."""
    for n, (B, C, Co, H, W, k, s, g) in enumerate(FORWARD_CASES):
        inputs = _inputs(B, C, Co, H, W, k, s, 300 + n)
        expected = large_sampling_filter(*inputs, kernel_size=k, samples=s, sample_stride=g,
                                         backend="torch")
        what = (f"lsdfn_forward(x of shape {tuple(inputs[0].shape)}, ..., kernel_size={k}, "
                f"samples={s}, sample_stride={g})")
        got = call(fn, *(a.clone() for a in inputs), k, s, g, name="lsdfn_forward")
        reject_planted_bug(got, planted_lsdfn_forward(*inputs, k, s, g), expected, what,
                           reference="large_sampling_filter")
        expect_close(got, expected, what, shape_hint="The output is (B, Co, H, W).",
                     rtol=1e-10, atol=1e-10)
    B, C, Co, H, W, k, s, g = FORWARD_CASES[1]
    inputs = [a.requires_grad_() for a in _inputs(B, C, Co, H, W, k, s, 399)]
    grad_out = torch.randn(B, Co, H, W, generator=torch.Generator().manual_seed(398), dtype=torch.float64)
    expected = torch.autograd.grad(large_sampling_filter(*inputs, kernel_size=k, samples=s,
                                                         sample_stride=g, backend="torch"),
                                   inputs, grad_out)
    got = torch.autograd.grad(fn(*inputs, k, s, g), inputs, grad_out, allow_unused=True)
    for name, a, b in zip(["x", "U", "V", "sample_attention", "position_attention"], got, expected):
        if a is None:
            raise AssertionError(f"lsdfn_forward: autograd finds no path from {name} to the output")
        expect_close(a, b, f"the gradient of lsdfn_forward with respect to {name}", rtol=1e-9, atol=1e-9)
    passed(f"lsdfn_forward matches large_sampling_filter on {len(FORWARD_CASES)} cases, and so do "
           "its gradients: the taps around a sample are one pixel apart, whatever g is")


# --------------------------------------------------------------------------------------------
# Exercise 6: which reading of Eq. 3-4? Probe a black box
# --------------------------------------------------------------------------------------------

READINGS = ("sample centre", "output pixel")


def _reading(name):
    def op(x, U, V, sample_attention, position_attention, kernel_size, samples, sample_stride):
        """An LS-DFN layer: the arguments of ``large_sampling_filter``, positionally."""
        args = (x, U, V, sample_attention, position_attention)
        if name == "sample centre":
            return large_sampling_filter(*args, kernel_size=kernel_size, samples=samples,
                                         sample_stride=sample_stride, backend="torch")
        return _lsdfn_by_shifts(*args, kernel_size, samples, sample_stride, position_at_output=True)
    return op


def check_position_attention_reading(fn) -> None:
    """``fn(op, kernel_size, samples, sample_stride)`` must return where ``op`` reads the position
    attention: ``"sample centre"`` (``A_pos[v, t, p_m]``, the book) or ``"output pixel"``."""
    import random

    cases = [(name, k, s, g) for name in READINGS for k, s, g in [(3, 3, 2), (3, 5, 1), (1, 3, 3)]]
    random.Random(306).shuffle(cases)
    for name, k, s, g in cases:
        what = f"position_attention_reading(op, kernel_size={k}, samples={s}, sample_stride={g})"
        answer = call(fn, _reading(name), k, s, g, name="position_attention_reading")
        if answer not in READINGS:
            raise AssertionError(f"{what} returned {answer!r}; return one of {list(READINGS)}")
        if answer != name:
            raise AssertionError(
                f"{what} returned {answer!r}, but op reads the position attention at the "
                f"{name}. A probe that tells them apart needs a position attention that is not the "
                "same everywhere, and a sample attention that picks a sample away from the pixel.")
    passed("position_attention_reading tells A_pos[v, t, p_m] (the book, Eq. 3-4) from "
           "A_pos[v, t, p] on three sampling settings")


CHECKS = {
    "per_tap_factorized": check_per_tap_factorized,
    "sampling_field": check_sampling_field,
    "grad_sample_attention": check_grad_sample_attention,
    "predict_lsdfn_flops": check_predict_lsdfn_flops,
    "lsdfn_forward": check_lsdfn_forward,
    "position_attention_reading": check_position_attention_reading,
}
