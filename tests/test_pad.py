"""dyncore.pad: adaptive_dilation_conv in every backend vs the equation, forward and backward;
PADConv2d and PADStack; the data generator; bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import dyncore  # noqa: F401  (first: the CUDA simulator)
from dyncore.conv import conv2d
from dyncore.pad import (
    AGGREGATIONS,
    PADConv2d,
    PADStack,
    adaptive_dilation_conv,
    dilation_variance,
    expected_dilation,
    gates_from_priors,
)
from dyncore.pad.data import make_stripes
from dyncore.pad.modules import prior_branch_parameters

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
FUSED = ["numba", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def make(B, Cin, Cout, H, W, k, D, bias=True, dtype=torch.float64, seed=0, gates="random"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, Cin, H, W, generator=g, dtype=dtype)
    w = torch.randn(Cout, Cin, k, k, generator=g, dtype=dtype)
    b = torch.randn(Cout, generator=g, dtype=dtype) if bias else None
    if gates == "random":  # any real numbers: the operator is linear in the gates
        gt = torch.randn(B, D, H, W, generator=g, dtype=dtype)
    elif gates == "softmax":
        gt = torch.softmax(torch.randn(B, D, H, W, generator=g, dtype=dtype), 1)
    else:  # one-hot, a random dilation per pixel
        idx = torch.randint(0, D, (B, H, W), generator=g)
        gt = F.one_hot(idx, D).permute(0, 3, 1, 2).to(dtype)
    return x, w, b, gt


def reference(x, w, b, gates, dilations):
    """The gated sum, written independently of the package with F.conv2d."""
    r = (w.shape[-1] - 1) // 2
    out = sum(gates[:, d:d + 1] * F.conv2d(x, w, padding=dil * r, dilation=dil)
              for d, dil in enumerate(dilations))
    return out if b is None else out + b.view(1, -1, 1, 1)


# Odd sizes, dilations that do not divide them, a dilation past the image, duplicates, k = 1, 5.
CASES = [
    dict(shape=(2, 3, 4, 7, 9), k=3, dilations=(1, 2, 4)),
    dict(shape=(1, 2, 3, 5, 6), k=1, dilations=(1, 3)),
    dict(shape=(2, 2, 2, 9, 7), k=5, dilations=(1, 2), bias=False),
    dict(shape=(1, 3, 2, 6, 11), k=3, dilations=(3,)),
    dict(shape=(1, 1, 1, 4, 4), k=3, dilations=(5, 1, 2)),
    dict(shape=(2, 2, 3, 8, 5), k=3, dilations=(2, 2, 7)),
]
IDS = [f"case{n}" for n in range(len(CASES))]


def inputs(case, dtype=torch.float64, gates="random", seed=0):
    return make(*case["shape"], case["k"], len(case["dilations"]), case.get("bias", True), dtype,
                seed, gates)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_the_equation_float64(backend, case):
    x, w, b, g = inputs(case)
    out = adaptive_dilation_conv(x, w, b, g, dilations=case["dilations"], backend=backend)
    assert out.dtype == torch.float64 and out.shape == (x.shape[0], w.shape[0], *x.shape[2:])
    torch.testing.assert_close(out, reference(x, w, b, g, case["dilations"]), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_forward_float32_keeps_dtype(backend):
    x, w, b, g = inputs(CASES[0], torch.float32, "softmax")
    out = adaptive_dilation_conv(x, w, b, g, dilations=(1, 2, 4), backend=backend)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x, w, b, g, (1, 2, 4)), rtol=1e-5, atol=1e-5)


def grads(fn, tensors, grad_out=None):
    tensors = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    out = fn(*tensors)
    if grad_out is None:
        grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    live = [t for t in tensors if t is not None]
    return (out.detach(), *torch.autograd.grad(out, live, grad_out))


@pytest.mark.parametrize("backend", AUTOGRAD)
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("gates", ["random", "onehot"])
def test_forward_and_all_gradients_match_autograd_of_the_equation(backend, case, gates):
    if backend == "cuda" and case["shape"][0] * case["shape"][3] * case["shape"][4] > 130:
        pytest.skip("kept small for the CUDA simulator")
    x, w, b, g = inputs(case, gates=gates)
    dil = case["dilations"]
    got = grads(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend=backend), (x, w, b, g))
    want = grads(lambda *t: reference(*t, dil), (x, w, b, g))
    for name, a, e in zip(["out", "x", "weight", "bias", "gates"][: len(got)], got, want):
        torch.testing.assert_close(a, e, **F64, msg=lambda m: f"{name}: {m}")


@st.composite
def pad_problems(draw, max_side=8, max_channels=3):
    k = draw(st.sampled_from([1, 3, 5]))
    D = draw(st.integers(1, 3))
    dilations = tuple(draw(st.lists(st.integers(1, 6), min_size=D, max_size=D)))
    B = draw(st.integers(1, 2))
    Cin, Cout = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    bias = draw(st.booleans())
    kind = draw(st.sampled_from(["random", "softmax", "onehot"]))
    seed = draw(st.integers(0, 2**16))
    return make(B, Cin, Cout, H, W, k, D, bias, seed=seed, gates=kind), dilations


@given(pad_problems())
def test_numba_and_torch_match_the_equation_forward_and_backward(problem):
    tensors, dil = problem
    want = grads(lambda *t: reference(*t, dil), tensors)
    for backend in ("numba", "torch"):
        got = grads(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend=backend), tensors)
        for a, e in zip(got, want):
            torch.testing.assert_close(a, e, **F64)


@given(pad_problems(max_side=5, max_channels=2))
def test_loops_and_cuda_match_the_equation(problem):
    tensors, dil = problem
    x, w, b, g = tensors
    torch.testing.assert_close(
        adaptive_dilation_conv(x, w, b, g, dilations=dil, backend="loops"), reference(x, w, b, g, dil), **F64)
    want = grads(lambda *t: reference(*t, dil), tensors)
    got = grads(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend="cuda"), tensors)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, **F64)


@pytest.mark.parametrize("case", [dict(shape=(1, 2, 3, 5, 6), k=3, dilations=(1, 2, 4)), CASES[2], CASES[5]],
                         ids=["k3-124", "k5-nobias", "dup-past-image"])
def test_gradcheck_numba(case):
    x, w, b, g = inputs(case)
    tensors = tuple(t.requires_grad_() for t in (x, w, b, g) if t is not None)
    dil = case["dilations"]
    if b is None:
        fn = lambda x_, w_, g_: adaptive_dilation_conv(x_, w_, None, g_, dilations=dil, backend="numba")  # noqa: E731
    else:
        fn = lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend="numba")  # noqa: E731
    assert gradcheck(fn, tensors)


def test_gradcheck_numba_with_one_hot_gates():
    """Zero gates are skipped in the forward, but their gradient is still every response."""
    x, w, b, g = make(1, 2, 2, 5, 6, 3, 3, gates="onehot")
    tensors = tuple(t.requires_grad_() for t in (x, w, b, g))
    assert gradcheck(lambda *t: adaptive_dilation_conv(*t, dilations=(1, 2, 3), backend="numba"), tensors)


def test_gradcheck_cuda():
    x, w, b, g = make(1, 2, 2, 4, 5, 3, 2, gates="onehot")
    tensors = tuple(t.requires_grad_() for t in (x, w, b, g))
    assert gradcheck(lambda *t: adaptive_dilation_conv(*t, dilations=(1, 2), backend="cuda"),
                     tensors, fast_mode=True)


# ---------------------------------------------------------------- one-hot gates

@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("d", [0, 1, 2])
def test_one_hot_gates_reproduce_a_plain_dilated_conv_bit_for_bit(backend, d):
    dilations = (1, 2, 3)
    x, w, b, _ = make(1, 2, 3, 7, 6, 3, 3)
    g = torch.zeros(1, 3, 7, 6, dtype=torch.float64)
    g[:, d] = 1
    out = adaptive_dilation_conv(x, w, b, g, dilations=dilations, backend=backend)
    same = conv2d(x, w, b, padding=dilations[d], dilation=dilations[d], backend=backend)
    assert torch.equal(out, same)
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=dilations[d], dilation=dilations[d]), **F64)


@pytest.mark.parametrize("backend", FUSED)
def test_gate_gradient_is_every_response_even_where_the_gate_is_zero(backend):
    dilations = (1, 2, 3)
    x, w, b, g = make(1, 2, 2, 6, 5, 3, 3, gates="onehot")
    g.requires_grad_()
    out = adaptive_dilation_conv(x, w, b, g, dilations=dilations, backend=backend)
    G = torch.randn_like(out)
    (grad_g,) = torch.autograd.grad(out, g, G)
    responses = torch.stack([F.conv2d(x, w, padding=d, dilation=d) for d in dilations], 1)
    torch.testing.assert_close(grad_g, (G[:, None] * responses).sum(2), **F64)
    assert (grad_g[g == 0] != 0).all()


# ---------------------------------------------------------------- autograd plumbing

@pytest.mark.parametrize("backend", AUTOGRAD)
def test_gradient_only_for_what_needs_it(backend):
    x, w, b, g = make(1, 2, 2, 5, 5, 3, 2)
    g.requires_grad_()
    adaptive_dilation_conv(x, w, b, g, dilations=(1, 2), backend=backend).sum().backward()
    assert g.grad is not None and x.grad is None and w.grad is None and b.grad is None


@pytest.mark.parametrize("backend", FUSED)
def test_double_backward_is_refused_clearly(backend):
    x, w, b, g = make(1, 1, 1, 4, 4, 3, 2)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="first-order only: double backward"):
        torch.autograd.grad(adaptive_dilation_conv(x, w, b, g, dilations=(1, 2), backend=backend).sum(),
                            x, create_graph=True)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    x, w, b, g = make(1, 3, 2, 6, 5, 3, 2)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    wt = w.transpose(2, 3).contiguous().transpose(2, 3)
    gt = g.transpose(2, 3).contiguous().transpose(2, 3)
    assert not (xt.is_contiguous() or wt.is_contiguous() or gt.is_contiguous())
    out = adaptive_dilation_conv(xt, wt, b, gt, dilations=(1, 3), backend=backend)
    torch.testing.assert_close(out, reference(x, w, b, g, (1, 3)), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    x, w, b, g = make(1, 2, 3, 5, 5, 3, 2)
    out = adaptive_dilation_conv(x[:0], w, b, g[:0], dilations=(1, 2), backend=backend)
    assert out.shape == (0, 3, 5, 5)


@pytest.mark.parametrize("backend", ALL)
def test_a_dilation_past_the_image_reads_the_centre_tap_only(backend):
    x, w, b, g = make(1, 2, 2, 5, 4, 3, 1)
    huge = adaptive_dilation_conv(x, w, b, g, dilations=(10**9,), backend=backend)
    centre_only = g * F.conv2d(x, w[:, :, 1:2, 1:2]) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(huge, centre_only, **F64)


def test_loops_warns_that_it_does_not_track_gradients():
    x, w, b, g = make(1, 1, 1, 3, 3, 1, 1)
    g.requires_grad_()
    with pytest.warns(UserWarning, match="forward pass only"):
        out = adaptive_dilation_conv(x, w, b, g, dilations=(1,), backend="loops")
    assert not out.requires_grad


def test_auto_is_numba_on_cpu():
    x, w, b, g = make(1, 1, 1, 4, 4, 3, 2)
    x.requires_grad_()
    out = adaptive_dilation_conv(x, w, b, g, dilations=[1, 2])  # a list is fine too
    assert type(out.grad_fn).__name__.startswith("AdaptiveDilationConvFunction")


# ---------------------------------------------------------------- bad input

def good():
    return make(1, 4, 3, 6, 6, 3, 3)


def bad_calls():
    x, w, b, g = good()
    dil = (1, 2, 4)
    call = adaptive_dilation_conv
    return [
        ("x is a list", lambda: call(x.tolist(), w, b, g, dilations=dil), TypeError, "x must be a torch.Tensor"),
        ("gates is numpy", lambda: call(x, w, b, g.numpy(), dilations=dil), TypeError, "gates must be a torch.Tensor"),
        ("integer x", lambda: call(x.long(), w, b, g, dilations=dil), TypeError, "x must be float32 or float64"),
        ("bool gates", lambda: call(x, w, b, g > 0, dilations=dil), TypeError, "gates must be float32 or float64"),
        ("complex weight", lambda: call(x, w.to(torch.complex128), b, g, dilations=dil), TypeError, "weight must be float32 or float64.*complex"),
        ("gates dtype", lambda: call(x, w, b, g.float(), dilations=dil), TypeError, "gates has dtype torch.float32 but x"),
        ("bias dtype", lambda: call(x, w, b.float(), g, dilations=dil), TypeError, "bias has dtype"),
        ("3-D x", lambda: call(x[0], w, b, g, dilations=dil), ValueError, r"x must be a 4-D tensor \(B, Cin, H, W\)"),
        ("3-D gates", lambda: call(x, w, b, g[0], dilations=dil), ValueError, r"gates must be a 4-D tensor \(B, D, H, W\)"),
        ("2-D bias", lambda: call(x, w, b[None], g, dilations=dil), ValueError, "bias must be a 1-D tensor"),
        ("bias length", lambda: call(x, w, b[:2], g, dilations=dil), ValueError, r"bias must have shape \(Cout,\) = \(3,\)"),
        ("weight channels", lambda: call(x, w[:, :3], b, g, dilations=dil), ValueError, r"weight must have shape \(Cout, Cin, k, k\) with Cin = x.shape\[1\] = 4"),
        ("even kernel", lambda: call(x, w[..., :2, :2], b, g, dilations=dil), ValueError, "weight's kernel size k .* odd positive int"),
        ("non-square kernel", lambda: call(x, w[..., :1, :], b, g, dilations=dil), ValueError, "weight must have a square kernel"),
        ("no output channel", lambda: call(x, w[:0], None, g, dilations=dil), ValueError, "weight must have at least one output channel"),
        ("gates D", lambda: call(x, w, b, g[:, :2], dilations=dil), ValueError, r"gates must have shape \(B, D, H, W\) = \(1, 3, 6, 6\).*D = len\(dilations\) = 3"),
        ("gates size", lambda: call(x, w, b, g[..., :5], dilations=dil), ValueError, "gates must have shape"),
        ("gates batch", lambda: call(x, w, b, g.expand(2, -1, -1, -1), dilations=dil), ValueError, "gates must have shape"),
        ("empty dilations", lambda: call(x, w, b, g[:, :0], dilations=()), ValueError, "dilations must hold at least one dilation"),
        ("dilation zero", lambda: call(x, w, b, g, dilations=(1, 0, 4)), ValueError, r"dilations\[1\] must be a positive int; got 0"),
        ("dilation negative", lambda: call(x, w, b, g, dilations=(-1, 2, 4)), ValueError, r"dilations\[0\] must be a positive int"),
        ("dilation float", lambda: call(x, w, b, g, dilations=(1, 2.0, 4)), TypeError, r"dilations\[1\] must be an int"),
        ("dilation bool", lambda: call(x, w, b, g, dilations=(True, 2, 4)), TypeError, r"dilations\[0\] must be an int"),
        ("dilations int", lambda: call(x, w, b, g[:, :1], dilations=2), TypeError, "dilations must be a tuple of positive ints"),
        ("dilations str", lambda: call(x, w, b, g, dilations="124"), TypeError, "dilations must be a tuple of positive ints"),
        ("dilations missing", lambda: call(x, w, b, g), TypeError, "dilations"),
        ("empty image", lambda: call(x[..., :0], w, b, g[..., :0], dilations=dil), ValueError, "at least one channel and one pixel"),
        ("unknown backend", lambda: call(x, w, b, g, dilations=dil, backend="triton"), ValueError, "backend must be one of"),
        ("mixed devices", lambda: call(x, w, b, g.to("meta"), dilations=dil), ValueError, "gates is on meta but x is on cpu"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- gates and helpers

def test_eval_gates_are_softmax_over_tau_or_one_hot_argmax():
    h = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(gates_from_priors(h, 0.5, sample=False), torch.softmax(h / 0.5, 1))
    hard = gates_from_priors(h, 0.5, hard=True, sample=False)
    assert torch.equal(hard.argmax(1), h.argmax(1)) and torch.equal(hard.sum(1), torch.ones(2, 4, 5, dtype=torch.float64))
    assert set(hard.unique().tolist()) == {0.0, 1.0}


def test_training_gates_are_gumbel_softmax_samples():
    h = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.manual_seed(1)
    soft = gates_from_priors(h, 0.7)
    torch.manual_seed(1)
    assert torch.equal(soft, F.gumbel_softmax(h, tau=0.7, dim=1))
    torch.testing.assert_close(soft.sum(1), torch.ones(2, 4, 5, dtype=torch.float64))
    hard = gates_from_priors(h, 0.7, hard=True)
    assert ((hard == 0) | ((hard - 1).abs() < 1e-12)).all()  # one-hot forward (straight-through)
    assert ((hard != 0).sum(1) == 1).all()


def test_expected_dilation_and_variance():
    dil = (1, 2, 4)
    p = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).view(1, 3, 1, 1)
    assert expected_dilation(p, dil).item() == pytest.approx(0.2 + 0.6 + 2.0)
    mean = 2.8
    var = 0.2 * (1 - mean) ** 2 + 0.3 * (2 - mean) ** 2 + 0.5 * (4 - mean) ** 2
    assert dilation_variance(p.log(), dil).item() == pytest.approx(var)
    # the variance of the Gumbel-max sample, by Monte Carlo
    g = torch.Generator().manual_seed(0)
    noise = -torch.log(-torch.log(torch.rand(200_000, 3, generator=g, dtype=torch.float64)))
    sampled = torch.tensor(dil, dtype=torch.float64)[(p.view(1, 3).log() + noise).argmax(1)]
    assert sampled.var().item() == pytest.approx(var, rel=0.02)
    assert dilation_variance(torch.tensor([[[[50.0]], [[0.0]], [[0.0]]]]), dil).item() < 1e-15


# ---------------------------------------------------------------- the module

@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_module_shapes_and_parameter_count(aggregation):
    layer = PADConv2d(4, 6, 3, dilations=(1, 2, 4), aggregation=aggregation)
    conv = 6 * 4 * 9 + 6
    prior = sum(p.numel() for n, p in layer.named_parameters() if n not in ("weight", "bias"))
    assert prior == prior_branch_parameters(4, 3, aggregation)
    assert sum(p.numel() for p in layer.parameters()) == conv + prior
    assert {"markov": 15, "recurrent": 24, "gated": 48}[aggregation] == prior
    x = torch.randn(2, 4, 7, 5)
    out, h = layer(x, return_prior=True)
    assert out.shape == (2, 6, 7, 5) and h.shape == (2, 3, 7, 5)
    assert layer.last_gates.shape == (2, 3, 7, 5) and not layer.last_gates.requires_grad
    assert "aggregation=" in repr(layer)


def test_priors_start_uniform():
    layer = PADConv2d(3, 3)
    layer.eval()
    layer(torch.randn(1, 3, 5, 5))
    torch.testing.assert_close(layer.last_gates, torch.full((1, 3, 5, 5), 1 / 3))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("hard", [False, True])
def test_eval_is_deterministic_and_noise_free(aggregation, hard):
    torch.manual_seed(0)
    layer = PADConv2d(3, 4, dilations=(1, 2, 3), aggregation=aggregation, hard=hard, tau=0.5).double()
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    prev = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    layer.eval()
    a, h = layer(x, prev, return_prior=True)
    b = layer(x, prev)
    assert torch.equal(a, b)
    gates = gates_from_priors(h, 0.5, hard, sample=False)
    expected = adaptive_dilation_conv(x, layer.weight, layer.bias, gates, dilations=(1, 2, 3), backend="torch")
    torch.testing.assert_close(a, expected, **F64)
    layer.train()
    torch.manual_seed(1)
    c = layer(x, prev)
    torch.manual_seed(1)
    assert torch.equal(c, layer(x, prev))  # seeded noise: reproducible
    assert not torch.allclose(c, layer(x, prev))  # but it is noise


def test_aggregations_follow_eq_3_to_5():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    prev = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    layers = {a: PADConv2d(2, 2, aggregation=a, dtype=torch.float64) for a in AGGREGATIONS}
    for layer in layers.values():
        for p in layer.parameters():
            torch.nn.init.normal_(p)
    U = layers["markov"].prior_from_input
    torch.testing.assert_close(layers["markov"].hidden_prior(x, prev), U(x))
    assert torch.equal(layers["markov"].hidden_prior(x, prev), layers["markov"].hidden_prior(x, None))
    rec = layers["recurrent"]
    torch.testing.assert_close(rec.hidden_prior(x, prev), rec.prior_from_prior(prev) + rec.prior_from_input(x))
    torch.testing.assert_close(rec.hidden_prior(x, None), rec.prior_from_input(x))  # h^0 = 0
    gat = layers["gated"]
    a = torch.sigmoid(gat.mix_from_prior(prev) + gat.mix_from_input(x))
    torch.testing.assert_close(gat.hidden_prior(x, prev),
                               a * gat.prior_from_prior(prev) + (1 - a) * gat.prior_from_input(x))
    tanh = PADConv2d(2, 2, aggregation="recurrent", prior_activation="tanh", dtype=torch.float64)
    tanh.load_state_dict(rec.state_dict())
    torch.testing.assert_close(tanh.hidden_prior(x, prev), torch.tanh(rec.hidden_prior(x, prev)))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_stack_passes_priors_and_trains(aggregation):
    torch.manual_seed(0)
    stack = PADStack(3, depth=3, dilations=(1, 2), aggregation=aggregation, backend="numba")
    x = torch.randn(4, 3, 8, 8)
    target = F.avg_pool2d(x.abs(), 5, 1, 2)  # the stack ends with a ReLU
    opt = torch.optim.Adam(stack.parameters(), lr=3e-2)
    losses = []
    for _ in range(25):
        loss = F.mse_loss(stack(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in stack.parameters())  # the priors learn too
    assert len(stack.gates()) == 3 and stack.priors()[0].shape == (4, 2, 8, 8)
    stack.tau = 0.25
    assert all(layer.tau == 0.25 for layer in stack.layers)


@pytest.mark.filterwarnings("ignore:backend='loops' computes the forward pass only")
def test_module_backends_agree():
    torch.manual_seed(0)
    layer = PADConv2d(2, 3, aggregation="gated", backend="numba").double()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    layer.eval()
    outs = {}
    for backend in ALL:
        layer.backend = backend
        outs[backend] = layer(x)
    for backend in ALL[1:]:
        torch.testing.assert_close(outs[backend], outs["loops"], **F64)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=0, out_channels=1), ValueError, "in_channels"),
    (dict(in_channels=1, out_channels=1, kernel_size=2), ValueError, "kernel_size must be an odd"),
    (dict(in_channels=1, out_channels=1, dilations=()), ValueError, "dilations must hold at least one"),
    (dict(in_channels=1, out_channels=1, dilations=(1, -2)), ValueError, r"dilations\[1\]"),
    (dict(in_channels=1, out_channels=1, tau=0.0), ValueError, "tau must be a positive"),
    (dict(in_channels=1, out_channels=1, tau=float("nan")), ValueError, "tau must be a positive"),
    (dict(in_channels=1, out_channels=1, tau="1"), TypeError, "tau must be a positive number"),
    (dict(in_channels=1, out_channels=1, hard=1), TypeError, "hard must be a bool"),
    (dict(in_channels=1, out_channels=1, aggregation="lstm"), ValueError, "aggregation must be one of"),
    (dict(in_channels=1, out_channels=1, prior_activation="relu"), ValueError, "prior_activation must be one of"),
    (dict(in_channels=1, out_channels=1, backend="gpu"), ValueError, "backend must be one of"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PADConv2d(**kwargs)


def test_module_bad_forward_input():
    layer = PADConv2d(3, 2)
    with pytest.raises(ValueError, match=r"x must have in_channels = 3 channels"):
        layer(torch.randn(1, 2, 5, 5))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the layer's parameters"):
        layer(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must be a 4-D tensor"):
        layer(torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match=r"prior must have shape \(B, D, H, W\) = \(1, 3, 5, 5\)"):
        layer(torch.randn(1, 3, 5, 5), prior=torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="depth must be a positive int"):
        PADStack(3, depth=0)
    with pytest.raises(ValueError, match="tau must be a positive"):
        PADStack(3).tau = -1.0


# ---------------------------------------------------------------- the data

def test_stripes_data():
    data = make_stripes(6, size=32, seed=3)
    assert data.images.shape == (6, 1, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.shape == data.zones.shape == (6, 32, 32)
    assert set(data.labels.unique().tolist()) <= {0, 1} and set(data.zones.unique().tolist()) <= {0, 1}
    again = make_stripes(6, size=32, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(data, again))
    clean = make_stripes(40, size=32, noise=0.0, seed=4)
    # without noise: horizontal stripes are constant along rows, vertical ones along columns
    img, lab = clean.images[:, 0], clean.labels
    same_row_pairs = img[:, :, 1:] == img[:, :, :-1]
    inside_a_cell = (torch.arange(1, 32) % 16 != 0).expand(40, 32, 31)
    horizontal = (lab[:, :, 1:] == 0) & (lab[:, :, :-1] == 0) & (clean.zones[:, :, 1:] == 1) & inside_a_cell
    assert same_row_pairs[horizontal].all() and horizontal.any()
    # fine tiles change label within a cell; coarse cells have one label
    coarse = clean.zones == 1
    for n in range(40):
        for cy in range(2):
            for cx in range(2):
                cell = (n, slice(cy * 16, cy * 16 + 16), slice(cx * 16, cx * 16 + 16))
                if coarse[cell].all():
                    assert clean.labels[cell].unique().numel() == 1
    assert 0.3 < coarse.float().mean() < 0.7
    # edge_distance: -1 in fine cells; 0 next to a bar edge (the neighbour across it differs)
    dist = clean.edge_distance
    assert (dist[~coarse] == -1).all() and (dist[coarse] >= 0).all() and dist.max() <= 7
    n, y, x = torch.nonzero((dist == 0) & coarse & (lab == 1))[0].tolist()  # vertical bars: edges along x
    row = img[n, y, (x // 16) * 16:(x // 16) * 16 + 16]
    x_in = x % 16
    assert any(0 <= x_in + s < 16 and row[x_in + s] != row[x_in] for s in (-1, 1))
    with pytest.raises(ValueError, match="cell must divide size"):
        make_stripes(1, size=30)
    with pytest.raises(ValueError, match="noise must be"):
        make_stripes(1, noise=-1.0)


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_the_equation(dtype):
    dev = torch.device("cuda")
    for case in CASES:
        for kind in ("random", "onehot"):
            tensors = [t.to(dev) if t is not None else None for t in inputs(case, dtype, kind)]
            dil = case["dilations"]
            got = grads(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend="cuda"), tensors)
            want = grads(lambda *t: reference(*t, dil), tensors)
            tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
            for a, e in zip(got, want):
                torch.testing.assert_close(a, e, **tol)


@pytest.mark.gpu
def test_numba_with_cuda_tensors_raises_on_gpu():
    x, w, b, g = (t.cuda() for t in make(1, 1, 1, 4, 4, 3, 2))
    with pytest.raises(ValueError, match="backend='numba'"):
        adaptive_dilation_conv(x, w, b, g, dilations=(1, 2), backend="numba")


@pytest.mark.gpu
def test_module_on_gpu():
    layer = PADConv2d(3, 4, aggregation="gated").cuda()
    out = layer(torch.randn(2, 3, 9, 9, device="cuda"))
    assert out.device.type == "cuda" and math.isfinite(out.sum().item())


# ---------------------------------------------------------------- the experiment helpers

def test_experiment_models_train_and_evaluate():
    from dyncore.pad import experiment

    data = make_stripes(32, seed=5)
    fixed = experiment.make_segmenter(("fixed", 2))
    pad = experiment.make_segmenter(("pad", (1, 2), "gated"), backend="numba")
    # same convolutions, plus the prior branch
    extra = experiment.count_parameters(pad) - experiment.count_parameters(fixed)
    assert extra == 3 * prior_branch_parameters(8, 2, "gated")
    for model in (fixed, pad):
        history = experiment.train_segmenter(model, data, steps=3, batch_size=4)
        assert len(history["losses"]) == 3 and history["seconds"] > 0
        result = experiment.evaluate_segmenter(model, data)
        assert 0 <= result["miou"] <= 1 and len(result["zone_accuracy"]) == 2
    assert len(result["expected_dilation"]) == 3 and result["expected_dilation"][0].shape == (32, 32, 32)
    assert result["variance"] >= 0 and all(1 <= e <= 2 for zone in result["dilation_by_zone"] for e in zone)
    with pytest.raises(ValueError, match="body must be"):
        experiment.make_segmenter(("dilated", 2))
