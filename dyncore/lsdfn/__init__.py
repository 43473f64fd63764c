"""Chapter 3: LS-DFN, dynamic filtering with a large sampling field.

Files in the order the chapter teaches them: :mod:`.loops` (eq-lsdfn as loops), :mod:`.numba_cpu`
(fused with the channel-sum factorization eq-factor, with the backward kernels),
:mod:`.vectorized` (the materializing PyTorch version), :mod:`.cuda_kernels` (Numba CUDA),
:mod:`.functional` (validation and dispatch), :mod:`.modules` (:class:`LSDFN`) and :mod:`.spec`
(the operator's record). The "flying shapes" optical-flow data, the flow pictures and the small
flow networks of the chapter are in :mod:`dyncore.experiments.ch03`.
"""

from .functional import LargeSamplingFilterFunction, large_sampling_filter
from .loops import sample_offsets, tap_offsets
from .modules import LSDFN
from .vectorized import materialize_kernels

__all__ = [
    "large_sampling_filter", "LSDFN", "LargeSamplingFilterFunction",
    "sample_offsets", "tap_offsets", "materialize_kernels",
]
