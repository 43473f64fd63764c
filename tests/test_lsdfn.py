"""dyncore.lsdfn: large_sampling_filter in every backend, forward and backward, bad input, LSDFN."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

from dyncore.lsdfn import LSDFN, large_sampling_filter, materialize_kernels, sample_offsets, tap_offsets

ALL = ["loops", "numba", "torch", "cuda"]
AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)
NAMES = ("x", "U", "V", "sample_attention", "position_attention")


def make(B, C, Co, H, W, k, s, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, C, H, W), (B, Co, C, H, W), (B, Co, k * k, H, W), (B, Co, s * s, H, W),
              (B, Co, k * k, H, W)]
    return [torch.randn(*shape, generator=g, dtype=dtype) for shape in shapes]


def reference(x, U, V, SA, PA, k, s, g):
    """Eq. 4-6 (as resolved) written independently of the package: shifts of padded tensors."""
    B, C, H, W = x.shape
    Co = U.shape[1]
    out = torch.zeros(B, Co, H, W, dtype=x.dtype)
    P = max(abs(d) for off in sample_offsets(s, g) for d in off) + k
    xp = torch.nn.functional.pad(x, (P,) * 4)
    pp = torch.nn.functional.pad(PA, (P,) * 4)
    for m, (dy, dx) in enumerate(sample_offsets(s, g)):
        a_pos = pp[..., P + dy: P + dy + H, P + dx: P + dx + W]
        for t, (ty, tx) in enumerate(tap_offsets(k)):
            feats = xp[:, :, P + dy + ty: P + dy + ty + H, P + dx + tx: P + dx + tx + W]
            Wt = V[:, :, t, None] + (U if t == k * k // 2 else 0)          # (B, Co, C, H, W)
            term = (Wt * feats[:, None]).sum(2)
            out += SA[:, :, m] * a_pos[:, :, t] * term
    return out


# odd sizes, strides that do not divide the size, samples reaching past the image
CASES = [
    dict(B=2, C=3, Co=2, H=7, W=6, k=3, s=3, g=2),
    dict(B=1, C=2, Co=3, H=5, W=8, k=5, s=3, g=1),
    dict(B=1, C=4, Co=1, H=6, W=5, k=1, s=5, g=3),
    dict(B=1, C=1, Co=2, H=3, W=4, k=3, s=1, g=1),
    dict(B=1, C=2, Co=1, H=4, W=9, k=3, s=5, g=4),
]
IDS = [f"k{c['k']}s{c['s']}g{c['g']}-{c['H']}x{c['W']}" for c in CASES]


def run(case, backend, dtype=torch.float64, requires_grad=False):
    c = case
    args = make(c["B"], c["C"], c["Co"], c["H"], c["W"], c["k"], c["s"], dtype)
    if requires_grad:
        args = [a.requires_grad_() for a in args]
    out = large_sampling_filter(*args, kernel_size=c["k"], samples=c["s"], sample_stride=c["g"],
                                backend=backend)
    return args, out


def test_the_reference_matches_a_hand_computed_pixel():
    # one channel, one output channel, k=1, s=3, g=1: out = sum_m SA[m] * PA[0, ym] * (V + U) * x[ym]
    x = torch.arange(9.0, dtype=torch.float64).view(1, 1, 3, 3)
    ones = torch.ones(1, 1, 1, 3, 3, dtype=torch.float64)
    SA = torch.ones(1, 1, 9, 3, 3, dtype=torch.float64)
    out = large_sampling_filter(x, 2 * ones, ones, SA, ones, kernel_size=1, samples=3,
                                sample_stride=1, backend="loops")
    assert out[0, 0, 1, 1] == 3 * x.sum()            # centre: every sample is inside
    assert out[0, 0, 0, 0] == 3 * (0 + 1 + 3 + 4)     # corner: four samples inside


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_the_equation_float64(backend, case):
    args, out = run(case, backend)
    ref = reference(*args, case["k"], case["s"], case["g"])
    assert out.dtype == torch.float64 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **F64)


@pytest.mark.parametrize("backend", ALL)
def test_float32_keeps_dtype(backend):
    case = CASES[0]
    args, out = run(case, backend, torch.float32)
    assert out.dtype == torch.float32
    ref = reference(*[a.double() for a in args], case["k"], case["s"], case["g"])
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["numba", "cuda"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hand_written_gradients_match_torch_autograd(backend, case):
    args, out = run(case, backend, requires_grad=True)
    ref_args, ref = run(case, "torch", requires_grad=True)
    grad_out = torch.randn_like(ref)
    got = torch.autograd.grad(out, args, grad_out)
    want = torch.autograd.grad(ref, ref_args, grad_out)
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, **F64, msg=lambda m, name=name: f"d{name}: {m}")


@st.composite
def problems(draw, max_side=8, max_channels=3):
    k = draw(st.sampled_from([1, 3, 5]))
    s = draw(st.sampled_from([1, 3, 5]))
    g = draw(st.integers(1, 4))
    B, C, Co = draw(st.integers(1, 2)), draw(st.integers(1, max_channels)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**16))
    return make(B, C, Co, H, W, k, s, seed=seed), (k, s, g)


@given(problems())
def test_numba_and_torch_agree_with_the_equation_forward_and_backward(problem):
    args, (k, s, g) = problem
    ref = reference(*args, k, s, g)
    grad_out = torch.randn_like(ref)
    grads = {}
    for backend in ("numba", "torch"):
        inputs = [a.clone().requires_grad_() for a in args]
        out = large_sampling_filter(*inputs, kernel_size=k, samples=s, sample_stride=g, backend=backend)
        torch.testing.assert_close(out, ref, **F64)
        grads[backend] = torch.autograd.grad(out, inputs, grad_out)
    for a, b in zip(grads["numba"], grads["torch"]):
        torch.testing.assert_close(a, b, **F64)


@given(problems(max_side=4, max_channels=2))
def test_loops_and_cuda_agree_with_the_equation(problem):
    args, (k, s, g) = problem
    kw = dict(kernel_size=k, samples=s, sample_stride=g)
    ref = reference(*args, k, s, g)
    torch.testing.assert_close(large_sampling_filter(*args, backend="loops", **kw), ref, **F64)
    torch.testing.assert_close(large_sampling_filter(*args, backend="cuda", **kw), ref, **F64)


@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_gradcheck_numba(case):
    c = dict(case, B=1, C=min(case["C"], 2), Co=min(case["Co"], 2), H=min(case["H"], 5), W=min(case["W"], 5))
    args = tuple(a.requires_grad_() for a in make(c["B"], c["C"], c["Co"], c["H"], c["W"], c["k"], c["s"]))
    f = lambda *a: large_sampling_filter(*a, kernel_size=c["k"], samples=c["s"], sample_stride=c["g"], backend="numba")  # noqa: E731
    assert gradcheck(f, args)


def test_gradcheck_cuda():
    args = tuple(a.requires_grad_() for a in make(1, 2, 1, 3, 4, 3, 3))
    f = lambda *a: large_sampling_filter(*a, kernel_size=3, samples=3, sample_stride=2, backend="cuda")  # noqa: E731
    assert gradcheck(f, args, fast_mode=True)


@pytest.mark.parametrize("backend", AUTOGRAD)
def test_gradient_only_for_what_needs_it(backend):
    args = make(1, 2, 2, 4, 4, 3, 3)
    args[3].requires_grad_()
    large_sampling_filter(*args, kernel_size=3, samples=3, sample_stride=1, backend=backend).sum().backward()
    assert args[3].grad is not None and all(a.grad is None for i, a in enumerate(args) if i != 3)


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_double_backward_is_refused_clearly(backend):
    args = make(1, 1, 1, 3, 3, 3, 1)
    args[0].requires_grad_()
    out = large_sampling_filter(*args, kernel_size=3, samples=1, sample_stride=1, backend=backend)
    with pytest.raises(RuntimeError, match="first-order only"):
        torch.autograd.grad(out.sum(), args[0], create_graph=True)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    args = make(1, 2, 2, 5, 4, 3, 3)
    swapped = [a.transpose(-1, -2).contiguous().transpose(-1, -2) for a in args]
    assert not any(a.is_contiguous() for a in swapped)
    kw = dict(kernel_size=3, samples=3, sample_stride=2)
    torch.testing.assert_close(large_sampling_filter(*swapped, backend=backend, **kw),
                               reference(*args, 3, 3, 2), **F64)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch(backend):
    args = [a[:0] for a in make(1, 2, 3, 5, 5, 3, 3)]
    out = large_sampling_filter(*args, kernel_size=3, samples=3, sample_stride=1, backend=backend)
    assert out.shape == (0, 3, 5, 5)


def test_auto_is_numba_on_cpu():
    args = make(1, 1, 1, 3, 3, 1, 1)
    args[0].requires_grad_()
    out = large_sampling_filter(*args, kernel_size=1, samples=1, sample_stride=1)
    assert type(out.grad_fn).__name__.startswith("LargeSamplingFilterFunction")


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


# ---------------------------------------------------------------- bad input

def bad_calls():
    x, U, V, SA, PA = make(1, 2, 3, 5, 5, 3, 3)
    kw = dict(kernel_size=3, samples=3, sample_stride=1)
    f = large_sampling_filter
    return [
        ("x list", lambda: f(x.tolist(), U, V, SA, PA, **kw), TypeError, "x must be a torch.Tensor"),
        ("U numpy", lambda: f(x, U.numpy(), V, SA, PA, **kw), TypeError, "U must be a torch.Tensor"),
        ("integer x", lambda: f(x.long(), U, V, SA, PA, **kw), TypeError, "x must be float32 or float64"),
        ("complex V", lambda: f(x, U, V.to(torch.complex128), SA, PA, **kw), TypeError, "V must be float32 or float64"),
        ("dtype mismatch", lambda: f(x, U, V, SA.float(), PA, **kw), TypeError, "sample_attention has dtype torch.float32 but x"),
        ("3-D x", lambda: f(x[0], U, V, SA, PA, **kw), ValueError, r"x must be a 4-D tensor \(B, C, H, W\)"),
        ("4-D U", lambda: f(x, U[0], V, SA, PA, **kw), ValueError, r"U must be a 5-D tensor \(B, Co, C, H, W\)"),
        ("6-D PA", lambda: f(x, U, V, SA, PA[None], **kw), ValueError, "position_attention must be a 5-D"),
        ("U channels", lambda: f(x, U[:, :, :1], V, SA, PA, **kw), ValueError, r"U must have shape \(B, Co, C, H, W\)"),
        ("U batch", lambda: f(x, torch.cat([U, U]), V, SA, PA, **kw), ValueError, "U must have shape"),
        ("V taps", lambda: f(x, U, V[:, :, :4], SA, PA, **kw), ValueError, r"V must have shape \(B, Co, k\*k, H, W\) with k=3"),
        ("V size", lambda: f(x, U, V[..., :4], SA, PA, **kw), ValueError, "V must have shape"),
        ("SA samples", lambda: f(x, U, V, SA[:, :, :8], PA, **kw), ValueError, r"sample_attention must have shape \(B, Co, s\*s, H, W\) with s=3"),
        ("SA Co", lambda: f(x, U, V, SA[:, :2], PA, **kw), ValueError, "sample_attention must have shape"),
        ("PA taps", lambda: f(x, U, V, SA, PA[:, :, :1], **kw), ValueError, "position_attention must have shape"),
        ("k even", lambda: f(x, U, V, SA, PA, kernel_size=2, samples=3, sample_stride=1), ValueError, "kernel_size must be an odd positive int"),
        ("k zero", lambda: f(x, U, V, SA, PA, kernel_size=0, samples=3, sample_stride=1), ValueError, "kernel_size must be an odd"),
        ("k float", lambda: f(x, U, V, SA, PA, kernel_size=3.0, samples=3, sample_stride=1), TypeError, "kernel_size must be an int"),
        ("s even", lambda: f(x, U, V, SA, PA, kernel_size=3, samples=4, sample_stride=1), ValueError, "samples must be an odd positive int"),
        ("s negative", lambda: f(x, U, V, SA, PA, kernel_size=3, samples=-3, sample_stride=1), ValueError, "samples must be an odd"),
        ("stride zero", lambda: f(x, U, V, SA, PA, kernel_size=3, samples=3, sample_stride=0), ValueError, "sample_stride must be a positive int"),
        ("stride bool", lambda: f(x, U, V, SA, PA, kernel_size=3, samples=3, sample_stride=True), TypeError, "sample_stride must be an int"),
        ("k missing", lambda: f(x, U, V, SA, PA, samples=3, sample_stride=1), TypeError, "kernel_size"),
        ("empty image", lambda: f(x[..., :0], U[..., :0], V[..., :0], SA[..., :0], PA[..., :0], **kw), ValueError, "x must have at least one channel and one pixel"),
        ("no outputs", lambda: f(x, U[:, :0], V[:, :0], SA[:, :0], PA[:, :0], **kw), ValueError, "U must have at least one output channel"),
        ("unknown backend", lambda: f(x, U, V, SA, PA, backend="cpp", **kw), ValueError, "backend must be one of"),
        ("mixed devices", lambda: f(x, U, V.to("meta"), SA, PA, **kw), ValueError, "V is on meta but x is on cpu"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_bad_input_is_rejected_with_a_clear_message(case):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_on_gpu_matches_torch(dtype):
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for c in CASES:
        args = [a.cuda().requires_grad_() for a in make(c["B"], c["C"], c["Co"], c["H"], c["W"], c["k"], c["s"], dtype)]
        ref_args = [a.detach().clone().requires_grad_() for a in args]
        kw = dict(kernel_size=c["k"], samples=c["s"], sample_stride=c["g"])
        out = large_sampling_filter(*args, backend="cuda", **kw)
        ref = large_sampling_filter(*ref_args, backend="torch", **kw)
        torch.testing.assert_close(out, ref, **tol)
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, args, g), torch.autograd.grad(ref, ref_args, g)):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.gpu
def test_numba_with_cuda_tensors_is_refused_on_gpu():
    args = [a.cuda() for a in make(1, 1, 1, 3, 3, 1, 1)]
    with pytest.raises(ValueError, match="backend='numba'"):
        large_sampling_filter(*args, kernel_size=1, samples=1, sample_stride=1, backend="numba")


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
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(block(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
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
    from dyncore.lsdfn.data import flying_shapes
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
    from dyncore.lsdfn.data import flying_shapes
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
    from dyncore.lsdfn.data import flying_shapes
    with pytest.raises(exc, match=match):
        flying_shapes(**kwargs)


def test_flow_pictures_and_aepe():
    from dyncore.lsdfn.flow import TinyFlowNet, aepe, color_wheel, flow_to_color
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
