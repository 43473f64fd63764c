"""Convolution as plain Python loops: the executable specification (Chapter 1, eq-conv).

    out[b, o, yo, xo] = bias[o] + sum_{c in group(o)} sum_{i, j}
                        weight[o, c, i, j] * x[b, c, yo*sh - pt + i*dh, xo*sw - pl + j*dw]

with zero padding: terms whose input pixel falls outside the image are skipped. The loops
work on numpy arrays; ``dyncore.conv.conv2d(..., backend="loops")`` wraps them.
"""

import numpy as np


def conv2d_loops(x, weight, bias, geometry):
    """``x: (B, Cin, H, W)``, ``weight: (Cout, Cin/groups, kh, kw)``, ``bias: (Cout,)`` or None.

    ``geometry`` is a :class:`~dyncore.conv.geometry.ConvGeometry` (stride, padding, ...).
    """
    B, Cin, H, W = x.shape
    Cout, Cin_g, kh, kw = weight.shape
    stride, dilation, groups = geometry.stride, geometry.dilation, geometry.groups
    padding = geometry.pad_top_left
    Ho, Wo = geometry.out_size
    Cout_g = Cout // groups
    out = np.zeros((B, Cout, Ho, Wo), dtype=x.dtype)
    for b in range(B):
        for o in range(Cout):
            g = o // Cout_g                       # the group this output channel belongs to
            for yo in range(Ho):
                for xo in range(Wo):
                    acc = 0.0 if bias is None else bias[o]
                    for c in range(Cin_g):
                        for i in range(kh):
                            for j in range(kw):
                                y = yo * stride[0] - padding[0] + i * dilation[0]
                                xx = xo * stride[1] - padding[1] + j * dilation[1]
                                if 0 <= y < H and 0 <= xx < W:
                                    acc += weight[o, c, i, j] * x[b, g * Cin_g + c, y, xx]
                    out[b, o, yo, xo] = acc
    return out
