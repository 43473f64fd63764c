"""Checks for the exercises of Chapter 8, the layers in a training stack
(``exercises/08_training_stack_exercises.md``).

* :func:`check_bf16_error_bound` -- predict, then measure: the largest error of rounding a
  float32 value to bfloat16, against ``x.to(torch.bfloat16)``;
* :func:`check_ddf_fake` -- find and fix the bug: a fake implementation of DDF whose output shape
  is wrong for some inputs, registered on a custom operator and tested by
  ``torch.library.opcheck``;
* :func:`check_data_parallel_gradients` -- data-parallel training in one process: the average of
  the shards' gradients, against the whole batch's gradient.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from . import StubError, call, expect_close, passed

__all__ = [
    "CHECKS",
    "check_bf16_error_bound",
    "check_ddf_fake",
    "check_data_parallel_gradients",
    "bf16_values",
    "measured_bf16_error",
    "planted_ddf_fake",
    "register_with_fake",
    "small_network",
]


# --------------------------------------------------------------------------------------------
# Exercise 1 (predict, then measure): bfloat16's rounding error
# --------------------------------------------------------------------------------------------

def bf16_values(n: int = 100_000, seed: int = 801) -> torch.Tensor:
    """float32 values for the check: log-uniform magnitudes from 1e-6 to 1e6 with both signs, the
    powers of two in that range, and the float32 value just below each of them."""
    gen = torch.Generator().manual_seed(seed)
    magnitude = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-13.8, 13.8, generator=gen))
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    powers = torch.exp2(torch.arange(-19, 20, dtype=torch.float64)).float()
    below = torch.nextafter(powers, torch.zeros_like(powers))
    return torch.cat([(sign * magnitude).float(), powers, below, -below])


def measured_bf16_error(x: torch.Tensor) -> torch.Tensor:
    """``|bf16(x) - x|`` for float32 ``x``, computed in float64 (exactly)."""
    return (x.to(torch.bfloat16).to(torch.float64) - x.to(torch.float64)).abs()


def _half_spacing(x: torch.Tensor) -> torch.Tensor:
    """Half the distance between neighbouring bfloat16 numbers in the binade of ``x``."""
    _, exponent = torch.frexp(x.to(torch.float64))  # |x| = m * 2**e with 0.5 <= m < 1
    return torch.ldexp(torch.ones_like(x, dtype=torch.float64), exponent - 9)


def check_bf16_error_bound(fn) -> None:
    """``fn(x)`` (float32, no zeros) must return, per element, the largest possible error
    ``|bf16(x) - x|`` of rounding to nearest in ``x``'s binade: half the spacing of bfloat16's
    numbers there. The check compares with the exact value and measures the real errors."""
    x = bf16_values()
    what = "bf16_error_bound(x)"
    got = call(fn, x.clone(), name="bf16_error_bound")
    if got is None:
        raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(x.shape):
        raise AssertionError(f"{what}: expected a tensor of the shape of x, {tuple(x.shape)}, got "
                             f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.to(torch.float64)
    want = _half_spacing(x)
    error = measured_bf16_error(x)
    if not torch.allclose(got, want, rtol=1e-9, atol=0):
        ratio = got / want
        if torch.allclose(ratio, torch.full_like(ratio, 2.0)):
            why = ("a whole spacing: rounding to the *nearest* bfloat16 number moves a value by at "
                   "most half the spacing")
        elif torch.allclose(ratio, torch.full_like(ratio, 2.0 ** -16)):
            why = ("float32's spacing (24 significant bits): bfloat16 keeps 8 significant bits, the "
                   "implicit leading 1 and 7 stored ones")
        elif torch.allclose(ratio, torch.full_like(ratio, 0.5)):
            why = "bfloat16 has 8 significant bits counting the implicit leading 1, not 9"
        elif torch.allclose(got, x.abs().to(torch.float64) * 2.0 ** -8, rtol=1e-6):
            why = ("proportional to |x|: that bounds the error, but the spacing is constant between "
                   "two powers of two, 2**e <= |x| < 2**(e+1); it depends on e, not on |x| itself")
        else:
            bad = (~torch.isclose(got, want, rtol=1e-9, atol=0)).nonzero().flatten()
            i = int(bad[0])
            near_power = torch.isclose(x.abs().to(torch.float64), torch.exp2(torch.round(torch.log2(
                x.abs().to(torch.float64)))), rtol=1e-6)
            why = (f"{len(bad)} of {len(x)} values differ, the first at x = {x[i].item()!r}: your "
                   f"{got[i].item():.6g}, the exact {want[i].item():.6g}")
            if bool(near_power[bad].all()):
                why += (". They all lie at or just below a power of two: log2 in float32 rounds "
                        "2**e - tiny up to e; torch.frexp gives the exponent exactly")
        raise AssertionError(f"{what} is wrong: {why}.")
    if bool((error > got).any()):  # cannot happen when got == want; kept as the measurement's proof
        raise AssertionError(f"{what}: a measured rounding error exceeds your bound")
    attained = (error / got).max().item()
    relative = (error / x.abs().to(torch.float64)).max().item()
    passed(f"your bound is exact on {len(x)} values; measured with x.to(torch.bfloat16), the largest "
           f"error is {attained:.3f} of it, and the largest relative error is {relative:.5f} "
           f"(2**-8 = {2 ** -8:.5f})")


# --------------------------------------------------------------------------------------------
# Exercise 2 (find and fix the bug): a fake implementation
# --------------------------------------------------------------------------------------------

#: (B, C, H, W, k, dilation, stride): odd and even sizes, strides 1 to 3
FAKE_CASES = [
    (2, 3, 8, 6, 3, 1, 1),
    (1, 2, 8, 8, 3, 1, 2),
    (2, 2, 7, 9, 3, 1, 2),
    (1, 3, 10, 7, 5, 2, 3),
]
_COUNTER = itertools.count()


def planted_ddf_fake(x, spatial, channel, kernel_size, dilation, stride):
    """The fake implementation as the exercise gives it (wrong for odd sizes with stride > 1)."""
    B, C, H, W = x.shape
    return x.new_empty(B, C, H // stride, W // stride)


def register_with_fake(fake):
    """A new custom operator ``ch08_exercise::ddf_<n>`` that computes DDF with the book's Numba
    kernel and has ``fake`` as its fake implementation; returns the operator."""
    name = f"ch08_exercise::ddf_{next(_COUNTER)}"

    def impl(x, spatial, channel, kernel_size, dilation, stride):
        return torch.ops.dyncore.ddf(x, spatial, channel, kernel_size, dilation, stride, "numba")

    op = torch.library.custom_op(name, impl, mutates_args=(), schema=(
        "(Tensor x, Tensor spatial, Tensor channel, int kernel_size, int dilation, int stride) -> Tensor"))
    op.register_fake(fake)
    return op


def _inputs(B, C, H, W, k, d, s, gen):
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
    return (torch.randn(B, C, H, W, generator=gen, dtype=torch.float64),
            torch.randn(B, k * k, Ho, Wo, generator=gen, dtype=torch.float64),
            torch.randn(B, C, k * k, generator=gen, dtype=torch.float64))


def check_ddf_fake(fn) -> None:
    """``fn(x, spatial, channel, kernel_size, dilation, stride)`` is the fake implementation of
    DDF: it must return an empty tensor with the output's shape, dtype and device. The check
    registers it on a custom operator and runs ``torch.library.opcheck``'s fake-tensor test."""
    gen = torch.Generator().manual_seed(802)
    cases = [(case, _inputs(*case, gen)) for case in FAKE_CASES]
    shapes = []
    for (B, C, H, W, k, d, s), (x, spatial, channel) in cases:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fx, fs, fc = (mode.from_tensor(t) for t in (x, spatial, channel))
            out = call(fn, fx, fs, fc, k, d, s, name="ddf_fake")
        if out is None:
            raise AssertionError("ddf_fake returned None: did you forget to `return` the tensor?")
        shapes.append(tuple(out.shape))
    planted = [tuple(planted_ddf_fake(x, sp, ch, k, d, s).shape)
               for (_, _, _, _, k, d, s), (x, sp, ch) in cases]
    if shapes == planted:
        raise StubError(
            "ddf_fake still gives the shapes it gave when you got it, and opcheck fails (run the "
            "cell above to see its message). Compare the fake's shape with the kernel's output for "
            "x of shape (2, 2, 7, 9) and stride 2: how many output rows does stride 2 give on 7 rows?")
    op = register_with_fake(fn)
    for (B, C, H, W, k, d, s), (x, spatial, channel) in cases:
        Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
        try:
            torch.library.opcheck(op, (x, spatial, channel, k, d, s), test_utils=("test_faketensor",))
        except Exception as exc:  # opcheck's OpCheckError, with the fake's mismatch in its message
            raise AssertionError(
                f"opcheck fails for x of shape {tuple(x.shape)}, kernel_size={k}, dilation={d}, "
                f"stride={s}: the kernel returns shape {(B, C, Ho, Wo)} (float64); opcheck says:\n"
                f"{str(exc).strip()[:600]}") from None
    passed(f"opcheck's fake-tensor test passes on {len(cases)} inputs, strides 1 to 3, odd and even sizes")


