"""The operators as PyTorch custom operators (dyncore.library): torch.library.opcheck on every
spec's samples, torch.compile(fullgraph=True) and torch.export on the public functions."""

from __future__ import annotations

import dyncore  # noqa: F401  first: it selects the CUDA simulator before anything imports Numba
import pytest
import torch

from dyncore import library
from dyncore.opspec import all_specs

SPECS = all_specs()
IDS = [s.name for s in SPECS]


def recorded_calls(spec, backend, samples):
    """The arguments the public function passes to ``torch.ops.dyncore.<name>`` for each sample."""
    op = library.operators()[spec.name]
    calls = []
    original = library.OpDef.__call__

    def spy(self, *args):
        if self is op:
            calls.append(args)
        return original(self, *args)

    library.OpDef.__call__ = spy
    try:
        for sample in samples:
            spec.function(*sample.args, **sample.kwargs, backend=backend)
    finally:
        library.OpDef.__call__ = original
    return op, calls


def test_every_operator_is_registered_once():
    ops = library.operators()
    assert sorted(ops) == sorted(s.name for s in SPECS)
    for name, op in ops.items():
        assert getattr(torch.ops.dyncore, name) is not None
        assert getattr(torch.ops.dyncore, f"{name}_backward") is not None
        assert library.define(name, (), (), kernels={}, vectorized=None) is op  # idempotent


@pytest.mark.parametrize("backend", ["numba", "cuda"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_opcheck(spec, backend):
    """Schema, fake (shapes and dtypes), autograd registration and no aliasing, on the samples
    (the CUDA simulator is slow: two samples there)."""
    samples = list(spec.sample_inputs(dtype=torch.float64, device="cpu"))
    op, calls = recorded_calls(spec, backend, samples[:2] if backend == "cuda" else samples[:4])
    assert calls, f"{spec.name} did not call torch.ops.dyncore.{spec.name}"
    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    for args in calls:
        args = tuple(a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(op.forward, args, test_utils=tests)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_compiles_with_fullgraph_and_matches_eager(spec):
    sample = next(iter(spec.sample_inputs(dtype=torch.float64, device="cpu")))

    def step(*tensors):
        out = spec.function(*tensors, **sample.kwargs, backend="numba")
        return (out * out).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
    eager_leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
    got, want = compiled(*leaves), step(*eager_leaves)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    for a, b in zip(leaves, eager_leaves):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_exports(spec):
    sample = next(iter(spec.sample_inputs(dtype=torch.float64, device="cpu")))
    positions = [i for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor)]

    class Call(torch.nn.Module):
        def forward(self, *tensors):
            args = list(sample.args)
            for i, t in zip(positions, tensors):
                args[i] = t
            return spec.function(*args, **sample.kwargs, backend="numba")

    tensors = tuple(sample.args[i] for i in positions)
    program = torch.export.export(Call(), tensors)
    assert any(f"dyncore.{spec.name}" in str(node.target) for node in program.graph.nodes)
    torch.testing.assert_close(program.module()(*tensors), Call()(*tensors))


# ----------------------------------------------------------------------------- on a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_opcheck_on_cuda_tensors(spec):
    """The same checks with CUDA tensors and the Numba CUDA kernels: the fake kernel must give
    the device of the inputs, the autograd formula must run the CUDA backward."""
    samples = list(spec.sample_inputs(dtype=torch.float64, device="cuda"))
    op, calls = recorded_calls(spec, "cuda", samples[:4])
    assert calls and all(a.device.type == "cuda" for a in calls[0] if isinstance(a, torch.Tensor))
    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    for args in calls:
        args = tuple(a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(op.forward, args, test_utils=tests)


INDUCTOR_ON_GPU = ("dynamic_filter", "ddf")  # an Inductor compile costs seconds: two operators


GPU_COMPILES = [(s, "aot_eager") for s in SPECS] + [(s, "inductor") for s in SPECS if s.name in INDUCTOR_ON_GPU]


@pytest.mark.gpu
@pytest.mark.parametrize("spec, compiler", GPU_COMPILES, ids=[f"{s.name}-{c}" for s, c in GPU_COMPILES])
def test_compiles_on_a_gpu_and_matches_eager(spec, compiler):
    """fullgraph on CUDA tensors; Inductor writes Triton kernels around the custom operator."""
    sample = next(iter(spec.sample_inputs(dtype=torch.float32, device="cuda")))

    def step(*tensors):
        out = spec.function(*tensors, **sample.kwargs, backend="cuda")
        return (out * out).sum()

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
    eager_leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
    got, want = compiled(*leaves), step(*eager_leaves)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    want.backward()
    for a, b in zip(leaves, eager_leaves):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
