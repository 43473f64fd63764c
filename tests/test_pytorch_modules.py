"""The eight layers as PyTorch users meet them: torch.compile(fullgraph=True) in training and eval
mode, torch.export, bfloat16 autocast, and channels_last inputs; and the six operators under
autocast and with channels_last tensors.

Compiles use the cheap ``aot_eager`` backend (the same graph capture, AOT autograd and custom-op
dispatch as Inductor, without code generation); one model is compiled by Inductor as well."""

from __future__ import annotations

import copy
import warnings

import dyncore  # noqa: F401  first: it selects the CUDA simulator before anything imports Numba
import pytest
import torch
from torch import nn

from dyncore.conv import Conv2d
from dyncore.ddf.modules import DDF, DDFUp
from dyncore.dfn import DynamicFilterLayer
from dyncore.dmnet.modules import DCM, DMHead
from dyncore.lsdfn import LSDFN
from dyncore.opspec import all_specs
from dyncore.pad.modules import PADConv2d

SPECS = all_specs()
IDS = [s.name for s in SPECS]

#: Small instances of the eight layers (4 input channels), the dyncore operator each calls and
#: the layer's output channels.
MODULES = {
    "Conv2d": (lambda: Conv2d(4, 6, 3, padding=1), "conv2d", 6),
    "DynamicFilterLayer": (lambda: DynamicFilterLayer(4, 3, hidden_channels=(8,)), "dynamic_filter", 4),
    "LSDFN": (lambda: LSDFN(4, 4, 5, kernel_size=3, samples=3), "large_sampling_filter", 5),
    "DCM": (lambda: DCM(4, 6, 3), "context_filter", 6),
    "DMHead": (lambda: DMHead(4, 6, 3, kernel_sizes=(3,)), "context_filter", 3),
    "PADConv2d": (lambda: PADConv2d(4, 6, dilations=(1, 2)), "adaptive_dilation_conv", 6),
    "DDF": (lambda: DDF(4, 3, stride=2), "ddf", 4),
    "DDFUp": (lambda: DDFUp(4, 2), "ddf", 4),
}
NAMES = list(MODULES)
F64 = dict(rtol=1e-9, atol=1e-11)


def make(name, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return MODULES[name][0]().to(dtype)


def image(dtype=torch.float64, seed=1, shape=(2, 4, 9, 8)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def run(module, x, seed=2):
    """Forward (seeded: PAD draws Gumbel noise in training) and backward of a fixed loss; returns
    the output, the input's gradient and every parameter's gradient."""
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    out = module(x)
    (out * out).mean().backward()
    return out.detach(), x.grad, grads(module)


def grads(module):
    """Each parameter's gradient by name (a compiled module's names without ``_orig_mod.``)."""
    return {n.removeprefix("_orig_mod."): p.grad for n, p in module.named_parameters()}


def assert_same_run(got, want, **tol):
    torch.testing.assert_close(got[0], want[0], **tol)
    torch.testing.assert_close(got[1], want[1], **tol)
    assert got[2].keys() == want[2].keys()
    for n in want[2]:
        torch.testing.assert_close(got[2][n], want[2][n], **tol, msg=lambda m: f"{n}: {m}")


# ----------------------------------------------------------------------------- torch.compile

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_module_compiles_with_fullgraph_and_matches_eager(name, mode):
    """Forward and backward, fullgraph (a graph break would raise). In training mode PAD samples
    Gumbel noise: both runs are seeded alike, and aot_eager draws the same numbers as eager (the
    random op runs as it is, not functionalized), so training mode matches exactly too. BatchNorm's
    running statistics, updated in place in training mode, match as well."""
    eager = make(name).train(mode == "train")
    compiled_module = copy.deepcopy(eager)
    compiled = torch.compile(compiled_module, fullgraph=True, backend="aot_eager", dynamic=False)
    x = image()
    for step in range(2):  # the second call reuses the compiled graph
        assert_same_run(run(compiled, x, seed=step), run(eager, x, seed=step), **F64)
    for (n, a), b in zip(eager.named_buffers(), compiled_module.buffers()):
        torch.testing.assert_close(b, a, **F64, msg=lambda m: f"buffer {n}: {m}")


@pytest.mark.slow
def test_ddf_trains_compiled_by_inductor():
    """Inductor generates code around the custom operator; forward and backward match eager
    (float32, Inductor's fused arithmetic rounds differently). One model: a compile costs
    tens of seconds here."""
    eager = make("DDF", torch.float32).train()
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, dynamic=False)
    x = image(torch.float32)
    assert_same_run(run(compiled, x), run(eager, x), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- torch.export

@pytest.mark.parametrize("name", NAMES)
def test_module_exports_in_eval_mode(name):
    """The exported program holds the dyncore operator as one node, gives eager's output, and
    export does not warn (no module keeps a tensor of the call on itself)."""
    module = make(name).eval()
    x = image()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "tensor attributes ... were assigned during export"
        program = torch.export.export(module, (x,))
    op = MODULES[name][1]
    assert any(str(node.target).startswith(f"dyncore.{op}.") for node in program.graph.nodes)
    torch.testing.assert_close(program.module()(x), module(x), **F64)
    torch.testing.assert_close(program.module()(image(seed=5)), module(image(seed=5)), **F64)


def test_no_module_keeps_a_tensor_of_its_call():
    def tensor_attributes(module):
        return {(n, k) for n, m in module.named_modules() for k, v in vars(m).items()
                if isinstance(v, torch.Tensor)}

    for name in NAMES:
        module = make(name)
        before = tensor_attributes(module)
        module(image())
        assert tensor_attributes(module) == before, name


# ----------------------------------------------------------------------------- autocast

#: Under CPU bfloat16 autocast, the output dtype of each layer: float32 where the layer ends with
#: its dyncore operator (which computes in float32); bfloat16 for DCM and DMHead, which end with
#: an autocast convolution.
AUTOCAST_OUTPUT = {name: torch.float32 for name in NAMES} | {"DCM": torch.bfloat16,
                                                             "DMHead": torch.bfloat16}


@pytest.mark.parametrize("name", NAMES)
def test_module_runs_under_bfloat16_autocast_close_to_float32(name):
    """A float32 model with the layer between two ordinary convolutions (so the layer receives a
    bfloat16 tensor from autocast), forward and backward under torch.autocast("cpu", bfloat16);
    close to the same model in float32, at bfloat16's precision (8 bits of mantissa)."""
    torch.manual_seed(0)
    layer = MODULES[name][0]().eval()  # eval: PAD's gates without noise, BatchNorm's statistics
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), layer, nn.Conv2d(MODULES[name][2], 2, 1))
    x = image(torch.float32)
    want = run(model, x)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_ = x.clone().requires_grad_()
        hidden = model[0](x_)
        assert hidden.dtype == torch.bfloat16  # the layer is handed a bfloat16 tensor
        inner = model[1](hidden)
        assert inner.dtype == AUTOCAST_OUTPUT[name]
    got = run_autocast(model, x)
    assert got[0].dtype == torch.bfloat16
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[1]).all()
    scale = want[0].abs().max()
    torch.testing.assert_close(got[0].float(), want[0], rtol=0, atol=0.05 * scale)
    for n, g in want[2].items():
        assert got[2][n] is not None and torch.isfinite(got[2][n]).all(), n
        torch.testing.assert_close(got[2][n].float(), g, rtol=0, atol=0.1 * g.abs().max() + 1e-6,
                                   msg=lambda m: f"{n}: {m}")


