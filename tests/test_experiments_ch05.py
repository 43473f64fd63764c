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
