"""Convolution in vectorized PyTorch: im2col (``F.unfold``) and one batched matrix product.

``F.unfold`` copies every receptive field into a column: ``(B, Cin*kh*kw, Ho*Wo)``, which is
``kh*kw`` times the input (Chapter 1, "im2col"). The convolution is then a matrix product per
group; PyTorch's autograd differentiates it.
"""

import torch
import torch.nn.functional as F


def conv2d_torch(x, weight, bias, geometry):
    """``geometry`` is a :class:`~dyncore.conv.geometry.ConvGeometry`."""
    B, Cin, H, W = x.shape
    Cout, Cin_g, kh, kw = weight.shape
    (Ho, Wo), groups = geometry.out_size, geometry.groups
    pt, pb, pl, pr = geometry.padding
    # Pad by hand: asymmetric padding (padding="same" with an even kernel) works too.
    xp = F.pad(x, (pl, pr, pt, pb))
    cols = F.unfold(xp, (kh, kw), dilation=geometry.dilation, stride=geometry.stride)
    cols = cols.reshape(B, groups, Cin_g * kh * kw, Ho * Wo)  # (B, groups, Cin_g*kh*kw, L)
    w = weight.reshape(groups, Cout // groups, Cin_g * kh * kw)
    out = torch.matmul(w, cols).reshape(B, Cout, Ho, Wo)  # (groups, o, k) @ (B, groups, k, L)
    if bias is not None:
        out = out + bias.view(1, Cout, 1, 1)
    return out
