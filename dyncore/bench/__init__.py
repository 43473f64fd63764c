"""Timing and memory helpers: medians and ratios over ``torch.utils.benchmark``, peak memory.

These machines are shared and noisy, so the book never quotes an absolute time alone: it
times the contenders one after another in one process and reports their ratios.

* :func:`compare`, :class:`BenchmarkTable`, :func:`time_callable`, :func:`peak_memory`: the
  helpers every chapter uses;
* :func:`interleaved`: contenders called one after another, call by call, so that a burst of
  noise from the rest of the machine hits all of them; it keeps every repetition (min, median);
* :mod:`dyncore.bench.suite` (Chapter 7): every operator x backend x size, forward and
  forward+backward, with peak memory and the roofline bound (the cases come from the operators'
  specs, :func:`dyncore.opspec.bench_cases`); :mod:`dyncore.bench.results` saves them as CSV or
  JSON with the machine's description; :mod:`dyncore.bench.__main__` is its command line,
  ``python -m dyncore.bench --help``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.utils.benchmark as tb


def _fmt_ratio(r: float) -> str:
    """Three significant digits, without scientific notation for large ratios."""
    return f"{r:,.0f}" if r >= 1000 else f"{r:.3g}"


@dataclass
class Timing:
    name: str
    median: float  # seconds
    iqr: float  # seconds
    runs: int
    min: float | None = None  # seconds: the fastest of the runs


@dataclass
class BenchmarkTable:
    """Timings of several callables measured in one run; ratios are relative to ``baseline``."""

    timings: dict[str, Timing]
    baseline: str
    title: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return self.timings[name].median

    def ratio(self, name: str, to: str | None = None) -> float:
        """``median(name) / median(to)``: how many times slower ``name`` is than ``to``."""
        return self.median(name) / self.median(to or self.baseline)

    def speedup(self, name: str, over: str) -> float:
        """``median(over) / median(name)``: how many times faster ``name`` is than ``over``."""
        return self.median(over) / self.median(name)

    def rows(self) -> list[tuple[str, float, float, float]]:
        return [(t.name, t.median * 1e3, t.iqr * 1e3, self.ratio(t.name)) for t in self.timings.values()]

    def __str__(self) -> str:
        head = f"{'':<28}{'median ms':>12}{'IQR ms':>10}{'x ' + self.baseline:>18}"
        lines = [self.title, head] if self.title else [head]
        for name, med, iqr, ratio in self.rows():
            lines.append(f"{name:<28}{med:>12.4g}{iqr:>10.2g}{_fmt_ratio(ratio):>18}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td style='text-align:left'>{n}</td><td>{m:.4g}</td><td>{i:.2g}</td><td>{_fmt_ratio(r)}</td></tr>"
            for n, m, i, r in self.rows()
        )
        caption = f"<caption>{self.title}</caption>" if self.title else ""
        return (
            f"<table>{caption}<thead><tr><th></th><th>median (ms)</th><th>IQR (ms)</th>"
            f"<th>time / {self.baseline}</th></tr></thead><tbody>{cells}</tbody></table>"
        )


def time_callable(fn: Callable[[], object], name: str = "", min_run_time: float = 0.5) -> Timing:
    """Median time of ``fn()`` by ``torch.utils.benchmark`` (CUDA is synchronized for us)."""
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads(),
                     label=name)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(name, m.median, m.iqr, len(m.times), min(m.times))


def compare(fns: dict[str, Callable[[], object]], baseline: str | None = None,
            min_run_time: float = 0.5, title: str = "", warmup: int = 1) -> BenchmarkTable:
    """Time each callable (after ``warmup`` calls, which also trigger JIT compilation)."""
    if not fns:
        raise ValueError("fns must name at least one callable")
    baseline = baseline or next(iter(fns))
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {list(fns)}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timings = {name: time_callable(fn, name, min_run_time) for name, fn in fns.items()}
    return BenchmarkTable(timings, baseline, title)


@dataclass
class Spread:
    """The per-call times (seconds) of one contender over the repetitions of :func:`interleaved`."""

    name: str
    times: list[float]
    number: int  # calls averaged in each repetition

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4)
        return q[2] - q[0]


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 1,
                min_sample: float = 2e-3) -> dict[str, Spread]:
    """Time the callables interleaved: each repetition calls every one of them in turn.

    On a shared machine the load changes from second to second; timing one contender for a
    while and then the next lets a burst of noise fall on one of them only. Here repetition
    ``i`` times ``fns`` one after another (in reverse order on odd ``i``, so neither always goes
    first), so neighbouring samples of all contenders see the same machine, and the ratio of
    their medians is robust to the noise. A callable faster than ``min_sample`` seconds is
    called several times per sample (the same number in every repetition). ``warmup`` calls
    first (JIT compilation, algorithm selection). Returns a :class:`Spread` per name.
    """
    if not fns:
        raise ValueError("fns must name at least one callable")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive int; got {repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0; got {warmup!r}")
    numbers = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        once = time.perf_counter() - start
        numbers[name] = max(1, math.ceil(min_sample / max(once, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            fn, number = fns[name], numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            _sync()
            times[name].append((time.perf_counter() - start) / number)
    return {name: Spread(name, times[name], numbers[name]) for name in names}


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"{key} not found in /proc/self/status")


def peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu", warmup: int = 1) -> int:
    """Extra memory, in bytes, that one call of ``fn()`` needs at its peak.

    * CUDA: ``torch.cuda.max_memory_allocated`` over the call, minus what was allocated before.
    * CPU (Linux): the process's peak resident memory (``VmHWM``), reset just before the call
      by writing ``5`` to ``/proc/self/clear_refs``, minus the resident memory at that moment.
      Freed heap memory is first returned to the system (``malloc_trim``) so that the call's
      allocations show up as new pages. This sees every allocation -- PyTorch's, NumPy's and
      Numba's -- at page granularity (4 KiB), for the whole process: run nothing else meanwhile.

    ``warmup`` calls come first, so one-time costs (JIT compilation, caches) are not counted.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("peak_memory on the CPU needs Linux (/proc/self/clear_refs)")
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _proc_status_bytes("VmRSS:")
    fn()
    return max(0, _proc_status_bytes("VmHWM:") - before)


