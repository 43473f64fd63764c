"""The benchmark suite: every operator x backend x size, forward and forward+backward (Chapter 7).

The cases are not listed here: each operator's spec (``spec.py`` in its method folder) declares
its :class:`dyncore.opspec.BenchCase` (the names results files use: ``conv2d``, ``depthwise``,
``dfn``, ``lsdfn``, ``dcm``, ``pad``, ``ddf``), with how to make its inputs for a size
``(B, C, H, W)`` and an odd kernel size ``k``, how to call it on a backend, its cost model and
its memory estimate. :func:`dyncore.opspec.bench_cases` collects them; ``python -m dyncore.bench
--list`` prints them.

``native`` is PyTorch's own ``F.conv2d`` kernel (oneDNN on the CPU, cuDNN on a GPU), the
reference every dynamic layer is measured against. ``loops`` is never benchmarked: it is the
specification, thousands of times slower.

:func:`run` times each case with :func:`dyncore.bench.time_callable` (``torch.utils.benchmark``)
and measures its peak memory with :func:`dyncore.bench.peak_memory`; the result is a
:class:`~dyncore.bench.results.Results` with the machine's description, written to CSV or JSON
by its ``save`` (:mod:`dyncore.bench.results`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import roofline
from ..opspec import bench_cases, get_bench_case
from . import peak_memory, time_callable
from .results import Results, describe_machine, format_size

MODES = ("forward", "backward")
ALL_BACKENDS = ("native", "numba", "torch", "cuda")

Size = tuple[int, int, int, int]


def available_operators() -> list[str]:
    """Names of the benchmark cases of every operator spec, in chapter order."""
    return [case.name for case in bench_cases()]


def parse_size(text: str) -> Size:
    """``"2x64x128x128"`` -> ``(2, 64, 128, 128)`` (B x C x H x W, each a positive int)."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise ValueError(f"a size must be BxCxHxW with four positive ints, e.g. 2x64x128x128; got {text!r}")
    return size  # type: ignore[return-value]


@dataclass
class Case:
    """One measurement: ``op`` on ``backend`` at ``size`` and ``k``, in ``mode``."""

    op: str
    backend: str
    size: Size
    k: int
    mode: str
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

    def callable(self, seed: int = 0) -> Callable[[], object]:
        """A zero-argument function that runs the case once (forward, or forward + backward)."""
        op = get_bench_case(self.op)
        device = torch.device(self.device)
        gen = torch.Generator(device=device).manual_seed(seed)
        inputs = op.make_inputs(*self.size, self.k, self.dtype, device, gen)
        if self.mode == "forward":
            def forward():
                with torch.no_grad():
                    return op.call(self.backend, self.k, *inputs)
            return forward
        inputs = tuple(t.requires_grad_() for t in inputs)
        with torch.no_grad():
            grad = torch.ones_like(op.call(self.backend, self.k, *inputs))

        def forward_backward():
            for t in inputs:
                t.grad = None
            op.call(self.backend, self.k, *inputs).backward(grad)
        return forward_backward


def estimate_bytes(op: str, backend: str, size: Size, k: int, mode: str, itemsize: int = 4) -> int:
    """A rough upper estimate of the memory one case needs (inputs, output, temporaries).

    The case's own estimate (``BenchCase.memory``: the vectorized ``"torch"`` backends build
    unfolded copies, and a backward pass keeps them and their gradients) when its spec gives
    one; otherwise the compulsory bytes of its cost model, three times over for a backward.
    """
    case = get_bench_case(op)
    B, C, H, W = size
    if case.memory is not None:
        return int(case.memory(backend, B, C, H, W, k, mode, itemsize))
    need = case.cost(B, C, H, W, k, itemsize=itemsize).bytes
    return int(need * (3 if mode == "backward" else 1))