def run_autocast(model, x):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_ = x.clone().requires_grad_()
        out = model(x_)
        loss = (out.float() * out.float()).mean()
    loss.backward()
    return out.detach(), x_.grad, grads(model)


@pytest.mark.parametrize("backend", ["loops", "numba", "torch"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_operator_under_autocast_computes_in_float32(spec, backend):
    """bfloat16 and float16 arguments inside an autocast region: the operator casts them to
    float32 before validating, on every backend, and returns float32 equal to the call on the
    float32 copies. Outside autocast the same call is refused (the conformance suite's bad-input
    cases)."""
    sample = next(iter(spec.sample_inputs(dtype=torch.float32, device="cpu")))
    for half in (torch.bfloat16, torch.float16):
        low = [a.to(half) if isinstance(a, torch.Tensor) else a for a in sample.args]
        up = [a.float() if isinstance(a, torch.Tensor) else a for a in low]
        with torch.autocast("cpu", dtype=half):
            got = spec.function(*low, **sample.kwargs, backend=backend)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, spec.function(*up, **sample.kwargs, backend=backend),
                                   rtol=0, atol=0)
        with pytest.raises(TypeError, match="must be float32 or float64.*torch.autocast"):
            spec.function(*low, **sample.kwargs, backend=backend)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_custom_operator_is_registered_for_autocast(spec):
    """torch.ops.dyncore.<name> called directly under autocast casts its bfloat16 inputs to
    float32 (torch.library.register_autocast) and differentiates through the cast."""
    from dyncore import library

    op = library.operators()[spec.name]
    sample = next(iter(spec.sample_inputs(dtype=torch.float32, device="cpu")))
    calls = []
    original = library.OpDef.__call__

    def spy(self, *args):
        calls.append(args)
        return original(self, *args)

    library.OpDef.__call__ = spy
    try:
        spec.function(*sample.args, **sample.kwargs, backend="numba")
    finally:
        library.OpDef.__call__ = original
    args = [a.bfloat16().requires_grad_() if isinstance(a, torch.Tensor) else a for a in calls[0]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(*args)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, op(*[a.detach().float() if isinstance(a, torch.Tensor) else a
                                         for a in args]), rtol=0, atol=0)
    out.sum().backward()
    for a in args:
        if isinstance(a, torch.Tensor):
            assert a.grad is not None and a.grad.dtype == torch.bfloat16


def test_autocast_model_compiles_with_fullgraph():
    """The cast before validation is traced too: a bfloat16-autocast training step of a DDF
    model compiles without a graph break and matches eager."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), DDF(4, 3), nn.Conv2d(4, 2, 1))
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True, backend="aot_eager", dynamic=False)
    x = image(torch.float32)
    got, want = run_autocast(compiled, x), run_autocast(model, x)
    assert got[0].dtype == want[0].dtype == torch.bfloat16
    assert_same_run(got, want, rtol=1e-2, atol=1e-2)


# ----------------------------------------------------------------------------- channels_last

def channels_last(t):
    return t.to(memory_format=torch.channels_last) if isinstance(t, torch.Tensor) and t.dim() == 4 else t


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_operator_gives_the_same_result_for_channels_last_inputs(spec, backend):
    """Every 4-D argument in channels_last memory format (a different stride order, the same
    values): the same output and gradients as with contiguous tensors."""
    strided = 0
    for sample in list(spec.sample_inputs(dtype=torch.float64, device="cpu"))[:3]:
        def call(convert):
            leaves = [convert(a).detach().requires_grad_() if isinstance(a, torch.Tensor) else a
                      for a in sample.args]
            out = spec.function(*leaves, **sample.kwargs, backend=backend)
            (out * out).sum().backward()
            return out, [a.grad for a in leaves if isinstance(a, torch.Tensor)]

        strided += any(isinstance(a, torch.Tensor) and not channels_last(a).is_contiguous()
                       for a in sample.args)
        got_out, got_grads = call(channels_last)
        want_out, want_grads = call(lambda t: t)
        torch.testing.assert_close(got_out, want_out, **F64)
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w, **F64)
    assert strided, "no sample had a tensor whose channels_last layout differs"


@pytest.mark.parametrize("name", NAMES)
def test_module_gives_the_same_result_in_channels_last(name):
    """The module and its input converted to channels_last (``model.to(memory_format=...)``, as
    a user does for oneDNN) against the contiguous module: same output and gradients, with the
    numba and the torch backends."""
    for backend in ("numba", "torch"):
        module = make(name).eval()
        for m in module.modules():
            if hasattr(m, "backend"):
                m.backend = backend
        converted = copy.deepcopy(module).to(memory_format=torch.channels_last)
        x = image(seed=3)
        assert_same_run(run(converted, channels_last(x)), run(module, x), **F64)


# ----------------------------------------------------------------------------- on a real GPU

def cuda_run(module, x, seed=2):
    """:func:`run` with the module and its input on the GPU (the layers' ``"auto"`` backend then
    runs the Numba CUDA kernels)."""
    return run(module.cuda(), x.cuda(), seed=seed)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_module_compiles_on_a_gpu_and_matches_eager(name, mode):
    eager = make(name).train(mode == "train").cuda()
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, backend="aot_eager", dynamic=False)
    for step in range(2):
        got, want = cuda_run(compiled, image(), seed=step), cuda_run(eager, image(), seed=step)
        assert got[0].device.type == "cuda"
        assert_same_run(got, want, **F64)


@pytest.mark.gpu
@pytest.mark.parametrize("name, mode", [("DDF", "train"), ("PADConv2d", "eval")])
def test_module_compiled_by_inductor_on_a_gpu(name, mode):
    """Inductor's Triton code around the CUDA custom operators, forward and backward, float32.
    PAD in eval mode: in training mode it draws Gumbel noise, and Inductor's generated random
    numbers (Philox, inside its kernels) are not eager's, so the two runs cannot agree sample
    by sample."""
    torch._dynamo.reset()
    eager = make(name, torch.float32).train(mode == "train").cuda()
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, dynamic=False)
    x = image(torch.float32)
    assert_same_run(cuda_run(compiled, x), cuda_run(eager, x), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_module_exports_on_a_gpu(name):
    module = make(name).eval().cuda()
    x = image().cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = torch.export.export(module, (x,))
    out = program.module()(x)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out, module(x), **F64)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_module_runs_under_bfloat16_autocast_on_a_gpu(name):
    """torch.autocast("cuda", bfloat16): the layer is handed bfloat16, our CUDA kernels compute
    in float32; close to the float32 model at bfloat16's precision."""
    torch.manual_seed(0)
    layer = MODULES[name][0]().eval()
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), layer, nn.Conv2d(MODULES[name][2], 2, 1)).cuda()
    x = image(torch.float32).cuda()
    want = run(model, x)
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        x_ = x.clone().requires_grad_()
        out = model(x_)
        assert model[0](x_).dtype == torch.bfloat16
        loss = (out.float() * out.float()).mean()
    loss.backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(x_.grad).all()
    scale = want[0].abs().max()
    torch.testing.assert_close(out.detach().float(), want[0], rtol=0, atol=0.05 * scale)
    for n, g in want[2].items():
        p = dict(model.named_parameters())[n]
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        torch.testing.assert_close(p.grad.float(), g, rtol=0, atol=0.1 * g.abs().max() + 1e-6,
                                   msg=lambda m: f"{n}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_module_gives_the_same_result_in_channels_last_on_a_gpu(name):
    module = make(name).eval().cuda()
    converted = copy.deepcopy(module).to(memory_format=torch.channels_last)
    x = image(seed=3).cuda()
    assert_same_run(run(converted, channels_last(x)), run(module, x), **F64)
