"""dyncore.dmnet: context_filter in every backend against the equation, forward and backward;
bad input; the DCM and DMHead modules; the baselines' costs; the data and the metrics."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import dyncore
from dyncore.dmnet import DCM, DMHead, context_filter
from dyncore.dmnet import data as dmdata
from dyncore.dmnet import experiment as ex
from dyncore.dmnet.heads import ASPPHead, ConcatHead, InceptionHead
from dyncore.dmnet.loops import context_filter_loops
from dyncore.dmnet.vectorized import context_filter_shifts, context_filter_unfold

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def make(B, C, H, W, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, H, W, generator=g, dtype=dtype),
            torch.randn(B, C, k, k, generator=g, dtype=dtype))


def reference(x, filters):
    """The equation through PyTorch, one image at a time: F.conv2d with groups=C."""
    k = filters.shape[-1]
    return torch.cat([F.conv2d(x[b:b + 1], filters[b][:, None], padding=(k - 1) // 2, groups=x.shape[1])
                      for b in range(x.shape[0])])


# Odd sizes, H != W, a kernel larger than the image, k = 1, one channel, one pixel.
CASES = [(2, 3, 7, 9, 3), (1, 4, 5, 6, 5), (3, 2, 8, 5, 7), (2, 1, 4, 3, 9), (1, 2, 6, 6, 1),
         (2, 3, 1, 1, 3), (1, 1, 1, 7, 5)]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_forward_matches_the_equation_float64(backend, case):
    x, f = make(*case)
    out = context_filter(x, f, backend=backend)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, reference(x, f), **F64)


def test_loops_are_the_equation_term_by_term():
    """A one-hot filter moves the image by its tap's offset, zero-filled (contract: taps)."""
    x = torch.randn(1, 1, 6, 7, dtype=torch.float64)
    k, r = 5, 2
    for t in range(k * k):
        i, j = divmod(t, k)
        f = torch.zeros(1, 1, k, k, dtype=torch.float64)
        f[0, 0, i, j] = 1
        out = torch.from_numpy(context_filter_loops(x.numpy(), f.numpy()))
        expected = torch.zeros_like(x)
        dy, dx = i - r, j - r
        for y in range(6):
            for xx in range(7):
                if 0 <= y + dy < 6 and 0 <= xx + dx < 7:
                    expected[0, 0, y, xx] = x[0, 0, y + dy, xx + dx]
        assert torch.equal(out, expected)


@pytest.mark.parametrize("backend", ALL)
def test_float32_keeps_dtype(backend):
    x, f = make(2, 3, 7, 6, 3, dtype=torch.float32)
    out = context_filter(x, f, backend=backend)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x, f), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn", [context_filter_unfold, context_filter_shifts])
def test_export_friendly_torch_formulations_agree(fn):
    for case in CASES:
        x, f = make(*case)
        torch.testing.assert_close(fn(x, f), reference(x, f), **F64)


@st.composite
def problems(draw, max_side=9, max_batch=3, max_channels=4):
    B = draw(st.integers(1, max_batch))
    C = draw(st.integers(1, max_channels))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    k = draw(st.sampled_from([1, 3, 5, 7]))
    return make(B, C, H, W, k, seed=draw(st.integers(0, 2**16)))


@given(problems())
def test_numba_and_torch_match_the_equation_forward_and_backward(problem):
    x, f = problem
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    ref = reference(xr, fr)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (xr, fr), g)
    for backend in ("numba", "torch"):
        xi, fi = x.clone().requires_grad_(), f.clone().requires_grad_()
        out = context_filter(xi, fi, backend=backend)
        torch.testing.assert_close(out, ref, **F64)
        for got, want in zip(torch.autograd.grad(out, (xi, fi), g), ref_grads):
            torch.testing.assert_close(got, want, **F64)


@given(problems(max_side=6, max_batch=2, max_channels=2))
def test_loops_and_cuda_match_the_equation(problem):
    x, f = problem
    ref = reference(x, f)
    torch.testing.assert_close(context_filter(x, f, backend="loops"), ref, **F64)
    xi, fi = x.clone().requires_grad_(), f.clone().requires_grad_()
    out = context_filter(xi, fi, backend="cuda")
    torch.testing.assert_close(out, ref, **F64)
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    g = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (xi, fi), g),
                         torch.autograd.grad(reference(xr, fr), (xr, fr), g)):
        torch.testing.assert_close(got, want, **F64)


