"""Chapter 5: PAD-Nets' operator, ``adaptive_dilation_conv`` (contract, section 5): validation,
dispatch to the four backends and the autograd glue.

The relaxed PAD operator (Chapter 5, eq-pad-relaxed) is a gated sum over ``D`` dilations of one
dilated ``k x k`` convolution; see :mod:`.loops` for the specification, :mod:`.numba_cpu` and
:mod:`.cuda_kernels` for the fused kernels, :mod:`.vectorized` for ``D`` calls of ``F.conv2d``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import library
from .. import validation as V
from ..autograd import KernelFunction
from ..backend import dispatch
from . import cuda_kernels, numba_cpu
from .loops import adaptive_dilation_conv_loops
from .vectorized import adaptive_dilation_conv_torch

__all__ = ["AdaptiveDilationConvFunction", "adaptive_dilation_conv", "check_dilations"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends; their ``config`` is
#: ``(dilations,)``.
KERNELS = {"numba": numba_cpu.ADAPTIVE_DILATION_CONV, "cuda": cuda_kernels.ADAPTIVE_DILATION_CONV}

#: ``torch.ops.dyncore.adaptive_dilation_conv``: the kernels as a custom operator
#: (:mod:`dyncore.library`).
OP = library.define("adaptive_dilation_conv", ("x", "weight", "bias?", "gates"), ("int[] dilations",),
                    kernels=KERNELS, vectorized=adaptive_dilation_conv_torch)


class AdaptiveDilationConvFunction(KernelFunction):
    """Autograd for ``"numba"`` and ``"cuda"`` outside the custom operator:
    ``apply(kernels, (dilations,), x, weight, bias, gates)``."""


def check_dilations(dilations, name: str = "dilations") -> tuple[int, ...]:
    """A non-empty tuple (or list) of positive ints, returned as a tuple."""
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
        raise TypeError(
            f"{name} must be a tuple of positive ints, e.g. (1, 2, 4); "
            f"got {type(dilations).__name__} {dilations!r}"
        )
    if len(dilations) == 0:
        raise ValueError(f"{name} must hold at least one dilation (D >= 1); got an empty {type(dilations).__name__}")
    return tuple(V.check_positive_int(f"{name}[{n}]", d) for n, d in enumerate(dilations))


def adaptive_dilation_conv(x, weight, bias, gates, *, dilations, backend="auto"):
    """PAD-Nets' pixel-wise adaptive dilation, relaxed to a gated sum (Chapter 5, eq-pad-relaxed).

    ``x: (B, Cin, H, W)``, ``weight: (Cout, Cin, k, k)`` with ``k`` odd, ``bias: (Cout,)`` or
    None, ``gates: (B, D, H, W)``, ``dilations``: a tuple of ``D`` positive ints::

        out[b, o, y, x] = sum_d gates[b, d, y, x] * sum_{c, i, j} weight[o, c, i, j]
                          * x[b, c, y + (i - r) dilations[d], x + (j - r) dilations[d]] + bias[o]

    with ``r = (k - 1) // 2``, zero padding and a same-size output. The fused backends
    (``"numba"``, ``"cuda"``) skip, at each pixel, the dilations whose gate is exactly 0, so
    one-hot gates cost one convolution per pixel; the gradient of the gates still uses every
    dilation's response.
    """
    x, weight, bias, gates = V.autocast_inputs(x, weight, bias, gates)
    V.check_tensor("x", x, 4, "(B, Cin, H, W)")
    V.check_tensor("weight", weight, 4, "(Cout, Cin, k, k)")
    if bias is not None:
        V.check_tensor("bias", bias, 1, "(Cout,)")
    V.check_tensor("gates", gates, 4, "(B, D, H, W)")
    V.check_same_dtype(("x", x), weight=weight, bias=bias, gates=gates)
    V.check_same_device(("x", x), weight=weight, bias=bias, gates=gates)
    dilations = check_dilations(dilations)
    V.check_spatial_nonempty("x", x)
    B, Cin, H, W = x.shape
    Cout, Cin_w, kh, kw = weight.shape
    if Cout == 0:
        raise ValueError(f"weight must have at least one output channel; got shape {tuple(weight.shape)}")
    if kh != kw:
        raise ValueError(f"weight must have a square kernel (Cout, Cin, k, k); got {kh} x {kw}")
    V.check_kernel_size("weight's kernel size k (weight.shape[-1])", kh)
    if Cin_w != Cin:
        raise ValueError(
            f"weight must have shape (Cout, Cin, k, k) with Cin = x.shape[1] = {Cin}; "
            f"got weight.shape[1] = {Cin_w}"
        )
    if bias is not None and bias.shape[0] != Cout:
        raise ValueError(f"bias must have shape (Cout,) = ({Cout},); got {tuple(bias.shape)}")
    D = len(dilations)
    if tuple(gates.shape) != (B, D, H, W):
        raise ValueError(
            f"gates must have shape (B, D, H, W) = {(B, D, H, W)}, one gate per dilation "
            f"(D = len(dilations) = {D}) at every pixel of x; got {tuple(gates.shape)}"
        )
    # A dilation of max(H, W) or more reads the centre tap only (every other tap falls
    # outside the image): clamping it changes no value and bounds the padding of "torch".
    dilations = tuple(min(d, max(H, W)) for d in dilations)
    return dispatch(backend, (x, weight, bias, gates), (dilations,), out_shape=(B, Cout, H, W),
                    loops=adaptive_dilation_conv_loops, vectorized=adaptive_dilation_conv_torch,
                    kernels=KERNELS, op=OP)
