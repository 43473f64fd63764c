"""Chapter 4: DMNet, dynamic multi-scale filters (He, Deng and Qiao, ICCV 2019).

* :func:`context_filter` -- Chapter 4, eq-dmnet-context-filter: the depthwise convolution
  ``f_k(x) (x) g_k(x)`` of the paper's Eq. 1 with one ``k x k`` filter per image and channel,
  in four backends;
* :class:`DCM` -- the Dynamic Convolutional Module (eq-dmnet-dcm);
* :class:`DMHead` -- DCMs with kernel sizes ``(1, 3, 5, 7)`` in parallel, their outputs
  concatenated with the input, a 3x3 bottleneck and a 1x1 classifier.

Files in the order the chapter teaches them: :mod:`.loops`, :mod:`.numba_cpu`,
:mod:`.vectorized`, :mod:`.cuda_kernels`, :mod:`.functional` (validation and dispatch),
:mod:`.modules` (the DCM, the DMNet head and the Inception- and ASPP-style heads the paper
compares with) and :mod:`.spec` (the operator's record). The generated multi-scale
segmentation set and the small training runs of the chapter are in
:mod:`dyncore.experiments.ch04`.
"""

from .functional import ContextFilterFunction, context_filter
from .modules import DCM, DMHead

__all__ = ["context_filter", "ContextFilterFunction", "DCM", "DMHead"]
