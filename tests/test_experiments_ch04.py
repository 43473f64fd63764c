"""Chapter 4's recorded experiments (dyncore.experiments.ch04): their registration, the stage
head of Table 4, the parameter counts the chapter states, and a reduced quick run. Freshness of
the recorded results is tested in tests/test_experiments.py."""

from __future__ import annotations

import math

import dyncore  # noqa: F401
import pytest
import torch
import torch.nn.functional as F

from dyncore.dmnet import DMHead
from dyncore.experiments import ch04, runner, verdicts
from dyncore.utils import count_parameters, set_seed


def test_the_experiments_are_registered():
    t1, t4 = runner.get_experiment("04_dmnet_table1"), runner.get_experiment("04_dmnet_table4")
    assert t1 is ch04.TABLE1 and t4 is ch04.TABLE4
    assert t1.chapter == t4.chapter == 4 and t1.threads == t4.threads == 1
    assert t1.seeds >= 5 and t4.seeds >= 5
    assert t1.variants == ("FCN (no DCM)",) + tuple(f"{kind} {ch04._set(ks)}" for ks in ch04.KERNEL_SETS
                                                    for kind in ("depthwise", "DMNet"))
    assert len(t1.variants) == 9 and t1.variants[-1] == "DMNet {1,3,5,7}"
    assert t4.variants == ch04.STAGES
    for exp in (t1, t4):
        assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 2 and exp.config["steps"] >= 100


def test_the_stage_head_on_the_final_features_is_the_dmnet_head():
    set_seed(0)
    dm = DMHead(6, 4, 3, (1, 3, 5), backend="torch").double().eval()
    stage = ch04.StageDMHead(6, 4, 3, (1, 3, 5), context_channels=6, backend="torch").double().eval()
    stage.head.load_state_dict(dm.state_dict())
    x = torch.randn(2, 6, 12, 10, dtype=torch.float64)
    torch.testing.assert_close(stage(x, [F.adaptive_avg_pool2d(x, k) for k in (1, 3, 5)]), dm(x))
    with pytest.raises(ValueError, match="contexts must hold one tensor per kernel size"):
        stage(x, [F.adaptive_avg_pool2d(x, 1)])
    with pytest.raises(ValueError, match="context_channels"):
        ch04.StageDMHead(6, 4, 3, (1,), context_channels=0)


def test_the_parameter_counts_the_chapter_states():
    config = ch04.TABLE_CONFIG
    every = [f"{kind} {ch04._set(ks)}" for ks in ch04.KERNEL_SETS for kind in ("depthwise", "DMNet")]
    counts = {v: count_parameters(ch04.make_model(v, config)) for v in every}
    w, c = config["width"], config["channels"]
    for ks in ch04.KERNEL_SETS:
        s = ch04._set(ks)
        # a generator (1x1, w -> c, with bias) against fixed depthwise filters (c k^2)
        assert counts[f"DMNet {s}"] - counts[f"depthwise {s}"] == sum(w * c + c - c * k * k for k in ks)
    assert counts["DMNet {1,3,5,7}"] - counts["depthwise {1,3,5,7}"] == 256
    assert counts["DMNet {1}"] - counts["depthwise {1}"] == 384
    channels = {"stage 1": w // 2, "stage 2": w, "stage 3": w, "stage 4": w}
    stages = {v: count_parameters(ch04.make_model(v, config, channels)) for v in ch04.STAGES}
    assert stages["stage 4"] == stages["stage 3"] == stages["stage 2"] == counts["DMNet {1,3,5,7}"]
    assert stages["stage 4"] - stages["stage 1"] == 4 * (w - w // 2) * c


def test_bad_variants_are_refused():
    with pytest.raises(ValueError, match="variant must be"):
        ch04.table1_variant("conv {1}")
    with pytest.raises(ValueError, match="stage_channels"):
        ch04.make_model("stage 2", ch04.TABLE_CONFIG)


def test_a_reduced_quick_run_of_both_experiments():
    chosen = ("FCN (no DCM)", "depthwise {1}", "DMNet {1}")
    r = runner.run("04_dmnet_table1", quick=True, seeds=2, progress=False, lr=0.01, variants=chosen)
    assert r["quick"] and r["seeds"] == [0, 1] and r["config"]["steps"] <= 20 and tuple(r["variants"]) == chosen
    for v, entry in r["variants"].items():
        assert len(entry["runs"]) == 2 and entry["parameters"] > 0 and entry["flops"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert {"miou", "val_loss", "test_loss", "iou_small", "iou_medium", "iou_large",
                    "iou_striped_disc", "iou_checked_square"} <= set(m)
            assert all(math.isfinite(m[k]) for k in ("miou", "val_loss", "test_loss"))
            assert 0 <= m["miou"] <= 1 and run["curves"]["val_loss"][-1][0] == r["config"]["steps"]
    # the recorded first losses are reproducible (what the freshness test relies on)
    assert runner.check_fresh(r) == []
    claims = ch04.table1_claims(r)
    assert [c.a for c in claims] == ["DMNet {1}"]
    assert verdicts.verdict(r, claims[0]).a[2] == 2
    r4 = runner.run("04_dmnet_table4", quick=True, seeds=2, progress=False, lr=0.01,
                    variants=("stage 1", "stage 4"), n_train=32, steps=4, eval_every=2)
    assert runner.check_fresh(r4) == []
    (claim,) = ch04.table4_claims(r4)
    assert claim.b == "stage 1" and verdicts.verdict(r4, claim).verdict in (
        verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