def default_memory_budget(device: str = "cpu") -> int:
    """Half the GPU's memory, or a quarter of the machine's RAM: cases estimated above it are skipped."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_properties(torch.device(device)).total_memory // 2
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 4 * 2**30


def skip_reason(op: str, backend: str, device: str) -> str | None:
    """Why ``op`` on ``backend`` cannot be benchmarked on ``device`` (None when it can)."""
    if backend not in get_bench_case(op).backends:
        return f"{op} has no {backend!r} backend"
    device_type = torch.device(device).type
    if backend == "cuda" and device_type != "cuda":
        return "the 'cuda' backend is timed only on a GPU (--device cuda); the simulator is not a benchmark"
    if backend == "numba" and device_type == "cuda":
        return "the 'numba' backend runs on the CPU only"
    return None


def run(ops: Sequence[str] | None = None, backends: Sequence[str] = ("native", "numba", "torch"),
        sizes: Sequence[Size | str] = ((1, 32, 64, 64),), kernel_sizes: Sequence[int] = (3,),
        modes: Sequence[str] = ("forward",), device: str = "cpu", dtype: torch.dtype = torch.float32,
        min_run_time: float = 0.2, memory: bool = True, limits: roofline.Machine | bool | None = None,
        progress: bool = False, max_bytes: int | None = None) -> Results:
    """Time (and measure the peak memory of) every ``op x backend x size x k x mode``.

    Combinations that cannot run (no such backend, ``"cuda"`` without a GPU) are skipped and listed in ``Results.skipped``. ``limits``: a measured
    :class:`dyncore.roofline.Machine` to compute each record's bound and fraction of bound,
    ``True`` to measure one now (quickly), ``None``/``False`` for none. Cases whose
    :func:`estimate_bytes` exceeds ``max_bytes`` (default :func:`default_memory_budget`) are
    skipped too, instead of exhausting the memory.
    """
    known = available_operators()
    ops = known if ops is None else list(ops)
    for op in ops:
        if op not in known:
            raise ValueError(f"ops: unknown operator {op!r}; choose from {known}")
    for b in backends:
        if b not in ALL_BACKENDS:
            raise ValueError(f"backends: unknown backend {b!r}; choose from {list(ALL_BACKENDS)}")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"modes: unknown mode {m!r}; choose from {list(MODES)}")
    sizes = [parse_size(s) if isinstance(s, str) else parse_size(format_size(s)) for s in sizes]
    device = str(torch.device(device))
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for, but PyTorch sees no CUDA GPU on this machine")
    if limits is True:
        limits = roofline.measure_machine(device, dtype, quick=True)
    limits = limits or None
    itemsize = torch.empty((), dtype=dtype).element_size()
    max_bytes = default_memory_budget(device) if max_bytes is None else max_bytes
    cases, skipped = [], []
    for op in ops:
        for backend in backends:
            reason = skip_reason(op, backend, device)
            if reason:
                skipped.append(f"{op}/{backend}: {reason}")
                continue
            for size in sizes:
                for k in kernel_sizes:
                    for mode in modes:
                        need = estimate_bytes(op, backend, size, int(k), mode, itemsize)
                        if need > max_bytes:
                            skipped.append(f"{op}/{backend} {mode} {format_size(size)} k={k}: needs about "
                                           f"{need / 2**30:.1f} GiB, more than the budget of "
                                           f"{max_bytes / 2**30:.1f} GiB")
                            continue
                        cases.append(Case(op, backend, size, int(k), mode, dtype, device))
    iterator = cases
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(cases, desc="benchmarks")
    records = []
    for case in iterator:
        fn = case.callable()
        t = time_callable(_warm(fn), f"{case.op}/{case.backend}", min_run_time)
        peak = peak_memory(fn, device=device, warmup=0) if memory else None
        B, C, H, W = case.size
        cost = roofline.operator_cost(case.op, B, C, H, W, case.k, itemsize)
        rec = dict(op=case.op, backend=case.backend, mode=case.mode, B=B, C=C, H=H, W=W, k=case.k,
                   dtype=str(dtype).replace("torch.", ""), device=device, median_s=t.median,
                   iqr_s=t.iqr, runs=t.runs, peak_bytes=peak, flops=cost.flops, bytes=cost.bytes,
                   bound_s=None, fraction_of_bound=None)
        if limits is not None and case.mode == "forward":
            rec["bound_s"] = roofline.bound_seconds(cost, limits)
            rec["fraction_of_bound"] = rec["bound_s"] / t.median
        records.append(rec)
        del fn
    return Results(records, describe_machine(device, limits), skipped)


def _warm(fn):
    fn()  # compile (Numba), pick algorithms (oneDNN/cuDNN) before timing
    return fn
