"""dyncore.ddf.functional beyond the conformance suite (tests/test_conformance.py checks every
backend against the spec's reference on dyncore.ddf.spec's samples, forward, backward, float32,
gradcheck, bad input, GPU): the geometry of F.conv2d, the loops term by term and their backward,
the untuned numba kernels, gradients of expanded filters, huge-page outputs, determinism across
thread counts, and the unification identities with DFN and DMNet."""

import numba
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from dyncore.ddf import numba_cpu
from dyncore.ddf.functional import DDFFunction, ddf, tap_offsets
from dyncore.ddf.loops import ddf_backward_loops, ddf_loops
from dyncore.ddf.spec import CASES as SAMPLES
from dyncore.ddf.spec import reference as spec_reference
from dyncore.dfn import dynamic_filter
from dyncore.dmnet import context_filter
from dyncore.utils import num_threads

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def out_size(n, s):
    return (n - 1) // s + 1


def make(B, C, H, W, k, s=1, dtype=torch.float64, seed=0):
    """``x, spatial, channel`` for an input of ``(B, C, H, W)``, kernel ``k`` and stride ``s``."""
    g = torch.Generator().manual_seed(seed)
    Ho, Wo = out_size(H, s), out_size(W, s)
    return (torch.randn(B, C, H, W, generator=g, dtype=dtype),
            torch.randn(B, k * k, Ho, Wo, generator=g, dtype=dtype),
            torch.randn(B, C, k * k, generator=g, dtype=dtype))


def reference(x, spatial, channel, k, d=1, s=1):
    """The spec's reference (plain PyTorch, differentiable), called positionally."""
    return spec_reference(x, spatial, channel, kernel_size=k, dilation=d, stride=s)


# (B, C, H, W, k, dilation, stride): the spec's samples (odd sizes, H != W, strides 1-3,
# dilations 1-3, k = 1, 3, 5, 7, kernels wider than the image, the k = 3 stride-1 fast path).
CASES = [case for case, _ in SAMPLES]
IDS = [str(c) for c in CASES]


def args(case, dtype=torch.float64, seed=0):
    B, C, H, W, k, d, s = case
    return make(B, C, H, W, k, s, dtype, seed), dict(kernel_size=k, dilation=d, stride=s)


