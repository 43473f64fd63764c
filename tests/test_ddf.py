"""dyncore.ddf.functional: the decoupled dynamic filter in every backend against the equation,
forward and backward (strides, dilations, odd sizes); the unification identities with DFN and
DMNet; determinism; bad input; real-GPU checks."""

import numba
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import dyncore
from dyncore.ddf import numba_cpu
from dyncore.ddf.functional import DDFFunction, ddf, tap_offsets
from dyncore.ddf.loops import ddf_backward_loops, ddf_loops
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
    """The equation through PyTorch, written independently of the package: for every tap, the
    zero-padded input sliced at the tap's offset with step ``s``, weighted by both filters.
    Differentiable by autograd, so it is the gradient reference too."""
    B, C, H, W = x.shape
    r = (k - 1) // 2
    Ho, Wo = out_size(H, s), out_size(W, s)
    xp = F.pad(x, (d * r,) * 4)
    out = x.new_zeros(B, C, Ho, Wo)
    for t in range(k * k):
        i, j = divmod(t, k)  # tap t reads x[yo*s + (i - r)*d, ...] = xp[yo*s + i*d, ...]
        patch = xp[:, :, i * d: i * d + (Ho - 1) * s + 1: s, j * d: j * d + (Wo - 1) * s + 1: s]
        out = out + spatial[:, t, None] * channel[:, :, t, None, None] * patch
    return out


# (B, C, H, W, k, dilation, stride): odd sizes, H != W, strides 1-3, dilations 1-3,
# k = 1, 3, 5, kernels wider than the image, one pixel, sizes the stride does not divide.
CASES = [
    (2, 3, 7, 9, 3, 1, 1), (2, 3, 7, 9, 3, 1, 2), (1, 2, 9, 7, 3, 2, 2), (2, 2, 8, 5, 5, 1, 3),
    (1, 3, 6, 7, 5, 3, 2), (2, 2, 5, 6, 1, 1, 2), (1, 2, 3, 4, 5, 2, 1), (1, 1, 2, 3, 7, 1, 3),
    (2, 2, 1, 1, 3, 1, 2), (1, 2, 11, 10, 3, 3, 3), (1, 1, 1, 7, 5, 1, 2),
    # the k = 3, stride-1 fast path: dilation 2, dilation wider than the image, one column
    (1, 2, 5, 7, 3, 2, 1), (1, 2, 3, 2, 3, 3, 1), (2, 1, 4, 1, 3, 1, 1), (1, 1, 6, 5, 3, 2, 1),
]
IDS = [str(c) for c in CASES]


def args(case, dtype=torch.float64, seed=0):
    B, C, H, W, k, d, s = case
    return make(B, C, H, W, k, s, dtype, seed), dict(kernel_size=k, dilation=d, stride=s)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_the_equation_float64(backend, case):
    (x, sp, ch), kw = args(case)
    out = ddf(x, sp, ch, backend=backend, **kw)
    assert out.dtype == torch.float64 and out.shape == (*x.shape[:2], *sp.shape[2:])
    torch.testing.assert_close(out, reference(x, sp, ch, case[4], case[5], case[6]), **F64)


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


@pytest.mark.parametrize("backend", ALL)
def test_float32_keeps_dtype(backend):
    case = (2, 3, 7, 6, 3, 2, 2)
    (x, sp, ch), kw = args(case, dtype=torch.float32)
    out = ddf(x, sp, ch, backend=backend, **kw)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x, sp, ch, 3, 2, 2), rtol=1e-5, atol=1e-5)


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


@st.composite
def problems(draw, max_side=9, max_batch=2, max_channels=3):
    B = draw(st.integers(1, max_batch))
    C = draw(st.integers(1, max_channels))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    k = draw(st.sampled_from([1, 3, 5]))
    d = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    return (B, C, H, W, k, d, s), draw(st.integers(0, 2**16))


def grads_of(fn, tensors, g):
    inputs = [t.clone().requires_grad_() for t in tensors]
    out = fn(*inputs)
    return out, torch.autograd.grad(out, inputs, g)


