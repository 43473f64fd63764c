"""dyncore.pad beyond the conformance suite (tests/test_conformance.py, which checks every backend
against the spec's reference, bad input, gradcheck, ...): one-hot gates, the gate gradient,
dilations past the image; PADConv2d and PADStack; the stripes data and the segmentation
experiment (dyncore.experiments.ch05)."""

import math

import pytest
import torch
import torch.nn.functional as F
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
from dyncore.experiments import ch05
from dyncore.experiments.ch05 import make_stripes
from dyncore.pad.modules import prior_branch_parameters, record_gates
from dyncore.pad.spec import reference

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


def grads(fn, tensors, grad_out=None):
    tensors = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    out = fn(*tensors)
    if grad_out is None:
        grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    live = [t for t in tensors if t is not None]
    return (out.detach(), *torch.autograd.grad(out, live, grad_out))


@pytest.mark.parametrize("backend", AUTOGRAD)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_one_hot_gates_forward_and_all_gradients_match_autograd_of_the_equation(backend, case):
    """One-hot gates: the fused kernels skip the dilations whose gate is 0 in the forward only."""
    gates = "onehot"
    if backend == "cuda" and case["shape"][0] * case["shape"][3] * case["shape"][4] > 130:
        pytest.skip("kept small for the CUDA simulator")
    x, w, b, g = inputs(case, gates=gates)
    dil = case["dilations"]
    got = grads(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend=backend), (x, w, b, g))
    want = grads(lambda *t: reference(*t, dilations=dil), (x, w, b, g))
    for name, a, e in zip(["out", "x", "weight", "bias", "gates"][: len(got)], got, want):
        torch.testing.assert_close(a, e, **F64, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", FUSED)
def test_gradcheck_with_one_hot_gates(backend):
    """Zero gates are skipped in the forward, but their gradient is still every response."""
    if backend == "cuda":  # small, and fast mode: the simulator is slow
        x, w, b, g = make(1, 2, 2, 4, 5, 3, 2, gates="onehot")
        dil = (1, 2)
    else:
        x, w, b, g = make(1, 2, 2, 5, 6, 3, 3, gates="onehot")
        dil = (1, 2, 3)
    tensors = tuple(t.requires_grad_() for t in (x, w, b, g))
    assert gradcheck(lambda *t: adaptive_dilation_conv(*t, dilations=dil, backend=backend), tensors,
                     fast_mode=backend == "cuda")


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


@pytest.mark.parametrize("backend", ALL)
def test_a_dilation_past_the_image_reads_the_centre_tap_only(backend):
    x, w, b, g = make(1, 2, 2, 5, 4, 3, 1)
    huge = adaptive_dilation_conv(x, w, b, g, dilations=(10**9,), backend=backend)
    centre_only = g * F.conv2d(x, w[:, :, 1:2, 1:2]) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(huge, centre_only, **F64)


def test_dilations_may_be_a_list():
    x, w, b, g = make(1, 1, 1, 4, 4, 3, 2)
    torch.testing.assert_close(adaptive_dilation_conv(x, w, b, g, dilations=[1, 2]),
                               adaptive_dilation_conv(x, w, b, g, dilations=(1, 2)), rtol=0, atol=0)


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
    with record_gates(layer) as seen:
        out, h = layer(x, return_prior=True)
    assert out.shape == (2, 6, 7, 5) and h.shape == (2, 3, 7, 5)
    prior, gates = seen[layer]
    assert torch.equal(prior, h) and gates.shape == (2, 3, 7, 5) and not gates.requires_grad
    assert not any(isinstance(v, torch.Tensor) for v in vars(layer).values())  # keeps no tensor
    assert "aggregation=" in repr(layer)


def test_priors_start_uniform():
    layer = PADConv2d(3, 3)
    layer.eval()
    with record_gates(layer) as seen:
        layer(torch.randn(1, 3, 5, 5))
    torch.testing.assert_close(seen[layer][1], torch.full((1, 3, 5, 5), 1 / 3))


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
    with record_gates(stack) as seen:
        stack(x)
    assert len(seen) == 3 and seen[stack.layers[0]][0].shape == (4, 2, 8, 8)
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
def test_module_on_gpu():
    layer = PADConv2d(3, 4, aggregation="gated").cuda()
    out = layer(torch.randn(2, 3, 9, 9, device="cuda"))
    assert out.device.type == "cuda" and math.isfinite(out.sum().item())


# ---------------------------------------------------------------- the experiment helpers

def test_experiment_models_train_and_evaluate():
    experiment = ch05
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


def test_factory_kwargs_reach_every_parameter():
    for layer in (PADConv2d(2, 3, aggregation="gated", dtype=torch.float64),
                  PADStack(2, depth=2, aggregation="recurrent", dtype=torch.float64)):
        assert {p.dtype for p in layer.parameters()} == {torch.float64}
    layer = PADConv2d(2, 3, aggregation="gated", device="meta")
    assert {p.device.type for p in layer.parameters()} == {"meta"}


def test_miou_of_a_class_absent_from_both_counts_as_one():
    """The experiment's mIoU is dyncore.experiments.metrics.mean_iou: no 0/0 when a class is
    neither present nor predicted."""
    data = make_stripes(2, seed=0)
    only_vertical = data._replace(labels=torch.ones_like(data.labels))

    class AlwaysVertical(torch.nn.Sequential):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[2:])
            out[:, 1] = 1
            return out + 0 * self[0].weight.sum()

    model = AlwaysVertical(torch.nn.Conv2d(1, 1, 1), torch.nn.Identity(), torch.nn.Identity(),
                           torch.nn.Identity(), torch.nn.Identity())
    assert ch05.evaluate_segmenter(model, only_vertical)["miou"] == 1.0
