"""``conv2d``: validation, the geometry of ``F.conv2d``'s arguments, and dispatch to a backend.

Chapter 1, eq-conv and eq-out-size. The kernels of the ``"numba"`` and ``"cuda"`` backends run
as the custom operator ``torch.ops.dyncore.conv2d`` (:mod:`dyncore.library`), whose
configuration is the :class:`~dyncore.conv.geometry.ConvGeometry` spelled out as its fields.
"""

from __future__ import annotations

from .. import library
from .. import validation as V
from ..autograd import KernelFunction
from ..backend import dispatch
from . import cuda_kernels, numba_cpu
from .geometry import ConvGeometry, output_length
from .loops import conv2d_loops
from .vectorized import conv2d_torch

__all__ = ["conv2d", "Conv2dFunction", "ConvGeometry", "conv_geometry"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends.
KERNELS = {"numba": numba_cpu.CONV2D, "cuda": cuda_kernels.CONV2D}


def _loops(x, weight, bias, *geometry):
    return conv2d_loops(x, weight, bias, ConvGeometry(*geometry))


def _vectorized(x, weight, bias, *geometry):
    return conv2d_torch(x, weight, bias, ConvGeometry(*geometry))


#: ``torch.ops.dyncore.conv2d``: the kernels as a custom operator (:mod:`dyncore.library`).
OP = library.define("conv2d", ("x", "weight", "bias?"),
                    ("int[] stride", "int[] padding", "int[] dilation", "int groups", "int[] out_size"),
                    kernels=KERNELS, vectorized=_vectorized, config=lambda *g: ConvGeometry(*g))


class Conv2dFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends outside the custom operator:
    ``apply(kernels, geometry, x, w, b)``."""


def _padding(padding, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]):
    """``(top, bottom, left, right)`` from ``F.conv2d``'s ``padding`` (int, pair, 'valid', 'same')."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1; got stride={stride}")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]  # the extra pixel goes bottom/right
            return tuple(pads)
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same'; got {padding!r}")
    ph, pw = V.as_pair("padding", padding, check=V.check_nonnegative_int)
    return ph, ph, pw, pw


def conv_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> ConvGeometry:
    """Validate ``F.conv2d``'s arguments against the shapes and compute the output size
    (Chapter 1, eq-out-size)."""
    stride = V.as_pair("stride", stride)
    dilation = V.as_pair("dilation", dilation)
    groups = V.check_positive_int("groups", groups)
    B, Cin, H, W = x_shape
    Cout, Cin_g, kh, kw = w_shape
    if Cin % groups or Cout % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels (x has {Cin}) and the "
            f"output channels (weight has {Cout})"
        )
    if Cin_g * groups != Cin:
        raise ValueError(
            f"weight must have shape (Cout, Cin/groups, kh, kw) with Cin/groups = "
            f"{Cin}/{groups} = {Cin // groups}; got weight.shape[1] = {Cin_g}"
        )
    pad = _padding(padding, (kh, kw), dilation, stride)
    Ho = output_length(H, kh, stride[0], pad[0], pad[1], dilation[0])
    Wo = output_length(W, kw, stride[1], pad[2], pad[3], dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"the dilated kernel ({dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1}) "
            f"is larger than the padded input ({H + pad[0] + pad[1]} x {W + pad[2] + pad[3]}); "
            "the output would be empty"
        )
    return ConvGeometry(stride, pad, dilation, groups, (Ho, Wo))


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, backend="auto"):
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    ``x: (B, Cin, H, W)``, ``weight: (Cout, Cin/groups, kh, kw)``, ``bias: (Cout,)`` or None.
    ``stride`` and ``dilation`` are positive ints or pairs; ``padding`` a non-negative int or
    pair, or ``'valid'`` / ``'same'``. Chapter 1, eq-conv (Eq. 1 of LS-DFN and of DDF).
    """
    x, weight, bias = V.autocast_inputs(x, weight, bias)
    V.check_tensor("x", x, 4, "(B, Cin, H, W)")
    V.check_tensor("weight", weight, 4, "(Cout, Cin/groups, kh, kw)")
    if bias is not None:
        V.check_tensor("bias", bias, 1, "(Cout,)")
    V.check_same_dtype(("x", x), weight=weight, bias=bias)
    V.check_same_device(("x", x), weight=weight, bias=bias)
    V.check_spatial_nonempty("x", x)
    if weight.numel() == 0:
        raise ValueError(f"weight must not be empty; got shape {tuple(weight.shape)}")
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(
            f"bias must have shape (Cout,) = ({weight.shape[0]},); got {tuple(bias.shape)}"
        )
    geometry = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    return dispatch(backend, (x, weight, bias), tuple(geometry),
                    out_shape=(x.shape[0], weight.shape[0], *geometry.out_size),
                    loops=_loops, vectorized=_vectorized, kernels=KERNELS, op=OP)
