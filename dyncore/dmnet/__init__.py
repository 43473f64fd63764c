"""Chapter 4: DMNet, dynamic multi-scale filters (He, Deng and Qiao, ICCV 2019).

* :func:`context_filter` -- Eq. 1's depthwise convolution ``f_k(x) (x) g_k(x)`` with one
  ``k x k`` filter per image and channel, in four backends;
* :class:`DCM` -- the Dynamic Convolutional Module: reduction ``f_k`` (1x1), filter generator
  ``g_k`` (adaptive average pooling to ``k x k``, then 1x1), ``context_filter``, fusion (1x1);
* :class:`DMHead` -- DCMs with kernel sizes ``(1, 3, 5, 7)`` in parallel, their outputs
  concatenated with the input, a 3x3 bottleneck and a 1x1 classifier.

Files in the order the chapter teaches them: :mod:`.loops`, :mod:`.numba_cpu`,
:mod:`.vectorized`, :mod:`.cuda_kernels`; this file validates, dispatches and holds the
modules. :mod:`.heads` has the Inception- and ASPP-style heads the paper compares with,
:mod:`.data` the generated multi-scale segmentation set, :mod:`.experiment` the small
training runs of the chapter.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as V
from ..autograd import KernelFunction
from ..backend import resolve_backend, run_loops
from . import cuda_kernels, numba_cpu
from .heads import ConcatHead, conv_bn_relu
from .loops import context_filter_loops
from .vectorized import context_filter_torch

__all__ = ["context_filter", "ContextFilterFunction", "DCM", "DMHead"]


class ContextFilterFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends: ``apply(kernels, (), x, filters)``."""


def _check_context_filter_args(x, filters) -> int:
    """Validate ``context_filter``'s tensors (contract, "Bad input"); returns the kernel size."""
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    V.check_tensor("filters", filters, 4, "(B, C, k, k)")
    V.check_same_dtype(("x", x), filters=filters)
    V.check_same_device(("x", x), filters=filters)
    V.check_spatial_nonempty("x", x)
    B, C = x.shape[:2]
    kh, kw = filters.shape[2:]
    if kh != kw:
        raise ValueError(
            f"filters must be square, (B, C, k, k); got a {kh} x {kw} kernel "
            f"(filters.shape = {tuple(filters.shape)})"
        )
    k = V.check_kernel_size("kernel size k = filters.shape[-1]", kw)
    V.check_shape("filters", filters, (B, C, k, k), "(B, C, k, k)")
    return k


def context_filter(x, filters, *, backend="auto"):
    """DMNet's context-aware filtering, Eq. 1 of the paper (Eq. 4.2 of the book).

    ``x: (B, C, H, W)``, ``filters: (B, C, k, k)`` with ``k`` odd: image ``b``'s channel ``c``
    is convolved with its own filter ``filters[b, c]`` (a depthwise convolution per image),
    stride 1, zero padding ``r = (k - 1) // 2``, output ``(B, C, H, W)``::

        out[b, c, y, x] = sum_{i, j} filters[b, c, i, j] * x[b, c, y + i - r, x + j - r]

    ``backend``: ``"loops"``, ``"numba"``, ``"torch"`` (the groups trick), ``"cuda"`` or
    ``"auto"`` (``"cuda"`` for CUDA tensors, ``"numba"`` otherwise).
    """
    _check_context_filter_args(x, filters)
    name = resolve_backend(backend, x.device)
    if x.shape[0] == 0:
        return x.new_zeros(x.shape)
    if name == "loops":
        return run_loops(context_filter_loops, x, filters, like=x)
    if name == "torch":
        return context_filter_torch(x, filters)
    kernels = numba_cpu.CONTEXT_FILTER if name == "numba" else cuda_kernels.CONTEXT_FILTER
    return ContextFilterFunction.apply(kernels, (), x, filters)


class DCM(nn.Module):
    """Dynamic Convolutional Module (Sec. 3.2 of the paper), ``h_k = f_k(x) (x) g_k(x)``, Eq. 1.

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
    for the generator's bias and the three BatchNorms.
    """

    def __init__(self, in_channels, channels, kernel_size, *, dynamic=True, backend="auto"):
        super().__init__()
        in_channels = V.check_positive_int("in_channels", in_channels)
        channels = V.check_positive_int("channels", channels)
        k = V.check_kernel_size("kernel_size", kernel_size)
        if not isinstance(dynamic, bool):
            raise TypeError(f"dynamic must be a bool; got {type(dynamic).__name__} {dynamic!r}")
        resolve_backend(backend, torch.device("cpu"))
        self.in_channels, self.channels, self.kernel_size = in_channels, channels, k
        self.dynamic, self.backend = dynamic, backend
        self.reduce = conv_bn_relu(in_channels, channels, 1)  # f_k
        if dynamic:
            self.pool = nn.AdaptiveAvgPool2d(k)  # k x k region-based context
            self.generate = nn.Conv2d(in_channels, channels, 1)  # g_k: context -> filters
        else:
            self.weight = nn.Parameter(torch.empty(channels, k, k))
            nn.init.uniform_(self.weight, -1 / k, 1 / k)  # nn.Conv2d's default for fan-in k*k
        self.norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.fuse = conv_bn_relu(channels, channels, 1)

    def filters(self, x):
        """The context-aware filters ``g_k(x)``, ``(B, channels, k, k)`` (or the fixed ones)."""
        if self.dynamic:
            return self.generate(self.pool(x))
        return self.weight.unsqueeze(0).expand(x.shape[0], -1, -1, -1)

    def forward(self, x):
        V.check_tensor("x", x, 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have in_channels = {self.in_channels} channels; got x of shape "
                f"{tuple(x.shape)}"
            )
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
                 dynamic=True, backend="auto"):
        in_channels = V.check_positive_int("in_channels", in_channels)
        channels = V.check_positive_int("channels", channels)
        if isinstance(kernel_sizes, (str, bytes)) or not hasattr(kernel_sizes, "__iter__"):
            raise TypeError(f"kernel_sizes must be a sequence of odd ints; got {kernel_sizes!r}")
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one kernel size; got ()")
        ks = tuple(V.check_kernel_size(f"kernel_sizes[{n}]", k) for n, k in enumerate(kernel_sizes))
        branches = [DCM(in_channels, channels, k, dynamic=dynamic, backend=backend) for k in ks]
        super().__init__(in_channels, channels, num_classes, branches)
        self.kernel_sizes, self.dynamic = ks, dynamic

    def extra_repr(self):
        return f"kernel_sizes={self.kernel_sizes}, dynamic={self.dynamic}"

