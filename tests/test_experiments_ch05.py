"""Chapter 5's recorded experiment (dyncore.experiments.ch05): its registration, its baselines and
its quick configuration. Freshness of the recorded result is tested in tests/test_experiments.py."""

from __future__ import annotations

import math

import dyncore  # noqa: F401
import pytest
import torch

from dyncore.experiments import ch05, runner, verdicts
from dyncore.utils import count_parameters, set_seed


def test_the_experiment_is_registered():
    exp = runner.get_experiment("05_pad_dilation")
    assert exp is ch05.DILATION and exp.chapter == 5 and exp.threads == 1 and exp.seeds >= 5
    assert set(exp.variants) == {"fixed d=1", "fixed d=2", "fixed d=4", "multi-dilation average", "PAD markov"}
    assert all(v in ch05.BODIES for v in exp.variants)
    assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 2


def test_the_baselines_are_matched_in_parameters():
    counts = {v: count_parameters(ch05.make_segmenter(ch05.BODIES[v])) for v in ch05.BODIES}
    fixed = counts["fixed d=1"]
    assert counts["fixed d=2"] == counts["fixed d=4"] == counts["multi-dilation average"] == fixed
    # PAD adds its prior branch only: 3 layers of (8 -> 3) 1x1 maps with biases
    from dyncore.pad.modules import prior_branch_parameters
    for agg in ("markov", "gated", "recurrent"):
        assert counts[f"PAD {agg}"] == fixed + 3 * prior_branch_parameters(8, 3, agg)
    assert counts["PAD markov"] - fixed == 81


def test_the_multi_dilation_layer_is_the_gated_sum_with_constant_gates():
    set_seed(0)
    stack = ch05.MultiDilationStack(4, depth=2, dilations=(1, 2, 4)).double()
    x = torch.randn(2, 4, 11, 9, dtype=torch.float64)
    for i in range(2):
        torch.testing.assert_close(stack.layer(i, x), stack.as_gated(i, x, backend="torch"))
        torch.testing.assert_close(stack.layer(i, x), stack.as_gated(i, x, backend="numba"))
    # one dilation: a plain dilated convolution, i.e. the fixed stack with the same weights
    single, fixed = ch05.MultiDilationStack(4, 2, (2,)).double(), ch05.FixedDilationStack(4, 2, 2).double()
    fixed.load_state_dict(single.state_dict())
    torch.testing.assert_close(single(x), fixed(x))
    with pytest.raises(ValueError, match="dilations"):
        ch05.MultiDilationStack(4, 2, ())


