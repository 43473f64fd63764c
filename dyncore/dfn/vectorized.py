"""Dynamic filtering in vectorized PyTorch: unfold the neighbourhoods, weight them, sum the taps.

``F.unfold`` with padding ``d*r`` and dilation ``d`` copies, for every pixel, the ``k*k``
input values its taps read into one column: ``(B, C*k*k, H*W)``, ``k*k`` times the input
(Chapter 2, "What the unfold formulation costs"). Seen as ``(B, C, k*k, H, W)``, tap ``t`` of
that tensor at ``(y, x)`` is ``x[b, c, y + oy_t, x + ox_t]`` (zero outside), so eq-dfn is a
product with the filters, broadcast over the channels, and a sum over the tap axis.
PyTorch's autograd differentiates it.
"""

import torch.nn.functional as F


def dynamic_filter_torch(x, filters, kernel_size, dilation):
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    cols = F.unfold(x, k, dilation=d, padding=d * r)          # (B, C*k*k, H*W)
    cols = cols.view(B, C, k * k, H, W)                       # tap t of pixel (y, x)
    return (cols * filters.unsqueeze(1)).sum(dim=2)           # eq-dfn, all pixels at once
