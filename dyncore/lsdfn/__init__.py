"""Chapter 3: LS-DFN, dynamic filtering with a large sampling field.

Files in the order the chapter teaches them: :mod:`.loops` (Eq. 4-6 as loops), :mod:`.numba_cpu`
(fused with the channel-sum factorization, with the backward kernels), :mod:`.vectorized` (the
materializing PyTorch version), :mod:`.cuda_kernels` (Numba CUDA); this file validates,
dispatches and holds the module :class:`LSDFN`. :mod:`.data` makes the "flying shapes" optical
flow data and :mod:`.flow` the flow pictures and the small flow networks of the chapter.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as Val
from ..autograd import KernelFunction
from ..backend import resolve_backend, run_loops
from . import cuda_kernels, numba_cpu
from .loops import large_sampling_filter_loops, sample_offsets, tap_offsets
from .vectorized import large_sampling_filter_torch, materialize_kernels

__all__ = [
    "large_sampling_filter", "LSDFN", "LargeSamplingFilterFunction",
    "sample_offsets", "tap_offsets", "materialize_kernels",
]


class LargeSamplingFilterFunction(KernelFunction):
    """Autograd for ``"numba"`` and ``"cuda"``: ``apply(kernels, (k, s, g), x, U, V, A_sam, A_pos)``."""


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
    """LS-DFN's large-sampling-field dynamic filter, Eq. 4-6 of the paper with centred offsets.

    ``x: (B, C, H, W)`` features, ``U: (B, Co, C, H, W)`` and ``V: (B, Co, k*k, H, W)`` the two
    factors of the position-specific kernels (Eq. 6 as resolved: ``W = V + [centre] U``),
    ``sample_attention: (B, Co, s*s, H, W)`` and ``position_attention: (B, Co, k*k, H, W)``
    (Eq. 4; the latter read at the sample centre ``(ym, xm)``). Sample ``m = a*s + b'`` is
    centred at offset ``((a - (s-1)//2) * g, (b' - (s-1)//2) * g)``, ``g = sample_stride``.
    Zero outside the image, for ``x`` and for ``position_attention``. Returns ``(B, Co, H, W)``.
    """
    config = _check_arguments(x, U, V, sample_attention, position_attention, kernel_size,
                              samples, sample_stride)
    name = resolve_backend(backend, x.device)
    if x.shape[0] == 0:
        return x.new_zeros(0, U.shape[1], x.shape[2], x.shape[3])
    args = (x, U, V, sample_attention, position_attention)
    if name == "loops":
        return run_loops(lambda *a: large_sampling_filter_loops(*a, *config), *args, like=x)
    if name == "torch":
        return large_sampling_filter_torch(*args, *config)
    kernels = (numba_cpu.LARGE_SAMPLING_FILTER if name == "numba"
               else cuda_kernels.LARGE_SAMPLING_FILTER)
    return LargeSamplingFilterFunction.apply(kernels, config, *args)


class LSDFN(nn.Module):
    """The LS-DFN block (Fig. 2 of the paper): feature, kernel and attention branches.

    * feature branch: a 3x3 convolution to ``feature_channels = C`` channels;
    * kernel branch: a 3x3 convolution to ``Co*(C + k*k)`` channels, split into ``U`` and ``V``;
    * attention branch: a 3x3 convolution to ``Co*(s*s + k*k)`` channels, split into the sample
      and the position attention;
    * :func:`large_sampling_filter` combines them into ``Co = out_channels`` channels.

    ``residual=True`` adds the residual constants: ``+1/C`` at the centre tap of ``W`` (Eq. 7)
    and ``+1`` on both attention maps. ``attention=False`` replaces the learned attention by
    constants (``A_pos = 1``, ``A_sam = 1``), and drops the attention branch. The sample
    attention is divided by ``s*s`` so that at initialization the block averages its samples
    instead of summing them (the output's scale does not grow with ``s``).
    """

    def __init__(self, in_channels, feature_channels, out_channels, kernel_size=3, samples=3,
                 sample_stride=1, attention=True, residual=True, backend="auto"):
        super().__init__()
        self.in_channels = Val.check_positive_int("in_channels", in_channels)
        self.feature_channels = C = Val.check_positive_int("feature_channels", feature_channels)
        self.out_channels = Co = Val.check_positive_int("out_channels", out_channels)
        self.kernel_size = k = Val.check_kernel_size("kernel_size", kernel_size)
        self.samples = s = Val.check_kernel_size("samples", samples)
        self.sample_stride = Val.check_positive_int("sample_stride", sample_stride)
        for name, flag in (("attention", attention), ("residual", residual)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool; got {type(flag).__name__} {flag!r}")
        self.attention, self.residual = attention, residual
        resolve_backend(backend, torch.device("cpu"))
        self.backend = backend
        self.feature_branch = nn.Conv2d(in_channels, C, 3, padding=1)
        self.kernel_branch = nn.Conv2d(in_channels, Co * (C + k * k), 3, padding=1)
        self.attention_branch = (nn.Conv2d(in_channels, Co * (s * s + k * k), 3, padding=1)
                                 if attention else None)

    def branch_channels(self) -> dict:
        """Output channels of each branch, as the paper counts them."""
        C, Co, k, s = self.feature_channels, self.out_channels, self.kernel_size, self.samples
        return {"feature": C, "kernel": Co * (C + k * k),
                "attention": Co * (s * s + k * k) if self.attention else 0}

    def dynamic_inputs(self, inputs):
        """The operator's inputs ``(x, U, V, A_sam, A_pos)``, residual constants included."""
        B, _, H, W = inputs.shape
        C, Co, k, s = self.feature_channels, self.out_channels, self.kernel_size, self.samples
        x = self.feature_branch(inputs)
        kernels = self.kernel_branch(inputs)
        U = kernels[:, : Co * C].reshape(B, Co, C, H, W)
        V = kernels[:, Co * C:].reshape(B, Co, k * k, H, W)
        if self.residual:
            U = U + 1.0 / C  # Eq. 7: U sits at the centre tap only, so this is W's +1/C there
        if self.attention:
            att = self.attention_branch(inputs)
            a_sam = att[:, : Co * s * s].reshape(B, Co, s * s, H, W)
            a_pos = att[:, Co * s * s:].reshape(B, Co, k * k, H, W)
            if self.residual:
                a_sam, a_pos = a_sam + 1.0, a_pos + 1.0
        else:
            a_sam = inputs.new_ones(B, Co, s * s, H, W)
            a_pos = inputs.new_ones(B, Co, k * k, H, W)
        return x, U, V, a_sam / (s * s), a_pos

    def forward(self, inputs):
        Val.check_tensor("inputs", inputs, 4, "(B, in_channels, H, W)")
        if inputs.shape[1] != self.in_channels:
            raise ValueError(f"inputs must have in_channels={self.in_channels} channels; "
                             f"got shape {tuple(inputs.shape)}")
        return large_sampling_filter(
            *self.dynamic_inputs(inputs), kernel_size=self.kernel_size, samples=self.samples,
            sample_stride=self.sample_stride, backend=self.backend)

    def extra_repr(self):
        return (f"C={self.feature_channels}, Co={self.out_channels}, k={self.kernel_size}, "
                f"s={self.samples}, sample_stride={self.sample_stride}, "
                f"attention={self.attention}, residual={self.residual}, backend={self.backend!r}")
