"""The benchmark suite: every operator x backend x size, forward and forward+backward (Chapter 7).

The cases are not listed here: each operator's spec (``spec.py`` in its method folder) declares
its :class:`dyncore.opspec.BenchCase` (the names results files use: ``conv2d``, ``depthwise``,
``dfn``, ``lsdfn``, ``dcm``, ``pad``, ``ddf``), with how to make its inputs for a size
``(B, C, H, W)`` and an odd kernel size ``k``, how to call it on a backend, its cost model and
its memory estimate. :func:`dyncore.opspec.bench_cases` collects them; ``python -m dyncore.bench
--list`` prints them.

``native`` is PyTorch's own ``F.conv2d`` kernel (oneDNN on the CPU, cuDNN on a GPU), the
reference every dynamic layer is measured against. ``peer`` is what a PyTorch user would write
instead of our kernels (each spec's ``BenchCase.peer``): the equation's shifted multiply-adds
compiled by ``torch.compile`` (Inductor) for DFN, LS-DFN and DDF, oneDNN's convolutions for the
others. :func:`versus_peer` times our ``numba`` kernel and its peer interleaved, call by call
(:func:`dyncore.bench.interleaved`), after checking that they agree, and records the spread,
the thread counts and the machine's load. ``loops`` is never benchmarked: it is the
specification, thousands of times slower.

:func:`run` times each case with :func:`dyncore.bench.time_callable` (``torch.utils.benchmark``)
and measures its peak memory with :func:`dyncore.bench.peak_memory`; the result is a
:class:`~dyncore.bench.results.Results` with the machine's description, written to CSV or JSON
by its ``save`` (:mod:`dyncore.bench.results`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import roofline
from ..opspec import bench_cases, get_bench_case
from ..utils import cpu_fingerprint
from . import interleaved, peak_memory, reuse_freed_memory, time_callable
from .results import Results, describe_machine, format_size

MODES = ("forward", "backward")
ALL_BACKENDS = ("native", "numba", "torch", "cuda", "peer")

_COMPILED_PEERS: dict[str, Callable] = {}


def peer_function(op: str) -> Callable:
    """``fn(k, *inputs)``: the peer of bench case ``op``, compiled by ``torch.compile`` (Inductor,
    static shapes) when its spec says so; compiled once per process and reused."""
    case = get_bench_case(op)
    if case.peer is None:
        raise ValueError(f"op: {op!r} has no peer")
    if not case.peer_compiled:
        return case.peer
    if op not in _COMPILED_PEERS:
        _COMPILED_PEERS[op] = torch.compile(case.peer, dynamic=False)
    return _COMPILED_PEERS[op]


def _call(op: str, backend: str, k: int, inputs):
    if backend == "peer":
        return peer_function(op)(k, *inputs)
    return get_bench_case(op).call(backend, k, *inputs)

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


def _parse_sizes(sizes) -> list[Size]:
    """Sizes given as ``"BxCxHxW"`` strings or 4-tuples, each checked by :func:`parse_size`."""
    return [parse_size(s) if isinstance(s, str) else parse_size(format_size(s)) for s in sizes]


def _check_members(name: str, values, allowed, problem: str = "unknown {!r}") -> None:
    """Every one of ``values`` is in ``allowed``; else ``ValueError`` naming the argument ``name``,
    ``problem`` (formatted with the value) and the choices."""
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name}: {problem.format(v)}; choose from {list(allowed)}")


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
        return _case_callable(self.op, self.backend, self.k, self.mode, inputs)


def _case_callable(op, backend, k, mode, inputs):
    if mode == "forward":
        def forward():
            with torch.no_grad():
                return _call(op, backend, k, inputs)
        return forward
    inputs = tuple(t.requires_grad_() for t in inputs)
    with torch.no_grad():
        grad = torch.ones_like(_call(op, backend, k, inputs))

    def forward_backward():
        for t in inputs:
            t.grad = None
        _call(op, backend, k, inputs).backward(grad)
        return tuple(t.grad for t in inputs)
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
    if backend == "peer":
        return None if get_bench_case(op).peer is not None else f"{op} has no peer"
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
    _check_members("ops", ops, known, "unknown operator {!r}")
    _check_members("backends", backends, ALL_BACKENDS, "unknown backend {!r}")
    _check_members("modes", modes, MODES, "unknown mode {!r}")
    sizes = _parse_sizes(sizes)
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
        load = os.getloadavg()[0]
        t = time_callable(_warm(fn), f"{case.op}/{case.backend}", min_run_time)
        peak = peak_memory(fn, device=device, warmup=0) if memory else None
        B, C, H, W = case.size
        cost = roofline.operator_cost(case.op, B, C, H, W, case.k, itemsize)
        rec = dict(op=case.op, backend=case.backend, mode=case.mode, B=B, C=C, H=H, W=W, k=case.k,
                   dtype=str(dtype).replace("torch.", ""), device=device, median_s=t.median,
                   iqr_s=t.iqr, runs=t.runs, peak_bytes=peak, flops=cost.flops, bytes=cost.bytes,
                   bound_s=None, fraction_of_bound=None, min_s=t.min, speedup_vs_peer=None, load=load,
                   peer_name=get_bench_case(case.op).peer_name if case.backend == "peer" else None)
        if limits is not None and case.mode == "forward":
            rec["bound_s"] = roofline.bound_seconds(cost, limits)
            rec["fraction_of_bound"] = rec["bound_s"] / t.median
        records.append(rec)
        del fn
    return Results(records, describe_machine(device, limits), skipped)


def _warm(fn):
    fn()  # compile (Numba), pick algorithms (oneDNN/cuDNN) before timing
    return fn


def check_peer(op: str, k: int, inputs, mode: str = "forward", ours: str = "numba") -> None:
    """Raise an ``AssertionError`` unless ``op``'s peer and backend ``ours`` agree on ``inputs``
    (the output, and in ``"backward"`` mode the gradients of every input, to float32
    round-off relative to the largest value)."""
    def run_once(backend):
        leaves = tuple(t.detach().clone().requires_grad_(mode == "backward") for t in inputs)
        with torch.set_grad_enabled(mode == "backward"):
            out = _call(op, backend, k, leaves)
        if mode != "backward":
            return (out,)
        out.backward(torch.ones_like(out))
        return (out.detach(),) + tuple(t.grad for t in leaves)

    for i, (a, b) in enumerate(zip(run_once("peer"), run_once(ours))):
        scale = float(b.abs().max()) if b.numel() else 1.0
        what = "the output" if i == 0 else f"the gradient of input {i - 1}"
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * max(scale, 1.0),
                                   msg=lambda m: f"{op}: the peer and {ours!r} differ in {what}: {m}")


def versus_peer(ops: Sequence[str] | None = None, sizes: Sequence[Size | str] = ((2, 64, 128, 160),),
                k: int = 3, modes: Sequence[str] = MODES, repeats: int = 15, ours: str = "numba",
                device: str = "cpu", dtype: torch.dtype = torch.float32, check: bool = True,
                progress: bool = False, max_bytes: int | None = None,
                limits: roofline.Machine | None = None, reuse_memory: bool = True) -> Results:
    """Our ``ours`` kernel against each operator's peer, timed interleaved call by call.

    For every ``op x size x mode``: the same inputs for both, the peer checked equal to ours
    (:func:`check_peer`, unless ``check=False``), then :func:`dyncore.bench.interleaved` with
    ``repeats`` repetitions. Two records per case (``backend`` ``ours`` and ``"peer"``) with
    ``median_s``, ``min_s``, ``iqr_s`` and ``runs``; ours also carries ``speedup_vs_peer``
    (the peer's median over ours: above 1, ours is faster) and the peer record ``peer_name``.
    The machine's description records the thread counts and the load average before and after.
    With ``reuse_memory`` (the default) both run inside :func:`dyncore.bench.reuse_freed_memory`,
    so that neither pays the operating system for fresh pages of its output on every call;
    the allocator is recorded in the machine's description.
    With ``limits`` (a measured :class:`dyncore.roofline.Machine`) forward records also carry
    their roofline bound and fraction of it.
    """
    known = [c.name for c in bench_cases() if c.peer is not None]
    ops = known if ops is None else list(ops)
    _check_members("ops", ops, known, "{!r} has no peer")
    _check_members("modes", modes, MODES, "unknown mode {!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive int; got {repeats!r}")
    sizes = _parse_sizes(sizes)
    itemsize = torch.empty((), dtype=dtype).element_size()
    max_bytes = default_memory_budget(device) if max_bytes is None else max_bytes
    load_before = os.getloadavg()
    todo = [(op, size, mode) for op in ops for size in sizes for mode in modes]
    if progress:
        from tqdm.auto import tqdm
        todo = tqdm(todo, desc="versus peer")
    with reuse_freed_memory() if reuse_memory else contextlib.nullcontext("system malloc") as allocator:
        records, skipped = _versus_peer_cases(todo, k, ours, device, dtype, check, repeats, itemsize,
                                              max_bytes, limits)
    machine = describe_machine(device, limits)
    machine["allocator"] = allocator
    machine.update(cpu_fingerprint())  # ratios differ between CPUs: say which one measured them
    machine["peer_checked"] = bool(check)
    machine["fingerprints"] = " ".join(f"{op}:{source_fingerprint(op)}" for op in ops)
    machine["load_before"] = " ".join(f"{v:.2f}" for v in load_before)
    machine["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return Results(records, machine, skipped)


def _versus_peer_cases(todo, k, ours, device, dtype, check, repeats, itemsize, max_bytes, limits):
    """The records of :func:`versus_peer` for each ``(op, size, mode)`` of ``todo``, and the
    cases skipped for memory."""
    records, skipped = [], []
    for op, size, mode in todo:
        case = get_bench_case(op)
        need = 2 * estimate_bytes(op, ours, size, k, mode, itemsize)  # ours and the peer's, about
        if need > max_bytes:
            skipped.append(f"{op} {mode} {format_size(size)}: needs about {need / 2**30:.1f} GiB, "
                           f"more than the budget of {max_bytes / 2**30:.1f} GiB")
            continue
        if case.peer_compiled:  # a fresh compilation for each case: each size and mode is a new
            torch._dynamo.reset()  # graph, and past torch._dynamo's recompile limit a function runs eagerly
            _COMPILED_PEERS.pop(op, None)
        gen = torch.Generator(device=torch.device(device)).manual_seed(0)
        inputs = case.make_inputs(*size, k, dtype, torch.device(device), gen)
        if check:
            check_peer(op, k, inputs, mode, ours)
        fns = {b: _case_callable(op, b, k, mode, tuple(t.detach().clone() for t in inputs))
               for b in (ours, "peer")}
        load = os.getloadavg()[0]
        spread = interleaved(fns, repeats=repeats)
        cost = case.cost(*size, k, itemsize=itemsize)
        B, C, H, W = size
        for b in (ours, "peer"):
            s = spread[b]
            rec = dict(op=op, backend=b, mode=mode, B=B, C=C, H=H, W=W, k=k,
                       dtype=str(dtype).replace("torch.", ""), device=str(device), median_s=s.median,
                       iqr_s=s.iqr, runs=len(s.times), peak_bytes=None, flops=cost.flops,
                       bytes=cost.bytes, bound_s=None, fraction_of_bound=None, min_s=s.min,
                       speedup_vs_peer=None if b == "peer" else spread["peer"].median / s.median,
                       load=load, peer_name=case.peer_name if b == "peer" else None)
            if limits is not None and mode == "forward":
                rec["bound_s"] = roofline.bound_seconds(cost, limits)
                rec["fraction_of_bound"] = rec["bound_s"] / s.median
            records.append(rec)
        del fns
    return records, skipped


def source_fingerprint(op: str) -> str:
    """A short hash of what a :func:`versus_peer` record of ``op`` measured: the source of the
    operator's ``numba`` kernels (``numba_cpu.py`` of its method folder) and of its peer. A
    recorded results file whose fingerprints differ from today's was measured on other code."""
    import hashlib
    import importlib
    import inspect

    case = get_bench_case(op)
    package = case.call.__module__.rsplit(".", 1)[0]
    kernels = importlib.import_module(f"{package}.numba_cpu")
    text = inspect.getsource(kernels) + "\n" + inspect.getsource(case.peer) + case.peer_name
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def peer_table(results: Results, ours: str = "numba") -> str:
    """One line per operator, size and mode of a :func:`versus_peer` run: the median and min of
    ours and of the peer (ms), how many times faster ours is (the ratio of the medians) and, for
    a forward measured with the machine's limits, how many times its roofline bound ours takes."""
    def ms(r):
        return f"{r['median_s'] * 1e3:.3g} ({r['min_s'] * 1e3:.3g})"

    head = (f"{'op':<10}{'mode':<9}{'size':<16}{ours + ' ms (min)':>20}{'peer ms (min)':>20}"
            f"{'peer/' + ours:>12}{'x bound':>9}   peer")
    lines = [head]
    for r in results.records:
        if r["backend"] != ours or r.get("speedup_vs_peer") is None:
            continue
        p = results.get(op=r["op"], mode=r["mode"], backend="peer", B=r["B"], C=r["C"], H=r["H"],
                        W=r["W"], k=r["k"])
        bound = f"{1 / r['fraction_of_bound']:.1f}" if r.get("fraction_of_bound") else "-"
        lines.append(f"{r['op']:<10}{r['mode']:<9}{format_size((r['B'], r['C'], r['H'], r['W'])):<16}"
                     f"{ms(r):>20}{ms(p):>20}{r['speedup_vs_peer']:>12.2f}{bound:>9}   {p['peer_name']}")
    return "\n".join(lines)
