"""Chapter 6's recorded experiments (dyncore.experiments.ch06: 06_ddf_resnet, 06_ddf_stability):
their registration, the matched parameter counts the chapter states, the instability measures,
the claims, and a reduced quick run. Freshness of the recorded results is tested in
tests/test_experiments.py."""

from __future__ import annotations

import json
import math

import dyncore  # noqa: F401
import pytest

from dyncore.experiments import ch06, runner, verdicts
from dyncore.utils import count_parameters


def test_the_experiments_are_registered():
    exp = runner.get_experiment("06_ddf_resnet")
    assert exp is ch06.RESNET and exp.chapter == 6 and exp.threads == 1 and exp.seeds >= 5
    assert exp.variants == tuple(ch06.CLASSIFIERS) and {"conv", "depthwise", "DDF"} <= set(exp.variants)
    assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 3 and exp.config["optimizer"] == "sgd"
    stab = runner.get_experiment("06_ddf_stability")
    assert stab is ch06.STABILITY and stab.lr_grid == () and stab.seeds >= 5
    assert stab.config["lr"] >= 5 * 0.1  # well above the paper's learning rate
    assert set(stab.variants) <= set(ch06.CLASSIFIERS)


def test_the_baselines_are_matched_in_parameters():
    counts = {v: count_parameters(ch06.make_classifier(v)) for v in ch06.CLASSIFIERS}
    ddf = counts["DDF"]
    assert ddf == count_parameters(ch06.TinyResNet("ddf"))
    for v in ("conv", "depthwise"):
        assert abs(counts[v] - ddf) / ddf < 0.01, (v, counts[v], ddf)
    # the widths are the best on a grid of 0.01
    assert ch06.CLASSIFIERS["conv"][2] == ch06.matched_width("conv", ddf)
    assert ch06.CLASSIFIERS["depthwise"][2] == ch06.matched_width("dwconv", ddf)
    # width 1 is the chapter's original network
    assert count_parameters(ch06.TinyResNet("conv", width=1.0)) == count_parameters(ch06.TinyResNet("conv"))
    with pytest.raises(ValueError, match="width"):
        ch06.TinyResNet("conv", width=0)
    with pytest.raises(ValueError, match="variant must be"):
        ch06.make_classifier("ResNet")


def test_the_instability_measures():
    m = ch06.instability([2.3, 2.0, 1.0, 0.5, float("nan"), 0.4, 2.5, 0.3, 0.2, 0.1], [1.0, 10.0, float("inf")] + [1.0] * 7)
    assert m == {"nonfinite_steps": 1, "relapses": 2, "log10_max_grad_norm": 1.0}  # nan and 2.5 after step 2
    assert ch06.instability([0.1] * 10, [0.5] * 10)["relapses"] == 0


def test_bad_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer must be"):
        ch06._optimizer({"optimizer": "rmsprop", "weight_decay": 0.0})


@pytest.fixture(scope="module")
def quick_result():
    return runner.run("06_ddf_resnet", quick=True, seeds=2, progress=False, lr=0.1, steps=6, eval_every=3)


