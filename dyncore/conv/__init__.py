"""Chapter 1: convolution, ``dyncore.conv.conv2d``, with the semantics of ``F.conv2d``.

Files in the order the chapter teaches them: :mod:`.loops` (the equation as loops),
:mod:`.numba_cpu` (compiled, with the backward kernels), :mod:`.vectorized` (im2col),
:mod:`.cuda_kernels` (Numba CUDA), :mod:`.functional` (validation and dispatch),
:mod:`.modules` (the layer :class:`Conv2d`) and :mod:`.spec` (the operator's record).
:mod:`.geometry` is conv's own: the general ``F.conv2d`` geometry (asymmetric padding, pairs of
strides and dilations, ``'same'``) that the centred, odd-kernel operators of the other chapters
do not need (they use :mod:`dyncore.geometry`).
"""

from .functional import Conv2dFunction, ConvGeometry, conv2d, conv_geometry
from .modules import Conv2d

__all__ = ["conv2d", "Conv2d", "Conv2dFunction", "ConvGeometry", "conv_geometry"]
