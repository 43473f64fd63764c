"""Pixel-wise adaptive dilation in vectorized PyTorch: ``D`` dilated convolutions, gated.

The gated sum of Chapter 5, eq-pad-relaxed, is computed as it reads: one ``F.conv2d`` per dilation (padding
``dil * r`` keeps the size), each response multiplied by its gate map and summed. PyTorch's
autograd differentiates it. Unlike the fused backends it materializes all ``D`` responses,
``D`` tensors the size of the output, and it computes every one of them even where a gate is
zero, so one-hot gates make it no faster.
"""

import torch.nn.functional as F


def adaptive_dilation_conv_torch(x, weight, bias, gates, dilations):
    r = (weight.shape[-1] - 1) // 2
    out = None
    for d, dil in enumerate(dilations):
        term = gates[:, d:d + 1] * F.conv2d(x, weight, padding=dil * r, dilation=dil)
        out = term if out is None else out + term
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
