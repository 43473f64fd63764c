"""Chapter 5: PAD-Nets, pixel-wise adaptive dilation (``dyncore.pad``).

Files in the order the chapter teaches them: :mod:`.loops` (the gated sum as loops),
:mod:`.numba_cpu` (fused and compiled, with the backward kernels), :mod:`.vectorized`
(``D`` dilated ``F.conv2d`` calls), :mod:`.cuda_kernels` (Numba CUDA), :mod:`.functional`
(validation, dispatch, autograd glue), :mod:`.modules` (the learnable layer :class:`PADConv2d`:
hidden priors, Gumbel-softmax gates, the three aggregations; and :class:`PADStack`) and
:mod:`.spec` (the operator's record). The chapter's stripes task and segmentation experiment
are in :mod:`dyncore.experiments.ch05`.
"""

from .functional import AdaptiveDilationConvFunction, adaptive_dilation_conv, check_dilations
from .modules import AGGREGATIONS, PADConv2d, PADStack, dilation_variance, expected_dilation, gates_from_priors, record_gates

__all__ = [
    "adaptive_dilation_conv",
    "AdaptiveDilationConvFunction",
    "check_dilations",
    "PADConv2d",
    "PADStack",
    "AGGREGATIONS",
    "gates_from_priors",
    "expected_dilation",
    "dilation_variance",
    "record_gates",
]
