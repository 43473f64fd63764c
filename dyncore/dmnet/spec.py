"""The record of ``context_filter`` (Chapter 4, eq-dmnet-context-filter) for the conformance
tests, the benchmark, the cost model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample
from ..roofline import Cost, check_cost_args
from ..validation import check_positive_int
from .functional import context_filter
from .modules import DCM

__all__ = ["SPECS", "reference", "context_filter_cost", "dcm_parameter_formula"]


def _inputs(B, C, H, W, k, dtype, device, gen):
    return (torch.randn(B, C, H, W, generator=gen, dtype=dtype).to(device),
            torch.randn(B, C, k, k, generator=gen, dtype=dtype).to(device))


# (B, C, H, W, k): odd sizes, H != W, kernels larger than the image, k = 1, one channel, one pixel.
CASES = [
    ((2, 3, 7, 9, 3), "odd H != W, k = 3"),
    ((1, 4, 5, 6, 5), "k = 5"),
    ((3, 2, 8, 5, 7), "k = 7, H > W"),
    ((2, 1, 4, 3, 9), "k = 9 larger than the 4 x 3 image, one channel"),
    ((1, 2, 6, 6, 1), "k = 1"),
    ((2, 3, 1, 1, 3), "one pixel"),
    ((1, 1, 1, 7, 5), "one row, k = 5"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for (B, C, H, W, k), desc in CASES:
        yield Sample(_inputs(B, C, H, W, k, dtype, device, gen), {}, desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    B, C = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
    H, W = (int(v) for v in torch.randint(1, 11, (2,), generator=gen))
    k = int(torch.randint(0, 5, (), generator=gen)) * 2 + 1
    return Sample(_inputs(B, C, H, W, k, dtype, device, gen), {}, f"random {B}x{C}x{H}x{W}, k={k}")


def reference(x, filters):
    """Chapter 4, eq-dmnet-context-filter through ``F.conv2d``, one image at a time (each image's
    filters as a depthwise convolution with ``groups = C``): differentiable, and independent of
    every backend (the ``"torch"`` backend folds the batch into the groups instead)."""
    k = filters.shape[-1]
    if x.shape[0] == 0:  # no image: an empty output that still depends on both arguments
        return x * filters.sum()
    return torch.cat([F.conv2d(x[b:b + 1], filters[b][:, None], padding=(k - 1) // 2, groups=x.shape[1])
                      for b in range(x.shape[0])])


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, f = _inputs(2, 3, 6, 6, 3, torch.float64, "cpu", gen)

    def zeros(*shape):
        return torch.zeros(*shape, dtype=x.dtype)

    def case(args, error, match, desc, **kwargs):
        return ErrorCase(tuple(args), kwargs, error, match, desc)

    return [
        case((x.tolist(), f), TypeError, "x must be a torch.Tensor", "x is a list"),
        case((x, f.numpy()), TypeError, "filters must be a torch.Tensor", "filters is numpy"),
        case((x.long(), f.long()), TypeError, "x must be float32 or float64", "integer x"),
        case((x, f.to(torch.complex128)), TypeError, "filters must be float32 or float64.*complex", "complex filters"),
        case((x, f.half()), TypeError, "filters must be float32 or float64", "half filters"),
        case((x.bfloat16(), f.bfloat16()), TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 x, every backend"),
        case((x, f.bfloat16()), TypeError, "filters must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 filters"),
        case((x > 0, f), TypeError, "x must be float32 or float64", "bool x"),
        case((x, f.float()), TypeError, "filters has dtype torch.float32 but x", "dtype mismatch"),
        case((x[0], f), ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D", "3-D x"),
        case((x, f[0]), ValueError, r"filters must be a 4-D tensor \(B, C, k, k\)", "3-D filters"),
        case((x, f[None]), ValueError, "filters must be a 4-D tensor", "5-D filters"),
        case((x, zeros(2, 3, 4, 4)), ValueError,
             r"kernel size k = filters.shape\[-1\] must be an odd positive int.*got 4", "even k, every backend"),
        case((x, zeros(2, 3, 2, 2)), ValueError, "kernel size.*odd.*got 2", "k = 2"),
        case((x, zeros(2, 3, 0, 0)), ValueError, "kernel size.*odd positive.*got 0", "k = 0"),
        case((x, zeros(2, 3, 3, 5)), ValueError, "filters must be square.*3 x 5", "non-square filters"),
        case((x, f[:1]), ValueError,
             r"filters must have shape \(B, C, k, k\) = \(2, 3, 3, 3\); got \(1, 3, 3, 3\)", "filters batch"),
        case((x, f[:, :2]), ValueError,
             r"filters must have shape \(B, C, k, k\) = \(2, 3, 3, 3\); got \(2, 2, 3, 3\)", "filters channels"),
        case((x[:, :, :0], f), ValueError, "x must have at least one channel and one pixel", "empty image"),
        case((x[:, :0], f[:, :0]), ValueError, "x must have at least one channel", "no channels"),
        case((x, f), ValueError, "backend must be one of", "unknown backend", backend="cpp"),
        case((x, f), ValueError, "backend must be one of", "backend not str", backend=None),
        case((x, f.to("meta")), ValueError, "filters is on meta but x is on cpu", "mixed devices"),
        case((x, f, "numba"), TypeError, "positional", "positional backend"),
    ]


# ----------------------------------------------------------------------------- benchmark

def context_filter_cost(B, C, H, W, k, *, itemsize=4) -> Cost:
    """DMNet's context filter (Chapter 4, eq-dmnet-context-filter): one depthwise ``k x k`` filter
    per image and channel; FLOPs ``2 B C H W k^2``, bytes: input, filters and output."""
    k = check_cost_args(B, C, H, W, k)
    return Cost(2 * B * C * H * W * k * k,
                itemsize * (2 * B * C * H * W + B * C * k * k))


def _bench_inputs(B, C, H, W, k, dtype, device, gen):
    return (torch.randn(B, C, H, W, generator=gen, dtype=dtype, device=device),
            torch.randn(B, C, k, k, generator=gen, dtype=dtype, device=device) / k)


def _bench_call(backend, k, x, filters):
    return context_filter(x, filters, backend=backend)


def _bench_memory(backend, B, C, H, W, k, mode, itemsize=4):
    """Inputs and output (the groups trick of the ``"torch"`` backend copies nothing)."""
    need = context_filter_cost(B, C, H, W, k, itemsize=itemsize).bytes
    return int(need * (3 if mode == "backward" else 1))


def _bench_peer(k, x, filters):
    """The groups trick on oneDNN: the batch folded into the channels, one depthwise
    ``F.conv2d`` with ``groups = B*C``."""
    B, C, H, W = x.shape
    out = F.conv2d(x.reshape(1, B * C, H, W), filters.reshape(B * C, 1, k, k), padding=(k - 1) // 2,
                   groups=B * C)
    return out.view(B, C, H, W)


BENCH = BenchCase("dcm", "DMNet context_filter (depthwise filter per image)", ("numba", "torch", "cuda"),
                  _bench_inputs, _bench_call, context_filter_cost, _bench_memory,
                  peer=_bench_peer, peer_name="oneDNN: F.conv2d, groups = B*C", peer_targets=(1.0, 1.5))


# ----------------------------------------------------------------------------- the layer

KERNEL_SIZE = 3


def dcm_parameter_formula(channels: int) -> int:
    """``2 C_in C + C^2`` weights (reduction, generator, fusion) plus ``7 C`` (the generator's
    bias, three BatchNorms), with ``C_in = C``: the count does not depend on ``k``."""
    C = channels
    return 2 * C * C + C * C + 7 * C


def _make_layer(channels: int, backend: str = "auto"):
    C = check_positive_int("channels", channels)
    return DCM(C, C, KERNEL_SIZE, backend=backend)


# Local field 3: the 3x3 depthwise filter; its filters also pool the whole image (global context).
LAYER = LayerSpec("DCM", "dmnet2019", _make_layer, dcm_parameter_formula, local_field=3,
                  global_context=True,
                  description="DCM: a 3x3 depthwise filter per image, generated from pooled context (Chapter 4)",
                  training_backend="torch",
                  headline="mIoU 78.21 vs 69.83, DMNet vs the FCN without DCMs (Table 5, ResNet-50, VOC val)")

SPECS = (OpSpec.from_module(__name__, "context_filter", context_filter, chapter=4,
                            equation="eq-dmnet-context-filter",
                            description="DMNet's context filter: one depthwise k x k filter per image and channel"),)
