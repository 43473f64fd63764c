"""dyncore.dfn: dynamic_filter in every backend against an independent reference, forward and
backward, on odd sizes and dilations; bad input; the DynamicFilterLayer module; the data."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import dyncore
from dyncore.dfn import DynamicFilterLayer, dynamic_filter, tap_offsets
from dyncore.dfn.data import digit_pool, moving_digits
from dyncore.dfn.loops import dynamic_filter_backward_loops

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def reference(x, filters, k, d):
    """Eq. 2.1 by zero-padding once and summing k*k shifted slices (autograd-friendly, and
    independent of every backend: no unfold, no loops, no kernels)."""
    H, W = x.shape[-2:]
    p = d * (k - 1) // 2
    xp = F.pad(x, (p, p, p, p))
    out = torch.zeros_like(x)
    for t in range(k * k):
        i, j = divmod(t, k)
        out = out + filters[:, t:t + 1] * xp[:, :, i * d:i * d + H, j * d:j * d + W]
    return out


def make(B, C, H, W, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    filters = torch.randn(B, k * k, H, W, generator=g, dtype=dtype)
    return x, filters


# Odd, awkward geometries: H != W, a 1x1 kernel, a dilation that does not divide the size,
# a kernel wider than the image (most taps read padding), a dilated 7x7.
CASES = [
    dict(shape=(2, 3, 7, 9), k=3, d=1),
    dict(shape=(1, 4, 9, 6), k=5, d=2),
    dict(shape=(2, 2, 5, 8), k=1, d=1),
    dict(shape=(1, 3, 6, 7), k=3, d=3),
    dict(shape=(2, 1, 4, 5), k=7, d=1),
    dict(shape=(1, 2, 11, 5), k=5, d=3),
    dict(shape=(3, 2, 1, 6), k=3, d=1),
]
IDS = [f"{c['shape']}-k{c['k']}-d{c['d']}" for c in CASES]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference_float64(backend, case):
    x, f = make(*case["shape"], case["k"])
    out = dynamic_filter(x, f, kernel_size=case["k"], dilation=case["d"], backend=backend)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, reference(x, f, case["k"], case["d"]), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_forward_float32_keeps_dtype(backend):
    x, f = make(2, 3, 7, 6, 3, dtype=torch.float32)
    out = dynamic_filter(x, f, kernel_size=3, dilation=2, backend=backend)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x.double(), f.double(), 3, 2).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", AUTOGRAD)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_autograd_of_the_reference(backend, case):
    k, d = case["k"], case["d"]
    x, f = make(*case["shape"], k, seed=1)
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    ref = reference(xr, fr, k, d)
    g = torch.randn_like(ref)
    want = torch.autograd.grad(ref, (xr, fr), g)
    xb, fb = x.clone().requires_grad_(), f.clone().requires_grad_()
    got = torch.autograd.grad(dynamic_filter(xb, fb, kernel_size=k, dilation=d, backend=backend), (xb, fb), g)
    for name, a, b in zip(("dL/dx", "dL/dfilters"), got, want):
        torch.testing.assert_close(a, b, **F64, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_loops_are_the_gradient(case):
    """The executable specification of the backward pass (Eq. 2.2 and 2.3) is right too."""
    k, d = case["k"], case["d"]
    x, f = make(*case["shape"], k, seed=2)
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    ref = reference(xr, fr, k, d)
    g = torch.randn_like(ref)
    want_x, want_f = torch.autograd.grad(ref, (xr, fr), g)
    got_x, got_f = dynamic_filter_backward_loops(g.numpy(), x.numpy(), f.numpy(), k, d)
    torch.testing.assert_close(torch.from_numpy(got_x), want_x, **F64)
    torch.testing.assert_close(torch.from_numpy(got_f), want_f, **F64)


@st.composite
def problems(draw, max_side=10, max_channels=4, max_batch=2):
    k = draw(st.sampled_from([1, 3, 5, 7]))
    d = draw(st.integers(1, 4))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    B, C = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels))
    x, f = make(B, C, H, W, k, seed=draw(st.integers(0, 2**16)))
    return x, f, k, d


def _forward_and_grads(fn, x, f):
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    out = fn(xr, fr)
    g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    return (out.detach(), *torch.autograd.grad(out, (xr, fr), g))


@given(problems())
def test_numba_and_torch_match_the_reference_forward_and_backward(problem):
    x, f, k, d = problem
    want = _forward_and_grads(lambda a, b: reference(a, b, k, d), x, f)
    for backend in ("numba", "torch"):
        got = _forward_and_grads(lambda a, b: dynamic_filter(a, b, kernel_size=k, dilation=d, backend=backend), x, f)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **F64)


@given(problems(max_side=6, max_channels=2, max_batch=1))
def test_loops_and_cuda_match_the_reference(problem):
    x, f, k, d = problem
    torch.testing.assert_close(dynamic_filter(x, f, kernel_size=k, dilation=d, backend="loops"),
                               reference(x, f, k, d), **F64)
    want = _forward_and_grads(lambda a, b: reference(a, b, k, d), x, f)
    got = _forward_and_grads(lambda a, b: dynamic_filter(a, b, kernel_size=k, dilation=d, backend="cuda"), x, f)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("shape,k,d", [((2, 3, 5, 6), 3, 1), ((1, 2, 6, 5), 5, 2), ((2, 1, 3, 4), 3, 3)],
                         ids=["3x3", "5x5-d2", "wider-than-image"])
def test_gradcheck_numba(shape, k, d):
    x, f = make(*shape, k)
    assert gradcheck(lambda a, b: dynamic_filter(a, b, kernel_size=k, dilation=d, backend="numba"),
                     (x.requires_grad_(), f.requires_grad_()))


def test_gradcheck_torch():
    x, f = make(1, 2, 5, 4, 3)
    assert gradcheck(lambda a, b: dynamic_filter(a, b, kernel_size=3, dilation=2, backend="torch"),
                     (x.requires_grad_(), f.requires_grad_()))


def test_gradcheck_cuda():
    # every simulated launch costs ~0.1 ms per thread: 1 x 2 x 4 x 5 pixels, 9 taps
    x, f = make(1, 2, 4, 5, 3)
    assert gradcheck(lambda a, b: dynamic_filter(a, b, kernel_size=3, dilation=2, backend="cuda"),
                     (x.requires_grad_(), f.requires_grad_()), fast_mode=True)


@pytest.mark.parametrize("backend", AUTOGRAD)
@pytest.mark.parametrize("which", ["x", "filters"])
def test_gradient_only_for_what_needs_it(backend, which):
    x, f = make(1, 2, 5, 5, 3)
    (x if which == "x" else f).requires_grad_()
    dynamic_filter(x, f, kernel_size=3, backend=backend).sum().backward()
    assert (x.grad is not None) == (which == "x")
    assert (f.grad is not None) == (which == "filters")


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_double_backward_is_refused_clearly(backend):
    x, f = make(1, 1, 4, 4, 3)
    f.requires_grad_()
    with pytest.raises(RuntimeError, match="first-order only: double backward"):
        torch.autograd.grad(dynamic_filter(x, f, kernel_size=3, backend=backend).sum(), f, create_graph=True)


def test_double_backward_works_with_torch():
    x, f = make(1, 1, 4, 4, 3)
    f.requires_grad_()
    (g,) = torch.autograd.grad((dynamic_filter(x, f, kernel_size=3, backend="torch") ** 2).sum(), f,
                               create_graph=True)
    g.sum().backward()
    assert f.grad is not None


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    x, f = make(2, 3, 6, 5, 3)
    xt = x.contiguous(memory_format=torch.channels_last)
    ft = f.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous() and not ft.is_contiguous()
    torch.testing.assert_close(dynamic_filter(xt, ft, kernel_size=3, dilation=2, backend=backend),
                               reference(x, f, 3, 2), **F64)
    # a slice of a larger tensor, with an offset and strides
    big_x, big_f = make(2, 5, 9, 8, 3, seed=3)
    xs, fs = big_x[:, 1:4, 2:8, 1:6], big_f[:, :, 2:8, 1:6]
    torch.testing.assert_close(dynamic_filter(xs, fs, kernel_size=3, backend=backend),
                               reference(xs, fs, 3, 1), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    x, f = make(1, 2, 5, 5, 3)
    xe, fe = x[:0].clone().requires_grad_(backend != "loops"), f[:0].clone().requires_grad_(backend != "loops")
    out = dynamic_filter(xe, fe, kernel_size=3, backend=backend)
    assert out.shape == (0, 2, 5, 5)
    if backend != "loops":
        out.sum().backward()
        assert xe.grad.shape == xe.shape and fe.grad.shape == fe.shape


@pytest.mark.parametrize("backend", ALL)
def test_one_hot_filters_move_the_image(backend):
    """A filter that is 1 at tap t and 0 elsewhere reads every pixel at t's offset."""
    k, d = 3, 2
    x, _ = make(1, 2, 7, 8, k)
    for t, (oy, ox) in enumerate(tap_offsets(k, d).tolist()):
        f = torch.zeros(1, k * k, 7, 8, dtype=x.dtype)
        f[:, t] = 1
        expected = torch.zeros_like(x)
        expected[..., max(0, -oy):7 - max(0, oy), max(0, -ox):8 - max(0, ox)] = \
            x[..., max(0, oy):7 - max(0, -oy), max(0, ox):8 - max(0, -ox)]
        assert torch.equal(dynamic_filter(x, f, kernel_size=k, dilation=d, backend=backend), expected)


