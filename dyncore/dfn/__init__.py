"""Chapter 2: Dynamic Filter Networks, ``dyncore.dfn.dynamic_filter`` and ``DynamicFilterLayer``.

A dynamic filter is a ``k x k`` filter *per pixel*, predicted from the input by a
filter-generating network and applied to the pixel's neighbourhood, the same filter in every
channel (the "dynamic local filtering layer" of Jia et al., 2016):

    out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t]      (Eq. 2.1)

Files in the order the chapter teaches them: :mod:`.loops` (the equation as loops, and its
backward), :mod:`.numba_cpu` (compiled, with the backward kernels), :mod:`.vectorized`
(unfold), :mod:`.cuda_kernels` (Numba CUDA); this file validates, dispatches and holds the
module. :mod:`.data` makes the moving-digits sequences of the chapter's training run.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as V
from ..autograd import KernelFunction
from ..backend import resolve_backend, run_loops
from . import cuda_kernels, numba_cpu
from .loops import dynamic_filter_loops, tap_offset
from .vectorized import dynamic_filter_torch

__all__ = ["dynamic_filter", "DynamicFilterLayer", "DynamicFilterFunction", "tap_offset",
           "tap_offsets"]

NORMALIZATIONS = ("softmax", None)


class DynamicFilterFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends: ``apply(kernels, (k, d), x, filters)``."""