def test_output_geometry_is_that_of_conv2d():
    """With ``spatial == 1`` and one channel filter for the batch, ddf is F.conv2d(groups=C)
    with stride, padding ``d*r`` and dilation: same size, same values, for every stride."""
    for B, C, H, W, k, d, s in CASES:
        x, _, ch = make(B, C, H, W, k, s)
        ch = ch[:1].expand(B, -1, -1)
        sp = torch.ones(B, k * k, out_size(H, s), out_size(W, s), dtype=x.dtype)
        w = ch[0].reshape(C, 1, k, k)
        want = F.conv2d(x, w, stride=s, padding=d * (k - 1) // 2, dilation=d, groups=C)
        for backend in ("numba", "torch"):
            got = ddf(x, sp, ch, kernel_size=k, dilation=d, stride=s, backend=backend)
            torch.testing.assert_close(got, want, **F64)


@pytest.mark.parametrize("backend", ALL)
def test_odd_image_with_stride_two(backend):
    """7 x 9 with stride 2 gives 4 x 5 (as F.conv2d does), forward and backward: odd sizes
    with stride 2 are where the paper's public code is reported to fail (issue 7)."""
    x, sp, ch = make(1, 2, 7, 9, 3, 2, seed=3)
    assert sp.shape[2:] == (4, 5)
    out = ddf(x, sp, ch, kernel_size=3, stride=2, backend=backend)
    torch.testing.assert_close(out, reference(x, sp, ch, 3, 1, 2), **F64)
    if backend in ("numba", "cuda"):
        assert gradcheck(lambda a, b, c: ddf(a, b, c, kernel_size=3, stride=2, backend=backend),
                         (x.requires_grad_(), sp.requires_grad_(), ch.requires_grad_()),
                         fast_mode=backend == "cuda")


def test_loops_are_the_equation_term_by_term():
    """One-hot spatial and channel filters move the image by the tap's offset (zero-filled),
    sampled every ``s`` pixels (contract: taps, stride)."""
    k, d, s, H, W = 5, 2, 2, 7, 8
    x = torch.randn(1, 2, H, W, dtype=torch.float64)
    Ho, Wo = out_size(H, s), out_size(W, s)
    r = (k - 1) // 2
    for t in range(k * k):
        i, j = divmod(t, k)
        sp = torch.zeros(1, k * k, Ho, Wo, dtype=torch.float64)
        sp[0, t] = 1
        ch = torch.zeros(1, 2, k * k, dtype=torch.float64)
        ch[0, :, t] = 1
        out = torch.from_numpy(ddf_loops(x.numpy(), sp.numpy(), ch.numpy(), k, d, s))
        expected = torch.zeros(1, 2, Ho, Wo, dtype=torch.float64)
        for yo in range(Ho):
            for xo in range(Wo):
                y, xx = yo * s + (i - r) * d, xo * s + (j - r) * d
                if 0 <= y < H and 0 <= xx < W:
                    expected[0, :, yo, xo] = x[0, :, y, xx]
        assert torch.equal(out, expected)


def test_tap_offsets():
    offs = tap_offsets(3, 2)
    assert offs.shape == (9, 2) and offs[4].tolist() == [0, 0]
    assert offs[0].tolist() == [-2, -2] and offs[5].tolist() == [0, 2]
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        tap_offsets(4)


def test_untuned_numba_forward_equals_the_tuned_one():
    for case in CASES:
        (x, sp, ch), kw = args(case)
        config = (kw["kernel_size"], kw["dilation"], kw["stride"])
        torch.testing.assert_close(numba_cpu.forward_simple(config, x, sp, ch),
                                   numba_cpu.forward(config, x, sp, ch), **F64)
    # the untuned kernel set trains too (same backward kernels)
    (x, sp, ch), _ = args(CASES[1])
    xg = x.clone().requires_grad_()
    out = DDFFunction.apply(numba_cpu.DDF_SIMPLE, (3, 1, 2), xg, sp, ch)
    torch.testing.assert_close(out, reference(x, sp, ch, 3, 1, 2), **F64)
    out.sum().backward()
    assert xg.grad.shape == x.shape


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (2, 3, 5, 7), (1, 2, 9, 40), (2, 1, 13, 6), (1, 3, 17, 23),
                                   (1, 2, 37, 301), (2, numba_cpu.CHANNEL_GROUP + 1, 130, 140)])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_flattened_plane_path_equals_the_row_path_bit_for_bit(shape, dilation):
    # k = 3 at stride 1 sweeps each plane's interior as one flattened run (in pieces of FLAT_RUN
    # outputs, CHANNEL_GROUP channels at a time) and recomputes the columns where a tap would wrap
    # into the next row; every output must be the same sum, in the same order, as the row path
    # gives (planes of 2d or fewer rows or columns take the row path; the last shape has two runs
    # and several channel groups, the last one partial)
    B, C, H, W = shape
    g = torch.Generator().manual_seed(sum(shape) + dilation)
    x, sp, ch = (torch.randn(B, C, H, W, generator=g), torch.randn(B, 9, H, W, generator=g),
                 torch.randn(B, C, 9, generator=g))
    planes = numba_cpu.forward((3, dilation, 1), x, sp, ch)
    rows = torch.full_like(x, float("nan"))
    xn, spn, chn, rn = x.numpy(), sp.numpy(), ch.numpy(), rows.numpy()
    for b in range(B):
        for c in range(C):
            for y in range(H):
                numba_cpu._forward_row(xn, spn, chn, rn, b, c, y, 3, dilation, 1)
    assert torch.equal(planes, rows)


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (2, 3, 5, 7), (1, 2, 9, 40), (2, 1, 13, 6), (1, 3, 17, 23),
                                   (1, 2, 37, 301), (2, numba_cpu.CHANNEL_GROUP + 1, 130, 140)])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_flattened_backward_equals_the_row_path(shape, dilation):
    # the backward sweeps the same flattened interiors: the input gradient in the forward's runs
    # (bit for bit the row path's sums), both filter gradients in runs of GRAD_RUN outputs with
    # the wrapped taps masked (dL/dspatial bit for bit the row path's, summed over the channels in
    # the same order; dL/dchannel sums its pixels in another grouping: equal to round-off). The
    # last shape has several runs of both kinds; planes of 2d or fewer rows or columns take the
    # row path
    B, C, H, W = shape
    g = torch.Generator().manual_seed(sum(shape) * dilation)
    x, sp, ch, go = (torch.randn(B, C, H, W, generator=g), torch.randn(B, 9, H, W, generator=g),
                     torch.randn(B, C, 9, generator=g), torch.randn(B, C, H, W, generator=g))
    xn, spn, chn, gon = x.numpy(), sp.numpy(), ch.numpy(), go.numpy()
    grad_x = torch.full_like(x, float("nan"))
    numba_cpu.ddf_grad_input_kernel(gon, spn, chn, grad_x.numpy(), 3, dilation, 1)
    rows = torch.full_like(x, float("nan"))
    for b in range(B):
        for c in range(C):
            for y in range(H):
                numba_cpu._grad_input_row(gon, spn, chn, rows.numpy(), b, c, y, 3, dilation, 1)
    assert torch.equal(grad_x, rows)
    grad_sp, grad_ch = torch.full_like(sp, float("nan")), torch.full_like(ch, float("nan"))
    numba_cpu.ddf_grad_filters_kernel(gon, xn, spn, chn, grad_sp.numpy(), grad_ch.numpy(), 3, dilation, 1)
    rows_sp, part = torch.full_like(sp, float("nan")), torch.zeros(B, H, C, 9)
    for b in range(B):
        for y in range(H):
            numba_cpu._grad_filters_row(gon, xn, spn, chn, rows_sp.numpy(), part[b, y].numpy(), b, y, 3,
                                        dilation, 1)
    assert torch.equal(grad_sp, rows_sp)
    torch.testing.assert_close(grad_ch, part.sum(1), rtol=1e-5, atol=1e-5 * float(part.abs().sum(1).max()))


