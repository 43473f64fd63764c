"""DMNet's modules (Chapter 4): the Dynamic Convolutional Module, the DMNet head, and the heads
it is compared with.

* :class:`DCM` -- the Dynamic Convolutional Module: reduction ``f_k`` (1x1), filter generator
  ``g_k`` (adaptive average pooling to ``k x k``, then 1x1), :func:`context_filter`, fusion (1x1);
* :class:`DMHead` -- DCMs with kernel sizes ``(1, 3, 5, 7)`` in parallel, their outputs
  concatenated with the input, a 3x3 bottleneck and a 1x1 classifier.

Every head here has the shape of Fig. 2 of the paper: parallel branches on the backbone's
features ``x``, their outputs concatenated with ``x``, a 3x3 bottleneck and a 1x1 classifier
(:class:`ConcatHead`). The branches differ (Fig. 1):

* :class:`InceptionBranch` -- (a) a fixed ``k x k`` convolution, its cost grows with ``k**2``;
* :class:`ASPPBranch` -- (b) a fixed 3x3 convolution with dilation ``d``, sparse taps;
* :class:`DCM` -- (c) a ``k x k`` depthwise filter generated from the image.

Each branch first reduces ``in_channels`` to ``channels`` with a 1x1 convolution, as the DCM
does; with that, Table 3's parameter counts are reproduced (Chapter 4, "What it costs").
"""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as V
from ..backend import resolve_backend
from .functional import context_filter

__all__ = ["conv_bn_relu", "ConcatHead", "DCM", "DMHead", "InceptionBranch", "ASPPBranch",
           "InceptionHead", "ASPPHead"]


def _check_input(x, in_channels: int) -> torch.Tensor:
    """``x`` checked; under ``torch.autocast`` a half-precision ``x`` first becomes float32 (the
    heads' operators compute in float32 there)."""
    (x,) = V.autocast_inputs(x)
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    if x.shape[1] != in_channels:
        raise ValueError(f"x must have in_channels = {in_channels} channels; got x of shape {tuple(x.shape)}")
    return x


def conv_bn_relu(in_channels, out_channels, kernel_size, dilation=1, groups=1, *, device=None,
                 dtype=None):
    """``Conv2d`` ('same' padding, no bias) -> ``BatchNorm2d`` -> ``ReLU``."""
    factory = {"device": device, "dtype": dtype}
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                  dilation=dilation, groups=groups, bias=False, **factory),
        nn.BatchNorm2d(out_channels, **factory),
        nn.ReLU(inplace=True),
    )


