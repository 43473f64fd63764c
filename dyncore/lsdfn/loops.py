"""LS-DFN as plain Python loops: the executable specification (Chapter 3, eq-lsdfn with the
kernels of eq-kernels; Eq. 4-6 of the paper).

With centred sample offsets ``o_m = ((a - rs) * g, (b' - rs) * g)`` for ``m = a*s + b'``,
``rs = (s - 1) // 2``, centred tap offsets ``o_t = (i - r, j - r)`` for ``t = i*k + j``, and
``(ym, xm) = (y, x) + o_m``::

    W[b, v, u, t, y, x] = V[b, v, t, y, x] + [t == centre] * U[b, v, u, y, x]          (Eq. 6)
    out[b, v, y, x] = sum_m sample_attention[b, v, m, y, x]                            (Eq. 4-5)
                      * sum_t position_attention[b, v, t, ym, xm]
                      * sum_u W[b, v, u, t, y, x] * x[b, u, ym + oy_t, xm + ox_t]

Zero padding: a term whose feature pixel ``(ym + oy_t, xm + ox_t)`` or whose attention pixel
``(ym, xm)`` lies outside the image is zero. The loops mirror the equation term by term; they
materialize nothing and factor nothing.
"""

import numpy as np

from ..geometry import tap_offset


def sample_offsets(samples, sample_stride):
    """The centred offsets ``(dy, dx)`` of the ``s*s`` samples, in the order ``m = a*s + b'``."""
    rs = (samples - 1) // 2
    return [((a - rs) * sample_stride, (c - rs) * sample_stride)
            for a in range(samples) for c in range(samples)]


def tap_offsets(kernel_size):
    """The centred offsets ``(dy, dx)`` of the ``k*k`` taps, in the order ``t = i*k + j``
    (:func:`dyncore.geometry.tap_offset`, as a list)."""
    return [tap_offset(t, kernel_size) for t in range(kernel_size * kernel_size)]


def large_sampling_filter_loops(x, U, V, sample_attention, position_attention,
                                kernel_size, samples, sample_stride):
    """Numpy arrays in, numpy array ``(B, Co, H, W)`` out; see the module docstring."""
    B, C, H, W = x.shape
    Co = U.shape[1]
    centre = kernel_size * kernel_size // 2
    samples_at = sample_offsets(samples, sample_stride)
    taps = tap_offsets(kernel_size)
    out = np.zeros((B, Co, H, W), dtype=x.dtype)
    for b, v, y, xx in np.ndindex(out.shape):                  # every output element, row-major
        total = 0.0
        for m, (dy, dx) in enumerate(samples_at):              # Eq. 5: sum of samples
            ym, xm = y + dy, xx + dx
            if not (0 <= ym < H and 0 <= xm < W):
                continue                                        # A_pos is 0 outside
            sample = 0.0
            for t, (ty, tx) in enumerate(taps):                 # Eq. 4: taps
                py, px = ym + ty, xm + tx
                if not (0 <= py < H and 0 <= px < W):
                    continue                                    # x is 0 outside
                for u in range(C):
                    w = V[b, v, t, y, xx] + (U[b, v, u, y, xx] if t == centre else 0.0)
                    sample += position_attention[b, v, t, ym, xm] * w * x[b, u, py, px]
            total += sample_attention[b, v, m, y, xx] * sample
        out[b, v, y, xx] = total
    return out