@given(problems())
def test_numba_and_torch_match_the_equation_forward_and_backward(problem):
    case, seed = problem
    (x, sp, ch), kw = args(case, seed=seed)
    k, d, s = case[4:]
    g = torch.randn(x.shape[0], x.shape[1], *sp.shape[2:], dtype=x.dtype)
    ref, ref_grads = grads_of(lambda a, b, c: reference(a, b, c, k, d, s), (x, sp, ch), g)
    with num_threads(1):
        for backend in ("numba", "torch"):
            out, got = grads_of(lambda a, b, c: ddf(a, b, c, backend=backend, **kw), (x, sp, ch), g)
            torch.testing.assert_close(out, ref, **F64)
            for a, e in zip(got, ref_grads):
                torch.testing.assert_close(a, e, **F64)


@given(problems(max_side=5, max_batch=1, max_channels=2))
def test_loops_and_cuda_match_the_equation(problem):
    case, seed = problem
    (x, sp, ch), kw = args(case, seed=seed)
    k, d, s = case[4:]
    g = torch.randn(x.shape[0], x.shape[1], *sp.shape[2:], dtype=x.dtype)
    ref, ref_grads = grads_of(lambda a, b, c: reference(a, b, c, k, d, s), (x, sp, ch), g)
    torch.testing.assert_close(ddf(x, sp, ch, backend="loops", **kw), ref, **F64)
    out, got = grads_of(lambda a, b, c: ddf(a, b, c, backend="cuda", **kw), (x, sp, ch), g)
    torch.testing.assert_close(out, ref, **F64)
    for a, e in zip(got, ref_grads):
        torch.testing.assert_close(a, e, **F64)


@pytest.mark.parametrize("case", [(2, 3, 7, 6, 3, 1, 1), (1, 2, 7, 9, 3, 2, 2), (2, 2, 5, 8, 5, 1, 3),
                                  (1, 2, 4, 3, 5, 3, 1)], ids=str)
def test_gradcheck_numba(case):
    (x, sp, ch), kw = args(case)
    with num_threads(1):
        assert gradcheck(lambda a, b, c: ddf(a, b, c, backend="numba", **kw),
                         (x.requires_grad_(), sp.requires_grad_(), ch.requires_grad_()))


def test_gradcheck_cuda():
    (x, sp, ch), kw = args((1, 2, 5, 4, 3, 1, 2))
    assert gradcheck(lambda a, b, c: ddf(a, b, c, backend="cuda", **kw),
                     (x.requires_grad_(), sp.requires_grad_(), ch.requires_grad_()), fast_mode=True)


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


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_double_backward_is_refused_clearly(backend):
    x, sp, ch = make(1, 1, 4, 4, 3)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="first-order only: double backward"):
        torch.autograd.grad(ddf(x, sp, ch, kernel_size=3, backend=backend).sum(), x,
                            create_graph=True)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    x, sp, ch = make(2, 3, 6, 5, 3, 2)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    spt = sp.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    cht = ch.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (xt.is_contiguous() or spt.is_contiguous() or cht.is_contiguous())
    out = ddf(xt, spt, cht, kernel_size=3, stride=2, backend=backend)
    torch.testing.assert_close(out, reference(x, sp, ch, 3, 1, 2), **F64)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_filters_expanded_over_the_batch(backend):
    """A channel filter shared by the batch, broadcast with expand (stride 0), gets its gradient."""
    x, sp, ch = make(3, 2, 5, 6, 3)
    w = ch[:1].clone().requires_grad_()
    out = ddf(x, sp, w.expand(3, -1, -1), kernel_size=3, backend=backend)
    torch.testing.assert_close(out, reference(x, sp, w.expand(3, -1, -1), 3), **F64)
    out.sum().backward()
    assert w.grad.shape == w.shape


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    x, sp, ch = make(1, 2, 5, 7, 3, 2)
    out = ddf(x[:0], sp[:0], ch[:0], kernel_size=3, stride=2, backend=backend)
    assert out.shape == (0, 2, 3, 4)


