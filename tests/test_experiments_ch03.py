"""Chapter 3's recorded experiment (dyncore.experiments.ch03, 03_lsdfn_flow): its registration,
the paper's placement and sampling, the parameter-matched baseline, the max-over-samples block,
the flow masks, and a reduced quick run. Freshness of the recorded result is tested in
tests/test_experiments.py."""

from __future__ import annotations

import math

import dyncore  # noqa: F401
import pytest
import torch

from dyncore.experiments import ch03, runner, verdicts
from dyncore.lsdfn import LSDFN, large_sampling_filter
from dyncore.utils import count_parameters, set_seed


def test_the_experiment_is_registered():
    exp = runner.get_experiment("03_lsdfn_flow")
    assert exp is ch03.FLOW and exp.chapter == 3 and exp.threads == 1 and exp.seeds >= 5
    assert exp.variants == tuple(ch03.FLOW_VARIANTS) and exp.variants[0] == "conv block"
    assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 3
    c = exp.config
    # the paper's sampling: s = 7 with sample stride 2 (Sec. 4.3)
    assert c["samples"] == 7 and c["sample_stride"] == 2


def test_the_block_is_added_at_the_shallow_layer_with_a_skip():
    c = ch03.FLOW.config
    for v in ch03.FLOW_VARIANTS:
        net = ch03.make_flow_net(v, c)
        assert isinstance(net, ch03.ShallowFlowNet)
        # the block reads enc1's output (1/2 resolution) and the decoder reads the block's
        assert net.dec[0].in_channels == c["width"] // 2 + c["width"] // 2 + c["block_channels"]
    assert isinstance(ch03.make_flow_net("LS-DFN s=7", c).block, LSDFN)
    assert ch03.make_flow_net("LS-DFN s=7", c).block.samples == 7
    assert ch03.make_flow_net("LS-DFN s=3", c).block.samples == 3
    assert not ch03.make_flow_net("LS-DFN s=7, no residual", c).block.residual
    with pytest.raises(ValueError, match="variant"):
        ch03.make_flow_net("LS-DFN s=5", c)


def test_the_conv_block_is_matched_in_parameters():
    c = ch03.FLOW.config
    conv = count_parameters(ch03.make_flow_net("conv block", c).block)
    lsdfn = count_parameters(ch03.make_flow_net("LS-DFN s=7", c).block)
    assert (conv, lsdfn) == (44711, 44660)  # the numbers the experiment's description states
    assert abs(conv - lsdfn) / lsdfn < 0.002
    # and so are the whole networks (the rest is shared)
    assert count_parameters(ch03.make_flow_net("conv block", c)) - conv == \
        count_parameters(ch03.make_flow_net("LS-DFN s=7", c)) - lsdfn
    assert ch03.matched_hidden(16, 4, 16 * 9 + 1 + 4 * 9) == 1
    with pytest.raises(ValueError, match="parameters"):
        ch03.matched_hidden(16, 4, 0)


def test_the_displacements_exceed_the_conv_blocks_reach():
    c = ch03.FLOW.config
    rf = ch03.block_receptive_fields(c)
    assert rf == {"conv block": 11, "LS-DFN s=3": 19, "LS-DFN s=7": 35}
    assert c["max_displacement"] > (rf["conv block"] - 1) // 2  # beyond the plain block's reach
    assert c["max_displacement"] * math.sqrt(2) < (rf["LS-DFN s=7"] - 1) // 2  # within LS-DFN's


