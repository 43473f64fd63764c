"""One record per operator: everything the tests, the benchmark, the cost model and the
side-by-side comparison need to know about it, written once (in the spirit of PyTorch's OpInfo).

Each method folder has a ``spec.py`` whose ``SPECS`` tuple holds the :class:`OpSpec` of its
operator(s), made by :meth:`OpSpec.from_module` from the names every ``spec.py`` defines (the
functions listed below, ``BENCH`` and ``LAYER``). :func:`all_specs` finds them by walking the
packages of :mod:`dyncore`, so there is no second list of operators anywhere: a new method folder
with a ``spec.py`` is picked up by the conformance tests (``tests/test_conformance.py``), by
``python -m dyncore.bench``, by :mod:`dyncore.roofline` and by Chapter 7's comparison of all
layers.

What a spec holds:

* ``function``, the public operator, and the ``backends`` it has;
* ``sample_inputs(dtype, device)``: a handful of small calls (:class:`Sample`) that together
  cover odd sizes, ``H != W``, strides and dilations where the operator has them, ``k = 1``
  and a kernel larger than the image. Small enough for ``gradcheck`` and the ``"loops"`` backend;
* ``random_input(seed, dtype, device)``: one call drawn at random from the same family, for
  property tests (``hypothesis`` draws the seed);
* ``reference(*args, **kwargs)``: the equation written with plain PyTorch tensor operations
  (zero padding and shifted slices, or ``F.conv2d``), independent of every backend and
  differentiable by autograd: the ground truth the backends are tested against;
* ``error_inputs()``: bad calls (:class:`ErrorCase`) with the exception type and the words the
  message must contain (the name of the argument that is wrong);
* ``bench``: the benchmark cases (:class:`BenchCase`: inputs for a size ``B x C x H x W`` and
  kernel size ``k``, the call, the cost model in FLOPs and bytes of :mod:`dyncore.roofline`);
* ``layer``: the learnable layer built on the operator (:class:`LayerSpec`), as it fills the slot
  of Chapter 7's comparison, with its paper's parameter formula;
* ``batched_args``: the positions of the arguments that have a batch axis first (``None``: every
  tensor argument), so that a test can cut a sample down to an empty batch.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch

from .backend import BACKENDS

__all__ = ["Sample", "ErrorCase", "BenchCase", "LayerSpec", "OpSpec", "all_specs", "get_spec",
           "bench_cases", "get_bench_case", "layer_specs", "get_layer_spec", "unfold_memory"]


@dataclass(frozen=True)
class Sample:
    """One call of an operator: ``function(*args, **kwargs)``.

    ``args`` are the positional tensor arguments in the operator's order (``None`` where an
    optional tensor, such as a bias, is absent); ``kwargs`` the keyword arguments other than
    ``backend``. ``desc`` says what the case exercises (``"odd size, stride 2"``).
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    desc: str = ""

    def tensors(self) -> list[torch.Tensor]:
        return [a for a in self.args if isinstance(a, torch.Tensor)]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Sample":
        """The same call with ``fn`` applied to every tensor argument."""
        args = tuple(fn(a) if isinstance(a, torch.Tensor) else a for a in self.args)
        return Sample(args, dict(self.kwargs), self.desc)


@dataclass(frozen=True)
class ErrorCase:
    """A bad call and what it must raise: ``error`` (``ValueError`` or ``TypeError``) whose message
    matches the regular expression ``match`` (which names the offending argument)."""

    args: tuple
    kwargs: dict
    error: type
    match: str
    desc: str = ""


@dataclass(frozen=True)
class BenchCase:
    """One operator configuration of the benchmark (``python -m dyncore.bench``).

    ``name`` is the name results files use (``"ddf"``, ``"depthwise"``); ``backends`` may include
    ``"native"`` (PyTorch's own kernel). ``make_inputs(B, C, H, W, k, dtype, device, generator)``
    returns the tensors, ``call(backend, k, *inputs)`` runs the operator, and
    ``cost(B, C, H, W, k, *, itemsize=4)`` is its :class:`dyncore.roofline.Cost` (the minimum
    FLOPs and bytes of a forward). ``memory(backend, B, C, H, W, k, mode, itemsize)``, if given,
    estimates the bytes a run needs (inputs, output, temporaries), so the benchmark can skip a
    case that would not fit instead of exhausting the memory.

    ``peer(k, *inputs)`` is the alternative a PyTorch user would write instead of our kernels
    (the benchmark's ``"peer"`` row): plain PyTorch, named by ``peer_name``; with
    ``peer_compiled`` the benchmark runs it compiled by ``torch.compile`` (Inductor).
    ``peer_targets``, if set, is how many times faster than the peer our ``"numba"`` kernel
    should be, ``(forward, forward + backward)`` (Chapter 7).
    """

    name: str
    description: str
    backends: tuple[str, ...]
    make_inputs: Callable
    call: Callable
    cost: Callable
    memory: Callable | None = None
    peer: Callable | None = None
    peer_name: str = ""
    peer_compiled: bool = False
    peer_targets: tuple[float, float] | None = None


@dataclass(frozen=True)
class LayerSpec:
    """The learnable layer built on an operator, as Chapter 7 puts it in one network slot.

    ``make(channels, backend)`` returns a ``channels -> channels`` module with a same-size output
    (kernel size 3); ``parameter_formula(channels)`` is its parameter count by the paper's formula;
    ``local_field`` the side of the window one output pixel reads through local paths;
    ``global_context`` whether its filters also depend on a pooling of the whole image;
    ``training_backend`` the CPU backend that trains it fastest at Chapter 7's size (timed when
    the side-by-side experiment was set up, and fixed so that its runs repeat exactly);
    ``headline`` the paper's headline figure for the layer against its baseline, as quoted.
    """

    name: str
    paper: str
    make: Callable[[int, str], torch.nn.Module]
    parameter_formula: Callable[[int], int]
    local_field: int
    global_context: bool = False
    description: str = ""
    training_backend: str = "numba"
    headline: str = ""