@pytest.mark.parametrize("case", CASES[:6], ids=IDS[:6])
def test_backward_loops_match_autograd_of_the_equation(case):
    (x, sp, ch), _ = args(case)
    k, d, s = case[4:]
    inputs = [t.clone().requires_grad_() for t in (x, sp, ch)]
    ref = reference(*inputs, k, d, s)
    g = torch.randn_like(ref)
    want = torch.autograd.grad(ref, inputs, g)
    got = ddf_backward_loops(g.numpy(), x.numpy(), sp.numpy(), ch.numpy(), k, d, s)
    for a, e in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(a), e, **F64)


def grads_of(fn, tensors, g):
    inputs = [t.clone().requires_grad_() for t in tensors]
    out = fn(*inputs)
    return out, torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_hand_written_gradients_equal_torch_autograd_of_the_torch_backend(backend):
    case = (2, 3, 6, 7, 5, 1, 2) if backend == "numba" else (1, 2, 5, 6, 3, 2, 2)
    (x, sp, ch), kw = args(case)
    g = torch.randn(x.shape[0], x.shape[1], *sp.shape[2:], dtype=x.dtype)
    _, want = grads_of(lambda a, b, c: ddf(a, b, c, backend="torch", **kw), (x, sp, ch), g)
    _, got = grads_of(lambda a, b, c: ddf(a, b, c, backend=backend, **kw), (x, sp, ch), g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, **F64)


