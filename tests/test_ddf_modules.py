"""dyncore.ddf modules, data and experiments: filter normalization, DDF, DDFUp (plain and
guided), parameter counts against Table 1, eval determinism, gradients, bad arguments."""

import math

import pytest
import torch

import dyncore  # first: the CUDA simulator
from dyncore.experiments import ch06
from dyncore.ddf.loops import ddf_loops
from dyncore.ddf.modules import (
    DDF,
    FILTERS,
    NORMALIZATIONS,
    SPATIAL_GAIN,
    DDFUp,
    branch_parameters,
    filter_norm,
    record_filters,
    squeeze_width,
)
from dyncore.dfn import dynamic_filter
from dyncore.dmnet import context_filter

F64 = dict(rtol=1e-10, atol=1e-12)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def branch_weight_count(module: DDF) -> int:
    """Weights (no biases, no normalization scale) of the spatial and channel branches."""
    n = 0
    if module.spatial_branch is not None:
        n += module.spatial_branch.weight.numel()
    if module.channel_branch is not None:
        n += sum(m.weight.numel() for m in module.channel_branch if hasattr(m, "weight"))
    return n


# ------------------------------------------------------------------------------------------
# filter normalization (Eq. 3 as the book reads it)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("taps", [9, 25])
def test_filter_norm_standardizes_each_filter(taps):
    f = randn(3, taps, 4, 5) * 7 + 3
    z = filter_norm(f, taps, eps=0.0)
    torch.testing.assert_close(z.mean(1), torch.zeros(3, 4, 5, dtype=torch.float64), **F64)
    torch.testing.assert_close(z.std(1), torch.ones(3, 4, 5, dtype=torch.float64), **F64)  # unbiased


def test_filter_norm_ignores_affine_changes_of_a_filter():
    f = randn(2, 9, 3, 3)
    scale, shift = randn(2, 1, 3, 3, seed=1).abs() + 0.5, randn(2, 1, 3, 3, seed=2)
    torch.testing.assert_close(filter_norm(f * scale + shift, 9, eps=0.0), filter_norm(f, 9, eps=0.0), **F64)


def test_filter_norm_keeps_constant_filters_finite_and_checks_taps():
    z = filter_norm(torch.full((2, 9, 1), 4.0, dtype=torch.float64), 9)
    assert torch.isfinite(z).all() and torch.equal(z, torch.zeros_like(z))
    with pytest.raises(ValueError, match="taps"):
        filter_norm(randn(2, 8, 3), 9)


def test_ddf_module_applies_normalized_filters():
    set_seed_module = DDF(6, 3).double()
    x = randn(2, 6, 7, 9)
    with record_filters(set_seed_module) as applied:
        set_seed_module(x)
    sp, ch = applied[set_seed_module]
    torch.testing.assert_close(sp.sum(1), torch.zeros(2, 7, 9, dtype=torch.float64), rtol=0, atol=1e-10)
    std = sp.std(1) * 3 / SPATIAL_GAIN  # fixed gain 1/k
    assert torch.all((std - 1).abs() < 1e-3)
    # channel filters: standardized, then scaled by the learnable per-(channel, tap) scale (init 1)
    torch.testing.assert_close(ch.sum(-1), torch.zeros(2, 6, dtype=torch.float64), rtol=0, atol=1e-10)
    assert tuple(set_seed_module.norm.channel_scale.shape) == (1, 6, 9)


# ------------------------------------------------------------------------------------------
# DDF: shapes, Eq. 2, parameter count, ablations
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("H,W,k,stride,dilation", [(7, 9, 3, 1, 1), (9, 7, 3, 2, 1), (11, 8, 5, 2, 2),
                                                   (5, 6, 1, 1, 1), (7, 7, 3, 3, 2)])
def test_ddf_module_shapes_and_eq2(H, W, k, stride, dilation):
    torch.manual_seed(0)
    # one tap: filter normalization is refused (test_one_tap_...), so use the sigmoid there
    m = DDF(5, k, stride, dilation, normalization="filter" if k > 1 else "sigmoid").double()
    x = randn(2, 5, H, W)
    with record_filters(m) as applied:
        out = m(x)
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    assert out.shape == (2, 5, Ho, Wo)
    assert out.abs().amax() > 1e-3  # a reference of zeros would prove nothing
    sp, ch = applied[m]
    assert sp.shape == (2, k * k, Ho, Wo) and ch.shape == (2, 5, k * k)
    assert not sp.requires_grad and not ch.requires_grad
    spec = ddf_loops(x.numpy(), sp.numpy(), ch.numpy(), k, dilation, stride)
    torch.testing.assert_close(out, torch.from_numpy(spec), **F64)


