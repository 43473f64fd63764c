"""``LSDFN``: the LS-DFN block (Chapter 3), built on :func:`large_sampling_filter`."""

from __future__ import annotations

import torch
from torch import nn

from .. import validation as Val
from ..backend import resolve_backend
from .functional import large_sampling_filter

__all__ = ["LSDFN"]


class LSDFN(nn.Module):
    """The LS-DFN block (Fig. 2 of the paper): feature, kernel and attention branches.

    * feature branch: a 3x3 convolution to ``feature_channels = C`` channels;
    * kernel branch: a 3x3 convolution to ``Co*(C + k*k)`` channels, split into ``U`` and ``V``;
    * attention branch: a 3x3 convolution to ``Co*(s*s + k*k)`` channels, split into the sample
      and the position attention;
    * :func:`large_sampling_filter` combines them into ``Co = out_channels`` channels.

    ``residual=True`` adds the residual constants: ``+1/C`` at the centre tap of ``W`` (Eq. 7 of
    the paper; Chapter 3, "The residual constants")
    and ``+1`` on both attention maps. ``attention=False`` replaces the learned attention by
    constants (``A_pos = 1``, ``A_sam = 1``), and drops the attention branch. The sample
    attention is divided by ``s*s`` so that at initialization the block averages its samples
    instead of summing them (the output's scale does not grow with ``s``). ``device`` and
    ``dtype`` are passed to the parameters, as in ``torch.nn`` layers.
    """

    def __init__(self, in_channels, feature_channels, out_channels, kernel_size=3, samples=3,
                 sample_stride=1, attention=True, residual=True, backend="auto", *,
                 device=None, dtype=None):
        super().__init__()
        self.in_channels, C, Co = Val.check_channels(
            in_channels=in_channels, feature_channels=feature_channels, out_channels=out_channels)
        self.feature_channels, self.out_channels = C, Co
        self.kernel_size = k = Val.check_kernel_size("kernel_size", kernel_size)
        self.samples = s = Val.check_kernel_size("samples", samples)
        self.sample_stride = Val.check_positive_int("sample_stride", sample_stride)
        self.attention = Val.check_bool("attention", attention)
        self.residual = Val.check_bool("residual", residual)
        resolve_backend(backend, torch.device("cpu") if device is None else device)
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.feature_branch = nn.Conv2d(in_channels, C, 3, padding=1, **factory)
        self.kernel_branch = nn.Conv2d(in_channels, Co * (C + k * k), 3, padding=1, **factory)
        self.attention_branch = (nn.Conv2d(in_channels, Co * (s * s + k * k), 3, padding=1, **factory)
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
        (inputs,) = Val.autocast_inputs(inputs)  # under torch.autocast: computes in float32
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
