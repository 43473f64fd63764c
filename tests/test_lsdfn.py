"""dyncore.lsdfn: what is special to LS-DFN (Chapter 3).

What every operator must do (every backend against the reference, forward and backward, float32,
gradcheck, non-contiguous inputs, empty batch, bad input, the GPU) is tested once for all by
``tests/test_conformance.py``, from ``dyncore/lsdfn/spec.py``. Here: hand-computed values and
the identities of the operator, the sample and tap offsets, the module :class:`LSDFN`, and the
data and flow helpers of Chapter 3's experiment (:mod:`dyncore.experiments.ch03`).
"""

import pytest
import torch

from dyncore.experiments.ch03 import TinyFlowNet, aepe, color_wheel, flow_to_color, flying_shapes
from dyncore.lsdfn import LSDFN, large_sampling_filter, materialize_kernels, sample_offsets, tap_offsets
from dyncore.lsdfn.spec import SPECS
from dyncore.training import train_steps

F64 = dict(rtol=1e-10, atol=1e-12)


def make(B, C, Co, H, W, k, s, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, C, H, W), (B, Co, C, H, W), (B, Co, k * k, H, W), (B, Co, s * s, H, W),
              (B, Co, k * k, H, W)]
    return [torch.randn(*shape, generator=g, dtype=dtype) for shape in shapes]


def test_the_loops_match_a_hand_computed_pixel():
    # one channel, one output channel, k=1, s=3, g=1: out = sum_m SA[m] * PA[0, ym] * (V + U) * x[ym]
    x = torch.arange(9.0, dtype=torch.float64).view(1, 1, 3, 3)
    ones = torch.ones(1, 1, 1, 3, 3, dtype=torch.float64)
    SA = torch.ones(1, 1, 9, 3, 3, dtype=torch.float64)
    out = large_sampling_filter(x, 2 * ones, ones, SA, ones, kernel_size=1, samples=3,
                                sample_stride=1, backend="loops")
    assert out[0, 0, 1, 1] == 3 * x.sum()            # centre: every sample is inside
    assert out[0, 0, 0, 0] == 3 * (0 + 1 + 3 + 4)     # corner: four samples inside


def test_offsets_are_centred_and_row_major():
    assert sample_offsets(3, 2) == [(-2, -2), (-2, 0), (-2, 2), (0, -2), (0, 0), (0, 2), (2, -2), (2, 0), (2, 2)]
    assert tap_offsets(3)[0] == (-1, -1) and tap_offsets(3)[4] == (0, 0) and tap_offsets(1) == [(0, 0)]


def test_the_spec_reference_matches_a_hand_computed_pixel():
    x = torch.arange(9.0, dtype=torch.float64).view(1, 1, 3, 3)
    ones = torch.ones(1, 1, 1, 3, 3, dtype=torch.float64)
    SA = torch.ones(1, 1, 9, 3, 3, dtype=torch.float64)
    out = SPECS[0].reference(x, 2 * ones, ones, SA, ones, kernel_size=1, samples=3, sample_stride=1)
    assert out[0, 0, 1, 1] == 3 * x.sum() and out[0, 0, 0, 0] == 3 * (0 + 1 + 3 + 4)


def test_s1_k1_is_a_pointwise_product():
    # with one sample and one tap the operator is (V + sum_u U x) weighted by both attentions
    x, U, V, SA, PA = make(2, 3, 2, 4, 5, 1, 1)
    out = large_sampling_filter(x, U, V, SA, PA, kernel_size=1, samples=1, sample_stride=1)
    want = SA[:, :, 0] * PA[:, :, 0] * (V[:, :, 0] * x.sum(1, keepdim=True) + (U * x[:, None]).sum(2))
    torch.testing.assert_close(out, want, **F64)


def test_materialized_kernels_put_U_at_the_centre_only():
    _, U, V, _, _ = make(1, 2, 3, 2, 2, 3, 1)
    Wm = materialize_kernels(U, V, 3)  # (B, H, W, k*k, Co, C)
    torch.testing.assert_close(Wm[..., 4, :, :] - Wm[..., 0, :, :],
                               (U + V[:, :, 4:5] - V[:, :, 0:1]).permute(0, 3, 4, 1, 2), **F64)
    torch.testing.assert_close(Wm[..., 0, :, 0], Wm[..., 0, :, 1], **F64)  # V shared by channels


