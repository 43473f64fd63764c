"""The benchmark suite: every operator x backend x size, forward and forward+backward (Chapter 7).

An *operator* here is one of the book's layers with inputs generated for a size
``(B, C, H, W)`` and an odd kernel size ``k`` (:data:`OPERATORS`):

=============  ==========================================================  ====================
name           what runs                                                   backends
=============  ==========================================================  ====================
``conv2d``     dense ``C -> C`` convolution                                native, numba, torch, cuda
``depthwise``  depthwise convolution (``groups = C``)                      native, numba, torch, cuda
``dfn``        DFN's ``dynamic_filter`` (Chapter 2)                         numba, torch, cuda
``lsdfn``      LS-DFN's ``large_sampling_filter``, ``Co = C``, ``s = 3``   numba, torch, cuda
``dcm``        DMNet's ``context_filter`` (Chapter 4)                       numba, torch, cuda
``pad``        PAD's ``adaptive_dilation_conv``, soft gates, dilations 1,2,4  numba, torch, cuda
``ddf``        DDF's ``ddf`` (Chapter 6)                                    numba, torch, cuda
=============  ==========================================================  ====================

``native`` is PyTorch's own ``F.conv2d`` kernel (oneDNN on the CPU, cuDNN on a GPU), the
reference every dynamic layer is measured against. ``loops`` is never benchmarked: it is the
specification, thousands of times slower.

:func:`run` times each case with :func:`dyncore.bench.time_callable` (``torch.utils.benchmark``)
and measures its peak memory with :func:`dyncore.bench.peak_memory`; the result is a
:class:`Results` with the machine's description, written to CSV or JSON by :meth:`Results.save`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import roofline
from ..utils import machine_report
from . import peak_memory, time_callable

FORMAT = "dyncore-bench/1"
MODES = ("forward", "backward")
ALL_BACKENDS = ("native", "numba", "torch", "cuda")

Size = tuple[int, int, int, int]


@dataclass(frozen=True)
class Operator:
    """How to build one operator's inputs and call it on a backend."""

    name: str
    description: str
    backends: tuple[str, ...]
    make_inputs: Callable  # (B, C, H, W, k, dtype, device, generator) -> tuple of tensors
    call: Callable  # (backend, k, *inputs) -> tensor
    module: str = ""  # dyncore submodule that must import for the operator to exist

    def available(self) -> bool:
        if not self.module:
            return True
        try:
            importlib.import_module(self.module)
        except Exception:  # noqa: BLE001 - any import failure means "not there yet"
            return False
        return True


def _rand(gen, device, dtype, *shape):
    """Normal samples made where they are used (``gen`` lives on ``device``): a GPU-sized input is
    never built in host memory first."""
    return torch.randn(*shape, generator=gen, dtype=dtype, device=device)


def _conv_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, C, C, k, k) / (C * k * k) ** 0.5


def _depthwise_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, C, 1, k, k) / k


def _conv_call(groups):
    def call(backend, k, x, w):
        pad = (k - 1) // 2
        if backend == "native":
            return F.conv2d(x, w, padding=pad, groups=groups or x.shape[1])
        from ..conv import conv2d
        return conv2d(x, w, padding=pad, groups=groups or x.shape[1], backend=backend)
    return call


def _dfn_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, B, k * k, H, W) / k


def _dfn_call(backend, k, x, filters):
    from ..dfn import dynamic_filter
    return dynamic_filter(x, filters, kernel_size=k, backend=backend)


def _dcm_inputs(B, C, H, W, k, dtype, device, gen):
    return _rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, B, C, k, k) / k


def _dcm_call(backend, k, x, filters):
    from ..dmnet import context_filter
    return context_filter(x, filters, backend=backend)


LSDFN_SAMPLES = 3


def _lsdfn_inputs(B, C, H, W, k, dtype, device, gen):
    s2 = LSDFN_SAMPLES ** 2
    return (_rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, B, C, C, H, W) / C,
            _rand(gen, device, dtype, B, C, k * k, H, W) / k,
            _rand(gen, device, dtype, B, C, s2, H, W) / s2,
            _rand(gen, device, dtype, B, C, k * k, H, W) / k)


def _lsdfn_call(backend, k, x, U, V, a_sam, a_pos):
    from ..lsdfn import large_sampling_filter
    return large_sampling_filter(x, U, V, a_sam, a_pos, kernel_size=k, samples=LSDFN_SAMPLES,
                                 sample_stride=1, backend=backend)


PAD_DILATIONS = (1, 2, 4)


def _pad_inputs(B, C, H, W, k, dtype, device, gen):
    gates = torch.softmax(_rand(gen, device, dtype, B, len(PAD_DILATIONS), H, W), 1)
    return (_rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, C, C, k, k) / (C * k * k) ** 0.5,
            _rand(gen, device, dtype, C), gates)