@dataclass(frozen=True)
class OpSpec:
    """Everything about one operator (see the module docstring)."""

    name: str
    function: Callable
    chapter: int
    equation: str
    sample_inputs: Callable[..., Iterable[Sample]]
    random_input: Callable[..., Sample]
    reference: Callable
    error_inputs: Callable[[], Iterable[ErrorCase]]
    backends: tuple[str, ...] = BACKENDS
    bench: tuple[BenchCase, ...] = ()
    layer: LayerSpec | None = None
    batched_args: tuple[int, ...] | None = None
    description: str = ""

    @classmethod
    def from_module(cls, module: str, name: str, function: Callable, **fields) -> "OpSpec":
        """The spec of ``function`` that the spec module ``module`` (its ``__name__``) describes
        under the names every ``spec.py`` uses: the functions ``sample_inputs``, ``random_input``,
        ``reference`` and ``error_inputs``, ``BENCH`` (one :class:`BenchCase` or a tuple of them)
        and ``LAYER`` (absent: no benchmark, no layer). ``fields`` are the other fields
        (``chapter``, ``equation``, ``description``, ...)."""
        names = vars(sys.modules[module])
        bench = names.get("BENCH", ())
        return cls(name, function, sample_inputs=names["sample_inputs"], random_input=names["random_input"],
                   reference=names["reference"], error_inputs=names["error_inputs"],
                   bench=(bench,) if isinstance(bench, BenchCase) else tuple(bench),
                   layer=names.get("LAYER"), **fields)

    def __call__(self, sample: Sample, backend: str = "auto"):
        return self.function(*sample.args, **sample.kwargs, backend=backend)

    def __repr__(self) -> str:
        return f"OpSpec({self.name!r}, chapter {self.chapter})"

    def empty_batch(self, sample: Sample) -> Sample:
        """``sample`` with its batch cut to zero images (arguments without a batch axis kept)."""
        batched = self.batched_args
        args = tuple(a[:0] if isinstance(a, torch.Tensor) and (batched is None or i in batched) else a
                     for i, a in enumerate(sample.args))
        return Sample(args, dict(sample.kwargs), f"{sample.desc}, empty batch")


def shifted_taps(x: torch.Tensor, k: int, tap_weight: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``sum_t tap_weight(t) * x`` shifted by tap ``t``, zero-padded: a per-pixel ``k x k`` filter
    as a PyTorch user writes it for ``torch.compile`` (``k*k`` shifted multiply-adds of the
    padded input, which Inductor fuses into one loop); the peer of DFN's and DDF's kernels."""
    H, W = x.shape[-2:]
    r = (k - 1) // 2
    xp = torch.nn.functional.pad(x, (r, r, r, r))
    out = 0
    for t in range(k * k):
        i, j = divmod(t, k)
        out = out + xp[:, :, i:i + H, j:j + W] * tap_weight(t)
    return out


def unfold_memory(cost: Callable) -> Callable:
    """``BenchCase.memory`` for an operator whose ``"torch"`` backend unfolds (im2col) ``k*k``
    copies of the input: inputs and output (``cost``'s bytes), plus that unfolded tensor and its
    gradient; a backward pass needs about three times the forward."""
    def memory(backend, B, C, H, W, k, mode, itemsize=4):
        need = cost(B, C, H, W, k, itemsize=itemsize).bytes
        if backend == "torch":
            need += 2 * B * H * W * C * k * k * itemsize
        return int(need * (3 if mode == "backward" else 1))
    return memory


def _spec_modules() -> list:
    import dyncore

    modules = []
    for info in pkgutil.iter_modules(dyncore.__path__):
        if not info.ispkg:
            continue
        name = f"dyncore.{info.name}.spec"
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return modules


_SPECS: tuple[OpSpec, ...] | None = None


def all_specs() -> tuple[OpSpec, ...]:
    """Every operator's spec, in the order the chapters teach them."""
    global _SPECS
    if _SPECS is None:
        specs = [s for m in _spec_modules() for s in m.SPECS]
        _SPECS = tuple(sorted(specs, key=lambda s: (s.chapter, s.name)))
    return _SPECS


def _lookup(kind: str, name, items: Sequence, key: Callable):
    names = [key(i) for i in items]
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a str, one of {names}; got {type(name).__name__} {name!r}")
    for item, n in zip(items, names):
        if n == name:
            return item
    raise ValueError(f"{kind} must be one of {names}; got {name!r}")


def get_spec(name: str) -> OpSpec:
    """The spec of operator ``name`` (``"ddf"``, ``"dynamic_filter"``, ...)."""
    return _lookup("name", name, all_specs(), lambda s: s.name)


def bench_cases() -> tuple[BenchCase, ...]:
    """Every benchmark case of every operator, in chapter order."""
    return tuple(c for s in all_specs() for c in s.bench)


def get_bench_case(name: str) -> BenchCase:
    return _lookup("op", name, bench_cases(), lambda c: c.name)


def layer_specs() -> tuple[LayerSpec, ...]:
    """The layer of every operator that has one, the plain convolution (the baseline) first."""
    return tuple(s.layer for s in all_specs() if s.layer is not None)


def get_layer_spec(name: str) -> LayerSpec:
    return _lookup("name", name, layer_specs(), lambda s: s.name)