@pytest.mark.parametrize("case", [(2, 3, 7, 6, 3), (1, 2, 5, 8, 5), (2, 1, 3, 4, 7)], ids=str)
def test_gradcheck_numba(case):
    x, f = make(*case)
    assert gradcheck(lambda a, b: context_filter(a, b, backend="numba"),
                     (x.requires_grad_(), f.requires_grad_()))


def test_gradcheck_cuda():
    x, f = make(1, 2, 5, 4, 3)
    assert gradcheck(lambda a, b: context_filter(a, b, backend="cuda"),
                     (x.requires_grad_(), f.requires_grad_()), fast_mode=True)


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_hand_written_gradients_equal_torch_autograd_of_the_torch_backend(backend):
    x, f = make(2, 3, 6, 7, 5)
    g = torch.randn_like(x)
    grads = {}
    for name in (backend, "torch"):
        xi, fi = x.clone().requires_grad_(), f.clone().requires_grad_()
        grads[name] = torch.autograd.grad(context_filter(xi, fi, backend=name), (xi, fi), g)
    for got, want in zip(grads[backend], grads["torch"]):
        torch.testing.assert_close(got, want, **F64)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_gradient_only_for_what_needs_it(backend):
    x, f = make(1, 2, 5, 5, 3)
    f.requires_grad_()
    context_filter(x, f, backend=backend).sum().backward()
    assert f.grad is not None and x.grad is None


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_double_backward_is_refused_clearly(backend):
    x, f = make(1, 1, 4, 4, 3)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="first-order only: double backward"):
        torch.autograd.grad(context_filter(x, f, backend=backend).sum(), x, create_graph=True)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    x, f = make(2, 3, 6, 5, 3)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    ft = f.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    assert not xt.is_contiguous() and not ft.is_contiguous()
    torch.testing.assert_close(context_filter(xt, ft, backend=backend), reference(x, f), **F64)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_filters_expanded_over_the_batch(backend):
    """Fixed filters broadcast with expand (stride 0), as DCM(dynamic=False) does."""
    x, f = make(3, 2, 5, 6, 3)
    w = f[:1].clone().requires_grad_()
    out = context_filter(x, w.expand(3, -1, -1, -1), backend=backend)
    torch.testing.assert_close(out, F.conv2d(x, w[0][:, None], padding=1, groups=2), **F64)
    out.sum().backward()
    assert w.grad.shape == w.shape


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    x, f = make(1, 2, 5, 5, 3)
    out = context_filter(x[:0], f[:0], backend=backend)
    assert out.shape == (0, 2, 5, 5)


def test_loops_warns_that_it_does_not_track_gradients():
    x, f = make(1, 1, 3, 3, 1)
    x.requires_grad_()
    with pytest.warns(UserWarning, match="forward pass only"):
        out = context_filter(x, f, backend="loops")
    assert not out.requires_grad


def test_auto_is_numba_on_cpu():
    x, f = make(1, 1, 4, 4, 3)
    x.requires_grad_()
    assert type(context_filter(x, f).grad_fn).__name__.startswith("ContextFilterFunction")


def test_torch_backend_is_one_grouped_convolution():
    """The groups trick: the whole batch goes through a single F.conv2d call with groups=B*C."""
    x, f = make(3, 4, 5, 5, 3)
    calls = []
    original = F.conv2d

    def spy(*args, **kwargs):
        calls.append(kwargs.get("groups"))
        return original(*args, **kwargs)

    F.conv2d = spy
    try:
        context_filter(x, f, backend="torch")
    finally:
        F.conv2d = original
    assert calls == [12]


# ---------------------------------------------------------------- bad input

