"""``DynamicFilterLayer``: DFN's dynamic filtering layer (Chapter 2), built on :func:`dynamic_filter`."""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as V
from ..backend import resolve_backend
from .functional import dynamic_filter

__all__ = ["DynamicFilterLayer", "NORMALIZATIONS"]

#: How the predicted taps are normalized: a softmax over the taps of each pixel, or not at all.
NORMALIZATIONS = ("softmax", "none")


class DynamicFilterLayer(nn.Module):
    """DFN's dynamic filtering layer: a filter-generating branch, then :func:`dynamic_filter`
    (Chapter 2, eq-dfn).

    The *filter-generating branch* is a small convolutional network that reads the ``guidance``
    (by default the input ``x`` itself) and predicts ``k*k`` filter taps per pixel:
    ``len(hidden_channels)`` convolutions of ``branch_kernel_size`` (zero-padded to keep the
    size), each followed by a ReLU, then a ``1 x 1`` convolution to ``k*k`` channels. With
    ``normalization="softmax"`` (the default, as in DFN's video prediction) the taps of every
    pixel are passed through a softmax, so each filter is a weighted average of its
    neighbourhood; ``normalization="none"`` keeps them as they are (the spellings of
    :class:`dyncore.ddf.DDF`).

    ``forward(x, guidance=None)``: ``x: (B, in_channels, H, W)``,
    ``guidance: (B, guidance_channels, H, W)``; returns ``(B, in_channels, H, W)``.
    :meth:`predict_filters` returns the filters alone. ``device`` and ``dtype`` are passed to the
    parameters, as in ``torch.nn`` layers.

    Parameters (Chapter 2, eq-dfn-params): ``sum_l (c_{l-1} * kb^2 + 1) * c_l + (c_L + 1) * k^2``
    with ``c_0 = guidance_channels``, ``c_l = hidden_channels[l-1]`` and
    ``kb = branch_kernel_size``; the dynamic filtering itself has none (:meth:`parameter_formula`).
    """

    def __init__(self, in_channels, kernel_size=3, *, guidance_channels=None, hidden_channels=(32, 32),
                 branch_kernel_size=3, dilation=1, normalization="softmax", backend="auto",
                 device=None, dtype=None):
        super().__init__()
        (self.in_channels,) = V.check_channels(in_channels=in_channels)
        self.kernel_size = V.check_kernel_size("kernel_size", kernel_size)
        (self.guidance_channels,) = ((self.in_channels,) if guidance_channels is None
                                     else V.check_channels(guidance_channels=guidance_channels))
        if isinstance(hidden_channels, (int, bool)) or hidden_channels is None:
            hidden_channels = V.check_channels(hidden_channels=hidden_channels)
        if not isinstance(hidden_channels, (tuple, list)):
            raise TypeError(f"hidden_channels must be an int or a sequence of ints; "
                            f"got {type(hidden_channels).__name__}")
        self.hidden_channels = V.check_channels(**{f"hidden_channels[{n}]": c
                                                   for n, c in enumerate(hidden_channels)})
        self.branch_kernel_size = V.check_kernel_size("branch_kernel_size", branch_kernel_size)
        self.dilation = V.check_positive_int("dilation", dilation)
        self.normalization = V.check_choice("normalization", normalization, NORMALIZATIONS)
        resolve_backend(backend, torch.device("cpu") if device is None else device)
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        layers, c_prev, kb = [], self.guidance_channels, self.branch_kernel_size
        for c in self.hidden_channels:
            layers += [nn.Conv2d(c_prev, c, kb, padding=kb // 2, **factory), nn.ReLU()]
            c_prev = c
        layers.append(nn.Conv2d(c_prev, self.kernel_size ** 2, 1, **factory))
        self.filter_branch = nn.Sequential(*layers)

    @staticmethod
    def parameter_formula(guidance_channels, hidden_channels, branch_kernel_size, kernel_size) -> int:
        """``sum_l (c_{l-1} kb^2 + 1) c_l + (c_L + 1) k^2``: the branch's weights and biases
        (Chapter 2, eq-dfn-params)."""
        widths = [guidance_channels, *hidden_channels]
        convs = sum((widths[n] * branch_kernel_size ** 2 + 1) * widths[n + 1]
                    for n in range(len(hidden_channels)))
        return convs + (widths[-1] + 1) * kernel_size ** 2

    def predict_filters(self, guidance: torch.Tensor) -> torch.Tensor:
        """The filter-generating branch: ``guidance (B, guidance_channels, H, W) -> (B, k*k, H, W)``."""
        (guidance,) = V.autocast_inputs(guidance)
        V.check_tensor("guidance", guidance, 4, "(B, guidance_channels, H, W)")
        if guidance.shape[1] != self.guidance_channels:
            raise ValueError(f"guidance must have {self.guidance_channels} channels (guidance_channels); "
                             f"got shape {tuple(guidance.shape)}")
        filters = self.filter_branch(guidance)
        return filters.softmax(dim=1) if self.normalization == "softmax" else filters

    def forward(self, x: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        x, guidance = V.autocast_inputs(x, guidance)  # under torch.autocast: computes in float32
        V.check_tensor("x", x, 4, "(B, in_channels, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (in_channels); "
                             f"got shape {tuple(x.shape)}")
        if guidance is None:
            if self.guidance_channels != self.in_channels:
                raise ValueError(f"guidance is required: the layer predicts its filters from "
                                 f"{self.guidance_channels} guidance channels, but x has {x.shape[1]}")
            guidance = x
        else:
            V.check_tensor("guidance", guidance, 4, "(B, guidance_channels, H, W)")
            if (guidance.shape[0], *guidance.shape[2:]) != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"guidance must have the batch size and image size of x, "
                                 f"{(x.shape[0], *x.shape[2:])}; got shape {tuple(guidance.shape)}")
        filters = self.predict_filters(guidance)
        return dynamic_filter(x, filters, kernel_size=self.kernel_size, dilation=self.dilation,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"guidance_channels={self.guidance_channels}, normalization={self.normalization!r}, "
                f"backend={self.backend!r}")