def test_tap_offsets_follow_the_contract():
    offsets = tap_offsets(5, 3)
    assert offsets.shape == (25, 2)
    assert offsets[0].tolist() == [-6, -6] and offsets[12].tolist() == [0, 0] and offsets[24].tolist() == [6, 6]
    assert offsets[1].tolist() == [-6, -3]  # t = i*k + j: j (the column) changes fastest


def test_a_constant_filter_is_a_convolution():
    """DFN's 'dynamic convolutional layer' is the special case of filters constant over pixels."""
    x, _ = make(2, 3, 6, 7, 3)
    w = torch.randn(9, dtype=torch.float64)
    f = w.view(1, 9, 1, 1).expand(2, 9, 6, 7)
    expected = F.conv2d(x, w.view(1, 1, 3, 3).expand(3, 1, 3, 3), padding=2, dilation=2, groups=3)
    for backend in ALL:
        torch.testing.assert_close(dynamic_filter(x, f, kernel_size=3, dilation=2, backend=backend), expected, **F64)


def test_loops_warns_that_it_does_not_track_gradients():
    x, f = make(1, 1, 3, 3, 1)
    f.requires_grad_()
    with pytest.warns(UserWarning, match="forward pass only"):
        out = dynamic_filter(x, f, kernel_size=1, backend="loops")
    assert not out.requires_grad


