"""``dynamic_filter``: validation and dispatch to a backend (Chapter 2, eq-dfn).

The kernels of the ``"numba"`` and ``"cuda"`` backends run as the custom operator
``torch.ops.dyncore.dynamic_filter`` (:mod:`dyncore.library`).
"""

from __future__ import annotations

from .. import library
from .. import validation as V
from ..autograd import KernelFunction
from ..backend import dispatch
from ..geometry import tap_offset, tap_offsets
from . import cuda_kernels, numba_cpu
from .loops import dynamic_filter_loops
from .vectorized import dynamic_filter_torch

__all__ = ["dynamic_filter", "DynamicFilterFunction", "tap_offset", "tap_offsets"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends.
KERNELS = {"numba": numba_cpu.DYNAMIC_FILTER, "cuda": cuda_kernels.DYNAMIC_FILTER}

#: ``torch.ops.dyncore.dynamic_filter``: the kernels as a custom operator (:mod:`dyncore.library`).
OP = library.define("dynamic_filter", ("x", "filters"), ("int kernel_size", "int dilation"),
                    kernels=KERNELS, vectorized=dynamic_filter_torch)


class DynamicFilterFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends outside the custom operator:
    ``apply(kernels, (k, d), x, filters)``."""


def _check_filters_shape(x, filters, k: int) -> None:
    B, _, H, W = x.shape
    expected = (B, k * k, H, W)
    if tuple(filters.shape) == expected:
        return
    hint = ""
    taps = filters.shape[1]
    if tuple(filters.shape[2:]) == (H, W) and filters.shape[0] == B and taps != k * k:
        side = round(taps ** 0.5)
        if side * side == taps and side % 2 == 1:
            hint = f" (its {taps} taps would fit kernel_size={side}, but kernel_size={k})"
        else:
            hint = f" ({taps} taps is not k*k = {k * k} for kernel_size={k})"
    raise ValueError(
        f"filters must have shape (B, k*k, H, W) = {expected} for x of shape "
        f"{tuple(x.shape)} and kernel_size={k}; got {tuple(filters.shape)}{hint}"
    )


def dynamic_filter(x, filters, *, kernel_size, dilation=1, backend="auto"):
    """Dynamic Filter Networks' per-pixel filter, shared by all channels (Chapter 2, eq-dfn).

    ``x: (B, C, H, W)``, ``filters: (B, k*k, H, W)``; returns ``out: (B, C, H, W)`` with
    ``out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t]``, where tap
    ``t = i*k + j`` reads at ``((i - r)*d, (j - r)*d)``, ``r = (k - 1) // 2``, and everything
    outside the image is zero. ``kernel_size`` is odd, ``dilation`` a positive int. ``backend``
    is ``"loops"``, ``"numba"``, ``"torch"``, ``"cuda"`` or ``"auto"`` (``"cuda"`` for CUDA
    tensors, ``"numba"`` otherwise).
    """
    x, filters = V.autocast_inputs(x, filters)
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    V.check_tensor("filters", filters, 4, "(B, k*k, H, W)")
    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    V.check_same_dtype(("x", x), filters=filters)
    V.check_same_device(("x", x), filters=filters)
    V.check_spatial_nonempty("x", x)
    _check_filters_shape(x, filters, k)
    return dispatch(backend, (x, filters), (k, d), out_shape=tuple(x.shape),
                    loops=dynamic_filter_loops, vectorized=dynamic_filter_torch, kernels=KERNELS, op=OP)
