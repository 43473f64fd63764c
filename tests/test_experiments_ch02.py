"""Chapter 2's recorded experiment (dyncore.experiments.ch02, 02_dfn_moving_digits): its
registration, the models' parameter budgets the chapter states, the copy-last-frame baseline,
the claims, and a reduced quick run. Freshness of the recorded result is tested in
tests/test_experiments.py."""

from __future__ import annotations

import json
import math

import dyncore  # noqa: F401
import pytest
import torch
import torch.nn.functional as F

from dyncore.dfn import DynamicFilterLayer
from dyncore.experiments import ch02, runner, verdicts
from dyncore.utils import count_parameters


def test_the_experiment_is_registered():
    exp = runner.get_experiment("02_dfn_moving_digits")
    assert exp is ch02.MOVING_DIGITS and exp.chapter == 2 and exp.threads == 1 and exp.seeds >= 5
    assert exp.variants == ("copy last frame", "static CNN", "dynamic filters")
    assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 3 and exp.config["steps"] >= 3000


def test_the_parameter_budgets_are_matched():
    config = ch02.DIGITS_CONFIG
    static = count_parameters(ch02.make_predictor("static CNN", config))
    dynamic = count_parameters(ch02.make_predictor("dynamic filters", config))
    assert dynamic == DynamicFilterLayer.parameter_formula(2, (12, 12), 5, 5) == 4549
    assert static == (2 * 25 + 1) * 12 + (12 * 25 + 1) * 12 + (12 * 25 + 1) == 4525
    assert abs(static - dynamic) / dynamic < 0.01
    with pytest.raises(ValueError, match="variant must be"):
        ch02.make_predictor("copy last frame", config)


def test_a_perfect_filter_predicts_the_next_frame_exactly():
    """The data's promise: the target is the last frame moved by the velocity, so the dynamic
    predictor's form can be exact, and copying the last frame cannot."""
    data = ch02.moving_digits(8, frames=3, canvas=20, max_speed=2, seed=3)
    X, Y = data.inputs_and_target()
    vy, vx = data.velocity[:, 0, 0], data.velocity[:, 0, 1]
    moved = torch.stack([torch.roll(X[i, -1], (int(vy[i]), int(vx[i])), (0, 1)) for i in range(len(data))])
    torch.testing.assert_close(moved[:, None], Y)
    assert F.mse_loss(X[:, -1:], Y).item() > 0.01


def _short_run(**kw):
    return runner.run("02_dfn_moving_digits", quick=True, seeds=2, progress=False, lr=0.01, **kw)


@pytest.fixture(scope="module")
def quick_result():
    return _short_run()


def test_a_reduced_quick_run(quick_result):
    r = quick_result
    assert r["quick"] and r["seeds"] == [0, 1] and r["config"]["steps"] <= 20
    assert tuple(r["variants"]) == ch02.VARIANTS
    copy = r["variants"]["copy last frame"]
    assert copy["parameters"] == 0
    # no training: its error is that of each seed's own test sequences
    for run in copy["runs"]:
        X, Y, _ = ch02.test_split(r["config"], run["seed"])
        assert run["metrics"]["test_mse"] == F.mse_loss(X[:, -1:], Y).item()
    assert copy["runs"][0]["metrics"] != copy["runs"][1]["metrics"]
    for v in ch02.VARIANTS[1:]:
        entry = r["variants"][v]
        assert entry["parameters"] > 4000 and entry["flops"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert {"test_mse", "val_loss", "sharpness"} <= set(m) and all(math.isfinite(x) for x in m.values())
            assert run["curves"]["val_loss"][-1][0] == r["config"]["steps"]
            assert len(run["first_losses"]) == runner.FRESH_STEPS
    dyn = r["variants"]["dynamic filters"]["runs"][0]["metrics"]
    assert 0 <= dyn["tap_hit"] <= 1 and 1 / 25 <= dyn["peak"] <= 1
    # the recorded first losses are reproducible (what the freshness test relies on)
    assert runner.check_fresh(r) == []


def test_the_claims_and_a_changed_baseline_is_caught(quick_result):
    claims = ch02.digits_claims(quick_result)
    assert [c.metric for c in claims] == ["test_mse", "test_mse", "test_mse", "sharpness"]
    for claim in claims:
        assert verdicts.verdict(quick_result, claim).verdict in (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
    # the copy baseline's freshness compares its error on the first training batches
    stale = json.loads(json.dumps(quick_result))
    stale["config"]["batch_size"] = 16
    problems = runner.check_fresh(stale, variants=["copy last frame"])
    assert len(problems) == 1 and "copy last frame" in problems[0]