def bad_calls():
    x, f = make(2, 3, 6, 6, 3)
    return [
        ("x is a list", lambda: context_filter(x.tolist(), f), TypeError, "x must be a torch.Tensor"),
        ("filters numpy", lambda: context_filter(x, f.numpy()), TypeError, "filters must be a torch.Tensor"),
        ("integer x", lambda: context_filter(x.long(), f.long()), TypeError, "x must be float32 or float64"),
        ("complex filters", lambda: context_filter(x, f.to(torch.complex128)), TypeError, "filters must be float32 or float64.*complex"),
        ("half filters", lambda: context_filter(x, f.half()), TypeError, "filters must be float32 or float64"),
        ("bool x", lambda: context_filter(x > 0, f), TypeError, "x must be float32 or float64"),
        ("dtype mismatch", lambda: context_filter(x, f.float()), TypeError, "filters has dtype torch.float32 but x"),
        ("3-D x", lambda: context_filter(x[0], f), ValueError, r"x must be a 4-D tensor \(B, C, H, W\); got a 3-D"),
        ("3-D filters", lambda: context_filter(x, f[0]), ValueError, r"filters must be a 4-D tensor \(B, C, k, k\)"),
        ("5-D filters", lambda: context_filter(x, f[None]), ValueError, "filters must be a 4-D tensor"),
        ("even k", lambda: context_filter(x, torch.zeros(2, 3, 4, 4, dtype=x.dtype)), ValueError, r"kernel size k = filters.shape\[-1\] must be an odd positive int.*got 4"),
        ("k = 2", lambda: context_filter(x, torch.zeros(2, 3, 2, 2, dtype=x.dtype)), ValueError, "kernel size.*odd.*got 2"),
        ("k = 0", lambda: context_filter(x, torch.zeros(2, 3, 0, 0, dtype=x.dtype)), ValueError, "kernel size.*odd positive.*got 0"),
        ("non-square", lambda: context_filter(x, torch.zeros(2, 3, 3, 5, dtype=x.dtype)), ValueError, "filters must be square.*3 x 5"),
        ("filters batch", lambda: context_filter(x, f[:1]), ValueError, r"filters must have shape \(B, C, k, k\) = \(2, 3, 3, 3\); got \(1, 3, 3, 3\)"),
        ("filters channels", lambda: context_filter(x, f[:, :2]), ValueError, r"filters must have shape \(B, C, k, k\) = \(2, 3, 3, 3\); got \(2, 2, 3, 3\)"),
        ("empty image", lambda: context_filter(x[:, :, :0], f), ValueError, "x must have at least one channel and one pixel"),
        ("no channels", lambda: context_filter(x[:, :0], f[:, :0]), ValueError, "x must have at least one channel"),
        ("unknown backend", lambda: context_filter(x, f, backend="cpp"), ValueError, "backend must be one of"),
        ("backend not str", lambda: context_filter(x, f, backend=None), ValueError, "backend must be one of"),
        ("mixed devices", lambda: context_filter(x, f.to("meta")), ValueError, "filters is on meta but x is on cpu"),
        ("positional backend", lambda: context_filter(x, f, "numba"), TypeError, "positional"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("backend", ALL)
def test_even_kernel_is_rejected_by_every_backend(backend):
    x, _ = make(1, 2, 5, 5, 3)
    with pytest.raises(ValueError, match="kernel size"):
        context_filter(x, torch.zeros(1, 2, 2, 2, dtype=x.dtype), backend=backend)


def test_numba_backend_with_cuda_tensors_is_refused():
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU"):
        dyncore.resolve_backend("numba", torch.device("cuda"))


# ---------------------------------------------------------------- the modules

def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("c,cp,k", [(32, 16, 1), (32, 16, 7), (2048, 512, 3), (5, 3, 5)])
def test_dcm_parameter_count_matches_the_formula(c, cp, k):
    """Weights 2*c*c' + c'^2, independent of k; plus c' generator bias and 3 BatchNorms."""
    dcm = DCM(c, cp, k)
    assert n_params(dcm) == 2 * c * cp + cp * cp + 7 * cp
    fixed = DCM(c, cp, k, dynamic=False)
    assert n_params(fixed) == c * cp + cp * k * k + cp * cp + 6 * cp


def test_dcm_generates_one_filter_per_image_and_channel_from_pooled_context():
    torch.manual_seed(0)
    dcm = DCM(6, 4, 3).double().eval()
    x = torch.randn(2, 6, 10, 11, dtype=torch.float64)
    filters = dcm.filters(x)
    assert filters.shape == (2, 4, 3, 3)
    pooled = F.adaptive_avg_pool2d(x, 3)
    expected = torch.einsum("cu,buij->bcij", dcm.generate.weight[:, :, 0, 0], pooled) \
        + dcm.generate.bias[None, :, None, None]
    torch.testing.assert_close(filters, expected, **F64)
    assert (filters[0] - filters[1]).abs().max() > 1e-3  # two images, two filters
    # the forward pass is Eq. 1: fuse(norm(context_filter(reduce(x), g_k(x))))
    h = reference(dcm.reduce(x), filters)
    torch.testing.assert_close(dcm(x), dcm.fuse(dcm.norm(h)), **F64)


def test_fixed_dcm_is_a_learned_depthwise_convolution():
    torch.manual_seed(0)
    dcm = DCM(4, 3, 5, dynamic=False).double().eval()
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    f = dcm.filters(x)
    assert f.shape == (2, 3, 5, 5) and torch.equal(f[0], f[1])
    h = F.conv2d(dcm.reduce(x), dcm.weight[:, None], padding=2, groups=3)
    torch.testing.assert_close(dcm(x), dcm.fuse(dcm.norm(h)), **F64)


@pytest.mark.parametrize("backend", ["numba", "torch", "cuda"])
def test_dcm_backends_agree_forward_and_backward(backend):
    torch.manual_seed(0)
    ref = DCM(3, 2, 3, backend="torch").double()
    mine = DCM(3, 2, 3, backend=backend).double()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 6, 5, dtype=torch.float64)
    out_ref, out = ref(x), mine(x)
    torch.testing.assert_close(out, out_ref, **F64)
    out_ref.sum().backward()
    out.sum().backward()
    for (name, p), q in zip(mine.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=f"gradient of {name}")


def test_dmhead_concatenates_input_and_dcm_outputs():
    torch.manual_seed(0)
    head = DMHead(8, 4, 5)
    assert head.kernel_sizes == (1, 3, 5, 7)
    assert [b.kernel_size for b in head.branches] == [1, 3, 5, 7]
    assert head.bottleneck[0].in_channels == 8 + 4 * 4
    out = head(torch.randn(2, 8, 9, 10))
    assert out.shape == (2, 5, 9, 10)
    assert "kernel_sizes=(1, 3, 5, 7)" in repr(head) and "dynamic=True" in repr(head)
    assert DMHead(8, 4, 5, (3,), dynamic=False).branches[0].dynamic is False


def test_dmhead_trains_a_step_with_every_autograd_backend():
    for backend in AUTOGRAD:
        torch.manual_seed(0)
        head = DMHead(4, 2, 3, (1, 3), backend=backend)
        x, y = torch.randn(2, 4, 6, 6), torch.randint(0, 3, (2, 6, 6))
        loss = F.cross_entropy(head(x), y)
        loss.backward()
        assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("make_bad,exc,match", [
    (lambda: DCM(0, 4, 3), ValueError, "in_channels must be a positive int"),
    (lambda: DCM(4, -1, 3), ValueError, "channels must be a positive int"),
    (lambda: DCM(4, 4, 4), ValueError, "kernel_size must be an odd positive int.*got 4"),
    (lambda: DCM(4, 4, 2.0), TypeError, "kernel_size must be an int"),
    (lambda: DCM(4, 4, 3, dynamic="yes"), TypeError, "dynamic must be a bool"),
    (lambda: DCM(4, 4, 3, backend="gpu"), ValueError, "backend must be one of"),
    (lambda: DMHead(4, 4, 3, kernel_sizes=(1, 2)), ValueError, r"kernel_sizes\[1\] must be an odd positive int"),
    (lambda: DMHead(4, 4, 3, kernel_sizes=()), ValueError, "kernel_sizes must name at least one"),
    (lambda: DMHead(4, 4, 3, kernel_sizes=3), TypeError, "kernel_sizes must be a sequence"),
    (lambda: DMHead(4, 4, 0), ValueError, "num_classes must be a positive int"),
    (lambda: ASPPHead(4, 4, 3, dilations=(1, 0)), ValueError, "dilation must be a positive int"),
    (lambda: InceptionHead(4, 4, 3, kernel_sizes=(2,)), ValueError, "kernel_size must be an odd"),
])
def test_module_bad_arguments(make_bad, exc, match):
    with pytest.raises(exc, match=match):
        make_bad()


def test_modules_reject_inputs_with_the_wrong_channels():
    with pytest.raises(ValueError, match=r"x must have in_channels = 4 channels; got x of shape \(1, 3, 5, 5\)"):
        DCM(4, 2, 3)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="x must have in_channels = 4"):
        DMHead(4, 2, 3)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="x must be a 4-D tensor"):
        DMHead(4, 2, 3)(torch.randn(4, 5, 5))