def _pad_call(backend, k, x, w, b, gates):
    from ..pad import adaptive_dilation_conv
    return adaptive_dilation_conv(x, w, b, gates, dilations=PAD_DILATIONS, backend=backend)


def _ddf_inputs(B, C, H, W, k, dtype, device, gen):
    return (_rand(gen, device, dtype, B, C, H, W), _rand(gen, device, dtype, B, k * k, H, W) / k,
            _rand(gen, device, dtype, B, C, k * k) / k)


def _ddf_call(backend, k, x, spatial, channel):
    from ..ddf.functional import ddf
    return ddf(x, spatial, channel, kernel_size=k, backend=backend)


_FUSED = ("numba", "torch", "cuda")

#: Every benchmark operator, by name (the names of :data:`dyncore.roofline.COSTS`).
OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("conv2d", "dense C -> C convolution", ALL_BACKENDS, _conv_inputs, _conv_call(1)),
    Operator("depthwise", "depthwise convolution (groups = C)", ALL_BACKENDS, _depthwise_inputs,
             _conv_call(None)),
    Operator("dfn", "DFN dynamic_filter (per-pixel filter shared by channels)", _FUSED,
             _dfn_inputs, _dfn_call),
    Operator("lsdfn", f"LS-DFN large_sampling_filter (Co = C, samples = {LSDFN_SAMPLES})", _FUSED,
             _lsdfn_inputs, _lsdfn_call),
    Operator("dcm", "DMNet context_filter (depthwise filter per image)", _FUSED, _dcm_inputs,
             _dcm_call),
    Operator("pad", f"PAD adaptive_dilation_conv (soft gates, dilations {PAD_DILATIONS})", _FUSED,
             _pad_inputs, _pad_call),
    Operator("ddf", "DDF ddf (spatial x channel filter)", _FUSED, _ddf_inputs, _ddf_call,
             module="dyncore.ddf.functional"),
)}


def available_operators() -> list[str]:
    """Names of the operators whose code is importable in this checkout."""
    return [name for name, op in OPERATORS.items() if op.available()]


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


