"""The machine's limits and each operator's minimum cost: the roofline model (Chapter 7).

A kernel cannot finish faster than the time it needs to move its compulsory bytes through
memory, nor faster than the time it needs to do its arithmetic at the machine's peak rate::

    bound_seconds = max(bytes / bandwidth, flops / peak_flops)

* :func:`measure_bandwidth` times a STREAM-like copy (``a[:] = b``, 2 words moved per element)
  and triad (``a[:] = b + s*c``, 3 words) on arrays far larger than the caches, and keeps the
  best rate seen;
* :func:`measure_peak_flops` times a large matrix product (``2 n^3`` flops), the most
  compute-bound operation PyTorch has;
* each operator's spec (``BenchCase.cost`` in its ``spec.py``, read by :func:`operator_cost`)
  gives its :class:`Cost`: the FLOPs its equation needs (a multiply-add is 2 FLOPs, as in
  ``torch.utils.flop_counter``) and the bytes it cannot avoid moving (every input read once,
  the output written once: a lower bound, caches assumed perfect).

:func:`fraction_of_bound` is ``bound / measured``: 1 means the kernel runs at the machine's
limit, 0.25 that it takes 4 times as long as the limit allows.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from .validation import check_kernel_size, check_positive_int

__all__ = [
    "Cost", "Machine", "measure_bandwidth", "measure_peak_flops", "measure_machine", "operator_cost",
    "bound_seconds", "fraction_of_bound", "plot_roofline",
]


@dataclass(frozen=True)
class Cost:
    """The minimum work of one call: ``flops`` (multiply-add = 2) and compulsory ``bytes``."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte: where the operator sits on the roofline's x axis."""
        return self.flops / self.bytes

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


@dataclass(frozen=True)

class Machine:
    """A device's measured limits: ``bandwidth`` in bytes/s, ``peak_flops`` in FLOP/s."""

    device: str
    dtype: str
    bandwidth: float
    peak_flops: float
    threads: int
    copy_bandwidth: float = float("nan")
    triad_bandwidth: float = float("nan")

    @property
    def ridge(self) -> float:
        """The intensity (FLOP/byte) above which an operator is compute-bound."""
        return self.peak_flops / self.bandwidth

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.device} ({self.threads} threads, {self.dtype}): memory bandwidth "
                f"{self.bandwidth / 1e9:.1f} GB/s (copy {self.copy_bandwidth / 1e9:.1f}, triad "
                f"{self.triad_bandwidth / 1e9:.1f}), matmul peak {self.peak_flops / 1e9:.1f} GFLOP/s, "
                f"ridge point {self.ridge:.2f} FLOP/byte")



