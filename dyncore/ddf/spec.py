"""The record of ``ddf`` (Chapter 6, eq-ddf-op) for the conformance tests, the benchmark, the cost
model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import output_size
from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample, shifted_taps, unfold_memory
from ..roofline import Cost, check_cost_args
from .functional import ddf
from .modules import DDF, branch_parameters, squeeze_width

__all__ = ["SPECS", "DDF_SE_RATIO", "ddf_cost", "ddf_parameter_formula", "reference"]

#: DDF's squeeze-excite ratio in Chapter 7's slot (the paper's default).
DDF_SE_RATIO = 0.2
KERNEL_SIZE = 3


def _inputs(B, C, H, W, k, s, dtype, device, gen):
    Ho, Wo = output_size(H, s), output_size(W, s)
    return (torch.randn(B, C, H, W, generator=gen, dtype=dtype).to(device),
            torch.randn(B, k * k, Ho, Wo, generator=gen, dtype=dtype).to(device),
            torch.randn(B, C, k * k, generator=gen, dtype=dtype).to(device))


# (B, C, H, W, k, dilation, stride): odd sizes, H != W, strides 1-3, dilations 1-3, k = 1, 3, 5,
# kernels wider than the image, a single pixel, sizes the stride does not divide.
CASES = [
    ((2, 3, 7, 9, 3, 1, 1), "odd H != W, k = 3"),
    ((2, 3, 7, 9, 3, 1, 2), "odd H != W, stride 2"),
    ((1, 2, 9, 7, 3, 2, 2), "dilation 2, stride 2, odd sizes"),
    ((2, 2, 8, 5, 5, 1, 3), "k = 5, stride 3 that does not divide H"),
    ((1, 3, 6, 7, 5, 3, 2), "k = 5, dilation 3, stride 2"),
    ((2, 2, 5, 6, 1, 1, 2), "k = 1, stride 2"),
    ((1, 2, 3, 4, 5, 2, 1), "k = 5 wider than the 3 x 4 image, dilation 2"),
    ((1, 1, 2, 3, 7, 1, 3), "k = 7 larger than the 2 x 3 image, stride 3"),
    ((2, 2, 1, 1, 3, 1, 2), "one pixel, stride 2"),
    ((1, 2, 11, 10, 3, 3, 3), "dilation 3, stride 3"),
    ((1, 1, 1, 7, 5, 1, 2), "one row, k = 5, stride 2"),
]
# and the k = 3, stride-1 fast path of the numba kernel
CASES += [
    ((1, 2, 5, 7, 3, 2, 1), "k = 3 stride-1 fast path, dilation 2"),
    ((1, 2, 3, 2, 3, 3, 1), "fast path, dilation 3 wider than the image"),
    ((2, 1, 4, 1, 3, 1, 1), "fast path, one column"),
    ((1, 1, 6, 5, 3, 2, 1), "fast path, dilation 2, H > W"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for (B, C, H, W, k, d, s), desc in CASES:
        yield Sample(_inputs(B, C, H, W, k, s, dtype, device, gen),
                     dict(kernel_size=k, dilation=d, stride=s), desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    B, C, H, W = (int(v) for v in torch.randint(1, 8, (4,), generator=gen))
    B, C = min(B, 2), min(C, 3)
    k = int(torch.randint(0, 3, (), generator=gen)) * 2 + 1
    d, s = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
    return Sample(_inputs(B, C, H, W, k, s, dtype, device, gen),
                  dict(kernel_size=k, dilation=d, stride=s),
                  f"random {B}x{C}x{H}x{W}, k={k}, dilation={d}, stride={s}")


def reference(x, spatial, channel, *, kernel_size, dilation=1, stride=1):
    """Chapter 6, eq-ddf-op through PyTorch, independently of the package: for every tap, the
    zero-padded input sliced at the tap's offset with step ``stride``, weighted by both filters.
    Differentiable by autograd, so it is the gradient reference too."""
    k, d, s = kernel_size, dilation, stride
    B, C, H, W = x.shape
    r = (k - 1) // 2
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
    xp = F.pad(x, (d * r,) * 4)
    out = x.new_zeros(B, C, Ho, Wo)
    for t in range(k * k):
        i, j = divmod(t, k)  # tap t reads x[yo*s + (i - r)*d, ...] = xp[yo*s + i*d, ...]
        patch = xp[:, :, i * d: i * d + (Ho - 1) * s + 1: s, j * d: j * d + (Wo - 1) * s + 1: s]
        out = out + spatial[:, t, None] * channel[:, :, t, None, None] * patch
    return out


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, sp, ch = _inputs(2, 3, 6, 7, 3, 1, torch.float64, "cpu", gen)
    x2, sp2, ch2 = _inputs(2, 3, 7, 9, 3, 2, torch.float64, "cpu", gen)
    k3 = dict(kernel_size=3)

    def case(args, kwargs, error, match, desc):
        return ErrorCase(tuple(args), {**k3, **kwargs}, error, match, desc)

    return [
        case((x.tolist(), sp, ch), {}, TypeError, "x must be a torch.Tensor", "x is a list"),
        case((x, sp.numpy(), ch), {}, TypeError, "spatial must be a torch.Tensor", "spatial numpy"),
        case((x, sp, None), {}, TypeError, "channel must be a torch.Tensor; got NoneType", "channel None"),
        case((x.long(), sp.long(), ch.long()), {}, TypeError, "x must be float32 or float64", "integer x"),
        case((x, sp > 0, ch), {}, TypeError, "spatial must be float32 or float64", "bool spatial"),
        case((x, sp, ch.to(torch.complex128)), {}, TypeError, "channel must be float32 or float64.*complex",
             "complex channel"),
        case((x.half(), sp, ch), {}, TypeError, "x must be float32 or float64", "half x"),
        case((x.bfloat16(), sp.bfloat16(), ch.bfloat16()), {}, TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 x, every backend"),
        case((x, sp, ch.bfloat16()), {}, TypeError, "channel must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 channel"),
        case((x, sp.half(), ch), {}, TypeError, "spatial must be float32 or float64; got a floating-point tensor of dtype torch.float16.*torch.autocast", "float16 spatial"),
        case((x, sp.float(), ch), {}, TypeError, "spatial has dtype torch.float32 but x", "dtype mismatch spatial"),
        case((x, sp, ch.float()), {}, TypeError, "channel has dtype torch.float32 but x", "dtype mismatch channel"),
        case((x[0], sp, ch), {}, ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D", "3-D x"),
        case((x, sp[0], ch), {}, ValueError, r"spatial must be a 4-D tensor \(B, k\*k, Ho, Wo\)", "3-D spatial"),
        case((x, sp[None], ch), {}, ValueError, "spatial must be a 4-D tensor", "5-D spatial"),
        case((x, sp, ch[0]), {}, ValueError, r"channel must be a 3-D tensor \(B, C, k\*k\)", "2-D channel"),
        case((x, sp, ch.reshape(2, 3, 3, 3)), {}, ValueError, "channel must be a 3-D tensor", "4-D channel"),
        case((x, sp, ch), dict(kernel_size=5), ValueError,
             r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 25, 6, 7\).*got \(2, 9, 6, 7\).*would fit kernel_size=3",
             "spatial taps for k=5"),
        case((x, sp[:, :8], ch), {}, ValueError, r"spatial must have shape.*8 taps is not k\*k = 9", "spatial 8 taps"),
        case((x2, sp2, ch2), dict(stride=1), ValueError,
             r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 7, 9\).*stride=1; got \(2, 9, 4, 5\)"
             r".*Ho = \(H - 1\)//stride \+ 1", "spatial wrong size for stride"),
        case((x2, torch.zeros(2, 9, 7, 9, dtype=x.dtype), ch2), dict(stride=2), ValueError,
             r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 4, 5\).*Ho x Wo = 4 x 5",
             "spatial input-sized with stride 2"),
        case((x, sp[:1], ch), {}, ValueError, r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 6, 7\)",
             "spatial batch"),
        case((x, sp, ch[:1]), {}, ValueError, r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(1, 3, 9\)",
             "channel batch"),
        case((x, sp, ch[:, :2]), {}, ValueError,
             r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(2, 2, 9\)", "channel channels"),
        case((x, sp, ch[:, :, :4]), {}, ValueError,
             r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(2, 3, 4\)", "channel taps"),
        *[case((x, sp, ch), dict(kernel_size=v), ValueError, f"kernel_size must be an odd positive int.*got {v}",
               f"kernel_size {v}") for v in (4, 0, -3)],
        *[case((x, sp, ch), {name: v}, ValueError, f"{name} must be a positive int; got {v}", f"{name} {v}")
          for name, v in (("stride", 0), ("stride", -1), ("dilation", 0))],
        *[case((x, sp, ch), {name: v}, TypeError, f"{name} must be an int", f"{name} {v!r}")
          for name, v in (("kernel_size", 3.0), ("stride", (1, 1)), ("dilation", True))],
        ErrorCase((x, sp, ch), {}, TypeError, "kernel_size", "no kernel_size"),
        case((x[:, :, :0], sp, ch), {}, ValueError, "x must have at least one channel and one pixel", "empty image"),
        case((x[:, :0], sp, ch[:, :0]), {}, ValueError, "x must have at least one channel", "no channels"),
        case((x, sp, ch), dict(backend="cpp"), ValueError, "backend must be one of", "unknown backend"),
        case((x, sp, ch), dict(backend=None), ValueError, "backend must be one of", "backend not str"),
        case((x, sp.to("meta"), ch), {}, ValueError, "spatial is on meta but x is on cpu", "mixed devices"),
        ErrorCase((x, sp, ch, 3), {}, TypeError, "positional", "positional kernel_size"),
        case((x2, sp2, ch2), dict(stride=1), ValueError, "spatial must have shape", "bad shapes, every backend"),
        case((x2, sp2, ch2), dict(kernel_size=2, stride=2), ValueError, "kernel_size must be an odd",
             "even kernel, every backend"),
    ]


# ----------------------------------------------------------------------------- benchmark

def ddf_cost(B, C, H, W, k, *, stride=1, itemsize=4) -> Cost:
    """DDF (Chapter 6, eq-ddf-op): ``3 n c k^2`` FLOPs, the paper's count for "filter combination
    and application" (spatial x channel, x input, add), with ``n = B Ho Wo``; bytes: input,
    spatial filter ``(B, k^2, Ho, Wo)``, channel filter ``(B, C, k^2)`` and output."""
    k = check_cost_args(B, C, H, W, k)
    Ho, Wo = output_size(H, stride), output_size(W, stride)
    return Cost(3 * B * C * Ho * Wo * k * k,
                itemsize * (B * C * H * W + B * k * k * Ho * Wo + B * C * k * k + B * C * Ho * Wo))


def _bench_inputs(B, C, H, W, k, dtype, device, gen):
    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype, device=device)

    return rand(B, C, H, W), rand(B, k * k, H, W) / k, rand(B, C, k * k) / k


def _bench_call(backend, k, x, spatial, channel):
    return ddf(x, spatial, channel, kernel_size=k, backend=backend)


def _bench_peer(k, x, spatial, channel):
    """The equation as a PyTorch user writes it for ``torch.compile``: ``k*k`` shifted
    multiply-adds of the zero-padded input (:func:`dyncore.opspec.shifted_taps`), each tap
    weighted by the spatial times the channel filter."""
    return shifted_taps(x, k, lambda t: spatial[:, t:t + 1] * channel[:, :, t, None, None])


BENCH = BenchCase("ddf", "DDF ddf (spatial x channel filter)", ("numba", "torch", "cuda"),
                  _bench_inputs, _bench_call, ddf_cost, unfold_memory(ddf_cost),
                  peer=_bench_peer, peer_name="Inductor: k*k shifted multiply-adds", peer_compiled=True,
                  peer_targets=(1.5, 2.0))


# ----------------------------------------------------------------------------- the layer

def ddf_parameter_formula(channels: int) -> int:
    """DDF's Table 1, ``c k^2 + sigma c^2 (1 + k^2)`` weights (``sigma c`` rounded to the squeeze
    width ``m``: :func:`dyncore.ddf.modules.branch_parameters`), plus what the table leaves out:
    the biases of the three prediction layers (``k^2 + m + c k^2``) and the learnable scale
    ``alpha`` of Chapter 6, eq-ddf-fn on the channel filter (``c k^2``)."""
    c, k = channels, KERNEL_SIZE
    m = squeeze_width(c, DDF_SE_RATIO)
    return branch_parameters(c, k, DDF_SE_RATIO) + (k * k + m + c * k * k) + c * k * k


def _make_layer(channels: int, backend: str = "auto"):
    return DDF(channels, kernel_size=KERNEL_SIZE, se_ratio=DDF_SE_RATIO, backend=backend)


LAYER = LayerSpec("DDF", "ddf2021", _make_layer, ddf_parameter_formula, local_field=KERNEL_SIZE,
                  global_context=True,
                  description="DDF: decoupled spatial x channel filters (Chapter 6)",
                  training_backend="numba",
                  headline="top-1 79.1% vs 77.2% with 16.8M vs 25.6M parameters, DDF-ResNet-50 vs "
                           "ResNet-50 (Table 4, ImageNet)")

SPECS = (OpSpec.from_module(__name__, "ddf", ddf, chapter=6, equation="eq-ddf-op",
                            description="the decoupled dynamic filter: spatial x channel filters, tap by tap"),)