def test_the_quick_configuration_trains_every_variant():
    r = runner.run("05_pad_dilation", quick=True, seeds=2, progress=False, lr=0.01)
    assert r["quick"] and r["seeds"] == [0, 1] and r["config"]["steps"] <= 100
    for v, entry in r["variants"].items():
        assert len(entry["runs"]) == 2 and entry["parameters"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert all(math.isfinite(m[k]) for k in ("miou", "accuracy", "fine_accuracy", "coarse_accuracy",
                                                     "val_loss", "test_loss"))
            assert 0 <= m["miou"] <= 1 and run["curves"]["val_loss"][-1][0] == r["config"]["steps"]
    pad = r["variants"]["PAD markov"]["runs"]
    assert 1 <= pad[0]["metrics"]["dilation_fine"] <= 4 and 1 <= pad[0]["metrics"]["dilation_coarse"] <= 4
    priors = torch.tensor(pad[0]["priors"])
    assert priors.shape == (ch05.MAP_IMAGES, 3, 3, 32, 32) and "priors" not in pad[1]
    # the recorded first losses are reproducible (what the freshness test relies on)
    assert runner.check_fresh(r) == []
    # the claims and zone claims evaluate on such a result
    for claim in ch05.claims(r):
        assert verdicts.verdict(r, claim).verdict in (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
    zones = ch05.zone_result(r)
    assert verdicts.verdict(zones, ch05.ZONE_CLAIMS[0]).a[2] == 2
    edges = ch05.zone_result(r, metrics=("dilation_edge_3", "dilation_edge_0"), names=("3 pixels", "0 pixels"))
    assert verdicts.verdict(edges, ch05.ZONE_CLAIMS[1]).b[2] == 2


# ----------------------------------------------------------------------------- 05_pad_placement

def test_the_placement_experiment_is_registered_like_the_dilation_one():
    exp = runner.get_experiment("05_pad_placement")
    assert exp is ch05.PLACEMENT and exp in ch05.EXPERIMENTS and exp.chapter == 5 and exp.seeds >= 5
    assert set(exp.variants) == {"fixed d=1", "PAD layer 1", "PAD layer 2", "PAD layer 3", "PAD markov",
                                 "PAD gated", "PAD recurrent"}
    assert all(v in ch05.BODIES for v in exp.variants)
    # same task, data, optimizer and protocol as 05_pad_dilation
    assert exp.config == ch05.DILATION.config and exp.quick == ch05.DILATION.quick
    assert exp.lr_grid == ch05.DILATION.lr_grid and exp.select_by == "val_loss" and exp.threads == 1


def test_pad_at_one_position_adds_one_prior_branch():
    from dyncore.pad.modules import prior_branch_parameters

    fixed = count_parameters(ch05.make_segmenter(("fixed", 1)))
    for k in (1, 2, 3):
        model = ch05.make_segmenter(ch05.BODIES[f"PAD layer {k}"])
        body = ch05.body_of(model)
        assert isinstance(body, ch05.PlacedPADStack) and body.pad_layers == (k,)
        assert [isinstance(layer, ch05.PADConv2d) for layer in body.layers] == [i == k for i in (1, 2, 3)]
        assert count_parameters(model) == fixed + prior_branch_parameters(8, 3, "markov")
        assert model(torch.randn(2, 1, 16, 12)).shape == (2, 2, 16, 12)
    # the parameter story the experiment records in `matched` is what count_parameters counts
    counts = {v: count_parameters(ch05.make_segmenter(ch05.BODIES[v])) for v in ch05.PLACEMENT.variants}
    assert counts["PAD layer 1"] - counts["fixed d=1"] == 27 and "+27" in ch05.PLACEMENT.matched
    for v, extra in (("PAD markov", 81), ("PAD recurrent", 108), ("PAD gated", 216)):
        assert counts[v] - counts["fixed d=1"] == extra and f"= {extra}" in ch05.PLACEMENT.matched


def test_pad_at_every_position_is_the_pad_stack():
    x = torch.randn(2, 4, 9, 11, dtype=torch.float64)
    for agg in ("markov", "gated", "recurrent"):
        set_seed(3)
        placed = ch05.PlacedPADStack(4, 3, (1, 2, 3), (1, 2), agg).double().eval()
        set_seed(3)
        stack = ch05.PADStack(4, 3, dilations=(1, 2), aggregation=agg).double().eval()
        for (n1, p1), (n2, p2) in zip(placed.named_parameters(), stack.named_parameters()):
            assert n1 == n2
            torch.testing.assert_close(p1, p2, rtol=0, atol=0)  # same initialization too
        torch.testing.assert_close(placed(x), stack(x))
    # the other positions are the vanilla network's layers: 3 x 3, dilation 1, same size out
    plain = ch05.PlacedPADStack(4, 3, (2,)).layers[0]
    assert isinstance(plain, torch.nn.Conv2d) and plain.dilation == (1, 1) and plain.padding == (1, 1)


@pytest.mark.parametrize("pad_layers, error", [((), ValueError), ((0,), ValueError), ((4,), ValueError),
                                               ((2, 2), ValueError), ((1.5,), TypeError), (2, TypeError),
                                               ("1", TypeError)])
def test_pad_at_rejects_bad_positions(pad_layers, error):
    with pytest.raises(error, match="pad_layers"):
        ch05.PlacedPADStack(4, 3, pad_layers)


def test_pad_at_rejects_bad_bodies_and_aggregations():
    with pytest.raises(ValueError, match="aggregation"):
        ch05.PlacedPADStack(4, 3, (1,), aggregation="mean")
    with pytest.raises(ValueError, match="body must be"):
        ch05.make_segmenter(("pad_at", (1,), (1, 2, 4)))  # no aggregation
    with pytest.raises(ValueError, match="body must be"):
        ch05.make_segmenter("pad")


def _synthetic(means: dict, spread: float = 0.0005, n: int = 5) -> dict:
    offsets = [spread * (i - (n - 1) / 2) for i in range(n)]
    return {"name": "05_pad_placement", "chapter": 5,
            "variants": {v: {"runs": [{"seed": i, "metrics": {"miou": m + o, "dilation_variance": 1 - m + o}}
                                      for i, o in enumerate(offsets)]}
                         for v, m in means.items()}}


def test_placement_claims_on_a_synthetic_result():
    from dyncore.experiments import ch07_report

    # a result shaped like the paper's tables (Table 1 by placement, Table 2 by aggregation)
    paper_like = _synthetic({"fixed d=1": 0.647, "PAD layer 1": 0.639, "PAD layer 2": 0.647, "PAD layer 3": 0.665,
                             "PAD markov": 0.659, "PAD gated": 0.655, "PAD recurrent": 0.653})
    found = {c.name: verdicts.verdict(paper_like, c).verdict for c in ch05.placement_claims(paper_like)}
    assert found["PAD in the deepest layer beats PAD in layer 1"] == verdicts.HOLDS
    assert found["PAD in the deepest layer alone beats PAD in all three layers"] == verdicts.HOLDS
    assert found["PAD in layer 1 beats the vanilla network"] == verdicts.FAILS
    assert found["PAD in layer 2 beats the vanilla network"] == verdicts.INCONCLUSIVE
    assert found["Markov aggregation beats gated"] == found["Markov aggregation beats recurrent"] == verdicts.HOLDS
    assert found["PAD in the deepest layer samples its dilation with less variance than in layer 1"] == verdicts.HOLDS
    assert len(found) == 13
    # the paper's figures are quoted, in its direction
    by_name = {c.name: c for c in ch05.placement_claims()}
    assert "66.5" in by_name["PAD in the deepest layer beats PAD in layer 1"].paper
    assert "63.9 (conv3 only, Table 1) < 64.7" in by_name["PAD in layer 1 beats the vanilla network"].paper
    assert "66.5 vs 65.3" in by_name["Markov aggregation beats recurrent"].paper
    assert "4.01e-06 (conv5 only) vs 1.84e-04 (conv4 only)" in by_name[
        "PAD in the deepest layer samples its dilation with less variance than in layer 2"].paper
    # Chapter 7's findings read each experiment's own claims, never the other's
    pairs = ch07_report.claims_for(paper_like)
    assert [c.name for _, c in pairs] == [c.name for c in ch05.placement_claims()]
    dilation_like = dict(_synthetic({v: 0.9 for v in ch05.DILATION.variants}), name="05_pad_dilation")
    for run in dilation_like["variants"]["PAD markov"]["runs"]:
        run["metrics"].update(dilation_fine=1.5, dilation_coarse=2.5)  # read by its derived zone claims
    dilation_claims = [c.name for _, c in ch07_report.claims_for(dilation_like)]
    assert dilation_claims[:5] == [c.name for c in ch05.claims(dilation_like)]
    assert not set(dilation_claims) & set(by_name)


def test_the_placement_pipeline_runs_end_to_end():
    r = runner.run("05_pad_placement", quick=True, seeds=2, progress=False, lr=0.01,
                   variants=["fixed d=1", "PAD layer 2"])
    pad = r["variants"]["PAD layer 2"]
    assert pad["parameters"] == r["variants"]["fixed d=1"]["parameters"] + 27
    m = pad["runs"][0]["metrics"]
    assert 1 <= m["dilation_fine_2"] <= 4 and "dilation_fine_1" not in m and m["dilation_variance"] >= 0
    assert torch.tensor(pad["runs"][0]["priors"]).shape == (ch05.MAP_IMAGES, 1, 3, 32, 32)
    assert runner.check_fresh(r) == []
