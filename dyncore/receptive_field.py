"""Receptive fields: the theoretical one (a formula) and the effective one (by gradients).

* :func:`receptive_field` -- the side of the input window that one output pixel can see
  through a stack of convolutions, ``1 + sum_l (k_l - 1) * d_l * prod_{m<l} s_m``.
* :func:`effective_receptive_field` -- Luo et al. (2016): how much each input pixel actually
  influences the centre output pixel, ``|d out[centre] / d x|``, averaged over random inputs.
* :func:`erf_radius` -- one number for an ERF map: the radius of the smallest centred square
  holding a given fraction of its mass.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import validation as V


def receptive_field(layers: Sequence[Sequence[int]]) -> int:
    """Side of the theoretical receptive field of a stack of ``(kernel_size, stride, dilation)``."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a sequence of (kernel_size, stride, dilation); got {layers!r}")
    rf, jump = 1, 1
    for n, layer in enumerate(layers):
        if len(layer) != 3:
            raise ValueError(f"layers[{n}] must be (kernel_size, stride, dilation); got {layer!r}")
        k = V.check_positive_int(f"layers[{n}] kernel_size", layer[0])
        s = V.check_positive_int(f"layers[{n}] stride", layer[1])
        d = V.check_positive_int(f"layers[{n}] dilation", layer[2])
        rf += (k - 1) * d * jump  # each layer widens the window by (k-1)*d input-steps of its own grid
        jump *= s  # distance, in input pixels, between neighbouring pixels of the next layer's input
    return rf


def effective_receptive_field(model: torch.nn.Module, in_channels: int, size: int, samples: int = 8,
                              seed: int = 0, device=None, dtype=torch.float32) -> torch.Tensor:
    """ERF map ``(size, size)``: mean over random inputs of ``sum_c |d out[centre] / d x[c]|``.

    The output's centre pixel (all channels summed) receives gradient 1, every other pixel 0,
    as in Luo et al. (2016). The map is normalized to sum to 1.
    """
    V.check_positive_int("in_channels", in_channels)
    V.check_positive_int("size", size)
    V.check_positive_int("samples", samples)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, in_channels, size, size, generator=gen, dtype=dtype)
    x = x.to(device or "cpu").requires_grad_(True)
    out = model(x)
    if out.dim() != 4:
        raise ValueError(f"model must return a 4-D tensor (B, C, H, W); got shape {tuple(out.shape)}")
    centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum()
    (grad,) = torch.autograd.grad(centre, x)
    erf = grad.abs().sum(1).mean(0)
    total = erf.sum()
    return (erf / total if total > 0 else erf).detach().cpu()


def erf_radius(erf: torch.Tensor, fraction: float = 0.95) -> int:
    """Smallest ``r`` such that the centred ``(2r+1) x (2r+1)`` square holds ``fraction`` of the mass."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    H, W = erf.shape
    cy, cx = H // 2, W // 2
    total = float(erf.sum())
    for r in range(max(H, W)):
        window = erf[max(0, cy - r): cy + r + 1, max(0, cx - r): cx + r + 1]
        if float(window.sum()) >= fraction * total - 1e-12:
            return r
    return max(H, W)
