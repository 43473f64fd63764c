"""Decoupled Dynamic Filter Networks (Zhou et al., CVPR 2021): the operator ``ddf``.

``ddf(x, spatial, channel, kernel_size=k, dilation=d, stride=s)`` filters every channel of every
pixel with the product of a spatial filter shared by the channels (``spatial: (B, k*k, Ho, Wo)``)
and a channel filter shared by the pixels (``channel: (B, C, k*k)``), in four backends
(:mod:`.loops`, :mod:`.numba_cpu`, :mod:`.vectorized`, :mod:`.cuda_kernels`; validation and
dispatch in :mod:`.functional`). The learnable layers (:mod:`.modules`) are :class:`DDF`
(spatial branch, channel branch with squeeze-excite, filter normalization) and :class:`DDFUp`
(scale^2 branch pairs and pixel shuffle, optionally guided); :mod:`.spec` is the operator's
record. The chapter's data and experiments are in :mod:`dyncore.experiments.ch06`.
"""

from .functional import DDFFunction, ddf, tap_offsets
from .modules import (DDF, FILTERS, NORMALIZATIONS, DDFUp, branch_parameters, filter_norm, record_filters,
                      squeeze_width)

__all__ = ["DDF", "DDFFunction", "DDFUp", "FILTERS", "NORMALIZATIONS", "branch_parameters", "ddf",
           "filter_norm", "record_filters", "squeeze_width", "tap_offsets"]
