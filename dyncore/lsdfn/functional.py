"""``large_sampling_filter``: validation and dispatch to a backend (Chapter 3, eq-lsdfn).

The kernels of the ``"numba"`` and ``"cuda"`` backends run as the custom operator
``torch.ops.dyncore.large_sampling_filter`` (:mod:`dyncore.library`).
"""

from __future__ import annotations

from .. import library
from .. import validation as Val
from ..autograd import KernelFunction
from ..backend import dispatch
from . import cuda_kernels, numba_cpu
from .loops import large_sampling_filter_loops
from .vectorized import large_sampling_filter_torch

__all__ = ["large_sampling_filter", "LargeSamplingFilterFunction"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends.
KERNELS = {"numba": numba_cpu.LARGE_SAMPLING_FILTER, "cuda": cuda_kernels.LARGE_SAMPLING_FILTER}

#: ``torch.ops.dyncore.large_sampling_filter`` (:mod:`dyncore.library`).
OP = library.define("large_sampling_filter",
                    ("x", "U", "V", "sample_attention", "position_attention"),
                    ("int kernel_size", "int samples", "int sample_stride"),
                    kernels=KERNELS, vectorized=large_sampling_filter_torch)


class LargeSamplingFilterFunction(KernelFunction):
    """Autograd for ``"numba"`` and ``"cuda"`` outside the custom operator:
    ``apply(kernels, (k, s, g), x, U, V, A_sam, A_pos)``."""


def _check_arguments(x, U, V, sample_attention, position_attention, kernel_size, samples,
                     sample_stride):
    k = Val.check_kernel_size("kernel_size", kernel_size)
    s = Val.check_kernel_size("samples", samples)
    g = Val.check_positive_int("sample_stride", sample_stride)
    Val.check_tensor("x", x, 4, "(B, C, H, W)")
    Val.check_tensor("U", U, 5, "(B, Co, C, H, W)")
    Val.check_tensor("V", V, 5, "(B, Co, k*k, H, W)")
    Val.check_tensor("sample_attention", sample_attention, 5, "(B, Co, s*s, H, W)")
    Val.check_tensor("position_attention", position_attention, 5, "(B, Co, k*k, H, W)")
    others = dict(U=U, V=V, sample_attention=sample_attention,
                  position_attention=position_attention)
    Val.check_same_dtype(("x", x), **others)
    Val.check_same_device(("x", x), **others)
    Val.check_spatial_nonempty("x", x)
    B, C, H, W = x.shape
    Co = U.shape[1]
    if Co == 0:
        raise ValueError(f"U must have at least one output channel (Co >= 1); got shape {tuple(U.shape)}")
    Val.check_shape("U", U, (B, Co, C, H, W), "(B, Co, C, H, W)")
    Val.check_shape("V", V, (B, Co, k * k, H, W), f"(B, Co, k*k, H, W) with k={k}")
    Val.check_shape("sample_attention", sample_attention, (B, Co, s * s, H, W),
                    f"(B, Co, s*s, H, W) with s={s}")
    Val.check_shape("position_attention", position_attention, (B, Co, k * k, H, W),
                    f"(B, Co, k*k, H, W) with k={k}")
    return k, s, g


def large_sampling_filter(x, U, V, sample_attention, position_attention, *, kernel_size,
                          samples, sample_stride, backend="auto"):
    """LS-DFN's large-sampling-field dynamic filter: Chapter 3, eq-lsdfn with the kernels of
    eq-kernels and the centred sample offsets of eq-sample-offset (Eq. 4-6 of the paper).

    ``x: (B, C, H, W)`` features, ``U: (B, Co, C, H, W)`` and ``V: (B, Co, k*k, H, W)`` the two
    factors of the position-specific kernels (Eq. 6 as resolved: ``W = V + [centre] U``),
    ``sample_attention: (B, Co, s*s, H, W)`` and ``position_attention: (B, Co, k*k, H, W)``
    (Eq. 4; the latter read at the sample centre ``(ym, xm)``). Sample ``m = a*s + b'`` is
    centred at offset ``((a - (s-1)//2) * g, (b' - (s-1)//2) * g)``, ``g = sample_stride``.
    Zero outside the image, for ``x`` and for ``position_attention``. Returns ``(B, Co, H, W)``.
    """
    x, U, V, sample_attention, position_attention = Val.autocast_inputs(
        x, U, V, sample_attention, position_attention)
    config = _check_arguments(x, U, V, sample_attention, position_attention, kernel_size,
                              samples, sample_stride)
    B, _, H, W = x.shape
    return dispatch(backend, (x, U, V, sample_attention, position_attention), config,
                    out_shape=(B, U.shape[1], H, W), loops=large_sampling_filter_loops,
                    vectorized=large_sampling_filter_torch, kernels=KERNELS, op=OP)
