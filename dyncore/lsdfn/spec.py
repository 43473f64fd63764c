"""The record of ``large_sampling_filter`` (Chapter 3, eq-lsdfn) for the conformance tests, the
benchmark, the cost model and Chapter 7's comparison (:mod:`dyncore.opspec`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..opspec import BenchCase, ErrorCase, LayerSpec, OpSpec, Sample
from ..roofline import Cost, check_cost_args
from ..validation import check_kernel_size, check_positive_int
from .functional import large_sampling_filter
from .modules import LSDFN

__all__ = ["SPECS", "reference", "large_sampling_filter_cost", "lsdfn_parameter_formula",
           "lsdfn_feature_channels", "BENCH_SAMPLES", "LAYER_SAMPLES", "LAYER_SAMPLE_STRIDE"]


def _inputs(B, C, Co, H, W, k, s, dtype, device, gen):
    shapes = [(B, C, H, W), (B, Co, C, H, W), (B, Co, k * k, H, W), (B, Co, s * s, H, W),
              (B, Co, k * k, H, W)]
    return tuple(torch.randn(*shape, generator=gen, dtype=dtype).to(device) for shape in shapes)


def _kwargs(k, s, g):
    return dict(kernel_size=k, samples=s, sample_stride=g)


# (B, C, Co, H, W, k, s, g): odd sizes, H != W, sample strides that do not divide the size,
# samples reaching past the image, k = 1, s = 1, a kernel and a sampling field larger than the image.
CASES = [
    ((2, 3, 2, 7, 6, 3, 3, 2), "k = 3, s = 3, sample stride 2, 7 x 6"),
    ((1, 2, 3, 5, 8, 5, 3, 1), "k = 5, s = 3, 5 x 8"),
    ((1, 4, 1, 6, 5, 1, 5, 3), "k = 1, s = 5, sample stride 3"),
    ((1, 1, 2, 3, 4, 3, 1, 1), "one sample (s = 1)"),
    ((1, 2, 1, 4, 9, 3, 5, 4), "s = 5, sample stride 4 past the image"),
    ((2, 2, 1, 3, 2, 5, 3, 1), "k = 5 larger than the 3 x 2 image"),
]


def sample_inputs(dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    for (B, C, Co, H, W, k, s, g), desc in CASES:
        yield Sample(_inputs(B, C, Co, H, W, k, s, dtype, device, gen), _kwargs(k, s, g), desc)


def random_input(seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (), generator=gen))

    k, s = 2 * draw(0, 2) + 1, 2 * draw(0, 2) + 1
    g = draw(1, 4)
    B, C, Co = draw(1, 2), draw(1, 3), draw(1, 2)
    H, W = draw(1, 6), draw(1, 6)
    return Sample(_inputs(B, C, Co, H, W, k, s, dtype, device, gen), _kwargs(k, s, g),
                  f"random {B}x{C}x{H}x{W} -> Co={Co}, k={k}, s={s}, sample_stride={g}")


def reference(x, U, V, sample_attention, position_attention, *, kernel_size, samples, sample_stride):
    """Chapter 3, eq-lsdfn with the kernels of eq-kernels (Eq. 4-6 of the paper, as resolved),
    written with shifted slices of zero-padded tensors: independent of every backend and
    differentiable by autograd."""
    k, s, g = kernel_size, samples, sample_stride
    B, C, H, W = x.shape
    r, rs = (k - 1) // 2, (s - 1) // 2
    P = rs * g + r
    xp = F.pad(x, (P,) * 4)
    pp = F.pad(position_attention, (P,) * 4)
    out = x.new_zeros(B, U.shape[1], H, W)
    for m in range(s * s):
        dy, dx = (m // s - rs) * g, (m % s - rs) * g            # eq-sample-offset
        a_pos = pp[..., P + dy: P + dy + H, P + dx: P + dx + W]  # A_pos read at (ym, xm)
        for t in range(k * k):
            ty, tx = t // k - r, t % k - r
            feats = xp[:, :, P + dy + ty: P + dy + ty + H, P + dx + tx: P + dx + tx + W]
            Wt = V[:, :, t, None] + (U if t == k * k // 2 else 0)   # eq-kernels: (B, Co, C, H, W)
            out = out + sample_attention[:, :, m] * a_pos[:, :, t] * (Wt * feats[:, None]).sum(2)
    return out


def error_inputs():
    gen = torch.Generator().manual_seed(0)
    x, U, V, SA, PA = _inputs(1, 2, 3, 5, 5, 3, 3, torch.float64, "cpu", gen)
    kw = _kwargs(3, 3, 1)

    def case(args, error, match, desc, **kwargs):
        return ErrorCase(tuple(args), {**kw, **kwargs}, error, match, desc)

    return [
        case((x.tolist(), U, V, SA, PA), TypeError, "x must be a torch.Tensor", "x list"),
        case((x, U.numpy(), V, SA, PA), TypeError, "U must be a torch.Tensor", "U numpy"),
        case((x.long(), U, V, SA, PA), TypeError, "x must be float32 or float64", "integer x"),
        case((x, U, V.to(torch.complex128), SA, PA), TypeError, "V must be float32 or float64", "complex V"),
        case(tuple(t.bfloat16() for t in (x, U, V, SA, PA)), TypeError, "x must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 x, every backend"),
        case((x, U, V, SA, PA.bfloat16()), TypeError, "position_attention must be float32 or float64; got a floating-point tensor of dtype torch.bfloat16.*torch.autocast", "bfloat16 position_attention"),
        case((x, U.half(), V, SA, PA), TypeError, "U must be float32 or float64; got a floating-point tensor of dtype torch.float16.*torch.autocast", "float16 U"),
        case((x, U, V, SA.float(), PA), TypeError, "sample_attention has dtype torch.float32 but x", "dtype mismatch"),
        case((x[0], U, V, SA, PA), ValueError, r"x must be a 4-D tensor \(B, C, H, W\)", "3-D x"),
        case((x, U[0], V, SA, PA), ValueError, r"U must be a 5-D tensor \(B, Co, C, H, W\)", "4-D U"),
        case((x, U, V, SA, PA[None]), ValueError, "position_attention must be a 5-D", "6-D position_attention"),
        case((x, U[:, :, :1], V, SA, PA), ValueError, r"U must have shape \(B, Co, C, H, W\)", "U channels"),
        case((x, torch.cat([U, U]), V, SA, PA), ValueError, "U must have shape", "U batch"),
        case((x, U, V[:, :, :4], SA, PA), ValueError, r"V must have shape \(B, Co, k\*k, H, W\) with k=3", "V taps"),
        case((x, U, V[..., :4], SA, PA), ValueError, "V must have shape", "V size"),
        case((x, U, V, SA[:, :, :8], PA), ValueError,
             r"sample_attention must have shape \(B, Co, s\*s, H, W\) with s=3", "sample_attention samples"),
        case((x, U, V, SA[:, :2], PA), ValueError, "sample_attention must have shape", "sample_attention Co"),
        case((x, U, V, SA, PA[:, :, :1]), ValueError, "position_attention must have shape", "position_attention taps"),
        case((x, U, V, SA, PA), ValueError, "kernel_size must be an odd positive int", "even k", kernel_size=2),
        case((x, U, V, SA, PA), ValueError, "kernel_size must be an odd", "zero k", kernel_size=0),
        case((x, U, V, SA, PA), TypeError, "kernel_size must be an int", "float k", kernel_size=3.0),
        case((x, U, V, SA, PA), ValueError, "samples must be an odd positive int", "even samples", samples=4),
        case((x, U, V, SA, PA), ValueError, "samples must be an odd", "negative samples", samples=-3),
        case((x, U, V, SA, PA), ValueError, "sample_stride must be a positive int", "zero sample_stride",
             sample_stride=0),
        case((x, U, V, SA, PA), TypeError, "sample_stride must be an int", "bool sample_stride",
             sample_stride=True),
        ErrorCase((x, U, V, SA, PA), dict(samples=3, sample_stride=1), TypeError, "kernel_size", "no kernel_size"),
        case((x[..., :0], U[..., :0], V[..., :0], SA[..., :0], PA[..., :0]), ValueError,
             "x must have at least one channel and one pixel", "empty image"),
        case((x, U[:, :0], V[:, :0], SA[:, :0], PA[:, :0]), ValueError,
             "U must have at least one output channel", "no output channels"),
        case((x, U, V, SA, PA), ValueError, "backend must be one of", "unknown backend", backend="cpp"),
        case((x, U, V.to("meta"), SA, PA), ValueError, "V is on meta but x is on cpu", "mixed devices"),
    ]


# ----------------------------------------------------------------------------- benchmark

#: Samples of the benchmark case (``Co = C``, sample stride 1).
BENCH_SAMPLES = 3


def large_sampling_filter_cost(B, C, H, W, k, *, out_channels=None, samples=BENCH_SAMPLES,
                               itemsize=4) -> Cost:
    """LS-DFN (Chapter 3, eq-lsdfn) with the channel-sum factorization eq-factor, ``S = sum_u x[u]``.

    Per output ``(b, v, y, x)`` and sample: ``k^2`` taps of ``A_pos * V * S`` (3 FLOPs each),
    the centre term ``sum_u U x`` (``2C``), and the sample's weight (2); plus ``C`` adds per
    pixel for ``S``. Bytes: ``x``, ``U (B, Co, C, H, W)``, ``V`` and ``A_pos (B, Co, k^2, H, W)``,
    ``A_sam (B, Co, s^2, H, W)`` and the output. ``U`` alone is ``Co`` times the input: the
    operator is memory-bound by construction.
    """
    k = check_cost_args(B, C, H, W, k)
    Co = C if out_channels is None else check_positive_int("out_channels", out_channels)
    s = check_kernel_size("samples", samples)
    n = B * H * W
    flops = n * Co * s * s * (3 * k * k + 2 * C + 2) + n * C
    elements = n * C + n * Co * C + 2 * n * Co * k * k + n * Co * s * s + n * Co
    return Cost(flops, itemsize * elements)


def _bench_inputs(B, C, H, W, k, dtype, device, gen):
    s2 = BENCH_SAMPLES ** 2

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype, device=device)

    return (rand(B, C, H, W), rand(B, C, C, H, W) / C, rand(B, C, k * k, H, W) / k,
            rand(B, C, s2, H, W) / s2, rand(B, C, k * k, H, W) / k)


def _bench_call(backend, k, x, U, V, a_sam, a_pos):
    return large_sampling_filter(x, U, V, a_sam, a_pos, kernel_size=k, samples=BENCH_SAMPLES,
                                 sample_stride=1, backend=backend)


def _bench_memory(backend, B, C, H, W, k, mode, itemsize=4):
    """Inputs and output; the ``"torch"`` backend also builds the kernel tensor ``W`` of
    ``Co*C*k*k*H*W`` and the sampled features of ``C*k*k*s*s*H*W`` elements per image."""
    need = large_sampling_filter_cost(B, C, H, W, k, itemsize=itemsize).bytes
    if backend == "torch":
        need += 2 * B * H * W * (C * C * k * k + C * k * k * BENCH_SAMPLES ** 2) * itemsize
    return int(need * (3 if mode == "backward" else 1))


def _bench_peer(k, x, U, V, a_sam, a_pos):
    """Eq. 4-5 as a PyTorch user writes them for ``torch.compile`` (sample stride 1): for each
    sample, the centre tap's channel sum ``sum_u U x`` and the ``V`` taps on the channel-sum map
    ``S`` (what ``sum_u W x`` reduces to when ``V`` is shared by the channels), shifted slices
    that Inductor fuses."""
    H, W = x.shape[-2:]
    s, r = BENCH_SAMPLES, (k - 1) // 2
    rs = (s - 1) // 2
    S = F.pad(x.sum(1, keepdim=True), (r + rs,) * 4)
    xq, pa = F.pad(x, (rs,) * 4), F.pad(a_pos, (rs,) * 4)
    centre = k * k // 2
    out = 0
    for m in range(s * s):
        my, mx = divmod(m, s)
        inner = ((U * xq[:, None, :, my:my + H, mx:mx + W]).sum(2)
                 * pa[:, :, centre, my:my + H, mx:mx + W])
        for t in range(k * k):
            ty, tx = divmod(t, k)
            inner = inner + (pa[:, :, t, my:my + H, mx:mx + W] * V[:, :, t]
                             * S[:, :, my + ty:my + ty + H, mx + tx:mx + tx + W])
        out = out + a_sam[:, :, m] * inner
    return out


BENCH = BenchCase("lsdfn", f"LS-DFN large_sampling_filter (Co = C, samples = {BENCH_SAMPLES})",
                  ("numba", "torch", "cuda"), _bench_inputs, _bench_call, large_sampling_filter_cost,
                  _bench_memory, peer=_bench_peer, peer_name="Inductor: shifted multiply-adds per sample",
                  peer_compiled=True, peer_targets=(1.5, 2.0))


# ----------------------------------------------------------------------------- the layer

KERNEL_SIZE = 3
#: Chapter 7's LS-DFN: ``s = 3`` samples at sample stride 2.
LAYER_SAMPLES, LAYER_SAMPLE_STRIDE = 3, 2


def lsdfn_feature_channels(channels: int) -> int:
    """The LS-DFN feature branch's width ``C``: half the slot's channels (at least 1)."""
    return max(1, channels // 2)


def lsdfn_parameter_formula(channels: int) -> int:
    """Three 3x3 branches on the ``C_in`` input channels with ``C``, ``Co (C + k^2)`` and
    ``Co (s^2 + k^2)`` outputs: ``(9 C_in + 1) (C + Co (C + k^2) + Co (s^2 + k^2))``, with
    ``C_in = Co`` the slot's channels and ``C`` the feature width (Fig. 2 of the paper)."""
    C, k, s = channels, KERNEL_SIZE, LAYER_SAMPLES
    Cf = lsdfn_feature_channels(C)
    return (9 * C + 1) * (Cf + C * (Cf + k * k) + C * (s * s + k * k))