def test_auto_is_numba_on_cpu():
    x, f = make(1, 1, 4, 4, 3)
    f.requires_grad_()
    out = dynamic_filter(x, f, kernel_size=3)
    assert type(out.grad_fn).__name__.startswith("DynamicFilterFunction")


def test_numba_is_deterministic_and_independent_of_the_thread_count():
    import numba

    x, f = make(2, 3, 17, 13, 5, dtype=torch.float32)
    x.requires_grad_(), f.requires_grad_()
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            out = dynamic_filter(x, f, kernel_size=5, backend="numba")
            results.append((out, *torch.autograd.grad(out, (x, f), torch.ones_like(out))))
        finally:
            numba.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- bad input

def bad_calls():
    x, f = make(2, 3, 5, 6, 3)
    return [
        ("x is a list", lambda: dynamic_filter(x.tolist(), f, kernel_size=3), TypeError, "x must be a torch.Tensor"),
        ("filters is numpy", lambda: dynamic_filter(x, f.numpy(), kernel_size=3), TypeError, "filters must be a torch.Tensor"),
        ("integer x", lambda: dynamic_filter(x.long(), f, kernel_size=3), TypeError, "x must be float32 or float64"),
        ("bool filters", lambda: dynamic_filter(x, f > 0, kernel_size=3), TypeError, "filters must be float32 or float64"),
        ("complex x", lambda: dynamic_filter(x.to(torch.complex128), f, kernel_size=3), TypeError, "x must be float32 or float64.*complex"),
        ("half filters", lambda: dynamic_filter(x, f.half(), kernel_size=3), TypeError, "filters must be float32 or float64"),
        ("dtype mismatch", lambda: dynamic_filter(x, f.float(), kernel_size=3), TypeError, "filters has dtype torch.float32 but x"),
        ("3-D x", lambda: dynamic_filter(x[0], f, kernel_size=3), ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D"),
        ("5-D filters", lambda: dynamic_filter(x, f[None], kernel_size=3), ValueError, r"filters must be a 4-D tensor \(B, k\*k, H, W\)"),
        ("too few taps", lambda: dynamic_filter(x, f[:, :8], kernel_size=3), ValueError,
         r"filters must have shape \(B, k\*k, H, W\) = \(2, 9, 5, 6\).*got \(2, 8, 5, 6\) \(8 taps is not k\*k = 9"),
        ("taps of another k", lambda: dynamic_filter(x, make(2, 3, 5, 6, 5)[1], kernel_size=3), ValueError,
         r"got \(2, 25, 5, 6\) \(its 25 taps would fit kernel_size=5, but kernel_size=3\)"),
        ("filters batch", lambda: dynamic_filter(x, f[:1], kernel_size=3), ValueError, r"filters must have shape .*\(2, 9, 5, 6\).*got \(1, 9, 5, 6\)"),
        ("filters size", lambda: dynamic_filter(x, f[..., :5], kernel_size=3), ValueError, r"filters must have shape .*got \(2, 9, 5, 5\)"),
        ("even kernel", lambda: dynamic_filter(x, f[:, :4], kernel_size=2), ValueError, "kernel_size must be an odd positive int"),
        ("zero kernel", lambda: dynamic_filter(x, f, kernel_size=0), ValueError, "kernel_size must be an odd positive int"),
        ("negative kernel", lambda: dynamic_filter(x, f, kernel_size=-3), ValueError, "kernel_size must be an odd positive int"),
        ("float kernel", lambda: dynamic_filter(x, f, kernel_size=3.0), TypeError, "kernel_size must be an int"),
        ("pair kernel", lambda: dynamic_filter(x, f, kernel_size=(3, 3)), TypeError, "kernel_size must be an int"),
        ("bool kernel", lambda: dynamic_filter(x, f[:, :1], kernel_size=True), TypeError, "kernel_size must be an int"),
        ("no kernel", lambda: dynamic_filter(x, f), TypeError, "kernel_size"),
        ("zero dilation", lambda: dynamic_filter(x, f, kernel_size=3, dilation=0), ValueError, "dilation must be a positive int; got 0"),
        ("negative dilation", lambda: dynamic_filter(x, f, kernel_size=3, dilation=-2), ValueError, "dilation must be a positive int"),
        ("float dilation", lambda: dynamic_filter(x, f, kernel_size=3, dilation=1.5), TypeError, "dilation must be an int"),
        ("pair dilation", lambda: dynamic_filter(x, f, kernel_size=3, dilation=(1, 2)), TypeError, "dilation must be an int"),
        ("no channels", lambda: dynamic_filter(x[:, :0], f, kernel_size=3), ValueError, "x must have at least one channel and one pixel"),
        ("no rows", lambda: dynamic_filter(x[:, :, :0], f[:, :, :0], kernel_size=3), ValueError, "x must have at least one channel and one pixel"),
        ("unknown backend", lambda: dynamic_filter(x, f, kernel_size=3, backend="cpp"), ValueError, "backend must be one of"),
        ("backend not str", lambda: dynamic_filter(x, f, kernel_size=3, backend=None), ValueError, "backend must be one of"),
        ("mixed devices", lambda: dynamic_filter(x, f.to("meta"), kernel_size=3), ValueError, "filters is on meta but x is on cpu"),
        ("positional kernel", lambda: dynamic_filter(x, f, 3), TypeError, "positional"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


def test_numba_backend_with_cuda_tensors_is_refused():
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU"):
        dyncore.resolve_backend("numba", torch.device("cuda"))


@pytest.mark.parametrize("backend", ALL)
def test_bad_input_is_rejected_before_any_kernel_runs(backend, monkeypatch):
    """Validation comes first: no backend is reached with a bad argument."""
    from dyncore import dfn

    def fail(*args, **kwargs):
        raise AssertionError("a kernel ran on bad input")

    monkeypatch.setattr(dfn, "dynamic_filter_loops", fail)
    monkeypatch.setattr(dfn, "dynamic_filter_torch", fail)
    monkeypatch.setattr(dfn.DynamicFilterFunction, "apply", fail)
    x, f = make(1, 2, 4, 4, 3)
    with pytest.raises(ValueError, match="filters must have shape"):
        dynamic_filter(x, f[:, :, :3], kernel_size=3, backend=backend)


# ---------------------------------------------------------------- the module

def test_module_parameter_count_matches_the_formula():
    for guide, hidden, kb, k in [(1, (32, 32), 3, 3), (2, (12, 12), 5, 5), (3, (8,), 3, 7), (4, (), 3, 3)]:
        layer = DynamicFilterLayer(1, k, guide_channels=guide, hidden_channels=hidden, branch_kernel_size=kb)
        count = sum(p.numel() for p in layer.parameters())
        assert count == DynamicFilterLayer.parameter_formula(guide, hidden, kb, k)
    # spelled out once: (2*25 + 1)*12 + (12*25 + 1)*12 + (12 + 1)*25
    assert DynamicFilterLayer.parameter_formula(2, (12, 12), 5, 5) == 4549


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_module_is_its_branch_then_dynamic_filter(backend):
    torch.manual_seed(0)
    layer = DynamicFilterLayer(3, 5, hidden_channels=(4, 4), dilation=2, backend=backend, dtype=torch.float64)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    filters = layer.predict_filters(x)
    assert filters.shape == (2, 25, 7, 6)
    torch.testing.assert_close(filters.sum(1), torch.ones(2, 7, 6, dtype=torch.float64))  # softmax over taps
    assert (filters > 0).all()
    torch.testing.assert_close(layer(x), reference(x, filters, 5, 2), **F64)


def test_module_with_a_guide_and_without_normalization():
    torch.manual_seed(0)
    layer = DynamicFilterLayer(1, 3, guide_channels=2, hidden_channels=8, normalize=None)
    x, guide = torch.randn(2, 1, 6, 6), torch.randn(2, 2, 6, 6)
    filters = layer.predict_filters(guide)
    torch.testing.assert_close(filters, layer.filter_branch(guide))
    torch.testing.assert_close(layer(x, guide), reference(x, filters, 3, 1), rtol=1e-5, atol=1e-6)
    assert "normalize=None" in repr(layer) and "guide_channels=2" in repr(layer)


def test_module_backends_give_the_same_gradients():
    torch.manual_seed(0)
    layers = {b: DynamicFilterLayer(2, 3, hidden_channels=(4,), backend=b, dtype=torch.float64) for b in AUTOGRAD}
    for layer in layers.values():
        layer.load_state_dict(layers["torch"].state_dict())
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    grads = {}
    for b, layer in layers.items():
        layer.zero_grad()
        (layer(x) ** 2).sum().backward()
        grads[b] = [p.grad for p in layer.parameters()]
    for b in ("numba", "cuda"):
        for got, want in zip(grads[b], grads["torch"]):
            torch.testing.assert_close(got, want, **F64)


def test_module_learns_a_translation():
    """With a guide that says nothing, the layer can still learn a global shift by one pixel."""
    import numba

    # 60 steps on tiny tensors: one thread is faster, and robust on a busy machine
    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        _learn_a_translation()
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def _learn_a_translation():
    torch.manual_seed(0)
    layer = DynamicFilterLayer(1, 3, hidden_channels=(4,), backend="numba")
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    x = torch.rand(8, 1, 10, 10)
    target = F.pad(x, (1, 0, 0, 0))[..., :10]  # moved one pixel to the right
    first = None
    for _ in range(60):
        loss = F.mse_loss(layer(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert (layer.predict_filters(x)[:, 3].mean() > 0.8)  # tap 3 = offset (0, -1): read the left neighbour


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=0), ValueError, "in_channels must be a positive int"),
    (dict(in_channels=1, kernel_size=4), ValueError, "kernel_size must be an odd positive int"),
    (dict(in_channels=1, guide_channels=0), ValueError, "guide_channels must be a positive int"),
    (dict(in_channels=1, hidden_channels=(8, 0)), ValueError, r"hidden_channels\[1\] must be a positive int"),
    (dict(in_channels=1, hidden_channels="8"), TypeError, "hidden_channels must be an int or a sequence"),
    (dict(in_channels=1, branch_kernel_size=2), ValueError, "branch_kernel_size must be an odd"),
    (dict(in_channels=1, dilation=0), ValueError, "dilation must be a positive int"),
    (dict(in_channels=1, normalize="sigmoid"), ValueError, "normalize must be 'softmax' or None"),
    (dict(in_channels=1, backend="gpu"), ValueError, "backend must be one of"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DynamicFilterLayer(**kwargs)


def test_module_bad_inputs():
    layer = DynamicFilterLayer(2, 3, guide_channels=3, hidden_channels=4)
    x, guide = torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)
    with pytest.raises(ValueError, match="guide is required"):
        layer(x)
    with pytest.raises(ValueError, match=r"x must have 2 channels \(in_channels\)"):
        layer(torch.randn(1, 3, 5, 5), guide)
    with pytest.raises(ValueError, match="guide must have the batch size and image size of x"):
        layer(x, guide[..., :4])
    with pytest.raises(ValueError, match=r"guide must have 3 channels \(guide_channels\)"):
        layer(x, guide[:, :2])
    with pytest.raises(TypeError, match="guide must be a torch.Tensor"):
        layer(x, guide.numpy())
    with pytest.raises(ValueError, match="x must be a 4-D tensor"):
        layer(x[0], guide)


# ---------------------------------------------------------------- the data

def test_moving_digits_move_exactly():
    data = moving_digits(50, frames=4, canvas=22, digits=1, max_speed=3, seed=5)
    assert data.frames.shape == (50, 4, 22, 22) and data.frames.dtype == torch.float32
    assert data.velocity.shape == (50, 1, 2) and data.velocity.abs().max() <= 3
    for s in range(50):
        vy, vx = data.velocity[s, 0].tolist()
        for f in range(3):
            moved = torch.zeros(22, 22)
            src = data.frames[s, f]
            moved[max(0, vy):22 + min(0, vy), max(0, vx):22 + min(0, vx)] = \
                src[max(0, -vy):22 - max(0, vy), max(0, -vx):22 - max(0, vx)]
            assert torch.equal(moved, data.frames[s, f + 1])  # nothing leaves the canvas
        assert data.frames[s].sum(dim=(1, 2)).std() < 1e-4    # the digit is never cut
        assert (data.flow[s][:, data.mask[s]] == torch.tensor([[vy], [vx]])).all()
        assert (data.flow[s][:, ~data.mask[s]] == 0).all()


def test_moving_digits_with_two_digits_and_the_target():
    data = moving_digits(20, digits=2, seed=1)
    assert data.velocity.shape == (20, 2, 2)
    inputs, target = data.inputs_and_target()
    assert inputs.shape == (20, 2, 20, 20) and target.shape == (20, 1, 20, 20)
    assert torch.equal(target[:, 0], data.frames[:, -1])
    assert torch.equal(data.mask, data.frames[:, -1] > 0)
    one, _ = data.inputs_and_target(context=1)
    assert torch.equal(one[:, 0], data.frames[:, 1])


def test_moving_digits_are_seeded_and_split():
    a, b = moving_digits(8, seed=3), moving_digits(8, seed=3)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.velocity, b.velocity)
    assert not torch.equal(a.frames, moving_digits(8, seed=4).frames)
    train, test = digit_pool("train"), digit_pool("test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    flat_train = {im.tobytes() for im in train}
    assert sum(im.tobytes() in flat_train for im in test) < 5  # a few digits are drawn twice in sklearn
    assert moving_digits(0).frames.shape == (0, 3, 20, 20)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n=-1), ValueError, "n must be a non-negative int"),
    (dict(n=2, canvas=10), ValueError, r"canvas must be at least 8 \+ max_speed\*\(frames - 1\) = 12"),
    (dict(n=2, frames=0), ValueError, "frames must be a positive int"),
    (dict(n=2, split="val"), ValueError, "split must be 'train' or 'test'"),
    (dict(n=2, max_speed=1.5), TypeError, "max_speed must be an int"),
    (dict(n=2, digits=0), ValueError, "digits must be a positive int"),
])
def test_moving_digits_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        moving_digits(**kwargs)


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_the_reference(dtype):
    dev = torch.device("cuda")
    for case in CASES + [dict(shape=(4, 16, 33, 47), k=5, d=2)]:
        x, f = (t.to(dev) for t in make(*case["shape"], case["k"], dtype=dtype))
        k, d = case["k"], case["d"]
        tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
        want = _forward_and_grads(lambda a, b: reference(a, b, k, d), x, f)
        got = _forward_and_grads(lambda a, b: dynamic_filter(a, b, kernel_size=k, dilation=d, backend="cuda"), x, f)
        assert got[0].device.type == "cuda"
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.gpu
def test_gradcheck_cuda_on_gpu():
    x, f = (t.cuda().requires_grad_() for t in make(2, 3, 6, 7, 3))
    assert gradcheck(lambda a, b: dynamic_filter(a, b, kernel_size=3, dilation=2, backend="cuda"), (x, f))


@pytest.mark.gpu
def test_numba_with_cuda_tensors_raises_on_gpu():
    x, f = (t.cuda() for t in make(1, 1, 4, 4, 3))
    with pytest.raises(ValueError, match="backend='numba'"):
        dynamic_filter(x, f, kernel_size=3, backend="numba")


@pytest.mark.gpu
def test_cuda_backend_with_cpu_tensors_on_gpu_machine():
    x, f = make(1, 2, 6, 6, 3)
    out = dynamic_filter(x, f, kernel_size=3, backend="cuda")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, reference(x, f, 3, 1), **F64)
