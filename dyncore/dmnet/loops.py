"""DMNet's context filter as plain Python loops: the executable specification (Chapter 4,
eq-dmnet-context-filter).

One ``k x k`` filter per image and channel, applied to that channel only (a depthwise
convolution whose weights change from image to image), stride 1, zero padding, output the
size of the input:

    out[b, c, y, x] = sum_{i, j} filters[b, c, i, j] * x[b, c, y + (i - r), x + (j - r)]

with ``r = (k - 1) // 2`` and terms whose input pixel falls outside the image skipped.
The loops work on numpy arrays; ``dyncore.dmnet.context_filter(..., backend="loops")``
wraps them.
"""

import numpy as np


def context_filter_loops(x, filters):
    """``x: (B, C, H, W)``, ``filters: (B, C, k, k)`` with ``k`` odd -> ``(B, C, H, W)``."""
    B, C, H, W = x.shape
    k = filters.shape[-1]
    r = (k - 1) // 2
    out = np.zeros((B, C, H, W), dtype=x.dtype)
    for b, c, y, xx in np.ndindex(out.shape):   # depthwise: channel c reads channel c only
        acc = 0.0
        for i in range(k):
            for j in range(k):                  # tap t = i*k + j at offset (i - r, j - r)
                yi, xi = y + i - r, xx + j - r
                if 0 <= yi < H and 0 <= xi < W:
                    acc += filters[b, c, i, j] * x[b, c, yi, xi]
        out[b, c, y, xx] = acc
    return out