# glibc's mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def reuse_freed_memory():
    """Within the block, memory a process frees stays in it, ready for its next allocation.

    By default glibc's ``malloc`` serves a large request with a fresh ``mmap`` and gives it back
    on ``free`` (above a threshold that starts at 128 KiB and adapts up to 32 MiB), and trims
    what is freed at the top of its heap: each call that makes a new output tensor then
    pays the kernel for zeroing and mapping every page of it on first touch. On the virtual
    machines of this book that costs about as much as a fast kernel takes to compute the
    output (Chapter 7 measures both), so a benchmark of two kernels would largely compare page
    faults. Allocators that keep freed memory (jemalloc, tcmalloc; PyTorch's CPU
    performance guide recommends them) avoid this; here glibc is told to do the same
    (``mallopt``: no ``mmap``, no trimming of the heap), for every allocation in the process,
    so every contender gains alike. The defaults are restored on exit and the heap trimmed.

    Yields a short description of the allocator for result files (``"system malloc"`` where
    glibc's ``mallopt`` is unavailable, and then changes nothing).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        yield "system malloc"
        return
    ok = mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield ("glibc malloc keeping freed memory (mallopt: M_MMAP_MAX=0, M_TRIM_THRESHOLD=2**31-1)"
               if ok else "system malloc")
    finally:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


# The suite (operators x backends x sizes, result files) and its command line, ``python -m
# dyncore.bench``; imported last because it uses the helpers above.
from .results import Results  # noqa: E402, F401  (re-exported)
from .suite import available_operators, run, versus_peer  # noqa: E402, F401  (re-exported)