@pytest.mark.parametrize("backend", AUTOGRAD)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_gradient_only_for_what_needs_it(backend, which):
    tensors = list(make(1, 2, 5, 5, 3, 2))
    tensors[which].requires_grad_()
    ddf(*tensors, kernel_size=3, stride=2, backend=backend).sum().backward()
    assert [t.grad is not None for t in tensors] == [n == which for n in range(3)]


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_filters_expanded_over_the_batch(backend):
    """A channel filter shared by the batch, broadcast with expand (stride 0), gets its gradient."""
    x, sp, ch = make(3, 2, 5, 6, 3)
    w = ch[:1].clone().requires_grad_()
    out = ddf(x, sp, w.expand(3, -1, -1), kernel_size=3, backend=backend)
    torch.testing.assert_close(out, reference(x, sp, w.expand(3, -1, -1), 3), **F64)
    out.sum().backward()
    assert w.grad.shape == w.shape


def test_large_outputs_in_huge_pages_are_ordinary_tensors(monkeypatch):
    """Outputs over ``HUGE_PAGE_THRESHOLD`` come from ``empty_output`` (advised into 2 MiB
    pages): same values, autograd works, and they are ordinary tensors of the allocator."""
    import gc

    monkeypatch.setattr(numba_cpu, "HUGE_PAGE_THRESHOLD", 8 << 20)  # a smaller input suffices

    x, sp, ch = make(1, 9, 480, 500, 3, dtype=torch.float32, seed=2)
    assert x.numel() * 4 >= numba_cpu.HUGE_PAGE_THRESHOLD
    xg = x.clone().requires_grad_()
    out = ddf(xg, sp, ch, kernel_size=3, backend="numba")
    want = ddf(x, sp, ch, kernel_size=3, backend="torch")
    gc.collect()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert xg.grad.shape == x.shape and torch.isfinite(xg.grad).all()
    small = numba_cpu.empty_output((2, 3), torch.float64)
    assert small.shape == (2, 3) and small.dtype == torch.float64
    big = numba_cpu.empty_output((3, 1 << 21), torch.float32)  # 24 MiB: several whole huge pages
    big.resize_(4, 1 << 21)  # its storage is the allocator's, resizable like any tensor's
    big.fill_(1.0)
    assert big.sum().item() == 4 * (1 << 21)


def test_numba_is_deterministic_across_thread_counts():
    """Every element is written by one loop iteration in a fixed order: bitwise the same
    forward and backward on 1 thread and on all of them."""
    x, sp, ch = make(2, 5, 13, 11, 3, 1, dtype=torch.float32, seed=7)
    results = []
    for n in (1, numba.config.NUMBA_NUM_THREADS):
        with num_threads(n):
            out, grads = grads_of(lambda a, b, c: ddf(a, b, c, kernel_size=3, backend="numba"),
                                  (x, sp, ch), torch.ones(2, 5, 13, 11))
        results.append((out, *grads))
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- unification

@pytest.mark.parametrize("backend", ALL)
def test_channel_filter_one_is_dfn_dynamic_filter(backend):
    x, sp, _ = make(2, 3, 6, 7, 3)
    ones = torch.ones(2, 3, 9, dtype=x.dtype)
    torch.testing.assert_close(ddf(x, sp, ones, kernel_size=3, dilation=2, backend=backend),
                               dynamic_filter(x, sp, kernel_size=3, dilation=2, backend=backend),
                               **F64)


@pytest.mark.parametrize("backend", ALL)
def test_spatial_filter_one_is_dmnet_context_filter(backend):
    x, _, ch = make(2, 3, 6, 7, 5)
    ones = torch.ones(2, 25, 6, 7, dtype=x.dtype)
    torch.testing.assert_close(ddf(x, ones, ch, kernel_size=5, backend=backend),
                               context_filter(x, ch.reshape(2, 3, 5, 5), backend=backend), **F64)


