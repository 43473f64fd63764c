"""The record of ``dynamic_filter`` (Chapter 2, eq-dfn) for the conformance tests, the benchmark,
the cost model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample, shifted_taps, unfold_memory
from ..roofline import Cost, check_cost_args
from .functional import dynamic_filter
from .modules import DynamicFilterLayer

__all__ = ["SPECS", "dfn_parameter_formula", "dynamic_filter_cost", "reference"]

KERNEL_SIZE = 3


def _inputs(B, C, H, W, k, dtype, device, gen):
    return (torch.randn(B, C, H, W, generator=gen, dtype=dtype).to(device),
            torch.randn(B, k * k, H, W, generator=gen, dtype=dtype).to(device))


# (B, C, H, W, k, dilation): H != W, a 1x1 kernel, a dilation that does not divide the size,
# kernels wider than the image (most taps read padding), a single row.
CASES = [
    ((2, 3, 7, 9, 3, 1), "odd H != W, k = 3"),
    ((1, 4, 9, 6, 5, 2), "k = 5, dilation 2"),
    ((2, 2, 5, 8, 1, 1), "k = 1"),
    ((1, 3, 6, 7, 3, 3), "dilation 3 that does not divide the size"),
    ((2, 1, 4, 5, 7, 1), "k = 7 larger than the 4 x 5 image"),
    ((1, 2, 11, 5, 5, 3), "k = 5, dilation 3, H > W"),
    ((3, 2, 1, 6, 3, 1), "one row"),
    ((1, 2, 3, 2, 5, 2), "k = 5, dilation 2, wider than the 3 x 2 image"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for (B, C, H, W, k, d), desc in CASES:
        yield Sample(_inputs(B, C, H, W, k, dtype, device, gen), dict(kernel_size=k, dilation=d), desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    B, C = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
    H, W = (int(v) for v in torch.randint(1, 11, (2,), generator=gen))
    k = int(torch.randint(0, 4, (), generator=gen)) * 2 + 1
    d = int(torch.randint(1, 4, (), generator=gen))
    return Sample(_inputs(B, C, H, W, k, dtype, device, gen), dict(kernel_size=k, dilation=d),
                  f"random {B}x{C}x{H}x{W}, k={k}, dilation={d}")


def reference(x, filters, *, kernel_size, dilation=1):
    """Chapter 2, eq-dfn by zero-padding once and summing ``k*k`` shifted slices weighted by the
    filters (differentiable, and independent of every backend: no unfold, no loops, no kernels)."""
    k, d = kernel_size, dilation
    H, W = x.shape[-2:]
    p = d * (k - 1) // 2
    xp = F.pad(x, (p, p, p, p))
    out = torch.zeros_like(x)
    for t in range(k * k):
        i, j = divmod(t, k)
        out = out + filters[:, t:t + 1] * xp[:, :, i * d:i * d + H, j * d:j * d + W]
    return out


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, f = _inputs(2, 3, 5, 6, 3, torch.float64, "cpu", gen)
    f5 = _inputs(2, 3, 5, 6, 5, torch.float64, "cpu", gen)[1]
    k3 = dict(kernel_size=3)

    def case(args, kwargs, error, match, desc):
        return ErrorCase(tuple(args), {**k3, **kwargs}, error, match, desc)

    return [
        case((x.tolist(), f), {}, TypeError, "x must be a torch.Tensor", "x is a list"),
        case((x, f.numpy()), {}, TypeError, "filters must be a torch.Tensor", "filters is numpy"),
        case((x.long(), f), {}, TypeError, "x must be float32 or float64", "integer x"),
        case((x, f > 0), {}, TypeError, "filters must be float32 or float64", "bool filters"),
        case((x.to(torch.complex128), f), {}, TypeError, "x must be float32 or float64.*complex", "complex x"),
        case((x, f.half()), {}, TypeError, "filters must be float32 or float64", "half filters"),
        case((x.bfloat16(), f.bfloat16()), {}, TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 x, every backend"),
        case((x, f.bfloat16()), {}, TypeError, "filters must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 filters"),
        case((x, f.float()), {}, TypeError, "filters has dtype torch.float32 but x", "dtype mismatch"),
        case((x[0], f), {}, ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D", "3-D x"),
        case((x, f[None]), {}, ValueError, r"filters must be a 4-D tensor \(B, k\*k, H, W\)", "5-D filters"),
        case((x, f[:, :8]), {}, ValueError,
             r"filters must have shape \(B, k\*k, H, W\) = \(2, 9, 5, 6\).*got \(2, 8, 5, 6\) \(8 taps is not k\*k = 9",
             "too few taps"),
        case((x, f5), {}, ValueError, r"got \(2, 25, 5, 6\) \(its 25 taps would fit kernel_size=5, but kernel_size=3\)",
             "taps of another k"),
        case((x, f[:1]), {}, ValueError, r"filters must have shape .*\(2, 9, 5, 6\).*got \(1, 9, 5, 6\)", "filters batch"),
        case((x, f[..., :5]), {}, ValueError, r"filters must have shape .*got \(2, 9, 5, 5\)", "filters size"),
        case((x, f[:, :, :3]), {}, ValueError, "filters must have shape", "bad shape, every backend"),
        # refused even where the filters' taps would fit: 2 (4 taps), True (1 tap)
        case((x, f[:, :4]), dict(kernel_size=2), ValueError, "kernel_size must be an odd positive int", "even kernel"),
        case((x, f[:, :1]), dict(kernel_size=True), TypeError, "kernel_size must be an int", "bool kernel"),
        ErrorCase((x, f), {}, TypeError, "kernel_size", "no kernel"),
        *[case((x, f), dict(kernel_size=v), ValueError, "kernel_size must be an odd positive int", f"kernel {v}")
          for v in (0, -3)],
        *[case((x, f), dict(dilation=v), ValueError, f"dilation must be a positive int; got {v}", f"dilation {v}")
          for v in (0, -2)],
        *[case((x, f), {name: v}, TypeError, f"{name} must be an int", f"{name} {v!r}")
          for name, v in (("kernel_size", 3.0), ("kernel_size", (3, 3)), ("dilation", 1.5), ("dilation", (1, 2)))],
        case((x[:, :0], f), {}, ValueError, "x must have at least one channel and one pixel", "no channels"),
        case((x[:, :, :0], f[:, :, :0]), {}, ValueError, "x must have at least one channel and one pixel", "no rows"),
        case((x, f), dict(backend="cpp"), ValueError, "backend must be one of", "unknown backend"),
        case((x, f), dict(backend=None), ValueError, "backend must be one of", "backend not str"),
        case((x, f.to("meta")), {}, ValueError, "filters is on meta but x is on cpu", "mixed devices"),
        ErrorCase((x, f, 3), {}, TypeError, "positional", "positional kernel"),
    ]


# ----------------------------------------------------------------------------- benchmark

def dynamic_filter_cost(B, C, H, W, k, *, itemsize=4) -> Cost:
    """DFN (Chapter 2, eq-dfn): per-pixel filters ``(B, k^2, H, W)`` shared by the channels;
    FLOPs ``2 B C H W k^2``, bytes: input, filters and output."""
    k = check_cost_args(B, C, H, W, k)
    return Cost(2 * B * C * H * W * k * k,
                itemsize * (2 * B * C * H * W + B * k * k * H * W))


def _bench_inputs(B, C, H, W, k, dtype, device, gen):
    return (torch.randn(B, C, H, W, generator=gen, dtype=dtype, device=device),
            torch.randn(B, k * k, H, W, generator=gen, dtype=dtype, device=device) / k)


def _bench_call(backend, k, x, filters):
    return dynamic_filter(x, filters, kernel_size=k, backend=backend)


def _bench_peer(k, x, filters):
    """The equation as a PyTorch user writes it for ``torch.compile``: ``k*k`` shifted
    multiply-adds of the zero-padded input (:func:`dyncore.opspec.shifted_taps`), which Inductor
    fuses into one loop."""
    return shifted_taps(x, k, lambda t: filters[:, t:t + 1])


BENCH = BenchCase("dfn", "DFN dynamic_filter (per-pixel filter shared by channels)", ("numba", "torch", "cuda"),
                  _bench_inputs, _bench_call, dynamic_filter_cost, unfold_memory(dynamic_filter_cost),
                  peer=_bench_peer, peer_name="Inductor: k*k shifted multiply-adds", peer_compiled=True,
                  peer_targets=(1.5, 2.0))


# ----------------------------------------------------------------------------- the layer

def dfn_parameter_formula(channels: int) -> int:
    """The filter branch, two 3x3 convolutions ``C -> C`` and a 1x1 one to ``k^2`` taps:
    ``2 (C*9 + 1) C + (C + 1) k^2`` (Chapter 2, eq-dfn-params)."""
    C, k = channels, KERNEL_SIZE
    return 2 * (C * 9 + 1) * C + (C + 1) * k * k


def _make_layer(channels: int, backend: str = "auto"):
    return DynamicFilterLayer(channels, KERNEL_SIZE, hidden_channels=(channels, channels), backend=backend)


# Local field 5: a pixel's filter is predicted by the branch's two 3x3 convolutions (5 x 5), and
# applied to its 3 x 3 neighbours, inside that window.
LAYER = LayerSpec("DFN", "dfn2016", _make_layer, dfn_parameter_formula, local_field=5,
                  description="DFN: a 3x3 filter per pixel, shared by the channels (Chapter 2)",
                  training_backend="numba",
                  headline="lower prediction error than a static network of about the same size "
                           "(moving MNIST; its figures are not quoted here)")

SPECS = (OpSpec.from_module(__name__, "dynamic_filter", dynamic_filter, chapter=2, equation="eq-dfn",
                            description="DFN's per-pixel filter, shared by the channels"),)
