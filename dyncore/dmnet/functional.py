"""``context_filter``: validation and dispatch to a backend (Chapter 4, eq-dmnet-context-filter).

The kernels of the ``"numba"`` and ``"cuda"`` backends run as the custom operator
``torch.ops.dyncore.context_filter`` (:mod:`dyncore.library`).
"""

from __future__ import annotations

from .. import library
from .. import validation as V
from ..autograd import KernelFunction
from ..backend import dispatch
from . import cuda_kernels, numba_cpu
from .loops import context_filter_loops
from .vectorized import context_filter_torch

__all__ = ["context_filter", "ContextFilterFunction"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends.
KERNELS = {"numba": numba_cpu.CONTEXT_FILTER, "cuda": cuda_kernels.CONTEXT_FILTER}

#: ``torch.ops.dyncore.context_filter`` (:mod:`dyncore.library`); the kernel size is the
#: filters' shape, so the operator has no other parameter.
OP = library.define("context_filter", ("x", "filters"), (), kernels=KERNELS,
                    vectorized=context_filter_torch)


class ContextFilterFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends outside the custom operator:
    ``apply(kernels, (), x, filters)``."""


def _check_context_filter_args(x, filters) -> int:
    """Validate ``context_filter``'s tensors (contract, "Bad input"); returns the kernel size."""
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    V.check_tensor("filters", filters, 4, "(B, C, k, k)")
    V.check_same_dtype(("x", x), filters=filters)
    V.check_same_device(("x", x), filters=filters)
    V.check_spatial_nonempty("x", x)
    B, C = x.shape[:2]
    kh, kw = filters.shape[2:]
    if kh != kw:
        raise ValueError(
            f"filters must be square, (B, C, k, k); got a {kh} x {kw} kernel "
            f"(filters.shape = {tuple(filters.shape)})"
        )
    k = V.check_kernel_size("kernel size k = filters.shape[-1]", kw)
    V.check_shape("filters", filters, (B, C, k, k), "(B, C, k, k)")
    return k


def context_filter(x, filters, *, backend="auto"):
    """DMNet's context-aware filtering: Chapter 4, eq-dmnet-context-filter (Eq. 1 of the paper).

    ``x: (B, C, H, W)``, ``filters: (B, C, k, k)`` with ``k`` odd: image ``b``'s channel ``c``
    is convolved with its own filter ``filters[b, c]`` (a depthwise convolution per image),
    stride 1, zero padding ``r = (k - 1) // 2``, output ``(B, C, H, W)``::

        out[b, c, y, x] = sum_{i, j} filters[b, c, i, j] * x[b, c, y + i - r, x + j - r]

    ``backend``: ``"loops"``, ``"numba"``, ``"torch"`` (the groups trick), ``"cuda"`` or
    ``"auto"`` (``"cuda"`` for CUDA tensors, ``"numba"`` otherwise).
    """
    x, filters = V.autocast_inputs(x, filters)
    _check_context_filter_args(x, filters)
    return dispatch(backend, (x, filters), (), out_shape=tuple(x.shape),
                    loops=context_filter_loops, vectorized=context_filter_torch,
                    kernels=KERNELS, op=OP)