@pytest.mark.parametrize("make", [lambda: DDF(4, kernel_size=1), lambda: DDF(4, 1, filters="channel"),
                                  lambda: DDFUp(4, 2, 1), lambda: DDFUp(4, 2, 1, guided=True)],
                         ids=["DDF", "DDF-channel", "DDFUp", "DDFUp-guided"])
def test_one_tap_with_filter_normalization_is_refused(make):
    # a one-tap filter standardizes to 0: the layer would output zeros and pass no gradient
    with pytest.raises(ValueError, match=r"kernel_size=1 with normalization='filter'.*'sigmoid'"):
        make()


@pytest.mark.parametrize("normalization", [n for n in NORMALIZATIONS if n != "filter"])
def test_one_tap_layers_with_other_normalizations_output_and_learn(normalization):
    torch.manual_seed(0)
    for m, shape in ((DDF(16, 1, normalization=normalization), (2, 16, 5, 6)),
                     (DDFUp(16, 2, 1, normalization=normalization), (2, 16, 10, 12))):
        m.eval()  # batch norm: its initial running statistics (train-mode statistics of 2 images are degenerate)
        x = torch.randn(2, 16, 5, 6, requires_grad=True)
        out = m(x)
        assert out.shape == shape and out.abs().amax() > 1e-3
        out.square().mean().backward()
        assert x.grad.abs().sum() > 0
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("c,k,ratio", [(16, 3, 0.2), (64, 3, 0.2), (32, 5, 0.25), (10, 3, 0.3), (256, 3, 0.2)])
def test_parameter_count_is_table_1_formula(c, k, ratio):
    m = DDF(c, k, se_ratio=ratio)
    mid = squeeze_width(c, ratio)
    assert branch_weight_count(m) == branch_parameters(c, k, ratio) == c * k * k + mid * c * (1 + k * k)
    formula = c * k * k + ratio * c * c * (1 + k * k)
    assert abs(branch_weight_count(m) - formula) <= 0.5 * c * (1 + k * k) + 1e-9  # rounding of sigma*c
    extras = sum(p.numel() for p in m.parameters()) - branch_weight_count(m)
    assert extras == k * k + mid + c * k * k + c * k * k  # biases (spatial, squeeze, excite) + alpha^ch


def test_ddf_has_fewer_parameters_than_conv_at_paper_sizes():
    for c in (64, 128, 256):
        assert branch_parameters(c, 3, 0.2) < c * c * 9


def test_spatial_only_is_dynamic_filter_and_channel_only_is_context_filter():
    x = randn(2, 4, 8, 7)
    sp = DDF(4, 3, filters="spatial").double()
    spatial, channel = sp.predict_filters(x)
    torch.testing.assert_close(sp(x), dynamic_filter(x, spatial, kernel_size=3), **F64)
    assert torch.equal(channel, torch.ones(2, 4, 9, dtype=torch.float64))
    assert not hasattr(sp.norm, "channel_scale")
    ch = DDF(4, 3, filters="channel").double()
    spatial, channel = ch.predict_filters(x)
    torch.testing.assert_close(ch(x), context_filter(x, channel.view(2, 4, 3, 3)), **F64)
    assert torch.equal(spatial, torch.ones(2, 9, 8, 7, dtype=torch.float64))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("filters", FILTERS)