def _make_layer(channels: int, backend: str = "auto"):
    C = check_positive_int("channels", channels)
    return LSDFN(C, lsdfn_feature_channels(C), C, kernel_size=KERNEL_SIZE, samples=LAYER_SAMPLES,
                 sample_stride=LAYER_SAMPLE_STRIDE, backend=backend)


# Local field: the sampling field (s-1) g + k plus the feature branch's 3x3.
LAYER = LayerSpec("LS-DFN", "lsdfn2018", _make_layer, lsdfn_parameter_formula,
                  local_field=(LAYER_SAMPLES - 1) * LAYER_SAMPLE_STRIDE + KERNEL_SIZE + 2,
                  description=f"LS-DFN: s = {LAYER_SAMPLES} samples at stride {LAYER_SAMPLE_STRIDE}, "
                              "a feature branch of C/2 channels (Chapter 3)",
                  training_backend="numba",
                  headline="aEPE 2.34 vs 2.78, FlowNetS + LS-DFN (s = 7) vs FlowNetS (Table 6, FlyingChairs)")

SPECS = (OpSpec.from_module(__name__, "large_sampling_filter", large_sampling_filter, chapter=3,
                            equation="eq-lsdfn",
                            description="LS-DFN's large sampling field: s x s samples of k x k "
                                        "position-specific kernels"),)
