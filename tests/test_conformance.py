"""The conformance suite: what every operator must do, on every backend, tested once.

Each operator is described by its :class:`dyncore.opspec.OpSpec` (``dyncore/<method>/spec.py``):
sample inputs, a reference written with plain PyTorch, bad calls and the message each must give.
Every test here runs over every spec, so a new operator is tested as soon as its spec exists, and
an operator's own ``test_<op>.py`` keeps only what is special to it.

Golden data: ``tests/golden/<operator>.pt`` holds, for the first samples of each spec, the inputs,
the output and the input gradients computed by the ``"numba"`` backend in float64. A change of
numbers, in a kernel or in the reference, fails :func:`test_golden`; when a change is intended,
regenerate with ``DYNCORE_UPDATE_GOLDEN=1 python -m pytest tests/test_conformance.py -k golden``
and say why in the commit.
"""

from __future__ import annotations

import os
import pathlib

import dyncore  # noqa: F401  first: it selects the CUDA simulator before anything imports Numba
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

from dyncore import backends
from dyncore.opspec import Sample, all_specs

SPECS = all_specs()
SPEC_IDS = [s.name for s in SPECS]
F64 = dict(rtol=1e-10, atol=1e-11)
F32 = dict(rtol=2e-4, atol=2e-4)
AUTOGRAD = ("numba", "torch", "cuda")
KERNEL_BACKENDS = ("numba", "cuda")
GOLDEN = pathlib.Path(__file__).parent / "golden"
GOLDEN_SAMPLES = 3
HAS_GPU = torch.cuda.is_available()


def samples(spec, dtype=torch.float64, device="cpu") -> list[Sample]:
    return list(spec.sample_inputs(dtype=dtype, device=device))


def spec_backend(backends_of=None):
    """``(spec, backend)`` pairs for parametrize, with readable ids."""
    pairs = [(s, b) for s in SPECS for b in s.backends if backends_of is None or b in backends_of]
    return pytest.mark.parametrize("spec,backend", pairs, ids=[f"{s.name}-{b}" for s, b in pairs])


def spec_sample(backends_of=None):
    cases = [(s, b, i) for s in SPECS for b in s.backends if backends_of is None or b in backends_of
             for i in range(len(samples(s)))]
    return pytest.mark.parametrize("spec,backend,index", cases,
                                   ids=[f"{s.name}-{b}-{i}" for s, b, i in cases])


def grad_output(out: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)


def run(fn, sample: Sample, grads: bool = True):
    """``fn(*args, **kwargs)`` and the gradients of ``<out, g>`` for every tensor argument."""
    inputs = [a.detach().clone().requires_grad_(grads) if isinstance(a, torch.Tensor) else a
              for a in sample.args]
    out = fn(*inputs, **sample.kwargs)
    if not grads:
        return out.detach(), []
    leaves = [a for a in inputs if isinstance(a, torch.Tensor)]
    got = torch.autograd.grad(out, leaves, grad_output(out), allow_unused=True)
    got = [torch.zeros_like(a) if g is None else g for a, g in zip(leaves, got)]
    return out.detach(), got


def on(spec, backend):
    return lambda *a, **kw: spec.function(*a, **kw, backend=backend)


def assert_all_close(got, want, **tol):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, i=i: f"gradient of tensor argument {i}: {m}")


# ----------------------------------------------------------------------------- the registry

def test_every_method_folder_has_a_spec_and_the_same_operator_files():
    root = pathlib.Path(dyncore.__file__).parent
    template = ["loops.py", "numba_cpu.py", "vectorized.py", "cuda_kernels.py", "functional.py",
                "modules.py", "spec.py", "__init__.py"]
    methods = sorted({s.function.__module__.split(".")[1] for s in SPECS})
    assert methods == ["conv", "ddf", "dfn", "dmnet", "lsdfn", "pad"]
    for m in methods:
        missing = [f for f in template if not (root / m / f).is_file()]
        assert not missing, f"dyncore/{m}/ lacks {missing}"


def test_names_are_unique_and_public():
    names = [s.name for s in SPECS]
    assert len(set(names)) == len(names) == 6
    for s in SPECS:
        package = importlib_module(f"dyncore.{s.function.__module__.split('.')[1]}")
        assert getattr(package, s.name) is s.function, f"dyncore.{package.__name__} does not export {s.name}"
        assert set(s.backends) <= {"loops", "numba", "torch", "cuda"}
    bench = [c.name for s in SPECS for c in s.bench]
    layers = [s.layer.name for s in SPECS if s.layer is not None]
    assert len(set(bench)) == len(bench) and len(set(layers)) == len(layers)


def importlib_module(name):
    import importlib

    return importlib.import_module(name)


