"""Multi-scale segmentation heads: the shared frame, and the baselines DMNet is compared with.

Every head here has the shape of Fig. 2 of the paper: parallel branches on the backbone's
features ``x``, their outputs concatenated with ``x``, a 3x3 bottleneck and a 1x1 classifier
(:class:`ConcatHead`). The branches differ (Fig. 1):

* :class:`InceptionBranch` -- (a) a fixed ``k x k`` convolution, its cost grows with ``k**2``;
* :class:`ASPPBranch` -- (b) a fixed 3x3 convolution with dilation ``d``, sparse taps;
* :class:`dyncore.dmnet.DCM` -- (c) a ``k x k`` depthwise filter generated from the image.

Each branch first reduces ``in_channels`` to ``channels`` with a 1x1 convolution, as the DCM
does; with that, Table 3's parameter counts are reproduced (Chapter 4, "What it costs").
"""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as V


def conv_bn_relu(in_channels, out_channels, kernel_size, dilation=1, groups=1):
    """``Conv2d`` ('same' padding, no bias) -> ``BatchNorm2d`` -> ``ReLU``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                  dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConcatHead(nn.Module):
    """``classifier(bottleneck(cat([x] + [branch(x) for branch in branches])))``.

    Each branch maps ``(B, in_channels, H, W)`` to ``(B, channels, H, W)``; the bottleneck is a
    3x3 conv-BN-ReLU to ``channels``, the classifier a 1x1 convolution to ``num_classes``.
    """

    def __init__(self, in_channels, channels, num_classes, branches):
        super().__init__()
        self.in_channels = V.check_positive_int("in_channels", in_channels)
        self.channels = V.check_positive_int("channels", channels)
        self.num_classes = V.check_positive_int("num_classes", num_classes)
        self.branches = nn.ModuleList(branches)
        cat_channels = in_channels + len(self.branches) * channels
        self.bottleneck = conv_bn_relu(cat_channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        V.check_tensor("x", x, 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have in_channels = {self.in_channels} channels; got x of shape "
                f"{tuple(x.shape)}"
            )
        features = torch.cat([x] + [branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.bottleneck(features))


class InceptionBranch(nn.Sequential):
    """1x1 reduction, then a fixed ``k x k`` convolution ``channels -> channels`` (Fig. 1a)."""

    def __init__(self, in_channels, channels, kernel_size):
        k = V.check_kernel_size("kernel_size", kernel_size)
        super().__init__(conv_bn_relu(in_channels, channels, 1), conv_bn_relu(channels, channels, k))


class ASPPBranch(nn.Sequential):
    """1x1 reduction, then a fixed 3x3 convolution with ``dilation`` (Fig. 1b).

    ``depthwise=True`` makes the 3x3 convolution depthwise and adds a 1x1 fusion after it, the
    "depthwise" column of the paper's Table 2.
    """

    def __init__(self, in_channels, channels, dilation, *, depthwise=False):
        d = V.check_positive_int("dilation", dilation)
        layers = [conv_bn_relu(in_channels, channels, 1),
                  conv_bn_relu(channels, channels, 3, dilation=d, groups=channels if depthwise else 1)]
        if depthwise:
            layers.append(conv_bn_relu(channels, channels, 1))
        super().__init__(*layers)


class InceptionHead(ConcatHead):
    """Inception-style head: one :class:`InceptionBranch` per kernel size (Table 3, "Inception")."""

    def __init__(self, in_channels, channels, num_classes, kernel_sizes=(1, 3, 5, 7)):
        ks = tuple(kernel_sizes)
        if not ks:
            raise ValueError("kernel_sizes must name at least one kernel size; got ()")
        super().__init__(in_channels, channels, num_classes,
                         [InceptionBranch(in_channels, channels, k) for k in ks])
        self.kernel_sizes = ks


class ASPPHead(ConcatHead):
    """ASPP-style head: one :class:`ASPPBranch` per dilation (Table 2; Table 3 uses 6/12/24/36)."""

    def __init__(self, in_channels, channels, num_classes, dilations=(6, 12, 24, 36), *,
                 depthwise=False):
        ds = tuple(dilations)
        if not ds:
            raise ValueError("dilations must name at least one dilation; got ()")
        super().__init__(in_channels, channels, num_classes,
                         [ASPPBranch(in_channels, channels, d, depthwise=depthwise) for d in ds])
        self.dilations, self.depthwise = ds, depthwise