# --------------------------------------------------------------------------------------------
# Exercise 3 (an experiment): data-parallel gradients in one process
# --------------------------------------------------------------------------------------------

def small_network(norm: str = "none", seed: int = 803) -> nn.Module:
    """A float64 network with a DDF layer: conv 1 -> 4, ``norm``, ReLU, DDF(4, 3), conv 4 -> 2.
    ``norm`` is ``"none"``, ``"batch"`` (BatchNorm2d) or ``"group"`` (GroupNorm with 2 groups)."""
    from ..ddf import DDF

    if norm not in ("none", "batch", "group"):
        raise ValueError(f"norm must be 'none', 'batch' or 'group'; got {norm!r}")
    torch.manual_seed(seed)
    layers = {"none": nn.Identity(), "batch": nn.BatchNorm2d(4), "group": nn.GroupNorm(2, 4)}
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), layers[norm], nn.ReLU(),
                         DDF(4, 3, backend="numba"), nn.Conv2d(4, 2, 1)).double()


def _whole_batch_gradients(model, images, labels):
    model.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    return [p.grad.clone() for p in model.parameters()]


def check_data_parallel_gradients(fn) -> None:
    """``fn(model, images, labels, world)`` must return, for each parameter of ``model`` in
    order, the average over ``world`` equal shards of the batch of the gradient of that shard's
    mean cross-entropy loss, as ``DistributedDataParallel`` computes it. On a network without
    batch statistics this is the whole batch's gradient."""
    gen = torch.Generator().manual_seed(804)
    images = torch.randn(8, 1, 10, 10, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (8, 10, 10), generator=gen)
    model = small_network("none")
    want = _whole_batch_gradients(model, images, labels)
    for world in (1, 2, 4):
        what = f"data_parallel_gradients(model, images of shape {tuple(images.shape)}, labels, world={world})"
        model.zero_grad()
        got = call(fn, model, images.clone(), labels.clone(), world, name="data_parallel_gradients")
        if got is None:
            raise AssertionError(f"{what} returned None: did you forget to `return` the list?")
        got = list(got)
        if len(got) != len(want):
            raise AssertionError(f"{what}: expected one gradient per parameter ({len(want)}), got {len(got)}")
        if world > 1 and all(isinstance(g, torch.Tensor) and g.shape == w.shape for g, w in zip(got, want)) \
                and all(torch.allclose(g, world * w) for g, w in zip(got, want)):
            raise AssertionError(f"{what} is {world} times the whole batch's gradient: the processes "
                                 "*average* their gradients (all-reduce, then divide by the world size)")
        if world > 1 and all(isinstance(g, torch.Tensor) and g.shape == w.shape for g, w in zip(got, want)) \
                and all(torch.allclose(g, w / world) for g, w in zip(got, want)):
            raise AssertionError(f"{what} is the whole batch's gradient divided by {world}: each shard's "
                                 "gradient counts once in the average, not 1/world of a sum")
        for (name, _), g, w in zip(model.named_parameters(), got, want):
            expect_close(g, w, f"{what}, the gradient of {name}", rtol=1e-9, atol=1e-12,
                         shape_hint="Each gradient has its parameter's shape.")
    passed("the average of 1, 2 and 4 shards' gradients is the whole batch's gradient, for every "
           "parameter of the network (float64, tolerance 1e-9)")


CHECKS = {
    "bf16_error_bound": check_bf16_error_bound,
    "ddf_fake": check_ddf_fake,
    "data_parallel_gradients": check_data_parallel_gradients,
}