def format_size(size: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in size)


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
        op = OPERATORS[self.op]
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

    The fused kernels need their inputs and output; the vectorized ``"torch"`` backends also
    build unfolded copies (``k*k`` times the input for DFN and DDF; for LS-DFN the kernel tensor
    ``W`` of ``Co*C*k*k*H*W`` and the sampled features of ``C*k*k*s*s*H*W`` elements per image),
    and a backward pass keeps them and their gradients: about three times the forward.
    """
    B, C, H, W = size
    need = roofline.operator_cost(op, B, C, H, W, k, itemsize).bytes
    if backend == "torch":
        n = B * H * W
        extra = {"dfn": n * C * k * k, "ddf": n * C * k * k, "depthwise": n * C * k * k,
                 "conv2d": n * C * k * k, "pad": len(PAD_DILATIONS) * n * C * k * k,
                 "dcm": 0, "lsdfn": n * (C * C * k * k + C * k * k * LSDFN_SAMPLES ** 2)}[op]
        need += 2 * extra * itemsize
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
    spec = OPERATORS[op]
    if not spec.available():
        return f"{op}: {spec.module} is not importable in this checkout"
    if backend not in spec.backends:
        return f"{op} has no {backend!r} backend"
    device_type = torch.device(device).type
    if backend == "cuda" and device_type != "cuda":
        return "the 'cuda' backend is timed only on a GPU (--device cuda); the simulator is not a benchmark"
    if backend == "numba" and device_type == "cuda":
        return "the 'numba' backend runs on the CPU only"
    return None


@dataclass
class Results:
    """Benchmark records (one dict per case) and the machine they were measured on."""

    records: list[dict]
    machine: dict
    skipped: list[str] = field(default_factory=list)

    COLUMNS = ("op", "backend", "mode", "B", "C", "H", "W", "k", "dtype", "device", "median_s",
               "iqr_s", "runs", "peak_bytes", "flops", "bytes", "bound_s", "fraction_of_bound")

    def select(self, **where) -> list[dict]:
        """Records whose fields equal ``where`` (e.g. ``op="ddf", backend="numba"``)."""
        return [r for r in self.records if all(r.get(k) == v for k, v in where.items())]

    def get(self, **where) -> dict:
        rows = self.select(**where)
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} records match {where}")
        return rows[0]

    def table(self) -> str:
        """A plain-text table: one line per record."""
        head = (f"{'op':<10}{'backend':<8}{'mode':<9}{'size':<16}{'k':>2}{'median ms':>11}"
                f"{'peak MB':>9}{'of bound':>10}")
        lines = [head]
        for r in self.records:
            frac = r.get("fraction_of_bound")
            mem = r.get("peak_bytes")
            lines.append(
                f"{r['op']:<10}{r['backend']:<8}{r['mode']:<9}"
                f"{format_size((r['B'], r['C'], r['H'], r['W'])):<16}{r['k']:>2}"
                f"{r['median_s'] * 1e3:>11.4g}"
                f"{(f'{mem / 2**20:.1f}' if mem is not None else '-'):>9}"
                f"{(f'{frac:.1%}' if frac is not None and frac == frac else '-'):>10}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "machine": self.machine, "records": self.records,
                           "skipped": self.skipped}, indent=1, default=_json_default)

    def to_csv(self) -> str:
        buf = io.StringIO()
        for key, value in self.machine.items():  # the machine, as '# key: value' comment lines
            first, *more = str(value).splitlines() or [""]
            buf.write(f"# {key}: {first}\n")
            for line in more:  # a multi-line value continues on '#   ' lines
                buf.write(f"#   {line}\n")
        writer = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.COLUMNS})
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write to ``path``: JSON for ``.json``, CSV (machine as ``#`` comment lines) for ``.csv``."""
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".json", ".csv"):
            raise ValueError(f"path must end in .json or .csv; got {path!r}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w") as f:
            f.write(self.to_json() if ext == ".json" else self.to_csv())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a file written by :meth:`save` (JSON or CSV)."""
        path = os.fspath(path)
        with open(path) as f:
            text = f.read()
        if path.lower().endswith(".json"):
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"{path} is not a {FORMAT} file (format={data.get('format')!r})")
            return cls(data["records"], data["machine"], data.get("skipped", []))
        machine, rows, key = {}, [], None
        for line in text.splitlines():
            if line.startswith("#   ") and key:
                machine[key] += "\n" + line[4:]
            elif line.startswith("# "):
                key, _, value = line[2:].partition(": ")
                machine[key.strip()] = value
            else:
                rows.append(line)
        records = []
        for r in csv.DictReader(rows):
            records.append({k: _parse_field(k, v) for k, v in r.items()})
        return cls(records, machine)


def _parse_field(key, value):
    if value == "":
        return None
    if key in ("B", "C", "H", "W", "k", "runs", "peak_bytes"):
        return int(float(value))
    if key in ("median_s", "iqr_s", "flops", "bytes", "bound_s", "fraction_of_bound"):
        return float(value)
    return value


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def describe_machine(device: str = "cpu", limits: roofline.Machine | None = None) -> dict:
    """The machine description stored with every result file."""
    desc = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": str(device), "report": machine_report()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        desc["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        desc["device_name"] = "cpu"
    if limits is not None:
        desc.update(bandwidth_bytes_per_s=limits.bandwidth, copy_bandwidth_bytes_per_s=limits.copy_bandwidth,
                    triad_bandwidth_bytes_per_s=limits.triad_bandwidth,
                    peak_flops_per_s=limits.peak_flops, limits_dtype=limits.dtype, threads=limits.threads)
    return desc


def machine_limits(results: Results) -> roofline.Machine | None:
    """The :class:`dyncore.roofline.Machine` stored in a result file, if it was measured."""
    m = results.machine
    if "bandwidth_bytes_per_s" not in m or m["bandwidth_bytes_per_s"] in (None, ""):
        return None
    return roofline.Machine(str(m.get("device_name", m.get("device"))), str(m.get("limits_dtype", "")),
                            float(m["bandwidth_bytes_per_s"]), float(m["peak_flops_per_s"]),
                            int(float(m.get("threads", 0) or 0)),
                            float(m.get("copy_bandwidth_bytes_per_s", "nan") or "nan"),
                            float(m.get("triad_bandwidth_bytes_per_s", "nan") or "nan"))


def run(ops: Sequence[str] | None = None, backends: Sequence[str] = ("native", "numba", "torch"),
        sizes: Sequence[Size | str] = ((1, 32, 64, 64),), kernel_sizes: Sequence[int] = (3,),
        modes: Sequence[str] = ("forward",), device: str = "cpu", dtype: torch.dtype = torch.float32,
        min_run_time: float = 0.2, memory: bool = True, limits: roofline.Machine | bool | None = None,
        progress: bool = False, max_bytes: int | None = None) -> Results:
    """Time (and measure the peak memory of) every ``op x backend x size x k x mode``.

    Combinations that cannot run (no such backend, ``"cuda"`` without a GPU, an operator not
    in this checkout) are skipped and listed in ``Results.skipped``. ``limits``: a measured
    :class:`dyncore.roofline.Machine` to compute each record's bound and fraction of bound,
    ``True`` to measure one now (quickly), ``None``/``False`` for none. Cases whose
    :func:`estimate_bytes` exceeds ``max_bytes`` (default :func:`default_memory_budget`) are
    skipped too, instead of exhausting the memory.
    """
    ops = list(OPERATORS) if ops is None else list(ops)
    for op in ops:
        if op not in OPERATORS:
            raise ValueError(f"ops: unknown operator {op!r}; choose from {list(OPERATORS)}")
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
