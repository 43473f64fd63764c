"""Chapter 6: the Decoupled Dynamic Filter operator, ``ddf`` (contract, section 6).

DDF (Zhou et al., CVPR 2021) splits a depthwise dynamic filter into a *spatial* filter, one
``k x k`` filter per output pixel shared by all channels, and a *channel* filter, one ``k x k``
filter per channel shared by all pixels, and multiplies them tap by tap (the paper's Eq. 2,
its 'mul' combination; Chapter 6, eq-ddf-op)::

    out[b, c, yo, xo] = sum_t spatial[b, t, yo, xo] * channel[b, c, t]
                              * x[b, c, yo*s + oy_t, xo*s + ox_t]

How the book reads the equation (the paper's ``D^sp_i[p_i - p_j]`` and ``D^ch_r[p_i - p_j]``):

* **Tap order.** Tap ``t = i*k + j`` is row-major over the ``k x k`` window (``0 <= i, j < k``),
  the same order as ``F.unfold`` and as ``weight[c, 0, i, j]`` of a depthwise ``F.conv2d``;
  ``spatial[:, t]`` and ``channel[:, :, t]`` are that tap's weights.
* **Centred offsets.** Tap ``t`` reads at ``(oy_t, ox_t) = ((i - r)*d, (j - r)*d)`` from the
  pixel the window is centred on, ``r = (k - 1)//2``, ``d`` the dilation; ``k`` is odd, so the
  centre tap ``t = k*k // 2`` reads the centre pixel itself. The filter is applied as a
  cross-correlation (like ``F.conv2d``), not flipped.
* **Stride.** Output pixel ``(yo, xo)`` is centred on input pixel ``(yo*s, xo*s)`` and
  ``Ho = (H - 1)//s + 1``, ``Wo = (W - 1)//s + 1``: exactly the geometry of
  ``F.conv2d(x, w, stride=s, padding=d*r, dilation=d)``, for odd and even ``H, W`` alike (the
  spatial filter is predicted at the *output* resolution, ``(B, k*k, Ho, Wo)``).
* **Zero padding.** A tap that reads outside the image contributes nothing.

With ``channel == 1`` this is DFN's ``dynamic_filter`` (Chapter 2); with ``spatial == 1`` it is
DMNet's ``context_filter`` (Chapter 4), a depthwise convolution with one filter per image.

Backends: ``"loops"`` (:mod:`.loops`, the specification), ``"numba"`` (:mod:`.numba_cpu`, fused
CPU kernels with hand-derived backward), ``"torch"`` (:mod:`.vectorized`, unfold + einsum,
autograd by PyTorch), ``"cuda"`` (:mod:`.cuda_kernels`, Numba CUDA, hand-derived backward).
"""

from __future__ import annotations

from .. import library
from .. import validation as V
from ..autograd import KernelFunction
from ..backend import dispatch
from ..geometry import output_size, tap_offset, tap_offsets
from . import cuda_kernels, numba_cpu
from .loops import ddf_loops
from .vectorized import ddf_torch

__all__ = ["DDFFunction", "check_ddf_args", "ddf", "output_size", "tap_offset", "tap_offsets"]

#: The hand-written kernel sets of the ``"numba"`` and ``"cuda"`` backends.
KERNELS = {"numba": numba_cpu.DDF, "cuda": cuda_kernels.DDF}

#: ``torch.ops.dyncore.ddf``: the kernels as a custom operator (:mod:`dyncore.library`).
OP = library.define("ddf", ("x", "spatial", "channel"),
                    ("int kernel_size", "int dilation", "int stride"),
                    kernels=KERNELS, vectorized=ddf_torch)


class DDFFunction(KernelFunction):
    """Autograd for the ``"numba"`` and ``"cuda"`` backends, outside the custom operator:
    ``apply(kernels, (kernel_size, dilation, stride), x, spatial, channel)``."""


def check_ddf_args(x, spatial, channel, kernel_size, dilation, stride):
    """Validate ``ddf``'s arguments (contract, "Bad input"); returns ``(k, d, s, Ho, Wo)``."""
    V.check_tensor("x", x, 4, "(B, C, H, W)")
    V.check_tensor("spatial", spatial, 4, "(B, k*k, Ho, Wo)")
    V.check_tensor("channel", channel, 3, "(B, C, k*k)")
    k = V.check_kernel_size("kernel_size", kernel_size)
    d = V.check_positive_int("dilation", dilation)
    s = V.check_positive_int("stride", stride)
    V.check_same_dtype(("x", x), spatial=spatial, channel=channel)
    V.check_same_device(("x", x), spatial=spatial, channel=channel)
    V.check_spatial_nonempty("x", x)
    B, C, H, W = x.shape
    Ho, Wo = output_size(H, s), output_size(W, s)
    expected = (B, k * k, Ho, Wo)
    if tuple(spatial.shape) != expected:
        hint = ""
        taps = spatial.shape[1]
        if taps != k * k:
            side = round(taps ** 0.5)
            if side * side == taps and side % 2 == 1:
                hint = f" (its {taps} taps would fit kernel_size={side}, but kernel_size={k})"
            else:
                hint = f" ({taps} taps is not k*k = {k * k} for kernel_size={k})"
        elif tuple(spatial.shape[2:]) != (Ho, Wo):
            hint = (f" (for x of size {H} x {W} and stride={s} the output is "
                    f"Ho x Wo = {Ho} x {Wo}, with Ho = (H - 1)//stride + 1)")
        raise ValueError(
            f"spatial must have shape (B, k*k, Ho, Wo) = {expected} for x of shape "
            f"{tuple(x.shape)}, kernel_size={k} and stride={s}; got {tuple(spatial.shape)}{hint}"
        )
    if tuple(channel.shape) != (B, C, k * k):
        raise ValueError(
            f"channel must have shape (B, C, k*k) = {(B, C, k * k)} for x of shape "
            f"{tuple(x.shape)} and kernel_size={k}; got {tuple(channel.shape)}"
        )
    return k, d, s, Ho, Wo


def ddf(x, spatial, channel, *, kernel_size, dilation=1, stride=1, backend="auto"):
    """The decoupled dynamic filter, Chapter 6, eq-ddf-op (the paper's Eq. 2, 'mul' combination).

    ``x: (B, C, H, W)``, ``spatial: (B, k*k, Ho, Wo)``, ``channel: (B, C, k*k)``; returns
    ``(B, C, Ho, Wo)`` with ``Ho = (H - 1)//stride + 1``, ``Wo = (W - 1)//stride + 1`` and

        out[b, c, yo, xo] = sum_t spatial[b, t, yo, xo] * channel[b, c, t]
                                  * x[b, c, yo*stride + oy_t, xo*stride + ox_t]

    where tap ``t = i*k + j`` reads at ``((i - r)*d, (j - r)*d)``, ``r = (k - 1)//2``, and
    everything outside the image is zero. ``kernel_size`` is odd; ``dilation`` and ``stride``
    are positive ints. ``backend``: ``"loops"``, ``"numba"``, ``"torch"``, ``"cuda"`` or
    ``"auto"`` (``"cuda"`` for CUDA tensors, ``"numba"`` otherwise).
    """
    x, spatial, channel = V.autocast_inputs(x, spatial, channel)
    k, d, s, Ho, Wo = check_ddf_args(x, spatial, channel, kernel_size, dilation, stride)
    return dispatch(backend, (x, spatial, channel), (k, d, s), out_shape=(x.shape[0], x.shape[1], Ho, Wo),
                    loops=ddf_loops, vectorized=ddf_torch, kernels=KERNELS, op=OP)