def test_variants_run_backward_and_stay_finite(normalization, filters):
    torch.manual_seed(0)
    m = DDF(6, 3, 2, filters=filters, normalization=normalization)
    x = torch.randn(3, 6, 9, 8, requires_grad=True)
    with record_filters(m) as applied:
        out = m(x)
    assert out.shape == (3, 6, 5, 4) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if normalization == "sigmoid" and filters != "channel":
        assert (applied[m][0] > 0).all() and (applied[m][0] < 1).all()


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_eval_is_deterministic_and_batch_independent(normalization):
    torch.manual_seed(0)
    m = DDF(6, 3, normalization=normalization).double()
    x = randn(4, 6, 7, 7)
    m.train()
    m(x)  # update batch-norm running statistics once
    m.eval()
    a, b = m(x), m(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(m(x[1:2]), a[1:2], **F64)


def test_backends_agree_inside_the_module_forward_and_backward():
    torch.manual_seed(0)
    m = DDF(5, 3, stride=2, dilation=2).double()
    x = randn(2, 5, 9, 11)
    results = {}
    for backend in ("numba", "torch"):
        m.backend = backend
        m.zero_grad()
        xx = x.clone().requires_grad_()
        out = m(xx)
        out.mul(randn(*out.shape, seed=3)).sum().backward()
        results[backend] = [out.detach(), xx.grad] + [p.grad.clone() for p in m.parameters()]
    for a, b in zip(results["numba"], results["torch"]):
        torch.testing.assert_close(a, b, **F64)


def test_gradcheck_through_the_module():
    torch.manual_seed(0)
    m = DDF(2, 3, stride=2).double()
    torch.nn.init.normal_(m.spatial_branch.weight)  # pixel-dependent spatial filters
    x = randn(1, 2, 5, 4).requires_grad_()
    with dyncore.utils.num_threads(1):
        assert torch.autograd.gradcheck(m, (x,))


def test_spatial_branch_starts_as_a_static_filter():
    m = DDF(4, 3).double()
    assert torch.equal(m.spatial_branch.weight, torch.zeros_like(m.spatial_branch.weight))
    sp, _ = m.predict_filters(randn(2, 4, 6, 5))
    torch.testing.assert_close(sp, sp[:, :, :1, :1].expand_as(sp), **F64)  # the same filter everywhere


# ------------------------------------------------------------------------------------------
# DDF-Up
# ------------------------------------------------------------------------------------------

def ddfup_reference(module: DDFUp, x, guidance=None):
    """Each sub-pixel (i, j) of the output, from branch p = i*scale + j, via the loops spec."""
    spatial, channel = module.filters(x, guidance)
    B, C, H, W = x.shape
    s, k = module.scale, module.kernel_size
    out = torch.empty(B, C, s * H, s * W, dtype=x.dtype)
    for i in range(s):
        for j in range(s):
            p = i * s + j
            branch = ddf_loops(x.detach().numpy(), spatial[:, p].detach().numpy(),
                               channel[:, p].detach().numpy(), k, module.dilation, 1)
            out[:, :, i::s, j::s] = torch.from_numpy(branch)
    return out


@pytest.mark.parametrize("scale,k,dilation", [(2, 3, 1), (4, 3, 1), (2, 5, 2), (3, 3, 1)])
def test_ddfup_shapes_and_pixel_shuffle_order(scale, k, dilation):
    torch.manual_seed(0)
    m = DDFUp(4, scale, k, dilation=dilation).double()
    x = randn(2, 4, 5, 7)
    out = m(x)
    assert out.shape == (2, 4, 5 * scale, 7 * scale)
    torch.testing.assert_close(out, ddfup_reference(m, x), **F64)


@pytest.mark.parametrize("scale", [2, 4])
def test_guided_ddfup_shape_and_reference(scale):
    torch.manual_seed(0)
    m = DDFUp(4, scale, 3, guided=True, guidance_channels=3).double()
    x, g = randn(2, 4, 5, 6), randn(2, 3, 5 * scale, 6 * scale, seed=1)
    out = m(x, g)
    assert out.shape == (2, 4, 5 * scale, 6 * scale)
    torch.testing.assert_close(out, ddfup_reference(m, x, g), **F64)


def test_guided_spatial_filter_reads_the_guidance_at_its_own_pixel():
    torch.manual_seed(0)
    s = 2
    m = DDFUp(3, s, 3, guided=True).double()
    x, g = randn(1, 3, 4, 5), randn(1, 3, 8, 10, seed=1)
    sp0, _ = m.filters(x, g)
    g2 = g.clone()
    g2[0, :, 2 * 1 + 1, 2 * 3 + 0] += 5.0  # high-res pixel (3, 6) = sub-pixel (1, 0) of (1, 3)
    sp1, _ = m.filters(x, g2)
    changed = (sp1 - sp0).abs().sum(2) > 0  # (B, P, H, W)
    expected = torch.zeros_like(changed)
    expected[0, 1 * s + 0, 1, 3] = True
    assert torch.equal(changed, expected)


def test_ddfup_parameter_count_is_scale_squared_branch_pairs():
    c, k, s = 16, 3, 2
    m = DDFUp(c, s, k)
    mid = squeeze_width(c, 0.2)
    spatial = m.spatial_branch.weight.numel()
    channel = m.squeeze.weight.numel() + m.excite.weight.numel()
    assert spatial == s * s * c * k * k
    assert channel == s * s * mid * c * (1 + k * k)
    assert spatial + channel == s * s * branch_parameters(c, k)


@pytest.mark.parametrize("guided", [False, True])
def test_ddfup_gradients_flow_to_every_parameter(guided):
    torch.manual_seed(0)
    m = DDFUp(4, 2, 3, guided=guided)
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    g = torch.randn(2, 4, 10, 12, requires_grad=True) if guided else None
    out = m(x, g) if guided else m(x)
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
    if guided:
        assert g.grad.abs().sum() > 0


def test_ddfup_backends_agree():
    torch.manual_seed(0)
    m = DDFUp(3, 2, 3, guided=True).double()
    x, g = randn(1, 3, 4, 5), randn(1, 3, 8, 10, seed=1)
    outs = {}
    for backend in ("numba", "torch", "loops"):
        m.backend = backend
        with pytest.warns(UserWarning) if backend == "loops" else _nullcontext():
            outs[backend] = m(x, g)
    torch.testing.assert_close(outs["numba"], outs["torch"], **F64)
    torch.testing.assert_close(outs["loops"], outs["torch"], **F64)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------------------------------
# bad arguments: each error names the argument
# ------------------------------------------------------------------------------------------

BAD_CONSTRUCTION = [
    (lambda: DDF(0), ValueError, "channels"),
    (lambda: DDF(4.0), TypeError, "channels"),
    (lambda: DDF(4, 2), ValueError, "kernel_size"),
    (lambda: DDF(4, 3, stride=0), ValueError, "stride"),
    (lambda: DDF(4, 3, dilation=-1), ValueError, "dilation"),
    (lambda: DDF(4, se_ratio=0), ValueError, "se_ratio"),
    (lambda: DDF(4, se_ratio="0.2"), TypeError, "se_ratio"),
    (lambda: DDF(4, filters="depth"), ValueError, "filters"),
    (lambda: DDF(4, normalization="layer"), ValueError, "normalization"),
    (lambda: DDF(4, backend="fortran"), ValueError, "backend"),
    (lambda: DDFUp(4, scale=0), ValueError, "scale"),
    (lambda: DDFUp(4, kernel_size=4), ValueError, "kernel_size"),
    (lambda: DDFUp(4, guided=1), TypeError, "guided"),
    (lambda: DDFUp(4, guidance_channels=3), ValueError, "guidance_channels"),
    (lambda: DDFUp(4, guided=True, guidance_channels=0), ValueError, "guidance_channels"),
]


@pytest.mark.parametrize("make,error,name", BAD_CONSTRUCTION, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD_CONSTRUCTION)])
def test_bad_construction_names_the_argument(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_bad_inputs_name_the_argument():
    m, up, gup = DDF(4), DDFUp(4), DDFUp(4, guided=True, guidance_channels=3)
    x = torch.randn(2, 4, 5, 6)
    cases = [
        (lambda: m(torch.randn(2, 3, 5, 6)), ValueError, "x must have channels = 4"),
        (lambda: m(torch.randn(4, 5, 6)), ValueError, "x must be a 4-D"),
        (lambda: m(x.double()), TypeError, "dtype"),
        (lambda: m(x.long()), TypeError, "x must be float32"),
        (lambda: m([1, 2]), TypeError, "x must be a torch.Tensor"),
        (lambda: m(torch.randn(2, 4, 0, 6)), ValueError, "x must have at least one"),
        (lambda: up(x, torch.randn(2, 4, 10, 12)), ValueError, "guidance was given"),
        (lambda: gup(x), ValueError, "guidance is required"),
        (lambda: gup(x, torch.randn(2, 3, 10, 11)), ValueError, "guidance must have shape"),
        (lambda: gup(x, torch.randn(2, 4, 10, 12)), ValueError, "guidance must have shape"),
        (lambda: gup(x, torch.randn(2, 3, 10, 12).double()), TypeError, "dtype"),
        (lambda: gup(x, torch.randn(3, 10, 12)), ValueError, "guidance must be a 4-D"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


# ------------------------------------------------------------------------------------------
# data and experiments (quick)
# ------------------------------------------------------------------------------------------

def test_digits_are_seeded_and_shaped():
    (tr, te), (tr2, _) = ch06.make_digits(seed=3), ch06.make_digits(seed=3)
    assert tr.images.shape[1:] == (1, 16, 16) and len(tr.images) + len(te.images) == 1797
    assert torch.equal(tr.images, tr2.images) and set(te.labels.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="size"):
        ch06.make_digits(size=12)


@pytest.fixture(scope="module")
def scene():
    return ch06.load_motorcycle()


def test_motorcycle_has_no_inf_and_marks_occlusions(scene):
    assert torch.isfinite(scene.depth).all() and scene.depth.min() >= 0 and scene.depth.max() == 1
    invalid = ~scene.valid
    assert 0.02 < invalid.float().mean() < 0.15
    assert scene.rgb.shape[0] == 3 and scene.rgb.shape[1:] == scene.depth.shape[1:]


def test_crops_and_test_region_shapes_and_nearest_downsampling(scene):
    batch = ch06.depth_crops(scene, 6, crop=32, scale=4, seed=1, flip=False)
    assert batch.low.shape == (6, 1, 8, 8)
    torch.testing.assert_close(batch.low, batch.depth[:, :, 2::4, 2::4])
    test = ch06.depth_test_region(scene, 8)
    assert test.low.shape == (1, 1, 60, 30) and test.depth.shape == (1, 1, 480, 240)
    with pytest.raises(ValueError, match="crop"):
        ch06.depth_crops(scene, 2, crop=30, scale=4)


def test_crop_positions_are_left_of_the_test_column(scene, monkeypatch):
    seen = []
    real = torch.randint

    def spy(low, high, size, generator=None):
        seen.append(high)
        return real(low, high, size, generator=generator)

    monkeypatch.setattr(ch06.torch, "randint", spy)
    ch06.depth_crops(scene, 4, crop=64, scale=8)
    assert seen[1] + 64 - 1 <= ch06.TEST_COLUMN  # largest x0 + crop <= TEST_COLUMN


def test_planar_scenes_are_seeded_valid_and_edges_are_colour_edges():
    a, b = ch06.make_planar_scenes(3, 32, 4, seed=2), ch06.make_planar_scenes(3, 32, 4, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.rgb.shape == (3, 3, 32, 32) and a.low.shape == (3, 1, 8, 8) and a.valid.all()
    assert a.depth.min() >= 0 and a.depth.max() <= 1
    depth_edge = (a.depth[..., 1:] - a.depth[..., :-1]).abs() > 0.05
    colour_edge = (a.rgb[..., 1:] - a.rgb[..., :-1]).abs().amax(1, keepdim=True) > 0.1
    assert (colour_edge[depth_edge]).float().mean() > 0.7  # most depth edges are colour edges
    with pytest.raises(ValueError, match="size"):
        ch06.make_planar_scenes(2, 30, 4)


def test_depth_batch_mixes_real_and_generated(scene):
    batch = ch06.depth_batch(scene, 8, 32, 4, seed=0, planar_fraction=0.5)
    assert batch.rgb.shape == (8, 3, 32, 32) and batch.low.shape == (8, 1, 8, 8)
    assert batch.valid[4:].all()  # generated scenes have no occlusions
    torch.testing.assert_close(batch.low, batch.depth[:, :, 2::4, 2::4])


def test_bicubic_of_the_downsampled_depth_beats_nothing(scene):
    test = ch06.depth_test_region(scene, 4)
    err = ch06.rmse(ch06.upsample_bicubic(test.low, 4), test.depth, test.valid)
    assert 0 < err < ch06.rmse(torch.zeros_like(test.depth), test.depth, test.valid)


@pytest.mark.parametrize("layer", ch06.LAYERS)
def test_tiny_resnet_shapes(layer):
    torch.manual_seed(0)
    model = ch06.TinyResNet(layer)
    assert model(torch.randn(3, 1, 20, 20)).shape == (3, 10)
    assert ch06.count_flops(model, torch.randn(1, 1, 20, 20)) > 0


def test_ddf_resnet_is_lighter_than_the_base():
    conv, dd = ch06.TinyResNet("conv"), ch06.TinyResNet("ddf")
    assert ch06.count_parameters(dd) < ch06.count_parameters(conv)
    x = torch.randn(1, 1, 20, 20)
    assert ch06.count_flops(dd, x) < ch06.count_flops(conv, x)
    assert all(isinstance(layer, DDF) for layer in dd.spatial_layers())


def test_train_classifier_runs_and_lowers_nothing_to_nan():
    tr, te = ch06.make_digits()
    torch.manual_seed(0)
    model = ch06.TinyResNet("ddf")
    history = ch06.train_classifier(model, tr, steps=3, batch_size=8)
    assert len(history["losses"]) == 3 and all(math.isfinite(v) for v in history["losses"])
    assert 0 <= ch06.accuracy(model, ch06.DigitData(te.images[:20], te.labels[:20])) <= 1


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("decoder", ch06.DECODERS)
def test_depth_net_shapes_and_training_step(scene, scale, decoder):
    torch.manual_seed(0)
    net = ch06.DepthUpNet(scale, decoder, channels=8)
    out = net(torch.rand(2, 1, 4, 5), torch.rand(2, 3, 4 * scale, 5 * scale))
    assert out.shape == (2, 1, 4 * scale, 5 * scale)
    history = ch06.train_depth(net, scene, steps=2, batch_size=2, crop=32)
    assert all(math.isfinite(v) for v in history["losses"])


@pytest.mark.parametrize("decoder", ch06.DECODERS)
def test_depth_net_starts_as_bicubic_upsampling(decoder):
    """The residual head starts at zero, so an untrained network is bicubic interpolation; one
    training step moves it away."""
    torch.manual_seed(0)
    net = ch06.DepthUpNet(4, decoder, channels=8)
    low, rgb = torch.rand(2, 1, 4, 5), torch.rand(2, 3, 16, 20)
    torch.testing.assert_close(net(low, rgb), ch06.upsample_bicubic(low, 4), rtol=0, atol=0)
    loss = (net(low, rgb) - torch.rand(2, 1, 16, 20)).square().mean()
    loss.backward()
    assert net.head.weight.grad.abs().sum() > 0  # a zero head still learns


def test_depth_net_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        ch06.DepthUpNet(6)
    with pytest.raises(ValueError, match="decoder"):
        ch06.DepthUpNet(4, "pac")
    with pytest.raises(ValueError, match="layer"):
        ch06.TinyResNet("deform")


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_factory_kwargs_reach_every_parameter_and_buffer(normalization):
    modules = (DDF(4, normalization=normalization, dtype=torch.float64),
               DDFUp(4, normalization=normalization, dtype=torch.float64),
               DDFUp(4, guided=True, guidance_channels=3, normalization=normalization, dtype=torch.float64))
    for m in modules:
        assert {t.dtype for t in [*m.parameters(), *m.buffers()] if t.is_floating_point()} == {torch.float64}
    m = DDFUp(4, normalization=normalization, device="meta")
    assert {t.device.type for t in [*m.parameters(), *m.buffers()]} == {"meta"}


@pytest.mark.parametrize("make", [lambda: DDF(4, 3, 2), lambda: DDFUp(4, 2)], ids=["DDF", "DDFUp"])
def test_record_filters_gives_the_applied_filters_and_the_layer_keeps_none(make):
    layer = make().double()
    net = torch.nn.Sequential(layer, torch.nn.ReLU())
    x = randn(2, 4, 7, 6)
    with record_filters(net) as applied:
        net(x)
    sp, ch = applied[layer]
    want_sp, want_ch = layer.predict_filters(x) if isinstance(layer, DDF) else layer.filters(x)
    torch.testing.assert_close(sp, want_sp.detach(), **F64)
    torch.testing.assert_close(ch, want_ch.detach(), **F64)
    assert not sp.requires_grad and not ch.requires_grad
    net(x)  # outside the block nothing is recorded, and the layer keeps no tensor of a call
    assert list(applied) == [layer] and layer._recorders == []
    assert not any(isinstance(v, torch.Tensor) for v in vars(layer).values())
