"""Chapter 1: convolution, ``dyncore.conv.conv2d``, with the semantics of ``F.conv2d``.

Files in the order the chapter teaches them: :mod:`.loops` (the equation as loops),
:mod:`.numba_cpu` (compiled, with the backward kernels), :mod:`.vectorized` (im2col),
:mod:`.cuda_kernels` (Numba CUDA); this file validates, dispatches and holds the module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import validation as V
from ..autograd import KernelFunction
from ..backend import resolve_backend, run_loops
from . import cuda_kernels, numba_cpu
from .geometry import ConvGeometry, output_length
from .loops import conv2d_loops
from .vectorized import conv2d_torch

__all__ = ["conv2d", "Conv2d", "Conv2dFunction", "ConvGeometry", "conv_geometry"]


class Conv2dFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends: ``apply(kernels, geometry, x, w, b)``."""


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
    """Validate ``F.conv2d``'s arguments against the shapes and compute the output size."""
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
    pair, or ``'valid'`` / ``'same'``. Eq. 1.1 of the book (Eq. 1 of LS-DFN and of DDF).
    """
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
    name = resolve_backend(backend, x.device)
    if x.shape[0] == 0:
        return x.new_zeros(0, weight.shape[0], *geometry.out_size)
    if name == "loops":
        return run_loops(lambda *a: conv2d_loops(*a, geometry), x, weight, bias, like=x)
    if name == "torch":
        return conv2d_torch(x, weight, bias, geometry)
    kernels = numba_cpu.CONV2D if name == "numba" else cuda_kernels.CONV2D
    return Conv2dFunction.apply(kernels, geometry, x, weight, bias)


class Conv2d(nn.Module):
    """A learnable convolution layer built on :func:`conv2d` (like ``nn.Conv2d``).

    Initialized like ``nn.Conv2d`` (Kaiming-uniform weights, uniform bias), so the two can be
    swapped in a network. ``backend`` picks the implementation ("auto" by default).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, backend="auto", device=None, dtype=None):
        super().__init__()
        in_channels = V.check_positive_int("in_channels", in_channels)
        out_channels = V.check_positive_int("out_channels", out_channels)
        kh, kw = V.as_pair("kernel_size", kernel_size)
        groups = V.check_positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        resolve_backend(backend, torch.device("cpu") if device is None else device)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                      dilation=self.dilation, groups=self.groups, backend=self.backend)

    def extra_repr(self):
        Cout, Cin_g, kh, kw = self.weight.shape
        return (f"{Cin_g * self.groups}, {Cout}, kernel_size=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")