class ConcatHead(nn.Module):
    """``classifier(bottleneck(cat([x] + [branch(x) for branch in branches])))``.

    Each branch maps ``(B, in_channels, H, W)`` to ``(B, channels, H, W)``; the bottleneck is a
    3x3 conv-BN-ReLU to ``channels``, the classifier a 1x1 convolution to ``num_classes``.
    """

    def __init__(self, in_channels, channels, num_classes, branches, *, device=None, dtype=None):
        super().__init__()
        self.in_channels, self.channels, self.num_classes = V.check_channels(
            in_channels=in_channels, channels=channels, num_classes=num_classes)
        self.branches = nn.ModuleList(branches)
        cat_channels = in_channels + len(self.branches) * channels
        self.bottleneck = conv_bn_relu(cat_channels, channels, 3, device=device, dtype=dtype)
        self.classifier = nn.Conv2d(channels, num_classes, 1, device=device, dtype=dtype)

    def forward(self, x):
        x = _check_input(x, self.in_channels)
        features = torch.cat([x] + [branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.bottleneck(features))


class DCM(nn.Module):
    """Dynamic Convolutional Module (Sec. 3.2 of the paper), ``h_k = f_k(x) (x) g_k(x)``:
    Chapter 4, eq-dmnet-dcm (Eq. 1 of the paper), filters by eq-dmnet-generator.

    * ``reduce`` (``f_k``): 1x1 convolution ``in_channels -> channels``, BatchNorm, ReLU;
    * ``generate`` (``g_k``): adaptive average pooling of ``x`` to ``k x k`` cells, then a 1x1
      convolution ``in_channels -> channels`` with bias: cell ``(i, j)`` of the pooled context
      becomes tap ``(i, j)`` of every channel's filter, ``filters: (B, channels, k, k)``;
    * :func:`context_filter` of the reduced features with those filters, BatchNorm, ReLU;
    * ``fuse``: 1x1 convolution ``channels -> channels``, BatchNorm, ReLU: the output ``O_k``.

    ``dynamic=False`` replaces the generated filters by learned, fixed depthwise filters
    (``weight: (channels, k, k)``, the same for every image): the paper's "traditional filters"
    baseline (Table 1, depthwise row). The parameter count does not depend on ``k`` when
    ``dynamic=True``: ``2*in_channels*channels + channels**2`` weights, plus ``7*channels``
    for the generator's bias and the three BatchNorms. ``device`` and ``dtype`` are passed to
    the parameters, as in ``torch.nn`` layers.
    """

    def __init__(self, in_channels, channels, kernel_size, *, dynamic=True, backend="auto",
                 device=None, dtype=None):
        super().__init__()
        in_channels, channels = V.check_channels(in_channels=in_channels, channels=channels)
        k = V.check_kernel_size("kernel_size", kernel_size)
        V.check_bool("dynamic", dynamic)
        resolve_backend(backend, torch.device("cpu") if device is None else device)
        self.in_channels, self.channels, self.kernel_size = in_channels, channels, k
        self.dynamic, self.backend = dynamic, backend
        factory = {"device": device, "dtype": dtype}
        self.reduce = conv_bn_relu(in_channels, channels, 1, **factory)  # f_k
        if dynamic:
            self.pool = nn.AdaptiveAvgPool2d(k)  # k x k region-based context
            self.generate = nn.Conv2d(in_channels, channels, 1, **factory)  # g_k: context -> filters
        else:
            self.weight = nn.Parameter(torch.empty(channels, k, k, **factory))
            nn.init.uniform_(self.weight, -1 / k, 1 / k)  # nn.Conv2d's default for fan-in k*k
        self.norm = nn.Sequential(nn.BatchNorm2d(channels, **factory), nn.ReLU(inplace=True))
        self.fuse = conv_bn_relu(channels, channels, 1, **factory)

    def filters(self, x):
        """The context-aware filters ``g_k(x)``, ``(B, channels, k, k)`` (or the fixed ones)."""
        if self.dynamic:
            return self.generate(self.pool(x))
        return self.weight.unsqueeze(0).expand(x.shape[0], -1, -1, -1)

    def forward(self, x):
        x = _check_input(x, self.in_channels)
        h = context_filter(self.reduce(x), self.filters(x), backend=self.backend)
        return self.fuse(self.norm(h))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.channels}, kernel_size={self.kernel_size}, "
                f"dynamic={self.dynamic}, backend={self.backend!r}")


class DMHead(ConcatHead):
    """The DMNet head (Fig. 2): DCMs with ``kernel_sizes`` in parallel on the backbone's
    features ``x``, ``cat([x, O_k1, O_k2, ...])``, a 3x3 bottleneck (conv, BatchNorm, ReLU) to
    ``channels`` and a 1x1 classifier to ``num_classes`` logits, at the input's resolution.

    ``dynamic=False`` uses fixed depthwise filters in every DCM (the Table 1 baseline).
    """

    def __init__(self, in_channels, channels, num_classes, kernel_sizes=(1, 3, 5, 7), *,
                 dynamic=True, backend="auto", device=None, dtype=None):
        in_channels, channels = V.check_channels(in_channels=in_channels, channels=channels)
        V.check_bool("dynamic", dynamic)
        if isinstance(kernel_sizes, (str, bytes)) or not hasattr(kernel_sizes, "__iter__"):
            raise TypeError(f"kernel_sizes must be a sequence of odd ints; got {kernel_sizes!r}")
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one kernel size; got ()")
        ks = tuple(V.check_kernel_size(f"kernel_sizes[{n}]", k) for n, k in enumerate(kernel_sizes))
        branches = [DCM(in_channels, channels, k, dynamic=dynamic, backend=backend, device=device,
                        dtype=dtype) for k in ks]
        super().__init__(in_channels, channels, num_classes, branches, device=device, dtype=dtype)
        self.kernel_sizes, self.dynamic = ks, dynamic

    def extra_repr(self):
        return f"kernel_sizes={self.kernel_sizes}, dynamic={self.dynamic}"


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
