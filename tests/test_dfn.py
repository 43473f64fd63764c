"""What is special to DFN (Chapter 2): the backward pass written as loops, the identities of the
dynamic filter (one-hot filters move the image, a constant filter is a convolution), the
determinism of the Numba kernels, the layer ``DynamicFilterLayer`` and the moving-digits data.
The operator ``dynamic_filter`` itself (every backend against the reference, forward, backward,
gradcheck, bad input, ...) is checked by ``tests/test_conformance.py`` from its spec,
``dyncore/dfn/spec.py``."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from dyncore.dfn import DynamicFilterLayer, dynamic_filter, tap_offsets
from dyncore.dfn.loops import dynamic_filter_backward_loops
from dyncore.dfn.spec import SPECS, dfn_parameter_formula
from dyncore.dfn.spec import reference as spec_reference
from dyncore.experiments.ch02 import digit_pool, moving_digits

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def reference(x, filters, k, d):
    return spec_reference(x, filters, kernel_size=k, dilation=d)


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


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_loops_are_the_gradient(case):
    """The executable specification of the backward pass (Chapter 2, eq-dfn-grad-filters and eq-dfn-grad-x) is right too."""
    k, d = case["k"], case["d"]
    x, f = make(*case["shape"], k, seed=2)
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    ref = reference(xr, fr, k, d)
    g = torch.randn_like(ref)
    want_x, want_f = torch.autograd.grad(ref, (xr, fr), g)
    got_x, got_f = dynamic_filter_backward_loops(g.numpy(), x.numpy(), f.numpy(), k, d)
    torch.testing.assert_close(torch.from_numpy(got_x), want_x, **F64)
    torch.testing.assert_close(torch.from_numpy(got_f), want_f, **F64)


def test_double_backward_works_with_torch():
    x, f = make(1, 1, 4, 4, 3)
    f.requires_grad_()
    (g,) = torch.autograd.grad((dynamic_filter(x, f, kernel_size=3, backend="torch") ** 2).sum(), f,
                               create_graph=True)
    g.sum().backward()
    assert f.grad is not None


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


@pytest.mark.parametrize("backend", ALL)
def test_bad_input_is_rejected_before_any_kernel_runs(backend, monkeypatch):
    """Validation comes first: no backend is reached with a bad argument."""
    from dyncore.dfn import functional

    def fail(*args, **kwargs):
        raise AssertionError("a kernel ran on bad input")

    monkeypatch.setattr(functional, "dispatch", fail)
    x, f = make(1, 2, 4, 4, 3)
    with pytest.raises(ValueError, match="filters must have shape"):
        dynamic_filter(x, f[:, :, :3], kernel_size=3, backend=backend)


# ---------------------------------------------------------------- the module

def test_module_parameter_count_matches_the_formula():
    for guide, hidden, kb, k in [(1, (32, 32), 3, 3), (2, (12, 12), 5, 5), (3, (8,), 3, 7), (4, (), 3, 3)]:
        layer = DynamicFilterLayer(1, k, guidance_channels=guide, hidden_channels=hidden, branch_kernel_size=kb)
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


def test_module_with_a_guidance_and_without_normalization():
    torch.manual_seed(0)
    layer = DynamicFilterLayer(1, 3, guidance_channels=2, hidden_channels=8, normalization="none")
    x, guide = torch.randn(2, 1, 6, 6), torch.randn(2, 2, 6, 6)
    filters = layer.predict_filters(guide)
    torch.testing.assert_close(filters, layer.filter_branch(guide))
    torch.testing.assert_close(layer(x, guide), reference(x, filters, 3, 1), rtol=1e-5, atol=1e-6)
    assert "normalization='none'" in repr(layer) and "guidance_channels=2" in repr(layer)


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
    (dict(in_channels=1, guidance_channels=0), ValueError, "guidance_channels must be a positive int"),
    (dict(in_channels=1, hidden_channels=(8, 0)), ValueError, r"hidden_channels\[1\] must be a positive int"),
    (dict(in_channels=1, hidden_channels="8"), TypeError, "hidden_channels must be an int or a sequence"),
    (dict(in_channels=1, branch_kernel_size=2), ValueError, "branch_kernel_size must be an odd"),
    (dict(in_channels=1, dilation=0), ValueError, "dilation must be a positive int"),
    (dict(in_channels=1, normalization="sigmoid"), ValueError, "normalization must be one of 'softmax', 'none'"),
    (dict(in_channels=1, backend="gpu"), ValueError, "backend must be one of"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DynamicFilterLayer(**kwargs)


@pytest.mark.parametrize("old", [dict(normalize=None), dict(guide_channels=2), dict(normalization=None)])
def test_module_speaks_ddfs_spellings_only(old):
    """``normalization=`` and ``guidance_channels=``, with ``"none"`` for no normalization (as DDF)."""
    with pytest.raises((TypeError, ValueError)):
        DynamicFilterLayer(1, **old)


def test_module_factory_kwargs():
    layer = DynamicFilterLayer(2, 3, hidden_channels=(4,), device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in layer.parameters())


def test_the_layer_of_chapter_7():
    """The "DFN" slot of Chapter 7: a 3x3 filter per pixel, predicted by two 3x3 convolutions."""
    layer = SPECS[0].layer
    assert (layer.name, layer.paper, layer.local_field, layer.global_context) == ("DFN", "dfn2016", 5, False)
    for C in (1, 4, 8):
        module = layer.make(C, "numba")
        assert isinstance(module, DynamicFilterLayer) and module.hidden_channels == (C, C)
        assert sum(p.numel() for p in module.parameters()) == layer.parameter_formula(C) == dfn_parameter_formula(C)
        assert layer.parameter_formula(C) == DynamicFilterLayer.parameter_formula(C, (C, C), 3, 3)
    assert [c.name for c in SPECS[0].bench] == ["dfn"]


def test_module_bad_inputs():
    layer = DynamicFilterLayer(2, 3, guidance_channels=3, hidden_channels=4)
    x, guide = torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)
    with pytest.raises(ValueError, match="guidance is required"):
        layer(x)
    with pytest.raises(ValueError, match=r"x must have 2 channels \(in_channels\)"):
        layer(torch.randn(1, 3, 5, 5), guide)
    with pytest.raises(ValueError, match="guidance must have the batch size and image size of x"):
        layer(x, guide[..., :4])
    with pytest.raises(ValueError, match=r"guidance must have 3 channels \(guidance_channels\)"):
        layer(x, guide[:, :2])
    with pytest.raises(TypeError, match="guidance must be a torch.Tensor"):
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
def test_gradcheck_cuda_on_gpu():
    x, f = (t.cuda().requires_grad_() for t in make(2, 3, 6, 7, 3))
    assert gradcheck(lambda a, b: dynamic_filter(a, b, kernel_size=3, dilation=2, backend="cuda"), (x, f))


@pytest.mark.gpu
def test_cuda_backend_with_cpu_tensors_on_gpu_machine():
    x, f = make(1, 2, 6, 6, 3)
    out = dynamic_filter(x, f, kernel_size=3, backend="cuda")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, reference(x, f, 3, 1), **F64)
