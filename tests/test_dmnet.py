"""dyncore.dmnet: what is special to DMNet (Chapter 4).

What every operator must do (every backend against the reference, forward and backward, float32,
gradcheck, non-contiguous inputs, empty batch, bad input, the GPU) is tested once for all by
``tests/test_conformance.py``, from ``dyncore/dmnet/spec.py``. Here: the taps of the loops, the
other PyTorch formulations, the groups trick, expanded filters, the modules :class:`DCM` and
:class:`DMHead` and the baseline heads, and Chapter 4's data, training and metrics
(:mod:`dyncore.experiments.ch04`).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from dyncore.dmnet import DCM, DMHead, context_filter
from dyncore.dmnet.loops import context_filter_loops
from dyncore.dmnet.modules import ASPPHead, ConcatHead, InceptionHead
from dyncore.dmnet.spec import SPECS, sample_inputs
from dyncore.dmnet.vectorized import context_filter_shifts, context_filter_unfold
from dyncore.experiments import ch04 as ex
from dyncore.experiments.metrics import confusion_matrix, iou_per_class

AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)
reference = SPECS[0].reference


def make(B, C, H, W, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, H, W, generator=g, dtype=dtype),
            torch.randn(B, C, k, k, generator=g, dtype=dtype))


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


@pytest.mark.parametrize("fn", [context_filter_unfold, context_filter_shifts])
def test_export_friendly_torch_formulations_agree(fn):
    for sample in sample_inputs():
        x, f = sample.args
        torch.testing.assert_close(fn(x, f), reference(x, f), **F64, msg=sample.desc)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_filters_expanded_over_the_batch(backend):
    """Fixed filters broadcast with expand (stride 0), as DCM(dynamic=False) does."""
    x, f = make(3, 2, 5, 6, 3)
    w = f[:1].clone().requires_grad_()
    out = context_filter(x, w.expand(3, -1, -1, -1), backend=backend)
    torch.testing.assert_close(out, F.conv2d(x, w[0][:, None], padding=1, groups=2), **F64)
    out.sum().backward()
    assert w.grad.shape == w.shape


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


def test_modules_take_device_and_dtype():
    head = DMHead(4, 2, 3, (1, 3), device="cpu", dtype=torch.float64)
    fixed = DCM(4, 2, 3, dynamic=False, dtype=torch.float64)
    for module in (head, fixed):
        assert all(p.dtype == torch.float64 for p in module.parameters())
        assert all(b.dtype == torch.float64 for b in module.buffers() if b.is_floating_point())
    assert head(torch.randn(2, 4, 5, 6, dtype=torch.float64)).dtype == torch.float64


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
    a, b = ex.make_dataset(6, seed=3), ex.make_dataset(6, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, ex.make_dataset(6, seed=4).images)
    assert a.images.shape == (6, 3, 80, 80) and a.images.dtype == torch.float32
    assert a.labels.shape == a.instances.shape == (6, 80, 80)
    sides = a.objects[:, 3]
    assert sides.max() / sides.min() >= 8
    for img, ident, cls, side, group in a.objects.tolist():
        mask = a.instances[img] == ident
        assert mask.any() and (a.labels[img][mask] == cls).all()
        _, lo, hi = ex.SIZE_GROUPS[group]
        assert lo <= side <= hi
    # every labelled pixel belongs to an object and vice versa
    assert torch.equal(a.labels > 0, a.instances > 0)


def test_dataset_subset_renumbers_objects():
    data = ex.make_dataset(5, seed=0)
    sub = data.subset(torch.tensor([3, 1]))
    assert len(sub) == 2 and torch.equal(sub.images[0], data.images[3])
    assert set(sub.objects[:, 0].tolist()) <= {0, 1}
    assert (sub.objects[:, 0] == 0).sum() == (data.objects[:, 0] == 3).sum()


def test_dataset_bad_arguments():
    with pytest.raises(ValueError, match="size must be at least"):
        ex.make_dataset(2, size=32)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        ex.make_dataset(-1)
    assert len(ex.make_dataset(0)) == 0


def test_metrics_on_known_predictions():
    data = ex.make_dataset(3, seed=1)
    perfect = ex.object_iou(data.labels, data)
    assert torch.all(perfect == 1)
    nothing = ex.object_iou(torch.zeros_like(data.labels), data)
    assert torch.all(nothing == 0)
    conf = confusion_matrix(data.labels, data.labels, len(ex.CLASSES))
    assert torch.equal(conf, torch.diag(conf.diag()))
    iou = iou_per_class(conf, absent=float("nan"))
    assert torch.all(iou[~iou.isnan()] == 1)
    # predicting everything as background: background IoU = its share, the others 0
    conf0 = confusion_matrix(torch.zeros_like(data.labels), data.labels, len(ex.CLASSES))
    iou0 = iou_per_class(conf0, absent=float("nan"))
    assert math.isclose(float(iou0[0]), float((data.labels == 0).double().mean()))
    assert torch.all(iou0[1:][~iou0[1:].isnan()] == 0)


def test_a_tiny_training_run_learns_something():
    data = ex.make_dataset(16, seed=0)
    torch.manual_seed(0)
    model = ex.Segmenter(ex.SmallBackbone(8), DMHead(8, 4, len(ex.CLASSES), (1, 3)))
    history = ex.train_segmenter(model, data.images, data.labels, epochs=3, batch_size=8, progress=False)
    assert len(history.losses) == 6 and history.losses[-1] < history.losses[0]
    assert not model.training  # left in eval mode
    scores = ex.evaluate(model, data)
    assert 0 <= scores.miou <= 1 and set(scores.size_iou) == {"small", "medium", "large"}


def test_picture_helpers():
    data = ex.make_dataset(1, seed=0)
    rgb = ex.to_rgb(data.images[0])
    assert rgb.shape == (80, 80, 3) and rgb.min() >= 0 and rgb.max() <= 1
    coloured = ex.colour_labels(data.labels[0])
    assert coloured.shape == (80, 80, 3)
    assert (coloured[data.labels[0].numpy() == 0] == ex.CLASS_COLOURS[0]).all()