def test_large_outputs_in_huge_pages_are_ordinary_tensors():
    """Outputs over ``HUGE_PAGE_THRESHOLD`` come from ``empty_output`` (a memory map in 2 MiB
    pages): same values, autograd works, and the memory stays alive with the tensor."""
    import gc

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


# ---------------------------------------------------------------- bad input

def bad_calls():
    x, sp, ch = make(2, 3, 6, 7, 3)
    x2, sp2, ch2 = make(2, 3, 7, 9, 3, 2)

    def call(*a, **kw):
        kw.setdefault("kernel_size", 3)
        return lambda: ddf(*a, **kw)

    return [
        ("x is a list", call(x.tolist(), sp, ch), TypeError, "x must be a torch.Tensor"),
        ("spatial numpy", call(x, sp.numpy(), ch), TypeError, "spatial must be a torch.Tensor"),
        ("channel None", call(x, sp, None), TypeError, "channel must be a torch.Tensor; got NoneType"),
        ("integer x", call(x.long(), sp.long(), ch.long()), TypeError, "x must be float32 or float64"),
        ("bool spatial", call(x, sp > 0, ch), TypeError, "spatial must be float32 or float64"),
        ("complex channel", call(x, sp, ch.to(torch.complex128)), TypeError, "channel must be float32 or float64.*complex"),
        ("half x", call(x.half(), sp, ch), TypeError, "x must be float32 or float64"),
        ("dtype mismatch spatial", call(x, sp.float(), ch), TypeError, "spatial has dtype torch.float32 but x"),
        ("dtype mismatch channel", call(x, sp, ch.float()), TypeError, "channel has dtype torch.float32 but x"),
        ("3-D x", call(x[0], sp, ch), ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D"),
        ("3-D spatial", call(x, sp[0], ch), ValueError, r"spatial must be a 4-D tensor \(B, k\*k, Ho, Wo\)"),
        ("5-D spatial", call(x, sp[None], ch), ValueError, "spatial must be a 4-D tensor"),
        ("2-D channel", call(x, sp, ch[0]), ValueError, r"channel must be a 3-D tensor \(B, C, k\*k\)"),
        ("4-D channel", call(x, sp, ch.reshape(2, 3, 3, 3)), ValueError, "channel must be a 3-D tensor"),
        ("spatial taps for k=5", call(x, sp, ch, kernel_size=5), ValueError,
         r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 25, 6, 7\).*got \(2, 9, 6, 7\).*would fit kernel_size=3"),
        ("spatial 8 taps", call(x, sp[:, :8], ch), ValueError, r"spatial must have shape.*8 taps is not k\*k = 9"),
        ("spatial wrong size for stride", call(x2, sp2, ch2, stride=1), ValueError,
         r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 7, 9\).*stride=1; got \(2, 9, 4, 5\).*Ho = \(H - 1\)//stride \+ 1"),
        ("spatial input-sized with stride 2", call(x2, torch.zeros(2, 9, 7, 9, dtype=x.dtype), ch2, stride=2),
         ValueError, r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 4, 5\).*Ho x Wo = 4 x 5"),
        ("spatial batch", call(x, sp[:1], ch), ValueError, r"spatial must have shape \(B, k\*k, Ho, Wo\) = \(2, 9, 6, 7\)"),
        ("channel batch", call(x, sp, ch[:1]), ValueError, r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(1, 3, 9\)"),
        ("channel channels", call(x, sp, ch[:, :2]), ValueError, r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(2, 2, 9\)"),
        ("channel taps", call(x, sp, ch[:, :, :4]), ValueError, r"channel must have shape \(B, C, k\*k\) = \(2, 3, 9\).*; got \(2, 3, 4\)"),
        ("even kernel_size", call(x, sp, ch, kernel_size=4), ValueError, "kernel_size must be an odd positive int.*got 4"),
        ("kernel_size 0", call(x, sp, ch, kernel_size=0), ValueError, "kernel_size must be an odd positive int.*got 0"),
        ("kernel_size -3", call(x, sp, ch, kernel_size=-3), ValueError, "kernel_size must be an odd positive int.*got -3"),
        ("kernel_size float", call(x, sp, ch, kernel_size=3.0), TypeError, "kernel_size must be an int"),
        ("stride 0", call(x, sp, ch, stride=0), ValueError, "stride must be a positive int; got 0"),
        ("stride -1", call(x, sp, ch, stride=-1), ValueError, "stride must be a positive int; got -1"),
        ("stride pair", call(x, sp, ch, stride=(1, 1)), TypeError, "stride must be an int"),
        ("dilation 0", call(x, sp, ch, dilation=0), ValueError, "dilation must be a positive int; got 0"),
        ("dilation bool", call(x, sp, ch, dilation=True), TypeError, "dilation must be an int"),
        ("no kernel_size", lambda: ddf(x, sp, ch), TypeError, "kernel_size"),
        ("empty image", call(x[:, :, :0], sp, ch), ValueError, "x must have at least one channel and one pixel"),
        ("no channels", call(x[:, :0], sp, ch[:, :0]), ValueError, "x must have at least one channel"),
        ("unknown backend", call(x, sp, ch, backend="cpp"), ValueError, "backend must be one of"),
        ("backend not str", call(x, sp, ch, backend=None), ValueError, "backend must be one of"),
        ("mixed devices", call(x, sp.to("meta"), ch), ValueError, "spatial is on meta but x is on cpu"),
        ("positional kernel_size", lambda: ddf(x, sp, ch, 3), TypeError, "positional"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("backend", ALL)
def test_bad_shapes_are_rejected_by_every_backend(backend):
    x, sp, ch = make(1, 2, 7, 9, 3, 2)
    with pytest.raises(ValueError, match="spatial must have shape"):
        ddf(x, sp, ch, kernel_size=3, stride=1, backend=backend)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        ddf(x, sp, ch, kernel_size=2, stride=2, backend=backend)


def test_loops_warns_that_it_does_not_track_gradients():
    x, sp, ch = make(1, 1, 3, 3, 1)
    x.requires_grad_()
    with pytest.warns(UserWarning, match="forward pass only"):
        out = ddf(x, sp, ch, kernel_size=1, backend="loops")
    assert not out.requires_grad


def test_auto_is_numba_on_cpu():
    x, sp, ch = make(1, 1, 4, 4, 3)
    x.requires_grad_()
    assert type(ddf(x, sp, ch, kernel_size=3).grad_fn).__name__.startswith("DDFFunction")


def test_numba_backend_with_cuda_tensors_is_refused():
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU"):
        dyncore.resolve_backend("numba", torch.device("cuda"))


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_the_equation(dtype):
    dev = torch.device("cuda")
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for case in CASES:
        (x, sp, ch), kw = args(case, dtype=dtype)
        k, d, s = case[4:]
        g = torch.randn(x.shape[0], x.shape[1], *sp.shape[2:], dtype=dtype)
        ref, ref_grads = grads_of(lambda a, b, c: reference(a, b, c, k, d, s), (x, sp, ch), g)
        out, got = grads_of(lambda a, b, c: ddf(a, b, c, backend="cuda", **kw),
                            [t.to(dev) for t in (x, sp, ch)], g.to(dev))
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), ref, **tol)
        for a, e in zip(got, ref_grads):
            torch.testing.assert_close(a.cpu(), e, **tol)


@pytest.mark.gpu
def test_cuda_on_gpu_is_deterministic():
    x, sp, ch = (t.cuda() for t in make(2, 16, 33, 31, 3, 1, dtype=torch.float32))
    g = torch.randn(2, 16, 33, 31, device="cuda")
    first = grads_of(lambda a, b, c: ddf(a, b, c, kernel_size=3, backend="cuda"), (x, sp, ch), g)
    second = grads_of(lambda a, b, c: ddf(a, b, c, kernel_size=3, backend="cuda"), (x, sp, ch), g)
    for a, b in zip((first[0], *first[1]), (second[0], *second[1])):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_numba_with_cuda_tensors_raises_on_gpu():
    x, sp, ch = (t.cuda() for t in make(1, 1, 4, 4, 3))
    with pytest.raises(ValueError, match="backend='numba'"):
        ddf(x, sp, ch, kernel_size=3, backend="numba")
