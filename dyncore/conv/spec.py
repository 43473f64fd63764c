"""The record of ``conv2d`` (Chapter 1, eq-conv) for the conformance tests, the benchmark, the cost
model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample, unfold_memory
from ..geometry import output_size
from ..roofline import Cost, check_cost_args
from ..validation import check_positive_int
from .functional import conv2d

__all__ = ["SPECS", "conv2d_cost", "conv_parameter_formula", "depthwise_conv2d_cost", "reference",
           "unfold_memory"]

KERNEL_SIZE = 3


def _inputs(B, Cin, H, W, Cout, groups, kh, kw, bias, dtype, device, gen):
    x = torch.randn(B, Cin, H, W, generator=gen, dtype=dtype)
    w = torch.randn(Cout, Cin // groups, kh, kw, generator=gen, dtype=dtype)
    b = torch.randn(Cout, generator=gen, dtype=dtype) if bias else None
    return tuple(None if t is None else t.to(device) for t in (x, w, b))


# (B, Cin, H, W, Cout, groups, kh, kw, bias), conv2d's keywords: odd sizes, H != W, strides and
# dilations that do not divide the size, non-square kernels, padding beyond the kernel's reach,
# groups, 'same' with an even kernel, no bias, k = 1, kernels larger than the image.
CASES = [
    ((2, 3, 7, 9, 4, 1, 3, 3, True), dict(padding=1), "odd H != W, k = 3, padding 1"),
    ((1, 4, 9, 7, 6, 2, 3, 2, True), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
     "groups 2, 3 x 2 kernel, stride and dilation pairs"),
    ((2, 6, 11, 5, 6, 6, 5, 5, True), dict(stride=3, padding=4, dilation=2, groups=6),
     "depthwise k = 5, stride 3, dilation 2, padding 4"),
    ((1, 2, 5, 6, 3, 1, 1, 1, True), dict(stride=2, dilation=3), "k = 1, stride 2"),
    ((3, 3, 6, 6, 2, 1, 3, 3, True), dict(padding="same", dilation=(2, 1)), "padding 'same', dilation (2, 1)"),
    ((1, 4, 8, 5, 4, 4, 4, 2, True), dict(padding="same", groups=4), "'same' with an even 4 x 2 kernel, depthwise"),
    ((2, 2, 9, 9, 3, 1, 3, 3, False), dict(stride=2, padding="valid", dilation=2), "no bias, 'valid', stride 2"),
    ((1, 2, 3, 4, 2, 1, 5, 5, True), dict(padding=2), "k = 5 larger than the 3 x 4 image"),
    ((2, 1, 2, 3, 2, 1, 7, 7, False), dict(padding=3, stride=2), "k = 7 larger than the 2 x 3 image, stride 2"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for shape, kwargs, desc in CASES:
        yield Sample(_inputs(*shape, dtype, device, gen), dict(kwargs), desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (), generator=gen))

    groups = draw(1, 3)
    Cin, Cout = groups * draw(1, 2), groups * draw(1, 2)
    B, H, W = draw(1, 2), draw(1, 9), draw(1, 9)
    kh, kw = draw(1, 4), draw(1, 4)
    stride, dilation, bias = (draw(1, 3), draw(1, 3)), (draw(1, 2), draw(1, 2)), bool(draw(0, 1))
    # enough padding that the dilated kernel fits: the output is never empty
    padding = tuple(max(draw(0, 3), -(-(d * (k - 1) + 1 - n) // 2))
                    for d, k, n in zip(dilation, (kh, kw), (H, W)))
    return Sample(_inputs(B, Cin, H, W, Cout, groups, kh, kw, bias, dtype, device, gen),
                  dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
                  f"random {B}x{Cin}x{H}x{W} -> {Cout}, {kh}x{kw}, stride {stride}, padding {padding}, "
                  f"dilation {dilation}, groups {groups}, bias {bias}")


def reference(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """Chapter 1, eq-conv: PyTorch's own ``F.conv2d``, which ``conv2d`` reproduces by contract."""
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, w, b = _inputs(1, 4, 6, 6, 4, 2, 3, 3, True, torch.float64, "cpu", gen)
    g2 = dict(groups=2)

    def case(args, kwargs, error, match, desc):
        return ErrorCase(tuple(args), dict(kwargs), error, match, desc)

    return [
        case((x.tolist(), w, b), g2, TypeError, "x must be a torch.Tensor", "x is a list"),
        case((x, w.numpy(), b), g2, TypeError, "weight must be a torch.Tensor", "weight is numpy"),
        case((x.long(), w.long(), b), g2, TypeError, "x must be float32 or float64", "integer x"),
        case((x.to(torch.complex128), w, b), g2, TypeError, "x must be float32 or float64.*complex", "complex x"),
        case((x, w.half(), b), g2, TypeError, "weight must be float32 or float64", "half weight"),
        case((x.bfloat16(), w.bfloat16(), b.bfloat16()), g2, TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 x, every backend"),
        case((x, w, b.bfloat16()), g2, TypeError, "bias must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 bias"),
        case((x.half(), w.half(), b.half()), g2, TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.float16.*torch.autocast", "float16 x, every backend"),
        case((x, w.float(), b), g2, TypeError, "weight has dtype torch.float32 but x", "dtype mismatch"),
        case((x, w, b.float()), g2, TypeError, "bias has dtype", "bias dtype"),
        case((x[0], w, b), g2, ValueError, r"x must be a 4-D tensor \(B, Cin, H, W\); got a 3-D", "3-D x"),
        case((x, w[None], b), g2, ValueError, "weight must be a 4-D tensor", "5-D weight"),
        case((x, w, b[None]), g2, ValueError, "bias must be a 1-D tensor", "2-D bias"),
        case((x, w, b[:3]), g2, ValueError, r"bias must have shape \(Cout,\) = \(4,\)", "bias length"),
        case((x, w[:, :, :0], b), g2, ValueError, "weight must not be empty", "empty weight"),
        case((x, w, b), {}, ValueError, "weight must have shape .*Cin/groups", "weight channels"),
        case((x, w, b), dict(groups=3), ValueError, "groups=3 must divide", "groups divide"),
        case((x, w, b), dict(groups=0), ValueError, "groups must be a positive int", "groups zero"),
        case((x, w, b), dict(g2, stride=0), ValueError, "stride must be a positive int; got 0", "stride zero"),
        case((x, w, b), dict(g2, stride=(1, -1)), ValueError, r"stride\[1\] must be a positive int", "stride pair"),
        case((x, w, b), dict(g2, stride=(1, 1, 1)), ValueError, "stride must be an int or a pair", "stride triple"),
        case((x, w, b), dict(g2, stride=1.5), TypeError, "stride must be an int", "stride float"),
        case((x, w, b), dict(g2, stride=True), TypeError, "stride must be an int", "stride bool"),
        case((x, w, b), dict(g2, dilation=0), ValueError, "dilation must be a positive int", "dilation zero"),
        case((x, w, b), dict(g2, padding=-1), ValueError, "padding must be a non-negative int", "padding negative"),
        case((x, w, b), dict(g2, padding="full"), ValueError,
             "padding must be an int, a pair of ints, 'valid' or 'same'", "padding word"),
        case((x, w, b), dict(g2, padding="same", stride=2), ValueError, "padding='same' needs stride 1",
             "same with stride"),
        case((x, w, b), dict(g2, dilation=4), ValueError, "larger than the padded input", "kernel too large"),
        case((x[:, :, :0], w, b), g2, ValueError, "at least one channel and one pixel", "empty image"),
        case((x, w, b), dict(g2, backend="cpp"), ValueError, "backend must be one of", "unknown backend"),
        case((x, w, b), dict(g2, backend=None), ValueError, "backend must be one of", "backend not str"),
        case((x, w.to("meta"), b), g2, ValueError, "weight is on meta but x is on cpu", "mixed devices"),
        case((x, w, b, 1), g2, TypeError, "positional", "positional stride"),
    ]


# ----------------------------------------------------------------------------- benchmark

def conv2d_cost(B, C, H, W, k, *, out_channels=None, stride=1, itemsize=4) -> Cost:
    """Dense ``k x k`` convolution ``C -> out_channels`` (default ``C``), same padding.

    FLOPs ``2 B Co Ho Wo C k^2``; bytes: input, weight ``Co C k^2`` and output.
    """
    k = check_cost_args(B, C, H, W, k)
    Co = C if out_channels is None else check_positive_int("out_channels", out_channels)
    Ho, Wo = output_size(H, stride), output_size(W, stride)
    flops = 2 * B * Co * Ho * Wo * C * k * k
    return Cost(flops, itemsize * (B * C * H * W + Co * C * k * k + B * Co * Ho * Wo))


def depthwise_conv2d_cost(B, C, H, W, k, *, stride=1, itemsize=4) -> Cost:
    """Depthwise ``k x k`` convolution (``groups = C``): FLOPs ``2 B C Ho Wo k^2``."""
    k = check_cost_args(B, C, H, W, k)
    Ho, Wo = output_size(H, stride), output_size(W, stride)
    return Cost(2 * B * C * Ho * Wo * k * k,
                itemsize * (B * C * H * W + C * k * k + B * C * Ho * Wo))


def _rand(gen, device, dtype, *shape):
    """Normal samples made where they are used (``gen`` lives on ``device``)."""
    return torch.randn(*shape, generator=gen, dtype=dtype, device=device)


def _conv_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, C, C, k, k) / (C * k * k) ** 0.5


def _depthwise_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, C, 1, k, k) / k


