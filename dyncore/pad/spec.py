"""The record of ``adaptive_dilation_conv`` (Chapter 5, eq-pad-relaxed) for the conformance tests,
the benchmark, the cost model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample
from ..roofline import Cost, check_cost_args
from ..validation import check_positive_int
from .functional import adaptive_dilation_conv
from .modules import PADConv2d

__all__ = ["SPECS", "PAD_DILATIONS", "adaptive_dilation_conv_cost", "reference"]

#: The dilations of the benchmark and of Chapter 7's PAD slot.
PAD_DILATIONS = (1, 2, 4)
KERNEL_SIZE = 3


def _inputs(B, Cin, Cout, H, W, k, D, bias, dtype, device, gen):
    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).to(device)

    # any real gates: the operator is linear in them
    return rand(B, Cin, H, W), rand(Cout, Cin, k, k), rand(Cout) if bias else None, rand(B, D, H, W)


# (B, Cin, Cout, H, W), k, dilations, bias: odd sizes, H != W, dilations that do not divide them,
# a dilation past the image, duplicates, k = 1 and 5, a kernel wider than the image.
CASES = [
    ((2, 3, 4, 7, 9), 3, (1, 2, 4), True, "odd H != W, k = 3, dilations (1, 2, 4)"),
    ((1, 2, 3, 5, 6), 1, (1, 3), True, "k = 1"),
    ((2, 2, 2, 9, 7), 5, (1, 2), False, "k = 5, no bias"),
    ((1, 3, 2, 6, 11), 3, (3,), True, "one dilation, 3, that divides neither side"),
    ((1, 1, 1, 4, 4), 3, (5, 1, 2), True, "dilation 5 past the 4 x 4 image"),
    ((2, 2, 3, 8, 5), 3, (2, 2, 7), True, "duplicate dilations, dilation 7 past the width"),
    ((1, 2, 2, 2, 3), 5, (1, 2), True, "k = 5 larger than the 2 x 3 image"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for shape, k, dil, bias, desc in CASES:
        yield Sample(_inputs(*shape, k, len(dil), bias, dtype, device, gen), dict(dilations=dil), desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    B, Cin, Cout = (int(v) for v in torch.randint(1, 4, (3,), generator=gen))
    H, W = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
    k = int(torch.randint(0, 3, (), generator=gen)) * 2 + 1
    D = int(torch.randint(1, 4, (), generator=gen))
    dil = tuple(int(v) for v in torch.randint(1, 6, (D,), generator=gen))
    bias = bool(torch.randint(0, 2, (), generator=gen))
    return Sample(_inputs(min(B, 2), Cin, Cout, H, W, k, D, bias, dtype, device, gen),
                  dict(dilations=dil),
                  f"random {min(B, 2)}x{Cin}->{Cout}x{H}x{W}, k={k}, dilations={dil}, bias={bias}")


def reference(x, weight, bias, gates, *, dilations):
    """Chapter 5, eq-pad-relaxed with ``F.conv2d``, independently of the package: one dilated
    convolution per option, weighted by its gate map, plus the bias."""
    r = (weight.shape[-1] - 1) // 2
    out = sum(gates[:, d:d + 1] * F.conv2d(x, weight, padding=dil * r, dilation=dil)
              for d, dil in enumerate(dilations))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, w, b, g = _inputs(1, 4, 3, 6, 6, 3, 3, True, torch.float64, "cpu", gen)
    dil = dict(dilations=(1, 2, 4))

    def case(args, error, match, desc, **kwargs):
        return ErrorCase(tuple(args), {**dil, **kwargs}, error, match, desc)

    return [
        case((x.tolist(), w, b, g), TypeError, "x must be a torch.Tensor", "x is a list"),
        case((x, w, b, g.numpy()), TypeError, "gates must be a torch.Tensor", "gates is numpy"),
        case((x.long(), w, b, g), TypeError, "x must be float32 or float64", "integer x"),
        case((x, w, b, g > 0), TypeError, "gates must be float32 or float64", "bool gates"),
        case((x.bfloat16(), w.bfloat16(), b.bfloat16(), g.bfloat16()), TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast",
             "bfloat16 x, every backend"),
        case((x, w, b, g.bfloat16()), TypeError, "gates must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 gates"),
        case((x, w.half(), b, g), TypeError, "weight must be float32 or float64; got a floating-point tensor of dtype torch.float16.*torch.autocast", "float16 weight"),
        case((x, w.to(torch.complex128), b, g), TypeError, "weight must be float32 or float64.*complex",
             "complex weight"),
        case((x, w, b, g.float()), TypeError, "gates has dtype torch.float32 but x", "gates dtype"),
        case((x, w, b.float(), g), TypeError, "bias has dtype", "bias dtype"),
        case((x[0], w, b, g), ValueError, r"x must be a 4-D tensor \(B, Cin, H, W\)", "3-D x"),
        case((x, w, b, g[0]), ValueError, r"gates must be a 4-D tensor \(B, D, H, W\)", "3-D gates"),
        case((x, w, b[None], g), ValueError, "bias must be a 1-D tensor", "2-D bias"),
        case((x, w, b[:2], g), ValueError, r"bias must have shape \(Cout,\) = \(3,\)", "bias length"),
        case((x, w[:, :3], b, g), ValueError,
             r"weight must have shape \(Cout, Cin, k, k\) with Cin = x.shape\[1\] = 4", "weight channels"),
        case((x, w[..., :2, :2], b, g), ValueError, "weight's kernel size k .* odd positive int", "even kernel"),
        case((x, w[..., :1, :], b, g), ValueError, "weight must have a square kernel", "non-square kernel"),
        case((x, w[:0], None, g), ValueError, "weight must have at least one output channel",
             "no output channel"),
        case((x, w, b, g[:, :2]), ValueError,
             r"gates must have shape \(B, D, H, W\) = \(1, 3, 6, 6\).*D = len\(dilations\) = 3", "gates D"),
        case((x, w, b, g[..., :5]), ValueError, "gates must have shape", "gates size"),
        case((x, w, b, g.expand(2, -1, -1, -1)), ValueError, "gates must have shape", "gates batch"),
        case((x, w, b, g[:, :0]), ValueError, "dilations must hold at least one dilation", "empty dilations",
             dilations=()),
        case((x, w, b, g), ValueError, r"dilations\[1\] must be a positive int; got 0", "dilation zero",
             dilations=(1, 0, 4)),
        case((x, w, b, g), ValueError, r"dilations\[0\] must be a positive int", "dilation negative",
             dilations=(-1, 2, 4)),
        case((x, w, b, g), TypeError, r"dilations\[1\] must be an int", "dilation float", dilations=(1, 2.0, 4)),
        case((x, w, b, g), TypeError, r"dilations\[0\] must be an int", "dilation bool", dilations=(True, 2, 4)),
        case((x, w, b, g[:, :1]), TypeError, "dilations must be a tuple of positive ints", "dilations int",
             dilations=2),
        case((x, w, b, g), TypeError, "dilations must be a tuple of positive ints", "dilations str",
             dilations="124"),
        ErrorCase((x, w, b, g), {}, TypeError, "dilations", "dilations missing"),
        case((x[..., :0], w, b, g[..., :0]), ValueError, "at least one channel and one pixel", "empty image"),
        case((x, w, b, g), ValueError, "backend must be one of", "unknown backend", backend="triton"),
        case((x, w, b, g.to("meta")), ValueError, "gates is on meta but x is on cpu", "mixed devices"),
    ]


# ----------------------------------------------------------------------------- benchmark

def adaptive_dilation_conv_cost(B, C, H, W, k, *, out_channels=None, dilations=len(PAD_DILATIONS),
                                itemsize=4) -> Cost:
    """PAD-Nets' gated sum (Chapter 5, eq-pad-relaxed) with soft gates: ``D`` dense convolutions,
    weighted.

    FLOPs ``D (2 B Co H W C k^2 + 2 B Co H W)``; bytes: input, weight, gates ``(B, D, H, W)``,
    bias and output. With one-hot gates the fused kernel does ``1/D`` of the FLOPs.
    """
    k = check_cost_args(B, C, H, W, k)
    Co = C if out_channels is None else check_positive_int("out_channels", out_channels)
    D = check_positive_int("dilations", dilations)
    n = B * H * W
    flops = D * (2 * n * Co * C * k * k + 2 * n * Co)
    return Cost(flops, itemsize * (n * C + Co * C * k * k + n * D + Co + n * Co))


def _bench_inputs(B, C, H, W, k, dtype, device, gen):
    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype, device=device)

    gates = torch.softmax(rand(B, len(PAD_DILATIONS), H, W), 1)
    return rand(B, C, H, W), rand(C, C, k, k) / (C * k * k) ** 0.5, rand(C), gates


def _bench_call(backend, k, x, w, b, gates):
    return adaptive_dilation_conv(x, w, b, gates, dilations=PAD_DILATIONS, backend=backend)


def _bench_memory(backend, B, C, H, W, k, mode, itemsize=4):
    """Inputs and output; the ``"torch"`` backend also keeps the ``D`` responses and their
    unfolded copies (about ``D * k*k`` times the input)."""
    need = adaptive_dilation_conv_cost(B, C, H, W, k, dilations=len(PAD_DILATIONS), itemsize=itemsize).bytes
    if backend == "torch":
        need += 2 * len(PAD_DILATIONS) * B * H * W * C * k * k * itemsize
    return int(need * (3 if mode == "backward" else 1))


def _bench_peer(k, x, w, b, gates):
    """The gated sum of ``D`` oneDNN convolutions, one per dilation, and the bias."""
    r = (k - 1) // 2
    out = b.view(1, -1, 1, 1)
    for i, dil in enumerate(PAD_DILATIONS):
        out = out + gates[:, i:i + 1] * F.conv2d(x, w, padding=dil * r, dilation=dil)
    return out


BENCH = BenchCase("pad", f"PAD adaptive_dilation_conv (soft gates, dilations {PAD_DILATIONS})",
                  ("numba", "torch", "cuda"), _bench_inputs, _bench_call, adaptive_dilation_conv_cost, _bench_memory,
                  peer=_bench_peer, peer_name=f"oneDNN: {len(PAD_DILATIONS)} F.conv2d, gated")


# ----------------------------------------------------------------------------- the layer

def pad_parameter_formula(channels: int) -> int:
    """The convolution ``C^2 k^2 + C`` plus the hidden-prior branch ``C D + D`` (Markov)."""
    C = check_positive_int("channels", channels)
    D, k = len(PAD_DILATIONS), KERNEL_SIZE
    return C * C * k * k + C + C * D + D


def _make_layer(channels: int, backend: str = "auto"):
    return PADConv2d(channels, channels, KERNEL_SIZE, dilations=PAD_DILATIONS, backend=backend)


LAYER = LayerSpec("PAD", "padnets2020", _make_layer, pad_parameter_formula,
                  local_field=(KERNEL_SIZE - 1) * max(PAD_DILATIONS) + 1, global_context=False,
                  description="PAD: dilation 1, 2 or 4 per pixel (Chapter 5)",
                  training_backend="torch",
                  headline="mIoU 66.5 vs 64.7, PAD vs the vanilla network (Table 2, VGG-16 FCN-8s, VOC)")

SPECS = (OpSpec.from_module(__name__, "adaptive_dilation_conv", adaptive_dilation_conv, chapter=5,
                            equation="eq-pad-relaxed", batched_args=(0, 3),
                            description="pixel-wise adaptive dilation, relaxed to a gated sum of dilated "
                                        "convolutions"),)
