"""Decoupled Dynamic Filter Networks (Zhou et al., CVPR 2021): the operator ``ddf``.

``ddf(x, spatial, channel, kernel_size=k, dilation=d, stride=s)`` filters every channel of every
pixel with the product of a spatial filter shared by the channels (``spatial: (B, k*k, Ho, Wo)``)
and a channel filter shared by the pixels (``channel: (B, C, k*k)``), in four backends
(:mod:`.loops`, :mod:`.numba_cpu`, :mod:`.vectorized`, :mod:`.cuda_kernels`).
"""

from .functional import DDFFunction, ddf, tap_offsets

__all__ = ["DDFFunction", "ddf", "tap_offsets"]