def test_samples_cover_the_awkward_cases():
    """Every spec has several samples, and their descriptions say what each one covers."""
    for s in SPECS:
        cases = samples(s)
        assert len(cases) >= 4, f"{s.name}: only {len(cases)} samples"
        assert all(c.desc for c in cases), f"{s.name}: a sample without a description"
        assert len(list(s.error_inputs())) >= 5, f"{s.name}: too few bad-input cases"


# ----------------------------------------------------------------------------- forward, backward

@spec_sample()
def test_forward_matches_the_reference_float64(spec, backend, index):
    sample = samples(spec)[index]
    out = spec(sample, backend)
    want = spec.reference(*sample.args, **sample.kwargs)
    assert out.dtype == torch.float64 and out.shape == want.shape, sample.desc
    torch.testing.assert_close(out, want, **F64, msg=lambda m: f"{sample.desc}: {m}")


@spec_backend(AUTOGRAD)
def test_backward_matches_the_reference_float64(spec, backend):
    for sample in samples(spec):
        out, grads = run(on(spec, backend), sample)
        want_out, want = run(spec.reference, sample)
        torch.testing.assert_close(out, want_out, **F64)
        assert_all_close(grads, want, **F64)


@spec_backend()
def test_float32_keeps_its_dtype_and_matches(spec, backend):
    for sample in samples(spec, torch.float32)[:3]:
        out = spec(sample, backend)
        assert out.dtype == torch.float32, sample.desc
        want = spec.reference(*sample.map(torch.Tensor.double).args, **sample.kwargs)
        torch.testing.assert_close(out.double(), want, **F32, msg=lambda m: f"{sample.desc}: {m}")


@spec_backend(KERNEL_BACKENDS)
def test_gradcheck(spec, backend):
    """The hand-derived backward against finite differences (float64). The simulator is slow,
    so the CUDA kernels are checked on the first two samples in gradcheck's fast mode."""
    cases = samples(spec)[:2] if backend == "cuda" else samples(spec)
    for sample in cases:
        positions = [i for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor)]
        leaves = [sample.args[i].detach().clone().requires_grad_() for i in positions]

        def fn(*tensors, sample=sample, positions=positions):
            args = list(sample.args)
            for i, t in zip(positions, tensors):
                args[i] = t
            return spec.function(*args, **sample.kwargs, backend=backend)

        assert gradcheck(fn, leaves, fast_mode=backend == "cuda"), sample.desc


@spec_backend()
def test_non_contiguous_inputs(spec, backend):
    """Strided views (every tensor argument transposed in memory) give the same output and grads."""
    def strided(t):
        if t.dim() < 2:
            return t.repeat_interleave(2)[::2]
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)

    grads_too = backend != "loops"
    for sample in samples(spec)[:3]:
        view = sample.map(strided)
        assert any(not t.is_contiguous() for t in view.tensors())
        out, grads = run(on(spec, backend), view, grads_too)
        want_out, want = run(on(spec, backend), sample, grads_too)
        torch.testing.assert_close(out, want_out, **F64)
        assert_all_close(grads, want, **F64)


@spec_backend(AUTOGRAD)
def test_gradient_of_one_input_alone(spec, backend):
    """With one input requiring a gradient, the backward computes that one (the kernels skip
    the others) and it equals the gradient computed with all of them."""
    sample = samples(spec)[0]
    _, full = run(on(spec, backend), sample)
    positions = [i for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor)]
    for j, i in enumerate(positions):
        args = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in sample.args]
        args[i].requires_grad_()
        out = spec.function(*args, **sample.kwargs, backend=backend)
        (grad,) = torch.autograd.grad(out, [args[i]], grad_output(out))
        torch.testing.assert_close(grad, full[j], **F64)


@spec_backend()
def test_empty_batch(spec, backend):
    sample = spec.empty_batch(samples(spec)[0])
    want = spec.reference(*sample.args, **sample.kwargs)
    out = spec(sample, backend)
    assert out.shape == want.shape and out.numel() == 0 and out.dtype == want.dtype
    if backend != "loops":
        _, grads = run(on(spec, backend), sample)
        for g, a in zip(grads, sample.tensors()):
            assert g.shape == a.shape


@spec_backend(KERNEL_BACKENDS)
def test_double_backward_is_refused(spec, backend):
    sample = samples(spec)[0]
    inputs = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
    out = spec.function(*inputs, **sample.kwargs, backend=backend)
    leaves = [a for a in inputs if isinstance(a, torch.Tensor)]
    with pytest.raises(RuntimeError, match="first-order only"):
        torch.autograd.grad(out.sum(), leaves, create_graph=True)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_auto_is_numba_on_the_cpu(spec):
    sample = samples(spec)[0]
    assert torch.equal(spec(sample, "auto"), spec(sample, "numba"))
    assert torch.equal(spec.function(*sample.args, **sample.kwargs), spec(sample, "numba"))


