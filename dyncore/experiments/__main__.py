"""``python -m dyncore.experiments``: list, run, and check the book's recorded experiments.

    python -m dyncore.experiments list
    python -m dyncore.experiments run 05_pad_dilation [--seeds 5] [--quick] [--jobs 2]
    python -m dyncore.experiments run --all
    python -m dyncore.experiments check [NAME ...]     # are the recorded results still fresh?
"""

from __future__ import annotations

import argparse
import sys
import time

import dyncore  # noqa: F401  first: it selects the CUDA simulator before Numba is imported

from . import runner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyncore.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the experiments, with their chapters and variants")
    r = sub.add_parser("run", help="run one experiment (or --all) and record it")
    r.add_argument("name", nargs="?", help="the experiment's name (see `list`)")
    r.add_argument("--all", action="store_true", help="run every experiment, one after the other")
    r.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: the experiment's)")
    r.add_argument("--quick", action="store_true", help="the short configuration CI runs")
    r.add_argument("--jobs", type=int, default=1, help="trials run in parallel processes (default 1)")
    r.add_argument("--out", default=str(runner.RESULTS), help="folder or .json file (default results/experiments/)")
    c = sub.add_parser("check", help="re-run the first steps of recorded results: still fresh?")
    c.add_argument("names", nargs="*", help="experiments (default: every recorded one)")
    args = p.parse_args(argv)

    if args.command == "list":
        for name, exp in runner.experiments().items():
            print(f"{name:28s} chapter {exp.chapter}  {exp.title}  [{', '.join(exp.variants)}]")
        return 0
    if args.command == "run":
        if args.all == bool(args.name):
            p.error("give one experiment's name or --all")
        names = list(runner.experiments()) if args.all else [args.name]
        for name in names:
            start = time.perf_counter()
            try:
                result = runner.run(name, seeds=args.seeds, quick=args.quick, jobs=args.jobs, out=args.out)
            except (TypeError, ValueError) as e:
                p.error(str(e))
            print(f"{name}: {len(result['variants'])} variants x {len(result['seeds'])} seeds in "
                  f"{time.perf_counter() - start:.0f} s -> {args.out}")
        return 0
    names = args.names or [path.stem for path in sorted(runner.RESULTS.glob("*.json"))]
    stale = []
    for name in names:
        stale += runner.check_fresh(runner.load(name))
    for line in stale:
        print("stale:", line)
    print(f"{len(names)} recorded experiments checked, {len(stale)} stale")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
