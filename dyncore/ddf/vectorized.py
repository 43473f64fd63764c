"""The decoupled dynamic filter in vectorized PyTorch: unfold, weight by both filters, sum the taps.

``F.unfold`` with padding ``d*r``, dilation ``d`` and stride ``s`` copies, for every output
pixel, the ``k*k`` input values its taps read into one column: ``(B, C*k*k, Ho*Wo)``, ``k*k``
times the output. Seen as ``(B, C, k*k, Ho*Wo)``, tap ``t`` of pixel ``p = yo*Wo + xo`` is
``x[b, c, yo*s + oy_t, xo*s + ox_t]`` (zero outside), so Chapter 6, eq-ddf-op, is one ``einsum`` with the
spatial filter (broadcast over channels) and the channel filter (broadcast over pixels).
PyTorch's autograd differentiates it. This is how the paper's *full dynamic filter* would be
written too, which is why DDF's authors wrote a fused CUDA kernel instead: the unfolded tensor
is ``k*k`` times the feature map (Chapter 6 measures it).
"""

import torch
import torch.nn.functional as F


def ddf_torch(x, spatial, channel, kernel_size, dilation, stride):
    """``x: (B, C, H, W)``, ``spatial: (B, k*k, Ho, Wo)``, ``channel: (B, C, k*k)`` -> ``(B, C, Ho, Wo)``."""
    B, C = x.shape[:2]
    k, d, s = kernel_size, dilation, stride
    Ho, Wo = spatial.shape[2:]
    cols = F.unfold(x, k, dilation=d, padding=d * ((k - 1) // 2), stride=s)  # (B, C*k*k, Ho*Wo)
    cols = cols.view(B, C, k * k, Ho * Wo)
    out = torch.einsum("bctp,btp,bct->bcp", cols, spatial.reshape(B, k * k, Ho * Wo), channel)
    return out.view(B, C, Ho, Wo)