# ---------------------------------------------------------------- the module

def test_module_branches_have_the_papers_channel_counts():
    C, Co, k, s = 8, 4, 3, 5
    block = LSDFN(6, C, Co, kernel_size=k, samples=s, sample_stride=2)
    assert block.feature_branch.out_channels == C
    assert block.kernel_branch.out_channels == Co * (C + k * k)
    assert block.attention_branch.out_channels == Co * (s * s + k * k)
    assert block.branch_channels() == {"feature": C, "kernel": Co * (C + k * k), "attention": Co * (s * s + k * k)}
    n = sum(p.numel() for p in block.parameters())
    assert n == sum((6 * 9 + 1) * c for c in block.branch_channels().values())
    no_att = LSDFN(6, C, Co, kernel_size=k, samples=s, attention=False)
    assert no_att.attention_branch is None and no_att.branch_channels()["attention"] == 0


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_module_backends_agree_forward_and_backward(attention, residual):
    torch.manual_seed(0)
    block = LSDFN(3, 4, 2, kernel_size=3, samples=3, sample_stride=2, attention=attention,
                  residual=residual).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    outs, grads = {}, {}
    for backend in ("numba", "torch"):
        block.backend = backend
        block.zero_grad()
        outs[backend] = block(x)
        outs[backend].square().sum().backward()
        grads[backend] = [p.grad.clone() for p in block.parameters()]
    torch.testing.assert_close(outs["numba"], outs["torch"], **F64)
    for a, b in zip(grads["numba"], grads["torch"]):
        torch.testing.assert_close(a, b, **F64)
    block.backend = "loops"
    with torch.no_grad():
        torch.testing.assert_close(block(x), outs["torch"].detach(), **F64)


def test_module_residual_constants():
    torch.manual_seed(0)
    C, Co, k, s = 4, 2, 3, 3
    block = LSDFN(3, C, Co, kernel_size=k, samples=s).double()
    for branch in (block.kernel_branch, block.attention_branch):
        torch.nn.init.zeros_(branch.weight)
        torch.nn.init.zeros_(branch.bias)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    feats, U, V, a_sam, a_pos = block.dynamic_inputs(x)
    torch.testing.assert_close(U, torch.full_like(U, 1 / C))            # Eq. 7: +1/C at the centre
    torch.testing.assert_close(V, torch.zeros_like(V))
    torch.testing.assert_close(a_pos, torch.ones_like(a_pos))           # +1 on A_pos
    torch.testing.assert_close(a_sam, torch.full_like(a_sam, 1 / s**2))  # +1 on A_sam, averaged
    # with zero branches the block averages, over the samples inside, the channel mean of the features
    out = block(x)
    mean = feats.mean(1)
    torch.testing.assert_close(out[0, 0, 2, 2], mean[0, 1:4, 1:4].sum() / s**2)
    plain = LSDFN(3, C, Co, kernel_size=k, samples=s, residual=False).double()
    plain.load_state_dict(block.state_dict())
    assert plain(x).abs().max() == 0  # without the constants, zero branches give zero output


