"""``Conv2d``: the learnable convolution layer of Chapter 1, built on :func:`conv2d`."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import validation as V
from ..backend import resolve_backend
from .functional import conv2d

__all__ = ["Conv2d"]


class Conv2d(nn.Module):
    """A learnable convolution layer built on :func:`conv2d` (like ``nn.Conv2d``; Chapter 1, eq-conv).

    Initialized like ``nn.Conv2d`` (Kaiming-uniform weights, uniform bias), so the two can be
    swapped in a network. ``backend`` picks the implementation ("auto" by default);
    ``device`` and ``dtype`` are passed to the parameters, as in ``torch.nn`` layers.
    Parameters: ``Cout * Cin/groups * kh * kw + Cout`` (with a bias).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, backend="auto", device=None, dtype=None):
        super().__init__()
        in_channels, out_channels = V.check_channels(in_channels=in_channels, out_channels=out_channels)
        kh, kw = V.as_pair("kernel_size", kernel_size)
        groups = V.check_positive_int("groups", groups)
        bias = V.check_bool("bias", bias)
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