def test_table3_parameter_counts_are_reproduced():
    """Branches only (no bottleneck, no classifier), c = 2048, c' = 512: 9M, 26M, 14M."""
    with torch.device("meta"):
        dm = DMHead(2048, 512, 21, backend="torch")
        inc = InceptionHead(2048, 512, 21)
        aspp = ASPPHead(2048, 512, 21)
    counts = {name: n_params(h.branches) / 1e6 for name, h in [("dm", dm), ("inc", inc), ("aspp", aspp)]}
    assert round(counts["dm"]) == 9 and round(counts["inc"]) == 26 and round(counts["aspp"]) == 14


def test_fcn_head_has_no_branches():
    head = ConcatHead(8, 4, 3, [])
    assert head(torch.randn(1, 8, 5, 5)).shape == (1, 3, 5, 5)


# ---------------------------------------------------------------- data and metrics

def test_dataset_is_reproducible_and_multi_scale():
    a, b = dmdata.make_dataset(6, seed=3), dmdata.make_dataset(6, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, dmdata.make_dataset(6, seed=4).images)
    assert a.images.shape == (6, 3, 80, 80) and a.images.dtype == torch.float32
    assert a.labels.shape == a.instances.shape == (6, 80, 80)
    sides = a.objects[:, 3]
    assert sides.max() / sides.min() >= 8
    for img, ident, cls, side, group in a.objects.tolist():
        mask = a.instances[img] == ident
        assert mask.any() and (a.labels[img][mask] == cls).all()
        _, lo, hi = dmdata.SIZE_GROUPS[group]
        assert lo <= side <= hi
    # every labelled pixel belongs to an object and vice versa
    assert torch.equal(a.labels > 0, a.instances > 0)


