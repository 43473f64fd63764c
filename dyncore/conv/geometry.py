"""The geometry of a 2-D convolution: what ``F.conv2d``'s arguments mean for the output.

Conv's own file, beside the shared :mod:`dyncore.geometry`: ``conv2d`` has ``F.conv2d``'s full
generality (separate row and column strides and dilations, rectangular kernels, asymmetric
padding from ``padding='same'``), which the centred, odd-kernel operators of Chapters 2-6 do not
have, so this record of it, and its output-size formula (Chapter 1, eq-out-size), serve conv alone.

``Ho = (H + pad_top + pad_bottom - dh*(kh - 1) - 1) // sh + 1`` (and the same for ``Wo``);
output pixel ``(yo, xo)`` reads input rows ``yo*sh - pad_top + i*dh`` for taps ``i = 0..kh-1``.
"""

from __future__ import annotations

from typing import NamedTuple


class ConvGeometry(NamedTuple):
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int
    out_size: tuple[int, int]

    @property
    def pad_top_left(self) -> tuple[int, int]:
        return self.padding[0], self.padding[2]


def output_length(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1
