"""dyncore.experiments.ch07 (Chapter 7's comparison): every layer in the slot builds, runs forward
and backward, has its paper's parameter count; the flop counter, the ERF, the table and the
training loop; bad input. The layers are read from the operators' specs."""

import math

import pytest
import torch

import dyncore  # noqa: F401  (first: the CUDA simulator)
from dyncore.experiments import ch07 as S
from dyncore.experiments import ch07_report as R
from dyncore.experiments.ch05 import make_stripes
from dyncore.utils import count_flops, count_parameters

LAYERS = S.layer_names()


@pytest.fixture(scope="module")
def tiny():
    return make_stripes(8, size=16, cell=8, tile=4, coarse_period=8, seed=3)


def test_the_layers_come_from_the_specs_in_chapter_order():
    """Every spec with a layer fills the slot; the baseline (the plain conv) comes first. Once every
    method folder has its spec, these are the six layers of the book, in this order."""
    book = ("conv", "DFN", "LS-DFN", "DCM", "PAD", "DDF")
    assert LAYERS[0] == S.baseline() == "conv"
    assert [n for n in book if n in LAYERS] == list(LAYERS)
    assert set(S.global_context()) <= {"DCM", "DDF"} and set(S.global_context()) <= set(LAYERS)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_forward_backward_same_size(name):
    torch.manual_seed(0)
    layer = S.make_layer(name, 4)
    x = torch.randn(2, 4, 7, 9, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", LAYERS)
def test_model_forward_backward_with_each_backend(name, tiny):
    model = S.make_model(name, channels=4)
    for backend in ("numba", "torch"):
        model.set_backend(backend)
        model.zero_grad()
        out = model(tiny.images[:2])
        assert out.shape == (2, 2, 16, 16)
        torch.nn.functional.cross_entropy(out, tiny.labels[:2]).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "conv"])
def test_backends_agree_on_the_whole_model_float64(name, tiny):
    model = S.make_model(name, channels=4).double().eval()
    x = tiny.images[:2].double()
    out = {be: model.set_backend(be)(x) for be in ("numba", "torch")}
    torch.testing.assert_close(out["numba"], out["torch"], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("channels", [4, 8, 10])
def test_parameter_count_matches_the_papers_formula(name, channels):
    assert count_parameters(S.make_layer(name, channels)) == S.parameter_formula(name, channels)


def test_the_rest_of_the_network_is_shared():
    """Same seed, same stem and head weights: the models differ only in the slot."""
    a, b = S.make_model("conv"), S.make_model("PAD")
    for part in ("stem", "post"):
        for pa, pb in zip(getattr(a, part).parameters(), getattr(b, part).parameters()):
            torch.testing.assert_close(pa, pb)
    assert count_parameters(a) - count_parameters(a.layer) == count_parameters(b) - count_parameters(b.layer)


def test_flop_counter_sees_convolutions_and_optionally_elementwise_work():
    x = torch.randn(1, 1, 16, 16)
    conv = S.make_model("conv")
    # stem 1->8 and 8->8, the slot's 8->8, the head's 8->8 (3x3), the 1x1 classifier: 2 flops per MAC
    macs = 16 * 16 * (1 * 8 * 9 + 3 * 8 * 8 * 9 + 8 * 2)
    assert count_flops(conv, x) == 2 * macs
    dfn = S.make_model("DFN").set_backend("torch")
    # the DFN's own product-and-sum is invisible to the default counter
    assert count_flops(dfn, x, elementwise=True) > count_flops(dfn, x)


def test_erf_support_is_the_theoretical_field_or_the_whole_image():
    for name in LAYERS:
        model = S.make_model(name).double()
        e = S.measure_erf(model, size=21, samples=2)
        assert math.isclose(float(e["erf"].sum()), 1.0, rel_tol=1e-5)
        local = min(21, S.theoretical_receptive_field(name))
        if name == "DCM":  # pooled context -> 1x1 conv -> filters: every pixel moves every output
            assert e["support"] == 21
        elif name == "DDF":  # the same through GAP -> Linear -> ReLU -> Linear, unless both
            assert e["support"] in (local, 21)  # squeeze units are off for every input (dead ReLUs)
        else:
            assert e["support"] == local, name
        assert e["support"] >= S.theoretical_receptive_field("conv")


def test_ddf_squeeze_units_are_counted(tiny):
    from dyncore.ddf.spec import DDF_SE_RATIO

    model = S.make_model("DDF")
    active, total = S.ddf_active_squeeze_units(model, tiny)
    assert total == max(1, round(DDF_SE_RATIO * 8)) and 0 <= active <= total
    with torch.no_grad():
        model.layer.channel_branch[0].bias.fill_(-1e3)  # every unit off for every input
    assert S.ddf_active_squeeze_units(model, tiny) == (0, total)
    assert S.ddf_active_squeeze_units(S.make_model("conv"), tiny) is None


def test_training_lowers_the_loss_and_evaluation_scores(tiny):
    model = S.make_model("conv", channels=4)
    history = S.train_model(model, tiny, steps=30, batch_size=4, lr=2e-2, progress=False)
    losses = history["losses"]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    scores = S.evaluate_model(model, tiny)
    assert set(scores) == {"miou", "accuracy", "fine", "coarse"}
    assert all(0 <= v <= 1 for v in scores.values())


def test_the_table_has_every_column(tiny):
    names = ("conv", "PAD")
    models = {n: S.make_model(n, channels=4) for n in names}
    histories = {n: S.train_model(m, tiny, steps=2, batch_size=2, progress=False) for n, m in models.items()}
    table, extras = S.measure(models, histories, tiny, size=16, batch=2, min_run_time=0.01)
    assert [r["layer"] for r in table.rows] == list(names)
    for r in table.rows:
        assert set(r) == set(table.columns)
    assert table.row("conv")["layer_time"] == 1.0 and table.row("conv")["model_time"] == 1.0
    assert table.row("PAD")["backend"] in S.CPU_BACKENDS
    text = str(table)
    for _, header, _ in R.COLUMNS:
        assert header in text and header in table._repr_html_()
    assert set(extras["erf"]) == set(names)
    import matplotlib.pyplot as plt
    fig = R.plot_comparison(table, extras["erf"], x="layer_params", baseline_range=(0.4, 0.6))
    assert len(fig.axes) == 2 + len(names)
    plt.close(fig)
    fig = R.plot_errors(models, tiny, index=1)
    assert len(fig.axes) == 2 + len(names)
    plt.close(fig)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: S.make_layer("ResNet"), ValueError, "name"),
    (lambda: S.make_layer(3), TypeError, "name"),
    (lambda: S.make_layer("conv", 0), ValueError, "channels"),
    (lambda: S.make_model("PAD", channels=-1), ValueError, "channels"),
    (lambda: S.parameter_formula("nope"), ValueError, "name"),
    (lambda: S.train_model(S.make_model("conv"), make_stripes(2, size=16, cell=8), 0), ValueError, "steps"),
    (lambda: S.side_by_side(layers=("PAD",), steps=1), ValueError, "conv"),
    (lambda: S.latency({"conv": S.make_model("conv")}, torch.zeros(1, 1, 8, 8), part="head"), ValueError, "part"),
    (lambda: R.plot_comparison(R.ComparisonTable([]), x="colour"), ValueError, "x"),
    (lambda: R.plot_comparison(R.ComparisonTable([]), y="loss"), ValueError, "y"),
    (lambda: R.plot_errors({}, make_stripes(2, size=16, cell=8), index=2), ValueError, "index"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
