"""The decoupled dynamic filter as plain Python loops: the executable specification (Chapter 6).

DDF (Zhou et al., CVPR 2021; the paper's Eq. 2, the 'mul' combination; Chapter 6, eq-ddf-op)
builds the filter of channel ``c`` at output pixel ``(yo, xo)`` as the product of a *spatial* filter, one per pixel and shared by
the channels, and a *channel* filter, one per channel and shared by the pixels:

    out[b, c, yo, xo] = sum_t spatial[b, t, yo, xo] * channel[b, c, t]
                              * x[b, c, yo*s + oy_t, xo*s + ox_t]

with tap ``t = i*k + j`` at offset ``(oy_t, ox_t) = ((i - r)*d, (j - r)*d)``, ``r = (k - 1)//2``,
stride ``s``, dilation ``d``, and zero padding: a tap that reads outside the image adds nothing.
``Ho = (H - 1)//s + 1`` and ``Wo = (W - 1)//s + 1``: output pixel ``(yo, xo)`` is centred on
input pixel ``(yo*s, xo*s)``, as in ``F.conv2d(..., stride=s, padding=d*r, dilation=d)``.

The backward pass, with ``G = dL/d out``, is written as loops too (the chapter derives it):

    dL/d spatial[b, t, yo, xo] = sum_c G[b, c, yo, xo] * channel[b, c, t] * x[b, c, yo*s + oy_t, xo*s + ox_t]
    dL/d channel[b, c, t]      = sum_{yo, xo} G[b, c, yo, xo] * spatial[b, t, yo, xo] * x[b, c, yo*s + oy_t, xo*s + ox_t]
    dL/d x[b, c, y, x]         = sum_t G[b, c, yo, xo] * spatial[b, t, yo, xo] * channel[b, c, t]
                                 over the taps t whose output pixel (yo, xo) = ((y - oy_t)/s, (x - ox_t)/s)
                                 has integer coordinates inside the output

The last is the forward read backwards (the taps flipped): input pixel ``(y, x)`` gathers from
every output pixel that read it. With ``s > 1`` only the taps for which ``y - oy_t`` and
``x - ox_t`` are multiples of ``s`` have such a pixel.

The loops work on numpy arrays; ``ddf(..., backend="loops")`` wraps the forward.
"""

import numpy as np

from ..geometry import output_size, tap_offset


def ddf_loops(x, spatial, channel, kernel_size, dilation, stride):
    """``x: (B, C, H, W)``, ``spatial: (B, k*k, Ho, Wo)``, ``channel: (B, C, k*k)`` -> ``(B, C, Ho, Wo)``."""
    B, C, H, W = x.shape
    Ho, Wo = output_size(H, stride), output_size(W, stride)
    out = np.zeros((B, C, Ho, Wo), dtype=x.dtype)
    for b, c, yo, xo in np.ndindex(out.shape):  # every output element, row-major
        acc = 0.0
        for t in range(kernel_size * kernel_size):
            oy, ox = tap_offset(t, kernel_size, dilation)
            y, xx = yo * stride + oy, xo * stride + ox  # the input pixel tap t reads
            if 0 <= y < H and 0 <= xx < W:  # zero padding
                acc += spatial[b, t, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
        out[b, c, yo, xo] = acc
    return out


def ddf_backward_loops(grad_out, x, spatial, channel, kernel_size, dilation, stride):
    """``(dL/dx, dL/dspatial, dL/dchannel)`` given ``grad_out = dL/d out``, as loops.

    Every gradient element gathers what flows into it, as the ``"numba"`` and ``"cuda"``
    backward kernels do: the input gradient visits the taps flipped, ``(y - oy_t, x - ox_t)``.
    """
    B, C, H, W = x.shape
    Ho, Wo = grad_out.shape[2:]
    T = kernel_size * kernel_size
    grad_x = np.zeros_like(x)
    grad_spatial = np.zeros_like(spatial)
    grad_channel = np.zeros_like(channel)
    for b in range(B):
        for t in range(T):
            oy, ox = tap_offset(t, kernel_size, dilation)
            for yo in range(Ho):
                for xo in range(Wo):
                    y, xx = yo * stride + oy, xo * stride + ox
                    if not (0 <= y < H and 0 <= xx < W):
                        continue  # this tap read padding: no gradient flows through it
                    acc = 0.0
                    for c in range(C):
                        acc += grad_out[b, c, yo, xo] * channel[b, c, t] * x[b, c, y, xx]
                        grad_channel[b, c, t] += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * x[b, c, y, xx]
                    grad_spatial[b, t, yo, xo] = acc
        for c in range(C):
            for y in range(H):
                for xx in range(W):
                    acc = 0.0
                    for t in range(T):  # flipped taps: which output pixel read (y, xx) with tap t?
                        oy, ox = tap_offset(t, kernel_size, dilation)
                        dy, dx = y - oy, xx - ox
                        if dy % stride or dx % stride:
                            continue  # no output pixel is centred there
                        yo, xo = dy // stride, dx // stride
                        if 0 <= yo < Ho and 0 <= xo < Wo:
                            acc += grad_out[b, c, yo, xo] * spatial[b, t, yo, xo] * channel[b, c, t]
                    grad_x[b, c, y, xx] = acc
    return grad_x, grad_spatial, grad_channel