def check_cost_args(B, C, H, W, k) -> int:
    """Every cost model's arguments: ``B, C, H, W`` positive ints and ``k`` an odd kernel size
    (returned)."""
    for name, v in (("B", B), ("C", C), ("H", H), ("W", W)):
        check_positive_int(name, v)
    return check_kernel_size("k", k)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: first touch of the pages, kernel selection
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_bandwidth(kind: str = "triad", megabytes: float = 256, repeats: int = 5,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Best memory bandwidth (bytes/s) of a STREAM-like ``kind`` (``"copy"`` or ``"triad"``).

    Each array has ``megabytes`` MB: make it several times the last-level cache, or the caches
    answer instead of the memory. Bytes counted as STREAM does (read + written words; the
    write-allocate traffic of a cache is not counted), so the rate is what a kernel moving
    its data once can expect to see.
    """
    if kind not in ("copy", "triad"):
        raise ValueError(f"kind must be 'copy' or 'triad'; got {kind!r}")
    if not megabytes > 0:
        raise ValueError(f"megabytes must be positive; got {megabytes!r}")
    repeats = check_positive_int("repeats", repeats)
    device = torch.device(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n = int(megabytes * 1e6) // itemsize
    a = torch.zeros(n, dtype=dtype, device=device)
    b = torch.ones(n, dtype=dtype, device=device)
    if kind == "copy":
        words, fn = 2, lambda: a.copy_(b)
    else:
        c = torch.full((n,), 0.5, dtype=dtype, device=device)
        words, fn = 3, lambda: torch.add(b, c, alpha=3.0, out=a)
    return words * n * itemsize / _best_seconds(fn, device, repeats)


def measure_peak_flops(n: int = 2048, repeats: int = 5, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of an ``n x n`` matrix product (``2 n^3`` FLOPs): the arithmetic roof."""
    n = check_positive_int("n", n)
    repeats = check_positive_int("repeats", repeats)
    device = torch.device(device)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    return 2 * n ** 3 / _best_seconds(lambda: torch.mm(a, b, out=out), device, repeats)


def measure_machine(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    quick: bool = False) -> Machine:
    """Measure bandwidth (best of copy and triad) and matmul peak on ``device`` in ``dtype``.

    ``quick`` uses smaller arrays and fewer repeats (a second or two on a CPU); the full
    measurement takes a few seconds.
    """
    device = torch.device(device)
    if device.type == "cuda":
        megabytes, n = (256, 4096) if quick else (1024, 8192)
    else:
        megabytes, n = (128, 2048) if quick else (256, 2048)
    repeats = 4 if quick else 8
    copy = measure_bandwidth("copy", megabytes, repeats, device, dtype)
    triad = measure_bandwidth("triad", megabytes, repeats, device, dtype)
    peak = measure_peak_flops(n, repeats, device, dtype)
    if device.type == "cuda":
        name = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        name = "cpu"
    return Machine(name, str(dtype).replace("torch.", ""), max(copy, triad), peak,
                   torch.get_num_threads(), copy, triad)


def operator_cost(op: str, B: int, C: int, H: int, W: int, k: int, itemsize: int = 4) -> Cost:
    """:class:`Cost` of benchmark case ``op`` on ``(B, C, H, W)`` with kernel size ``k``.

    The cost function is the one the operator's spec declares (``BenchCase.cost`` in the method
    folder's ``spec.py``; :func:`dyncore.opspec.bench_cases` lists them): there is no second list.
    """
    from .opspec import get_bench_case

    return get_bench_case(op).cost(B, C, H, W, k, itemsize=itemsize)


def bound_seconds(cost: Cost, machine: Machine) -> float:
    """The roofline's lower bound on the time of one call."""
    return max(cost.bytes / machine.bandwidth, cost.flops / machine.peak_flops)


def fraction_of_bound(seconds: float, cost: Cost, machine: Machine) -> float:
    """``bound / measured``: 1 at the machine's limit; its inverse is "times slower than the limit"."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive; got {seconds!r}")
    return bound_seconds(cost, machine) / seconds


def plot_roofline(machine: Machine, points=(), ax=None, title: str | None = None):
    """Log-log roofline: attainable FLOP/s against intensity, and measured ``points``.

    ``points``: iterable of ``(label, cost, seconds)``; each is drawn at
    ``(cost.intensity, cost.flops / seconds)`` with a dotted line up to its roof.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    points = list(points)
    lo = min([0.05] + [c.intensity / 2 for _, c, _ in points])
    hi = max([4 * machine.ridge] + [c.intensity * 2 for _, c, _ in points])
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    roof = np.minimum(machine.peak_flops, xs * machine.bandwidth) / 1e9
    ax.loglog(xs, roof, "k-", lw=2, label="roof: min(peak, intensity x bandwidth)")
    ax.axvline(machine.ridge, color="0.6", ls=":", lw=1)
    markers = "osD^vP*Xh<>"
    for n, (label, cost, seconds) in enumerate(points):
        achieved = cost.flops / seconds / 1e9
        top = min(machine.peak_flops, cost.intensity * machine.bandwidth) / 1e9
        ax.plot([cost.intensity] * 2, [achieved, top], ":", color=f"C{n % 10}", lw=1)
        ax.plot(cost.intensity, achieved, markers[n % len(markers)], color=f"C{n % 10}",
                label=f"{label}: {achieved / top:.0%} of roof")
    ax.set(xlabel="arithmetic intensity (FLOP / byte)", ylabel="GFLOP/s",
           title=title or f"Roofline of {machine.device}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right")
    return ax