def test_every_sample_separately_sums_to_the_operator():
    set_seed(0)
    for k, s, g, H, W in [(3, 3, 1, 7, 6), (3, 7, 2, 9, 10), (5, 3, 2, 9, 11), (1, 5, 3, 8, 8)]:
        B, C, Co = 2, 3, 4
        x, U, V = (torch.randn(*shape, dtype=torch.float64) for shape in
                   [(B, C, H, W), (B, Co, C, H, W), (B, Co, k * k, H, W)])
        ones_pos = torch.ones(B, Co, k * k, H, W, dtype=torch.float64)
        per, inside = ch03.sample_outputs(x, U, V, k, s, g)
        assert per.shape == (B, Co, s * s, H, W) and inside.shape == (1, 1, s * s, H, W)
        ones = torch.ones(B, Co, s * s, H, W, dtype=torch.float64)
        torch.testing.assert_close(per.sum(2), large_sampling_filter(
            x, U, V, ones, ones_pos, kernel_size=k, samples=s, sample_stride=g, backend="torch"))
        for m in (0, s * s // 2 + 1):  # one sample alone: a one-hot sample attention
            a = torch.zeros_like(ones)
            a[:, :, m] = 1
            torch.testing.assert_close(per[:, :, m], large_sampling_filter(
                x, U, V, a, ones_pos, kernel_size=k, samples=s, sample_stride=g, backend="torch"))
        assert inside[0, 0, s * s // 2].all()  # the centre sample is always inside


def test_the_max_over_samples_block():
    set_seed(1)
    block = ch03.MaxSampleLSDFN(5, 3, 2, kernel_size=3, samples=3, sample_stride=2).double()
    assert count_parameters(block) == count_parameters(LSDFN(5, 3, 2, samples=3, attention=False))
    x = torch.randn(2, 5, 7, 8, dtype=torch.float64, requires_grad=True)
    out = block(x)
    xf, U, V, _, _ = block.block.dynamic_inputs(x)
    per, inside = ch03.sample_outputs(xf, U, V, 3, 3, 2)
    # in the image's interior every sample is inside: the plain max
    torch.testing.assert_close(out[:, :, 2:-2, 2:-2], per.amax(2)[:, :, 2:-2, 2:-2])
    # at a corner only the samples inside count (the centre and the three towards the image)
    torch.testing.assert_close(out[:, :, 0, 0], per[:, :, [4, 5, 7, 8], 0, 0].amax(2))
    # plain autograd through the max (no hand-written backward): checked on a tiny block
    tiny = ch03.MaxSampleLSDFN(2, 1, 1, kernel_size=3, samples=3, sample_stride=1).double()
    assert torch.autograd.gradcheck(tiny, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_flow_masks():
    flow = torch.zeros(1, 2, 6, 6)
    flow[0, 0, 2:4, 2:4] = 7.0  # a 2x2 square moving 7 px right
    masks = ch03.flow_masks(flow, large=5)
    assert masks["large"].sum() == 4 and masks["large"][0, 2:4, 2:4].all()
    # the change of flow lies between the square and its 4-neighbours (12 pixels); within 1 px
    # of those: all of the 6x6 image but its four corners
    expected = torch.ones(6, 6, dtype=torch.bool)
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = False
    assert torch.equal(masks["boundary"][0], expected)
    pred = flow.clone()
    pred[0, 0, 2, 2] = 4.0
    assert ch03.masked_epe(pred, flow, masks["large"]) == pytest.approx(3 / 4)
    assert math.isnan(ch03.masked_epe(pred, flow, torch.zeros(1, 6, 6, dtype=torch.bool)))


@pytest.fixture(scope="module")
def quick_result():
    return runner.run("03_lsdfn_flow", quick=True, seeds=2, progress=False, lr=1e-3)


def test_a_reduced_quick_run(quick_result):
    r = quick_result
    assert r["quick"] and r["seeds"] == [0, 1] and r["config"]["steps"] <= 20
    for v, entry in r["variants"].items():
        assert len(entry["runs"]) == 2 and entry["parameters"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert set(m) == {"aepe", "aepe_large", "aepe_boundary", "val_loss", "train_epe"}
            assert all(math.isfinite(x) and x > 0 for x in m.values())
            assert run["curves"]["val_loss"][-1][0] == r["config"]["steps"]
    assert runner.check_fresh(r) == []
    for claim in ch03.claims():
        assert verdicts.verdict(r, claim).verdict in (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)