def test_module_trains_a_step():
    torch.manual_seed(0)
    block = LSDFN(1, 4, 1, samples=3, sample_stride=2, backend="numba")
    x = torch.randn(4, 1, 8, 8)
    target = torch.roll(x, 2, dims=-1)
    losses = train_steps(block, lambda step: torch.nn.functional.mse_loss(block(x), target), 30,
                         lr=1e-2, progress=False)["losses"]
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=0, feature_channels=4, out_channels=2), ValueError, "in_channels"),
    (dict(in_channels=3, feature_channels=0, out_channels=2), ValueError, "feature_channels"),
    (dict(in_channels=3, feature_channels=4, out_channels=-1), ValueError, "out_channels"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, kernel_size=4), ValueError, "kernel_size"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, samples=2), ValueError, "samples"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, sample_stride=0), ValueError, "sample_stride"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, attention=1), TypeError, "attention must be a bool"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, residual="yes"), TypeError, "residual must be a bool"),
    (dict(in_channels=3, feature_channels=4, out_channels=2, backend="gpu"), ValueError, "backend must be one of"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LSDFN(**kwargs)


def test_module_takes_device_and_dtype():
    block = LSDFN(3, 4, 2, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in block.parameters())
    assert block(torch.randn(1, 3, 5, 4, dtype=torch.float64)).dtype == torch.float64


def test_module_bad_input():
    block = LSDFN(3, 4, 2)
    with pytest.raises(ValueError, match="in_channels=3"):
        block(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="4-D"):
        block(torch.randn(3, 5, 5))
    with pytest.raises(TypeError, match="float32 or float64"):
        block(torch.ones(1, 3, 5, 5, dtype=torch.int64))


# ---------------------------------------------------------------- flying shapes and flow pictures

def test_flying_shapes_ground_truth_is_exact():
    frames, flow = flying_shapes(6, size=24, max_shapes=2, max_displacement=4, seed=3)
    assert frames.shape == flow.shape == (6, 2, 24, 24) and frames.dtype == flow.dtype == torch.float32
    assert torch.equal(flow, flow.round()) and flow.abs().max() <= 4
    again = flying_shapes(6, size=24, max_shapes=2, max_displacement=4, seed=3)
    assert torch.equal(again[0], frames) and torch.equal(again[1], flow)
    # every pixel of frame 1 whose surface is still visible at p + flow in frame 2 looks the same there
    checked = 0
    for e in range(6):
        for y in range(24):
            for x in range(24):
                dx, dy = int(flow[e, 0, y, x]), int(flow[e, 1, y, x])
                y2, x2 = y + dy, x + dx
                if 0 <= y2 < 24 and 0 <= x2 < 24 and flow[e, 0, y2, x2] == dx and flow[e, 1, y2, x2] == dy:
                    # same surface at the target in frame 1's flow: visible unless occluded in frame 2
                    if frames[e, 1, y2, x2] == frames[e, 0, y, x]:
                        checked += 1
    assert checked > 0.5 * 6 * 24 * 24


def test_background_only_frames_are_a_translation():
    frames, flow = flying_shapes(2, size=20, max_shapes=0, max_displacement=3, seed=0)
    for e in range(2):
        dx, dy = int(flow[e, 0, 0, 0]), int(flow[e, 1, 0, 0])
        assert (flow[e, 0] == dx).all() and (flow[e, 1] == dy).all()
        moved = torch.roll(frames[e, 0], (dy, dx), (0, 1))
        torch.testing.assert_close(moved[3:-3, 3:-3], frames[e, 1, 3:-3, 3:-3])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n=-1), ValueError, "n must be a non-negative int"),
    (dict(n=2, size=0), ValueError, "size must be a positive int"),
    (dict(n=2, max_displacement=1, background_displacement=2), ValueError, "background_displacement"),
    (dict(n=2.0), TypeError, "n must be an int"),
])
def test_flying_shapes_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        flying_shapes(**kwargs)


def test_flow_pictures_and_aepe():
    right = torch.zeros(2, 3, 3)
    right[0] = 1.0
    img = flow_to_color(right)
    assert img.shape == (3, 3, 3) and img.min() >= 0 and img.max() <= 1
    assert not torch.allclose(torch.as_tensor(flow_to_color(-right)), torch.as_tensor(img))
    assert color_wheel(9).shape == (9, 9, 3)
    with pytest.raises(ValueError, match="flow must have shape"):
        flow_to_color(torch.zeros(3, 2, 2))
    f = torch.zeros(1, 2, 4, 4)
    g = f.clone()
    g[:, 0] = 3.0
    g[:, 1] = 4.0
    assert aepe(g, f) == pytest.approx(5.0)
    net = TinyFlowNet(LSDFN(32, 16, 16, samples=3, sample_stride=2))
    assert net(torch.randn(2, 2, 32, 32)).shape == (2, 2, 32, 32)
