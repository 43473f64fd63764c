"""dyncore.conv.conv2d: every backend against F.conv2d, forward and backward, and bad input."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import dyncore
from dyncore.conv import Conv2d, conv2d

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def make(B, Cin, H, W, Cout, groups, kh, kw, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, Cin, H, W, generator=g, dtype=dtype)
    w = torch.randn(Cout, Cin // groups, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(Cout, generator=g, dtype=dtype) if bias else None
    return x, w, b


# A grid of odd, awkward geometries: stride and dilation that do not divide the size,
# non-square kernels, padding larger than the kernel's reach, groups, no bias.
CASES = [
    dict(shape=(2, 3, 7, 9), Cout=4, groups=1, k=(3, 3), stride=1, padding=1, dilation=1),
    dict(shape=(1, 4, 9, 7), Cout=6, groups=2, k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(shape=(2, 6, 11, 5), Cout=6, groups=6, k=(5, 5), stride=3, padding=4, dilation=2),
    dict(shape=(1, 2, 5, 6), Cout=3, groups=1, k=(1, 1), stride=2, padding=0, dilation=3),
    dict(shape=(3, 3, 6, 6), Cout=2, groups=1, k=(3, 3), stride=(1, 2), padding="same", dilation=(2, 1)),
    dict(shape=(1, 4, 8, 5), Cout=4, groups=4, k=(4, 2), stride=1, padding="same", dilation=1),
    dict(shape=(2, 2, 9, 9), Cout=3, groups=1, k=(3, 3), stride=2, padding="valid", dilation=2, bias=False),
]


def run_case(case, backend, dtype=torch.float64):
    x, w, b = make(*case["shape"], case["Cout"], case["groups"], *case["k"], case.get("bias", True), dtype)
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    if kw["padding"] == "same" and kw["stride"] != 1:
        kw["stride"] = 1
    return conv2d(x, w, b, backend=backend, **kw), F.conv2d(x, w, b, **kw)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=[f"case{n}" for n in range(len(CASES))])
def test_forward_matches_F_conv2d_float64(backend, case):
    out, ref = run_case(case, backend)
    assert out.dtype == torch.float64 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **F64)


@pytest.mark.parametrize("backend", ALL)
def test_forward_float32_keeps_dtype(backend):
    out, ref = run_case(CASES[1], backend, torch.float32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@st.composite
def conv_problems(draw, max_side=9, max_channels=4):
    groups = draw(st.integers(1, 3))
    Cin = groups * draw(st.integers(1, max_channels // 2 + 1))
    Cout = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    # the padded input must hold the dilated kernel
    H_min = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    W_min = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    H = draw(st.integers(H_min, max(H_min, max_side)))
    W = draw(st.integers(W_min, max(W_min, max_side)))
    B = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    x, w, b = make(B, Cin, H, W, Cout, groups, kh, kw, bias, seed=seed)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@given(conv_problems())
def test_numba_and_torch_match_F_conv2d_forward_and_backward(problem):
    x, w, b, kw = problem
    ref_inputs = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    ref = F.conv2d(*ref_inputs[:2], ref_inputs[2] if b is not None else None, **kw)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out)
    for backend in ("numba", "torch"):
        inputs = [t.clone().requires_grad_() for t in ref_inputs]
        out = conv2d(*inputs[:2], inputs[2] if b is not None else None, backend=backend, **kw)
        torch.testing.assert_close(out, ref, **F64)
        for got, want in zip(torch.autograd.grad(out, inputs, grad_out), ref_grads):
            torch.testing.assert_close(got, want, **F64)


@given(conv_problems(max_side=6, max_channels=2))
def test_loops_and_cuda_match_F_conv2d(problem):
    x, w, b, kw = problem
    ref = F.conv2d(x, w, b, **kw)
    torch.testing.assert_close(conv2d(x, w, b, backend="loops", **kw), ref, **F64)
    inputs = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    out = conv2d(*inputs[:2], inputs[2] if b is not None else None, backend="cuda", **kw)
    torch.testing.assert_close(out, ref, **F64)
    ref_inputs = [t.clone().requires_grad_() for t in inputs]
    ref = F.conv2d(*ref_inputs[:2], ref_inputs[2] if b is not None else None, **kw)
    grad_out = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, ref_inputs, grad_out)):
        torch.testing.assert_close(got, want, **F64)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2], CASES[5]], ids=["plain", "stride-dil-groups", "depthwise", "same-even"])
def test_gradcheck_numba(case):
    x, w, b = make(*case["shape"], case["Cout"], case["groups"], *case["k"])
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    assert gradcheck(lambda *a: conv2d(*a, backend="numba", **kw), inputs)


def test_gradcheck_cuda():
    x, w, b = make(1, 2, 5, 4, 2, 1, 3, 2)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2))
    assert gradcheck(lambda *a: conv2d(*a, backend="cuda", **kw), inputs, fast_mode=True)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_gradient_only_for_what_needs_it(backend):
    x, w, b = make(1, 2, 5, 5, 2, 1, 3, 3)
    w.requires_grad_()
    conv2d(x, w, b, padding=1, backend=backend).sum().backward()
    assert w.grad is not None and x.grad is None and b.grad is None


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_double_backward_is_refused_clearly(backend):
    x, w, b = make(1, 1, 4, 4, 1, 1, 3, 3)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="first-order only: double backward"):
        torch.autograd.grad(conv2d(x, w, b, backend=backend).sum(), x, create_graph=True)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    x, w, b = make(1, 3, 6, 5, 2, 1, 3, 3)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    wt = w.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous() and not wt.is_contiguous()
    torch.testing.assert_close(conv2d(xt, wt, b, padding=1, backend=backend), F.conv2d(x, w, b, padding=1), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    x, w, b = make(1, 2, 5, 5, 3, 1, 3, 3)
    out = conv2d(x[:0], w, b, padding=1, backend=backend)
    assert out.shape == (0, 3, 5, 5)


def test_loops_warns_that_it_does_not_track_gradients():
    x, w, b = make(1, 1, 3, 3, 1, 1, 1, 1)
    x.requires_grad_()
    with pytest.warns(UserWarning, match="forward pass only"):
        out = conv2d(x, w, b, backend="loops")
    assert not out.requires_grad


def test_auto_is_numba_on_cpu():
    x, w, b = make(1, 1, 4, 4, 1, 1, 3, 3)
    x.requires_grad_()
    out = conv2d(x, w, b)
    assert type(out.grad_fn).__name__.startswith("Conv2dFunction")


# ---------------------------------------------------------------- the module

def test_module_matches_nn_conv2d_and_counts_parameters():
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2).double()
    mine = Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    mine.load_state_dict(ref.state_dict())
    assert sum(p.numel() for p in mine.parameters()) == 6 * 2 * 9 + 6
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    for backend in AUTOGRAD:
        mine.backend = backend
        torch.testing.assert_close(mine(x), ref(x), **F64)
    assert "backend='cuda'" in repr(mine)


def test_module_trains_a_step():
    torch.manual_seed(0)
    layer = Conv2d(1, 1, 3, padding=1, backend="numba")
    x = torch.randn(4, 1, 8, 8)
    target = F.avg_pool2d(x, 3, 1, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=0, out_channels=1, kernel_size=3), ValueError, "in_channels"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), ValueError, "groups"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, backend="gpu"), ValueError, "backend"),
    (dict(in_channels=1, out_channels=1, kernel_size=2.5), TypeError, "kernel_size"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2d(**kwargs)


# ---------------------------------------------------------------- bad input

def good():
    return make(1, 4, 6, 6, 4, 2, 3, 3)


def bad_calls():
    x, w, b = good()
    return [
        ("x is a list", lambda: conv2d(x.tolist(), w, b), TypeError, "x must be a torch.Tensor"),
        ("weight is numpy", lambda: conv2d(x, w.numpy(), b), TypeError, "weight must be a torch.Tensor"),
        ("integer x", lambda: conv2d(x.long(), w.long(), b), TypeError, "x must be float32 or float64"),
        ("complex x", lambda: conv2d(x.to(torch.complex128), w, b), TypeError, "x must be float32 or float64.*complex"),
        ("half weight", lambda: conv2d(x, w.half(), b), TypeError, "weight must be float32 or float64"),
        ("dtype mismatch", lambda: conv2d(x, w.float(), b), TypeError, "weight has dtype torch.float32 but x"),
        ("bias dtype", lambda: conv2d(x, w, b.float()), TypeError, "bias has dtype"),
        ("3-D x", lambda: conv2d(x[0], w, b), ValueError, r"x must be a 4-D tensor \(B, Cin, H, W\); got a 3-D"),
        ("5-D weight", lambda: conv2d(x, w[None], b), ValueError, "weight must be a 4-D tensor"),
        ("2-D bias", lambda: conv2d(x, w, b[None]), ValueError, "bias must be a 1-D tensor"),
        ("bias length", lambda: conv2d(x, w, b[:3]), ValueError, r"bias must have shape \(Cout,\) = \(4,\)"),
        ("weight channels", lambda: conv2d(x, w, b, groups=1), ValueError, "weight must have shape .*Cin/groups"),
        ("groups divide", lambda: conv2d(x, w, b, groups=3), ValueError, "groups=3 must divide"),
        ("groups zero", lambda: conv2d(x, w, b, groups=0), ValueError, "groups must be a positive int"),
        ("stride zero", lambda: conv2d(x, w, b, groups=2, stride=0), ValueError, "stride must be a positive int; got 0"),
        ("stride pair", lambda: conv2d(x, w, b, groups=2, stride=(1, -1)), ValueError, r"stride\[1\] must be a positive int"),
        ("stride triple", lambda: conv2d(x, w, b, groups=2, stride=(1, 1, 1)), ValueError, "stride must be an int or a pair"),
        ("stride float", lambda: conv2d(x, w, b, groups=2, stride=1.5), TypeError, "stride must be an int"),
        ("stride bool", lambda: conv2d(x, w, b, groups=2, stride=True), TypeError, "stride must be an int"),
        ("dilation zero", lambda: conv2d(x, w, b, groups=2, dilation=0), ValueError, "dilation must be a positive int"),
        ("padding negative", lambda: conv2d(x, w, b, groups=2, padding=-1), ValueError, "padding must be a non-negative int"),
        ("padding word", lambda: conv2d(x, w, b, groups=2, padding="full"), ValueError, "padding must be an int, a pair of ints, 'valid' or 'same'"),
        ("same with stride", lambda: conv2d(x, w, b, groups=2, padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
        ("kernel too large", lambda: conv2d(x, w, b, groups=2, dilation=4), ValueError, "larger than the padded input"),
        ("empty image", lambda: conv2d(x[:, :, :0], w, b, groups=2), ValueError, "at least one channel and one pixel"),
        ("unknown backend", lambda: conv2d(x, w, b, groups=2, backend="cpp"), ValueError, "backend must be one of"),
        ("backend not str", lambda: conv2d(x, w, b, groups=2, backend=None), ValueError, "backend must be one of"),
        ("mixed devices", lambda: conv2d(x, w.to("meta"), b, groups=2), ValueError, "weight is on meta but x is on cpu"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


def test_numba_backend_with_cuda_tensors_is_refused():
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU"):
        dyncore.resolve_backend("numba", torch.device("cuda"))


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_F_conv2d(dtype):
    dev = torch.device("cuda")
    for case in CASES:
        x, w, b = (None if t is None else t.to(dev) for t in make(*case["shape"], case["Cout"], case["groups"], *case["k"], case.get("bias", True), dtype))
        kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
        if kw["padding"] == "same":
            kw["stride"] = 1
        inputs = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
        out = conv2d(*inputs[:2], inputs[2] if b is not None else None, backend="cuda", **kw)
        ref_inputs = [t.clone().requires_grad_() for t in inputs]
        ref = F.conv2d(*ref_inputs[:2], ref_inputs[2] if b is not None else None, **kw)
        tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out, ref, **tol)
        g = torch.randn_like(ref)
        for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, ref_inputs, g)):
            torch.testing.assert_close(got, want, **tol)


@pytest.mark.gpu
def test_numba_with_cuda_tensors_raises_on_gpu():
    x, w, b = (t.cuda() for t in make(1, 1, 4, 4, 1, 1, 3, 3))
    with pytest.raises(ValueError, match="backend='numba'"):
        conv2d(x, w, b, backend="numba")


@pytest.mark.gpu
def test_cuda_backend_with_cpu_tensors_on_gpu_machine():
    x, w, b = make(1, 2, 6, 6, 2, 1, 3, 3)
    out = conv2d(x, w, b, padding=1, backend="cuda")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=1), **F64)
