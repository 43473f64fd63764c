"""Pixel-wise adaptive dilation as plain Python loops: the executable specification.

The relaxed PAD operator (Chapter 5, eq-pad-relaxed; contract section 5) is a gated sum, over the
``D`` dilations a pixel may choose from, of ordinary dilated convolutions:

    out[b, o, y, x] = sum_d gates[b, d, y, x]
                      * sum_{c, i, j} weight[o, c, i, j] * x[b, c, y + (i - r)*dil_d, x + (j - r)*dil_d]
                      + bias[o]

with ``r = (k - 1) // 2`` and zero padding: terms whose input pixel falls outside the image are
skipped. The loops work on numpy arrays; ``dyncore.pad.adaptive_dilation_conv(...,
backend="loops")`` wraps them.
"""

import numpy as np


def adaptive_dilation_conv_loops(x, weight, bias, gates, dilations):
    """``x: (B, Cin, H, W)``, ``weight: (Cout, Cin, k, k)``, ``bias: (Cout,)`` or None,
    ``gates: (B, D, H, W)``, ``dilations``: ``D`` positive ints."""
    B, Cin, H, W = x.shape
    Cout, _, k, _ = weight.shape
    r = (k - 1) // 2
    out = np.zeros((B, Cout, H, W), dtype=x.dtype)
    for b, o, y, xx in np.ndindex(out.shape):  # every output element, row-major
        total = 0.0
        for d, dil in enumerate(dilations):
            # the response of the plain convolution with dilation dil at (y, xx)
            response = 0.0
            for c in range(Cin):
                for i in range(k):
                    for j in range(k):
                        yi = y + (i - r) * dil
                        xi = xx + (j - r) * dil
                        if 0 <= yi < H and 0 <= xi < W:
                            response += weight[o, c, i, j] * x[b, c, yi, xi]
            total += gates[b, d, y, xx] * response
        out[b, o, y, xx] = total + (0.0 if bias is None else bias[o])
    return out
