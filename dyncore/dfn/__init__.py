"""Chapter 2: Dynamic Filter Networks, ``dyncore.dfn.dynamic_filter`` and ``DynamicFilterLayer``.

A dynamic filter is a ``k x k`` filter *per pixel*, predicted from the input by a
filter-generating network and applied to the pixel's neighbourhood, the same filter in every
channel (the "dynamic local filtering layer" of Jia et al., 2016; Chapter 2, eq-dfn):

    out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t]

Files in the order the chapter teaches them: :mod:`.loops` (the equation as loops, and its
backward), :mod:`.numba_cpu` (compiled, with the backward kernels), :mod:`.vectorized`
(unfold), :mod:`.cuda_kernels` (Numba CUDA), :mod:`.functional` (validation and dispatch),
:mod:`.modules` (:class:`DynamicFilterLayer`) and :mod:`.spec` (the operator's record). The
moving-digits data of the chapter's training run is in :mod:`dyncore.experiments.ch02`.
"""

from .functional import DynamicFilterFunction, dynamic_filter, tap_offset, tap_offsets
from .modules import NORMALIZATIONS, DynamicFilterLayer

__all__ = ["dynamic_filter", "DynamicFilterLayer", "DynamicFilterFunction", "NORMALIZATIONS",
           "tap_offset", "tap_offsets"]