def tap_offsets(kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """``(k*k, 2)`` integer tensor: row ``t`` is the offset ``(oy_t, ox_t)`` at which tap ``t`` reads."""
    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    return torch.tensor([tap_offset(t, k, d) for t in range(k * k)], dtype=torch.long)


def _check_filters_shape(x: torch.Tensor, filters: torch.Tensor, k: int) -> None:
    B, _, H, W = x.shape
    expected = (B, k * k, H, W)
    if tuple(filters.shape) == expected:
        return
    hint = ""
    taps = filters.shape[1]
    if tuple(filters.shape[2:]) == (H, W) and filters.shape[0] == B and taps != k * k:
        side = round(taps ** 0.5)
        if side * side == taps and side % 2 == 1:
            hint = f" (its {taps} taps would fit kernel_size={side}, but kernel_size={k})"
        else:
            hint = f" ({taps} taps is not k*k = {k * k} for kernel_size={k})"
    raise ValueError(
        f"filters must have shape (B, k*k, H, W) = {expected} for x of shape "
        f"{tuple(x.shape)} and kernel_size={k}; got {tuple(filters.shape)}{hint}"
    )


def dynamic_filter(x, filters, *, kernel_size, dilation=1, backend="auto"):
    """Dynamic Filter Networks' per-pixel filter, shared by all channels (Eq. 2.1).

    ``x: (B, C, H, W)``, ``filters: (B, k*k, H, W)``; returns ``out: (B, C, H, W)`` with
    ``out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t]``, where tap
    ``t = i*k + j`` reads at ``((i - r)*d, (j - r)*d)``, ``r = (k - 1) // 2``, and everything
    outside the image is zero. ``kernel_size`` is odd, ``dilation`` a positive int. ``backend``
    is ``"loops"``, ``"numba"``, ``"torch"``, ``"cuda"`` or ``"auto"`` (``"cuda"`` for CUDA
    tensors, ``"numba"`` otherwise).
    """
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    V.check_tensor("filters", filters, 4, "(B, k*k, H, W)")
    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    V.check_same_dtype(("x", x), filters=filters)
    V.check_same_device(("x", x), filters=filters)
    V.check_spatial_nonempty("x", x)
    _check_filters_shape(x, filters, k)
    name = resolve_backend(backend, x.device)
    if name == "loops":
        return run_loops(lambda a, f: dynamic_filter_loops(a, f, k, d), x, filters, like=x)
    if name == "torch":
        return dynamic_filter_torch(x, filters, k, d)
    kernels = numba_cpu.DYNAMIC_FILTER if name == "numba" else cuda_kernels.DYNAMIC_FILTER
    return DynamicFilterFunction.apply(kernels, (k, d), x, filters)


class DynamicFilterLayer(nn.Module):
    """DFN's dynamic filtering layer: a filter-generating branch, then :func:`dynamic_filter`.

    The *filter-generating branch* is a small convolutional network that reads the ``guide``
    (by default the input ``x`` itself) and predicts ``k*k`` filter taps per pixel:
    ``len(hidden_channels)`` convolutions of ``branch_kernel_size`` (zero-padded to keep the
    size), each followed by a ReLU, then a ``1 x 1`` convolution to ``k*k`` channels. With
    ``normalize="softmax"`` (the default, as in DFN's video prediction) the taps of every
    pixel are passed through a softmax, so each filter is a weighted average of its
    neighbourhood; ``normalize=None`` keeps them as they are.

    ``forward(x, guide=None)``: ``x: (B, in_channels, H, W)``, ``guide: (B, guide_channels, H, W)``;
    returns ``(B, in_channels, H, W)``. :meth:`predict_filters` returns the filters alone.

    Parameters: ``sum_l (c_{l-1} * kb^2 + 1) * c_l + (c_L + 1) * k^2`` with ``c_0 =
    guide_channels``, ``c_l = hidden_channels[l-1]`` and ``kb = branch_kernel_size``; the
    dynamic filtering itself has none (:meth:`parameter_formula`).
    """

    def __init__(self, in_channels, kernel_size=3, *, guide_channels=None, hidden_channels=(32, 32),
                 branch_kernel_size=3, dilation=1, normalize="softmax", backend="auto",
                 device=None, dtype=None):
        super().__init__()
        self.in_channels = V.check_positive_int("in_channels", in_channels)
        self.kernel_size = V.check_kernel_size("kernel_size", kernel_size)
        self.guide_channels = (self.in_channels if guide_channels is None
                               else V.check_positive_int("guide_channels", guide_channels))
        if isinstance(hidden_channels, (int, bool)) or hidden_channels is None:
            hidden_channels = (V.check_positive_int("hidden_channels", hidden_channels),)
        if not isinstance(hidden_channels, (tuple, list)):
            raise TypeError(f"hidden_channels must be an int or a sequence of ints; "
                            f"got {type(hidden_channels).__name__}")
        self.hidden_channels = tuple(V.check_positive_int(f"hidden_channels[{n}]", c)
                                     for n, c in enumerate(hidden_channels))
        self.branch_kernel_size = V.check_kernel_size("branch_kernel_size", branch_kernel_size)
        self.dilation = V.check_positive_int("dilation", dilation)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be 'softmax' or None; got {normalize!r}")
        self.normalize = normalize
        resolve_backend(backend, torch.device("cpu") if device is None else device)
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        layers, c_prev, kb = [], self.guide_channels, self.branch_kernel_size
        for c in self.hidden_channels:
            layers += [nn.Conv2d(c_prev, c, kb, padding=kb // 2, **factory), nn.ReLU()]
            c_prev = c
        layers.append(nn.Conv2d(c_prev, self.kernel_size ** 2, 1, **factory))
        self.filter_branch = nn.Sequential(*layers)

    @staticmethod
    def parameter_formula(guide_channels, hidden_channels, branch_kernel_size, kernel_size) -> int:
        """``sum_l (c_{l-1} kb^2 + 1) c_l + (c_L + 1) k^2``: the branch's weights and biases."""
        widths = [guide_channels, *hidden_channels]
        convs = sum((widths[n] * branch_kernel_size ** 2 + 1) * widths[n + 1]
                    for n in range(len(hidden_channels)))
        return convs + (widths[-1] + 1) * kernel_size ** 2

    def predict_filters(self, guide: torch.Tensor) -> torch.Tensor:
        """The filter-generating branch: ``guide (B, guide_channels, H, W) -> (B, k*k, H, W)``."""
        V.check_tensor("guide", guide, 4, "(B, guide_channels, H, W)")
        if guide.shape[1] != self.guide_channels:
            raise ValueError(f"guide must have {self.guide_channels} channels (guide_channels); "
                             f"got shape {tuple(guide.shape)}")
        filters = self.filter_branch(guide)
        return filters.softmax(dim=1) if self.normalize == "softmax" else filters

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        V.check_tensor("x", x, 4, "(B, in_channels, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (in_channels); "
                             f"got shape {tuple(x.shape)}")
        if guide is None:
            if self.guide_channels != self.in_channels:
                raise ValueError(f"guide is required: the layer predicts its filters from "
                                 f"{self.guide_channels} guide channels, but x has {x.shape[1]}")
            guide = x
        else:
            V.check_tensor("guide", guide, 4, "(B, guide_channels, H, W)")
            if (guide.shape[0], *guide.shape[2:]) != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"guide must have the batch size and image size of x, "
                                 f"{(x.shape[0], *x.shape[2:])}; got shape {tuple(guide.shape)}")
        filters = self.predict_filters(guide)
        return dynamic_filter(x, filters, kernel_size=self.kernel_size, dilation=self.dilation,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"guide_channels={self.guide_channels}, normalize={self.normalize!r}, "
                f"backend={self.backend!r}")