def _conv_call(groups):
    """``groups=None``: depthwise (one group per channel)."""
    def call(backend, k, x, w):
        pad = (k - 1) // 2
        if backend == "native":
            return F.conv2d(x, w, padding=pad, groups=groups or x.shape[1])
        return conv2d(x, w, padding=pad, groups=groups or x.shape[1], backend=backend)
    return call


def _conv_peer(groups):
    """oneDNN's ``F.conv2d`` (the ``"native"`` row), as the peer of our kernels."""
    call = _conv_call(groups)

    def peer(k, x, w):
        return call("native", k, x, w)
    return peer


BACKENDS = ("native", "numba", "torch", "cuda")
BENCH = (
    BenchCase("conv2d", "dense C -> C convolution", BACKENDS, _conv_inputs, _conv_call(1), conv2d_cost,
              unfold_memory(conv2d_cost), peer=_conv_peer(1), peer_name="oneDNN: F.conv2d"),
    BenchCase("depthwise", "depthwise convolution (groups = C)", BACKENDS, _depthwise_inputs,
              _conv_call(None), depthwise_conv2d_cost, unfold_memory(depthwise_conv2d_cost),
              peer=_conv_peer(None), peer_name="oneDNN: F.conv2d, groups = C"),
)


# ----------------------------------------------------------------------------- the layer

def conv_parameter_formula(channels: int) -> int:
    """``C^2 k^2 + C``: a dense ``k x k`` convolution ``C -> C`` with a bias."""
    return channels * channels * KERNEL_SIZE ** 2 + channels


def _make_layer(channels: int, backend: str = "auto"):
    """PyTorch's own ``nn.Conv2d``: the baseline (``backend`` does not apply)."""
    return nn.Conv2d(channels, channels, KERNEL_SIZE, padding=KERNEL_SIZE // 2)


LAYER = LayerSpec("conv", "", _make_layer, conv_parameter_formula, local_field=KERNEL_SIZE,
                  description="a plain 3 x 3 convolution, the baseline (Chapter 1)",
                  training_backend="torch")

SPECS = (OpSpec.from_module(__name__, "conv2d", conv2d, chapter=1, equation="eq-conv", batched_args=(0,),
                            description="2-D convolution with the semantics of F.conv2d"),)
