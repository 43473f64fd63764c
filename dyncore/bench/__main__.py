"""Command line of the benchmark suite: ``python -m dyncore.bench --help``.

Examples::

    python -m dyncore.bench --quick --out /tmp/bench.csv
    python -m dyncore.bench --ops ddf,depthwise --backends numba,native --sizes 2x64x128x160 \\
        --mode forward,backward --out results/cpu.json
    python -m dyncore.bench --device cuda --out results/gpu-$(date +%F).json   # on a GPU machine
    python -m dyncore.bench --versus-peer --ops ddf,dcm --sizes 2x64x128x160 --repeats 15
"""

from __future__ import annotations

import argparse
import sys

import dyncore  # noqa: F401  first: it selects the CUDA simulator before Numba is imported
import torch

from .. import roofline
from ..opspec import bench_cases
from .suite import ALL_BACKENDS, MODES, available_operators, parse_size, peer_table, run, versus_peer

#: Sizes of the full run per device (the last one on a GPU is the paper's Table 2 input).
DEFAULT_SIZES = {"cpu": "1x32x128x128,2x64x128x160", "cuda": "1x64x128x128,2x256x200x300"}
#: Sizes of ``--versus-peer``: from the chapters' 2x64x128x160 up to DDF's Table 2 input. The
#: operators with targets against their peer (``BenchCase.peer_targets``) run at all of them
#: (where they fit in memory); the others (the dense convolutions) at the first only.
PEER_SIZES = "2x64x128x160,2x128x160x240,2x256x200x300"
QUICK_SIZE = "1x8x16x16"


def _csv_list(name, choices=None, convert=str):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{name}: give at least one value (comma-separated)")
        out = []
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(
                    f"{name}: unknown value {item!r}; choose from {', '.join(choices)}")
            try:
                out.append(convert(item))
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"{name}: {e}") from None
        return out
    return parse


def _kernel_size(text):
    k = int(text)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel sizes must be odd positive ints; got {text!r}")
    return k


def _positive(convert, kind):
    """An argparse type: ``convert(text)`` (``float`` or ``int``), which must be positive."""
    def parse(text):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}; got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be positive; got {text!r}")
        return v
    return parse


_positive_float = _positive(float, "a number")
_positive_int = _positive(int, "an int")


