"""DMNet's context filter in vectorized PyTorch (Chapter 4, "The groups trick").

:func:`context_filter_torch`, the ``"torch"`` backend, uses the *groups trick*: a depthwise
convolution with a different filter per image is one grouped convolution of a single
"image" whose channels are all ``B*C`` planes of the batch,

    F.conv2d(x.reshape(1, B*C, H, W), filters.reshape(B*C, 1, k, k), padding=r, groups=B*C)

Group ``n = b*C + c`` holds plane ``(b, c)`` and its own filter, so nothing mixes across images
or channels, and PyTorch's convolution (and its autograd) does the work. The pitfall: the
batch size becomes part of the *operator* (``groups=B*C``), not just of a tensor's shape, so a
graph traced for one batch size fails for another (TorchScript tracing bakes ``groups`` in
as a constant; ONNX's ``Conv`` takes ``group`` as a fixed attribute).

Two formulations that keep the batch a plain tensor dimension are here for comparison (the
chapter measures their speed and memory): :func:`context_filter_unfold` copies every
``k x k`` window (``F.unfold``, ``k*k`` times the input) and reduces with one ``einsum``;
:func:`context_filter_shifts` adds ``k*k`` shifted, scaled copies of the input one at a time.
"""

import torch
import torch.nn.functional as F


def context_filter_torch(x, filters):
    """The groups trick: ``x: (B, C, H, W)``, ``filters: (B, C, k, k)`` -> ``(B, C, H, W)``."""
    B, C, H, W = x.shape
    k = filters.shape[-1]
    out = F.conv2d(x.reshape(1, B * C, H, W), filters.reshape(B * C, 1, k, k),
                   padding=(k - 1) // 2, groups=B * C)
    return out.reshape(B, C, H, W)


def context_filter_unfold(x, filters):
    """im2col: every ``k x k`` window as a column, then one weighted sum over the taps."""
    B, C, H, W = x.shape
    k = filters.shape[-1]
    cols = F.unfold(x, k, padding=(k - 1) // 2).reshape(B, C, k * k, H * W)
    return torch.einsum("bctp,bct->bcp", cols, filters.reshape(B, C, k * k)).reshape(B, C, H, W)


def context_filter_shifts(x, filters):
    """Sum over taps of the zero-padded input, shifted by the tap's offset, times its weight."""
    B, C, H, W = x.shape
    k = filters.shape[-1]
    r = (k - 1) // 2
    xp = F.pad(x, (r, r, r, r))
    out = torch.zeros_like(x)
    for i in range(k):
        for j in range(k):  # xp[..., i:i+H, j:j+W] is x read at offset (i - r, j - r)
            out = out + filters[:, :, i, j, None, None] * xp[:, :, i:i + H, j:j + W]
    return out