def test_a_reduced_quick_run(quick_result):
    r = quick_result
    assert r["quick"] and r["seeds"] == [0, 1] and r["config"]["steps"] == 6
    assert tuple(r["variants"]) == ch06.RESNET.variants
    for v, entry in r["variants"].items():
        assert entry["parameters"] == count_parameters(ch06.make_classifier(v)) and entry["flops"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert {"accuracy", "val_loss", "test_loss", "relapses", "log10_max_grad_norm"} <= set(m)
            assert all(math.isfinite(x) for x in m.values()) and 0 <= m["accuracy"] <= 1
            assert ("largest_tap" in m) == (ch06.CLASSIFIERS[v][0] == "ddf")
            assert run["curves"]["val_loss"][-1][0] == r["config"]["steps"]
    # the recorded first losses are reproducible (what the freshness test relies on)
    assert runner.check_fresh(r, variants=["conv", "DDF"]) == []


def test_the_claims_and_a_changed_run_is_caught(quick_result):
    for claim in ch06.claims(quick_result):
        assert verdicts.verdict(quick_result, claim).verdict in (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
    for claim in ch06.STABILITY_CLAIMS:
        assert set((claim.a, claim.b)) <= set(ch06.STABILITY.variants)
        assert verdicts.verdict(quick_result, claim).a[2] == 2
    stale = json.loads(json.dumps(quick_result))
    stale["variants"]["DDF"]["lr"] = 0.3
    problems = runner.check_fresh(stale, variants=["DDF"])
    assert len(problems) == 1 and "DDF" in problems[0]


def test_the_squeeze_experiment_is_the_resnet_ddf_at_three_ratios():
    exp = runner.get_experiment("06_ddf_squeeze")
    assert exp is ch06.SQUEEZE and exp.seeds >= 5 and exp.threads == 1
    assert {k: v for k, v in exp.config.items() if k != "lr"} == {k: v for k, v in ch06.RESNET.config.items() if k != "lr"}
    counts = [count_parameters(ch06.make_classifier(v)) for v in exp.variants]
    assert counts == sorted(counts) and len(set(counts)) == 3  # a larger ratio, more parameters
    # ratio 0.2 is the DDF-ResNet of 06_ddf_resnet, parameter for parameter
    a, b = ch06.make_classifier("DDF, squeeze 0.2"), ch06.make_classifier("DDF")
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    with pytest.raises(ValueError, match="se_ratio"):
        ch06.TinyResNet("ddf", ddf_options={"se_ratio": 0})


def test_the_depth_networks_are_matched_in_parameters_and_check_their_input():
    for scale in ch06.DEPTH_SCALES:
        exp = runner.get_experiment(f"06_ddfup_depth_{scale}x")
        assert exp is ch06.DEPTH[scale] and exp.seeds >= 5 and len(exp.lr_grid) >= 2
        assert exp.variants == tuple(ch06.depth_variant(n, scale) for n in ch06.DEPTH_NETS)
        assert exp.config["scale"] == scale and f"by {scale}." in exp.description
        counts = {n: count_parameters(ch06.make_depth_net(ch06.depth_variant(n, scale))) for n in ch06.DEPTH_NETS}
        ddf = counts["DDF-Up-Net"]
        for n, c in counts.items():
            assert abs(c - ddf) / ddf < 0.05, (scale, n, c, ddf)
    with pytest.raises(ValueError, match="variant must be"):
        ch06.make_depth_net("DDF-Up-Net, 3x")
    with pytest.raises(ValueError, match="decoder must be"):
        ch06.DepthUpNet(4, "carafe")
    with pytest.raises(ValueError, match="channels"):
        ch06.DepthUpNet(4, "pixel", channels=0)
    with pytest.raises(ValueError, match="kernel_size"):
        ch06.PixelFilterUp(8, kernel_size=2)


def test_the_pixel_filter_upsampler_is_dynamic_filter_after_bilinear():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    up = ch06.PixelFilterUp(3, 3, backend="torch").double()
    h, guide = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(2, 3, 10, 12, dtype=torch.float64)
    filters = up.filters(guide)
    torch.testing.assert_close(filters.sum(1), torch.ones(2, 10, 12, dtype=torch.float64))
    assert (filters >= 0).all()
    bil = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
    # the equation, by shifts of the zero-padded upsampled image
    padded = F.pad(bil, (1, 1, 1, 1))
    want = sum(filters[:, t:t + 1] * padded[:, :, t // 3:t // 3 + 10, t % 3:t % 3 + 12] for t in range(9))
    torch.testing.assert_close(up(h, guide), want)
    assert torch.autograd.gradcheck(lambda a, g: up(a, g), (h[:1, :2, :3, :3].clone().requires_grad_(),
                                                             guide[:1, :, :6, :6].clone().requires_grad_()))


@pytest.fixture(scope="module")
def quick_depth():
    return runner.run("06_ddfup_depth_4x", quick=True, seeds=2, progress=False, lr=3e-3, steps=4, eval_every=2)


def test_a_reduced_depth_run_and_its_claims(quick_depth):
    r = quick_depth
    for v, entry in r["variants"].items():
        for run in entry["runs"]:
            m = run["metrics"]
            assert {"rmse_real", "rmse_edges", "rmse_generated", "bicubic_real", "bicubic_edges",
                    "bicubic_generated", "val_loss"} <= set(m)
            assert all(math.isfinite(x) and x > 0 for x in m.values())
            assert m["rmse_edges"] > m["rmse_real"] and m["bicubic_edges"] > m["bicubic_real"]
    # bicubic's numbers do not depend on the network or the seed
    assert len({run["metrics"]["bicubic_real"] for e in r["variants"].values() for run in e["runs"]}) == 1
    both = ch06.with_bicubic(r)
    assert "bicubic, 4x" in both["variants"] and "bicubic, 8x" not in both["variants"]
    claims = ch06.depth_claims(both)
    assert len(claims) == 3 and len(ch06.depth_claims(r)) == 2  # without with_bicubic, no bicubic claim
    for claim in claims:
        assert verdicts.verdict(both, claim).verdict in (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
    # the scales' runs merge into one result, which the chapter renders
    merged = ch06.merge_depth([r, dict(r, name="06_ddfup_depth_8x", config=dict(r["config"], scale=8))])
    assert merged["variants"] == r["variants"] and set(merged["by_scale"]) == {4, 8}
    with pytest.raises(ValueError, match="results must be runs of"):
        ch06.merge_depth([dict(r, name="06_ddf_resnet")])
    with pytest.raises(ValueError, match="results must be runs of"):
        ch06.merge_depth([])
    assert runner.check_fresh(r, variants=["DDF-Up-Net, 4x"]) == []
    stale = json.loads(json.dumps(r))
    stale["variants"]["DDF-Up-Net, 4x"]["lr"] = 1e-2
    assert len(runner.check_fresh(stale, variants=["DDF-Up-Net, 4x"])) == 1