def build_parser() -> argparse.ArgumentParser:
    ops = available_operators()
    p = argparse.ArgumentParser(
        prog="python -m dyncore.bench",
        description="Time every dyncore operator x backend x size (forward, forward+backward), "
                    "measure peak memory and the fraction of the roofline bound, and write the "
                    "results with the machine's description.",
        epilog="On a GPU machine: python -m dyncore.bench --device cuda --out results/gpu-DATE.json "
               "(then pytest -m gpu for the real-GPU correctness tests).")
    p.add_argument("--ops", type=_csv_list("--ops", ops), default=None,
                   help=f"comma-separated operators (default: all available): {','.join(ops)}")
    p.add_argument("--backends", type=_csv_list("--backends", ALL_BACKENDS), default=None,
                   help="comma-separated backends: native (PyTorch's F.conv2d), numba, torch, cuda "
                        "(default: native,numba,torch on cpu; native,cuda,torch on cuda)")
    p.add_argument("--sizes", type=_csv_list("--sizes", convert=parse_size), default=None,
                   help="comma-separated BxCxHxW sizes, e.g. 1x64x128x128,2x256x200x300 "
                        f"(default on cpu: {DEFAULT_SIZES['cpu']}; on cuda: {DEFAULT_SIZES['cuda']})")
    p.add_argument("--kernel-sizes", type=_csv_list("--kernel-sizes", convert=_kernel_size), default=[3],
                   help="comma-separated odd kernel sizes (default 3)")
    p.add_argument("--mode", type=_csv_list("--mode", MODES), default=["forward", "backward"],
                   help="forward and/or backward (= forward + backward); default both")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    p.add_argument("--min-run-time", type=_positive_float, default=None,
                   help="seconds of timing per case (torch.utils.benchmark; default 0.3, 0.02 with --quick)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for PyTorch and Numba (default: all; 1 with --quick)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--max-memory", type=_positive_float, default=None, metavar="GIB",
                   help="skip cases estimated to need more memory than this, in GiB (default: a "
                        "quarter of the RAM on cpu, half the GPU memory on cuda)")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip measuring bandwidth and matmul peak (no fraction of bound)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: size {QUICK_SIZE}, short timings, quick roofline, one thread")
    p.add_argument("--versus-peer", action="store_true",
                   help="instead: our numba kernel against each operator's peer (what a PyTorch user "
                        "would write: Inductor or oneDNN), interleaved call by call, after checking "
                        "that they agree; prints min, median and the ratio of the medians")
    p.add_argument("--repeats", type=_positive_int, default=15,
                   help="repetitions of --versus-peer (default 15)")
    p.add_argument("--system-malloc", action="store_true",
                   help="--versus-peer: leave glibc's malloc as it is, so that every call pays for "
                        "fresh pages of its output (by default freed memory is kept for reuse, "
                        "dyncore.bench.reuse_freed_memory)")
    p.add_argument("--out", default=None, help="write results to this .csv or .json file")
    p.add_argument("--list", action="store_true", help="list operators and backends, then exit")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for case in bench_cases():
            print(f"{case.name:<10} {case.description}; backends: {', '.join(case.backends)}")
        return 0
    if args.out is not None and not args.out.lower().endswith((".csv", ".json")):
        parser.error(f"--out must end in .csv or .json; got {args.out!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU on this machine")
    ops = args.ops or available_operators()
    backends = args.backends or (["native", "numba", "torch"] if args.device == "cpu"
                                 else ["native", "cuda", "torch"])
    sizes = args.sizes or [parse_size(s) for s in
                           (QUICK_SIZE if args.quick else DEFAULT_SIZES[args.device]).split(",")]
    min_run_time = args.min_run_time or (0.02 if args.quick else 0.3)
    dtype = getattr(torch, args.dtype)
    threads = args.threads or (1 if args.quick else None)  # tiny inputs: a thread pool only waits
    if threads:
        from ..utils import num_threads
        context = num_threads(threads)
    else:
        import contextlib
        context = contextlib.nullcontext()
    if args.versus_peer:
        if args.device != "cpu":
            parser.error("--versus-peer: the peers are timed against the 'numba' kernels, on the CPU")
        plan = [(ops, sizes)]
        if args.sizes is None and not args.quick:  # the book's plan (PEER_SIZES)
            peer_sizes = [parse_size(s) for s in PEER_SIZES.split(",")]
            targets = {c.name for c in bench_cases() if c.peer_targets is not None}
            plan = [([op for op in ops if op in targets], peer_sizes),
                    ([op for op in ops if op not in targets], peer_sizes[:1])]
        with context:
            limits = None if args.no_roofline else roofline.measure_machine(args.device, dtype, quick=args.quick)
            parts = [versus_peer(part_ops, part_sizes, args.kernel_sizes[0], args.mode, args.repeats,
                                 dtype=dtype, progress=sys.stderr.isatty(), limits=limits,
                                 reuse_memory=not args.system_malloc,
                                 max_bytes=None if args.max_memory is None else int(args.max_memory * 2**30))
                     for part_ops, part_sizes in plan if part_ops]
        results = parts[0]
        for more in parts[1:]:
            results.records += more.records
            results.skipped += more.skipped
            results.machine["fingerprints"] += " " + more.machine["fingerprints"]
            results.machine["load_after"] = more.machine["load_after"]
        print(peer_table(results))
        print(f"allocator: {results.machine['allocator']}")
        print(f"threads: torch {results.machine['torch_threads']}, numba {results.machine['numba_threads']}; "
              f"load average before {results.machine['load_before']}, after {results.machine['load_after']}")
        for line in results.skipped:
            print("skipped:", line, file=sys.stderr)
        if args.out:
            print("wrote", results.save(args.out), file=sys.stderr)
        return 0
    with context:
        limits = None
        if not args.no_roofline:
            limits = roofline.measure_machine(args.device, dtype, quick=args.quick)
            print(limits, file=sys.stderr)
        results = run(ops, backends, sizes, args.kernel_sizes, args.mode, args.device, dtype,
                      min_run_time, memory=not args.no_memory, limits=limits,
                      progress=sys.stderr.isatty(),
                      max_bytes=None if args.max_memory is None else int(args.max_memory * 2**30))
    print(results.table())
    for line in results.skipped:
        print("skipped:", line, file=sys.stderr)
    if args.out:
        print("wrote", results.save(args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