def test_dataset_subset_renumbers_objects():
    data = dmdata.make_dataset(5, seed=0)
    sub = data.subset(torch.tensor([3, 1]))
    assert len(sub) == 2 and torch.equal(sub.images[0], data.images[3])
    assert set(sub.objects[:, 0].tolist()) <= {0, 1}
    assert (sub.objects[:, 0] == 0).sum() == (data.objects[:, 0] == 3).sum()


def test_dataset_bad_arguments():
    with pytest.raises(ValueError, match="size must be at least"):
        dmdata.make_dataset(2, size=32)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        dmdata.make_dataset(-1)
    assert len(dmdata.make_dataset(0)) == 0


def test_metrics_on_known_predictions():
    data = dmdata.make_dataset(3, seed=1)
    perfect = ex.object_iou(data.labels, data)
    assert torch.all(perfect == 1)
    nothing = ex.object_iou(torch.zeros_like(data.labels), data)
    assert torch.all(nothing == 0)
    conf = ex.confusion_matrix(data.labels, data.labels)
    assert torch.equal(conf, torch.diag(conf.diag()))
    iou = ex.iou_per_class(conf)
    assert torch.all(iou[~iou.isnan()] == 1)
    # predicting everything as background: background IoU = its share, the others 0
    conf0 = ex.confusion_matrix(torch.zeros_like(data.labels), data.labels)
    iou0 = ex.iou_per_class(conf0)
    assert math.isclose(float(iou0[0]), float((data.labels == 0).double().mean()))
    assert torch.all(iou0[1:][~iou0[1:].isnan()] == 0)


def test_a_tiny_training_run_learns_something():
    data = dmdata.make_dataset(16, seed=0)
    torch.manual_seed(0)
    model = ex.Segmenter(ex.SmallBackbone(8), DMHead(8, 4, len(dmdata.CLASSES), (1, 3)))
    history = ex.train_segmenter(model, data.images, data.labels, epochs=3, batch_size=8, progress=False)
    assert len(history.losses) == 6 and history.losses[-1] < history.losses[0]
    scores = ex.evaluate(model, data)
    assert 0 <= scores.miou <= 1 and set(scores.size_iou) == {"small", "medium", "large"}


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_the_equation(dtype):
    for case in CASES:
        x, f = (t.cuda() for t in make(*case, dtype=dtype))
        xi, fi = x.clone().requires_grad_(), f.clone().requires_grad_()
        out = context_filter(xi, fi, backend="cuda")
        xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
        ref = reference(xr, fr)
        tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out, ref, **tol)
        g = torch.randn_like(ref)
        for got, want in zip(torch.autograd.grad(out, (xi, fi), g), torch.autograd.grad(ref, (xr, fr), g)):
            torch.testing.assert_close(got, want, **tol)


@pytest.mark.gpu
def test_numba_with_cuda_tensors_raises_on_gpu():
    x, f = (t.cuda() for t in make(1, 1, 4, 4, 3))
    with pytest.raises(ValueError, match="backend='numba'"):
        context_filter(x, f, backend="numba")


def test_picture_helpers():
    data = dmdata.make_dataset(1, seed=0)
    rgb = dmdata.to_rgb(data.images[0])
    assert rgb.shape == (80, 80, 3) and rgb.min() >= 0 and rgb.max() <= 1
    coloured = dmdata.colour_labels(data.labels[0])
    assert coloured.shape == (80, 80, 3)
    assert (coloured[data.labels[0].numpy() == 0] == dmdata.CLASS_COLOURS[0]).all()