@spec_backend()
def test_outputs_are_new_tensors_and_inputs_are_untouched(spec, backend):
    for sample in samples(spec)[:2]:
        before = [t.clone() for t in sample.tensors()]
        out = spec(sample, backend)
        for t, b in zip(sample.tensors(), before):
            assert torch.equal(t, b), "an input was modified"
            assert out.untyped_storage().data_ptr() != t.untyped_storage().data_ptr(), \
                "the output aliases an input"


def test_loops_warn_that_they_do_not_track_gradients():
    for spec in SPECS:
        sample = samples(spec)[0]
        inputs = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in sample.args]
        with pytest.warns(UserWarning, match="forward pass only"):
            out = spec.function(*inputs, **sample.kwargs, backend="loops")
        assert not out.requires_grad


# ----------------------------------------------------------------------------- bad input

def error_cases():
    cases = []
    for s in SPECS:
        for i, case in enumerate(s.error_inputs()):
            cases.append(pytest.param(s, case, id=f"{s.name}-{i}-{case.desc or case.match}"[:90]))
    return cases


@pytest.mark.parametrize("spec,case", error_cases())
def test_bad_input_is_refused_with_a_clear_message(spec, case):
    assert case.error in (ValueError, TypeError)
    choices = [case.kwargs["backend"]] if "backend" in case.kwargs else spec.backends
    for backend in choices:
        kwargs = dict(case.kwargs)
        kwargs.setdefault("backend", backend)
        with pytest.raises(case.error, match=case.match):
            spec.function(*case.args, **kwargs)


def test_unknown_backend_is_refused():
    for spec in SPECS:
        sample = samples(spec)[0]
        with pytest.raises(ValueError, match="backend must be one of"):
            spec(sample, "numpy")


def test_backends_lists_the_four():
    assert backends() == ["loops", "numba", "torch", "cuda"]  # cuda: the simulator here


# ----------------------------------------------------------------------------- properties

@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_inputs_match_the_reference(spec, seed):
    sample = spec.random_input(seed, dtype=torch.float64, device="cpu")
    want_out, want = run(spec.reference, sample)
    for backend in ("numba", "torch"):
        out, grads = run(on(spec, backend), sample)
        torch.testing.assert_close(out, want_out, **F64, msg=lambda m: f"{backend}, {sample.desc}: {m}")
        assert_all_close(grads, want, **F64)


# ----------------------------------------------------------------------------- golden data

def _golden_record(spec):
    record = []
    for sample in samples(spec)[:GOLDEN_SAMPLES]:
        out, grads = run(on(spec, "numba"), sample)
        record.append({"desc": sample.desc, "args": list(sample.args), "kwargs": sample.kwargs,
                       "out": out, "grads": grads})
    return record


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_golden(spec):
    """Stored outputs and gradients (``tests/golden/``): a silent change of numbers fails here."""
    path = GOLDEN / f"{spec.name}.pt"
    if os.environ.get("DYNCORE_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        torch.save(_golden_record(spec), path)
    assert path.is_file(), f"no golden data for {spec.name}: see this module's docstring"
    for entry in torch.load(path, weights_only=True):
        sample = Sample(tuple(entry["args"]), entry["kwargs"], entry["desc"])
        for backend in ("numba", "torch"):
            out, grads = run(on(spec, backend), sample)
            torch.testing.assert_close(out, entry["out"], **F64, msg=lambda m: f"{backend}, {sample.desc}: {m}")
            assert_all_close(grads, entry["grads"], **F64)


# ----------------------------------------------------------------------------- a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_numba_with_cuda_tensors_is_refused(spec):
    sample = samples(spec, device="cuda")[0]
    with pytest.raises(ValueError, match="backend='numba'"):
        spec(sample, "numba")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_cuda_on_a_gpu_matches_the_reference(spec, dtype):
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for sample in samples(spec, dtype, device="cuda"):
        out, grads = run(on(spec, "cuda"), sample)
        assert out.device.type == "cuda"
        want_out, want = run(spec.reference, sample)
        torch.testing.assert_close(out, want_out, **tol, msg=lambda m: f"{sample.desc}: {m}")
        assert_all_close(grads, want, **tol)
        # "auto" on CUDA tensors is the CUDA kernels, and CPU tensors with "cuda" come back
        assert torch.equal(spec(sample, "auto"), out)
        cpu = spec(sample.map(torch.Tensor.cpu), "cuda")
        assert cpu.device.type == "cpu"
        torch.testing.assert_close(cpu, out.cpu(), **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_cuda_on_a_gpu_is_deterministic(spec):
    """No atomics: two runs give bitwise the same output and gradients."""
    sample = spec.random_input(7, dtype=torch.float32, device="cuda")
    first, second = run(on(spec, "cuda"), sample), run(on(spec, "cuda"), sample)
    assert torch.equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        assert torch.equal(a, b)
