"""The experiment runner: every chapter's training experiment as a named, seeded configuration,
run for several seeds, recorded in one JSON file, and checked for freshness.

An :class:`Experiment` is one table or figure of a chapter. It names its *variants* (the layers
or settings being compared), a configuration (the full run) with overrides for a quick run, a
``prepare(config)`` that builds the data once, and a ``trial(t)`` that trains and evaluates one
variant for one seed and returns its metrics. The trial trains through :meth:`Trial.train`,
which is :func:`dyncore.training.train_steps` plus what the runner records: the loss curve
(subsampled), the validation curve, the first training losses (for the freshness check) and the
wall time. :func:`run` then

1. picks each variant's learning rate from the experiment's grid, by a metric measured on the
   validation split, with seed 0 (the grid, every score and the choice are recorded);
2. trains every variant for every seed on the training split and evaluates it on the test split.
   Seed 0 at the chosen rate is the grid's run at that rate: every trial measures both splits
   (the selection metric on the validation split, the rest on the test split) and training reads
   neither, so only the other seeds are trained again and a grid of G rates costs
   G + seeds - 1 trials per variant, not G + seeds;
3. writes ``results/experiments/<name>.json``: per-seed metrics and curves, parameter and FLOP
   counts, the thread counts, library versions, the machine, the date and how long it took.

Trials may run in parallel processes (``jobs``). Each trial sets its own seed and thread counts
and builds its own data, so the numbers do not depend on how many run at once.

Freshness: each variant's first seed stores its first :data:`FRESH_STEPS` training losses.
:func:`check_fresh` re-runs exactly those steps (same configuration, learning rate and thread
counts) and reports any that moved: a change of code that changes training cannot leave stale
numbers in the book, while a refactor that keeps behaviour costs no re-run. "Moved" means by more
than :data:`FRESH_RTOL` on a CPU that takes the same vector code paths as the recording one (the
result stores which, :func:`dyncore.utils.cpu_fingerprint`); on another, where PyTorch, oneDNN and LLVM pick
other instructions whose round-off training amplifies, the first :data:`FRESH_STEPS_OTHER_CPU`
losses by more than :data:`FRESH_RTOL_OTHER_CPU`.
"""

from __future__ import annotations

import concurrent.futures as futures
import datetime as _dt
import importlib
import json
import math
import multiprocessing
import os
import pathlib
import pkgutil
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .. import validation as V
from ..training import train_steps
from ..utils import count_flops, count_parameters, cpu_fingerprint, num_threads, set_seed

__all__ = ["Experiment", "Trial", "run", "load", "save", "check_fresh", "fresh_tolerance", "experiments",
           "grid_ends", "grid_score", "selection_report", "recorded_or_reduced", "describe",
           "get_experiment", "RESULTS", "FORMAT", "FRESH_STEPS", "FRESH_RTOL", "FRESH_RTOL_OTHER_CPU",
           "FRESH_STEPS_OTHER_CPU"]

FORMAT = "dyncore-experiment/1"
#: Where recorded runs live: ``results/experiments/<name>.json`` at the repository root.
RESULTS = pathlib.Path(__file__).resolve().parents[2] / "results" / "experiments"
#: Training losses of each variant's first seed kept for the freshness check.
FRESH_STEPS = 5
#: Points kept of each curve (the training loss is averaged over windows of steps).
CURVE_POINTS = 100


class _Stop(Exception):
    """Raised inside the training loop to end a trial early (the freshness check)."""


@dataclass(frozen=True)
class Experiment:
    """One chapter experiment (see the module docstring).

    ``config`` is the full run; ``quick`` overrides some of its keys for the short run that CI
    executes. ``lr_grid`` (may be empty: ``config["lr"]`` is then used for every variant) is
    searched per variant with seed 0, by ``select_by``: a metric that ``trial`` returns, measured
    on the validation split (its name starts with ``val_``; the trial's other metrics are the test split's),
    minimized unless it is listed in ``maximize``. Rates whose scores lie within ``lr_tolerance``
    (relative) of the best score are taken as tied, and the smallest of them is chosen: one seed
    cannot tell such rates apart, and of two rates that train equally well the smaller is the one
    less likely to diverge on another seed. ``seeds`` is the number of
    seeds of a full run; ``quick_seeds`` of a quick one. ``threads`` fixes the PyTorch and Numba
    thread counts of every trial (one by default: parallel seeds then share the cores without
    oversubscribing them); the result file records it.
    """

    name: str
    chapter: int
    title: str
    variants: tuple[str, ...]
    config: dict
    prepare: Callable[[dict], Any]
    trial: Callable[["Trial"], dict]
    quick: dict = field(default_factory=dict)
    lr_grid: tuple[float, ...] = ()
    select_by: str = "val_loss"
    maximize: tuple[str, ...] = ()
    lr_tolerance: float = 0.002
    seeds: int = 5
    quick_seeds: int = 2
    threads: int = 1
    description: str = ""
    matched: str = ""

    def __post_init__(self):
        if not self.select_by.startswith("val_"):
            raise ValueError(f"select_by must name a metric of the validation split (val_...), got {self.select_by!r}")
        if isinstance(self.lr_tolerance, bool) or not isinstance(self.lr_tolerance, (int, float)):
            raise TypeError(f"lr_tolerance must be a number, got {type(self.lr_tolerance).__name__}")
        if not 0 <= self.lr_tolerance < 1:
            raise ValueError(f"lr_tolerance must be in [0, 1), got {self.lr_tolerance!r}")
        if any(b <= a for a, b in zip(self.lr_grid, self.lr_grid[1:])):
            raise ValueError(f"lr_grid must be increasing, got {self.lr_grid!r}")

    def choose_lr(self, scores: Sequence[float]) -> int:
        """The index into ``lr_grid`` of the rate chosen from its seed-0 validation ``scores``: the
        smallest rate whose score is within ``lr_tolerance`` (relative) of the best score."""
        if len(scores) != len(self.lr_grid):
            raise ValueError(f"scores must have one entry per rate of lr_grid ({len(self.lr_grid)}), got {len(scores)}")
        best = 0
        for j, s in enumerate(scores):
            if self.better(self.select_by, s, scores[best]):
                best = j
        if not math.isfinite(scores[best]):
            return best
        slack = self.lr_tolerance * abs(scores[best])
        return min(j for j, s in enumerate(scores) if math.isfinite(s) and abs(s - scores[best]) <= slack)

    def configured(self, quick: bool = False, **overrides) -> dict:
        config = dict(self.config)
        if quick:
            config.update(self.quick)
        config.update(overrides)
        return config

    def better(self, metric: str, a: float, b: float) -> bool:
        """Is ``a`` better than ``b`` for ``metric``?"""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if metric in self.maximize else a < b


@dataclass
class Trial:
    """What a trial function gets: which variant, seed and configuration to run, the data, and
    :meth:`train` (the shared training loop, recorded). A trial function trains on the training
    split and returns its metrics: the selection metric (``val_...``) measured on the validation
    split, the others on the test split."""

    experiment: Experiment
    variant: str
    seed: int
    config: dict
    data: Any
    progress: bool = True
    stop_after: int | None = None
    record: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return float(self.config["lr"])

    def train(self, model: torch.nn.Module, batch_loss: Callable[[int], torch.Tensor], steps: int,
              *, validate: Callable[[], float] | None = None, eval_every: int | None = None,
              **kwargs) -> dict:
        """:func:`dyncore.training.train_steps` at this trial's learning rate, recording the
        training-loss curve, the first losses, and ``validate()`` (a held-out loss, computed in
        eval mode without gradients) every ``eval_every`` steps and at the end."""
        steps = V.check_positive_int("steps", steps)
        every = eval_every or max(1, steps // 20)
        seen: list[float] = []
        val_curve: list[tuple[int, float]] = []

        def evaluate(step):
            if validate is None:
                return
            state = torch.get_rng_state()
            was_training = model.training
            model.eval()
            with torch.no_grad():
                val_curve.append((step, float(validate())))
            model.train(was_training)
            torch.set_rng_state(state)

        def recorded(step):
            if self.stop_after is not None and step >= self.stop_after:
                raise _Stop
            if step % every == 0 and step > 0:
                evaluate(step)
            loss = batch_loss(step)
            seen.append(float(loss.detach()))
            return loss

        kwargs.setdefault("desc", f"{self.variant} seed {self.seed}")
        kwargs.setdefault("progress", self.progress)
        try:
            history = train_steps(model, recorded, steps, lr=self.lr, **kwargs)
        except _Stop:
            self.record["first_losses"] = seen[:FRESH_STEPS]
            raise
        evaluate(steps)
        self.record.setdefault("curves", {})
        self.record["curves"]["train_loss"] = _subsample(history["losses"])
        if val_curve:
            self.record["curves"]["val_loss"] = [list(p) for p in val_curve]
        self.record["first_losses"] = history["losses"][:FRESH_STEPS]
        self.record["train_seconds"] = history["seconds"]
        return history

    def count(self, model: torch.nn.Module, *example_inputs) -> None:
        """Record the model's parameters and the FLOPs of one forward pass on ``example_inputs``."""
        self.record["parameters"] = count_parameters(model)
        if example_inputs:
            self.record["flops"] = count_flops(model, *example_inputs)


def _subsample(values: Sequence[float], points: int = CURVE_POINTS) -> list[list[float]]:
    """``[step, mean loss of the window ending there]`` at about ``points`` places."""
    n = len(values)
    if n == 0:
        return []
    size = max(1, math.ceil(n / points))
    out = []
    for end in range(size, n + size, size):
        window = [v for v in values[end - size:min(end, n)] if math.isfinite(v)]
        out.append([min(end, n), sum(window) / len(window) if window else float("nan")])
    return out


# --------------------------------------------------------------------------- the registry

def experiments() -> dict[str, Experiment]:
    """Every experiment of the book, by name, found in the ``dyncore.experiments.ch*`` modules'
    ``EXPERIMENTS`` tuples (chapter order)."""
    from .. import experiments as package

    found: dict[str, Experiment] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("ch"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for exp in getattr(module, "EXPERIMENTS", ()):
            if exp.name in found:
                raise RuntimeError(f"two experiments are named {exp.name!r}")
            found[exp.name] = exp
    return dict(sorted(found.items(), key=lambda kv: (kv[1].chapter, kv[0])))


def get_experiment(name: str | Experiment) -> Experiment:
    """The experiment called ``name`` (an :class:`Experiment` is returned as it is)."""
    if isinstance(name, Experiment):
        return name
    known = experiments()
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {list(known)}; got {type(name).__name__}")
    if name not in known:
        raise ValueError(f"name must be one of {list(known)}; got {name!r}")
    return known[name]


# --------------------------------------------------------------------------- running

_DATA_CACHE: dict = {}


def _data(experiment: Experiment, config: dict):
    key = (experiment.name, json.dumps(config, sort_keys=True, default=str))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one experiment's data at a time
        _DATA_CACHE[key] = experiment.prepare(config)
    return _DATA_CACHE[key]


def run_trial(name: str | Experiment, variant: str, seed: int, config: dict,
              threads: int = 1, progress: bool = False, stop_after: int | None = None) -> dict:
    """Train and evaluate one variant for one seed; returns its record (metrics, curves, ...).

    Runs in this process (or a worker process: arguments and result are plain data).
    With ``stop_after``, the run stops after that many steps and returns only ``first_losses``.
    """
    experiment = get_experiment(name)
    with num_threads(threads):
        data = _data(experiment, config)
        set_seed(seed)
        trial = Trial(experiment, variant, seed, dict(config), data, progress, stop_after)
        start = time.perf_counter()
        try:
            metrics = experiment.trial(trial)
        except _Stop:
            return {"seed": seed, "first_losses": trial.record.get("first_losses", [])}
        record = {"seed": seed, "metrics": {k: float(v) for k, v in metrics.items()}, **trial.record}
        record["seconds"] = time.perf_counter() - start
    return record


def _pool(jobs: int):
    if jobs <= 1:
        return None
    return futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))


def _map(pool, calls: list[dict], desc: str, progress: bool) -> list[dict]:
    bar = tqdm(total=len(calls), desc=desc, disable=not progress)
    if pool is None:
        results = []
        for kw in calls:
            results.append(run_trial(**kw, progress=progress))
            bar.update()
    else:
        pending = {pool.submit(run_trial, **kw): i for i, kw in enumerate(calls)}
        results = [None] * len(calls)
        for done in futures.as_completed(pending):
            results[pending[done]] = done.result()
            bar.update()
    bar.close()
    return results


def run(name: str | Experiment, *, seeds: int | None = None, quick: bool = False, jobs: int = 1,
        variants: Sequence[str] | None = None, progress: bool = True, out: str | os.PathLike | None = None,
        **overrides) -> dict:
    """Run experiment ``name`` (learning-rate selection, then every variant x seed) and return the
    result; with ``out`` (a file or a folder) also write it as JSON."""
    experiment = get_experiment(name)
    name = experiment.name if isinstance(name, str) else experiment
    n_seeds = V.check_positive_int("seeds", seeds if seeds is not None else
                                   (experiment.quick_seeds if quick else experiment.seeds))
    jobs = V.check_positive_int("jobs", jobs)
    chosen = tuple(experiment.variants if variants is None else variants)
    for v in chosen:
        V.check_choice("variants", v, experiment.variants)
    config = experiment.configured(quick, **overrides)
    threads = experiment.threads
    start = time.perf_counter()
    pool = _pool(jobs)
    try:
        selection, grid_runs = {}, {}
        if experiment.lr_grid and "lr" not in overrides:
            calls = [dict(name=name, variant=v, seed=0, config={**config, "lr": lr}, threads=threads)
                     for v in chosen for lr in experiment.lr_grid]
            records = _map(pool, calls, f"{experiment.name}: learning rates", progress)
            g = len(experiment.lr_grid)
            for i, v in enumerate(chosen):
                runs = records[i * g:(i + 1) * g]
                missing = [r for r in runs if experiment.select_by not in r["metrics"]]
                if missing:
                    raise ValueError(f"trial of {experiment.name!r} returned no {experiment.select_by!r} "
                                     f"(select_by) for variant {v!r}")
                scores = [r["metrics"][experiment.select_by] for r in runs]
                best = experiment.choose_lr(scores)
                selection[v] = {"grid": list(experiment.lr_grid), "scores": scores, "metric": experiment.select_by,
                                "tolerance": experiment.lr_tolerance, "lr": experiment.lr_grid[best]}
                grid_runs[v] = runs[best]
        lrs = {v: selection[v]["lr"] if v in selection else config["lr"] for v in chosen}
        calls = [dict(name=name, variant=v, seed=s, config={**config, "lr": lrs[v]}, threads=threads)
                 for v in chosen for s in range(n_seeds) if not (s == 0 and v in grid_runs)]
        records = iter(_map(pool, calls, f"{experiment.name}: {len(chosen)} variants x {n_seeds} seeds", progress))
        runs = {v: [grid_runs[v] if (s == 0 and v in grid_runs) else next(records) for s in range(n_seeds)]
                for v in chosen}
    finally:
        if pool is not None:
            pool.shutdown()
    results = {}
    for v in chosen:
        entry = {"lr": lrs[v], "runs": runs[v]}
        for key in ("parameters", "flops"):
            if key in runs[v][0]:
                entry[key] = runs[v][0][key]
        results[v] = entry
    import numba
    import numpy as np

    result = {
        "format": FORMAT, "name": experiment.name, "chapter": experiment.chapter, "title": experiment.title,
        "description": experiment.description, "matched": experiment.matched, "quick": quick,
        "config": config, "seeds": list(range(n_seeds)), "lr_selection": selection,
        "threads": {"torch": threads, "numba": threads}, "jobs": jobs,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count(), **cpu_fingerprint()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numba": numba.__version__, "numpy": np.__version__},
        "variants": results,
    }
    if out is not None:
        save(result, out)
    return result


def recorded_or_reduced(name: str | Experiment, *, rerun: bool = False, jobs: int = 2, seeds: int = 2,
                        results: str | os.PathLike | None = None, **reduced) -> tuple[dict, bool]:
    """What a chapter shows of experiment ``name``: ``(result, recorded)``.

    The recorded full run (``results/experiments/<name>.json``, or the folder ``results``) and
    ``True``; with ``rerun``, the full experiment is run first, in ``jobs`` parallel processes,
    and replaces the record. With no record, a reduced run (the experiment's quick settings,
    ``seeds`` seeds, the configuration overrides ``reduced``) and ``False``, said in a printed
    line: its numbers prove the pipeline, not a claim."""
    experiment = get_experiment(name)
    folder = pathlib.Path(RESULTS if results is None else results)
    if not isinstance(rerun, bool):
        raise TypeError(f"rerun must be True or False, got {rerun!r}")
    if rerun:
        return run(name, jobs=jobs, out=folder), True
    path = folder / f"{experiment.name}.json"
    if path.is_file():
        return load(path), True
    print(f"no recorded run of {experiment.name} found: what follows shows a reduced run ({seeds} seeds, "
          "a few steps), not the full one")
    return run(name, quick=True, seeds=seeds, progress=False, **reduced), False


def describe(result: dict, recorded: bool = True, what: str = "variants") -> str:
    """One line on where ``result``'s numbers come from: recorded or reduced, when, its size
    (``what``: the word for its variants), wall time, processes, machine, threads and versions."""
    jobs = result["jobs"]
    return (f"{result['name']}: {'recorded' if recorded else 'reduced'} run of {result['date']}: "
            f"{len(result['variants'])} {what} x {len(result['seeds'])} seeds, {result['config']['steps']} steps "
            f"each, {result['wall_seconds'] / 60:.1f} minutes of wall time with {jobs} "
            f"process{'es' if jobs > 1 else ''} on {result['machine']['cpus']} CPUs "
            f"({result['machine']['platform']}), {result['threads']['torch']} thread"
            f"{'s' if result['threads']['torch'] > 1 else ''} per run; torch {result['versions']['torch']}, "
            f"numba {result['versions']['numba']}")


# --------------------------------------------------------------------------- reading a selection

def _searched(result: dict, variants: Sequence[str] | None) -> dict:
    selection = result["lr_selection"]
    if variants is None:
        return selection
    for v in variants:
        V.check_choice("variants", v, tuple(selection))
    return {v: selection[v] for v in variants}


def grid_ends(result: dict, variants: Sequence[str] | None = None) -> dict[str, str]:
    """The variants of ``result`` (all that had a learning-rate search, or those of ``variants``)
    whose chosen learning rate is an end of the grid searched for them, ``{variant: "lowest" |
    "highest"}``: a better rate may lie beyond such a grid."""
    ends = {}
    for v, sel in _searched(result, variants).items():
        if len(sel["grid"]) > 1 and sel["lr"] in (min(sel["grid"]), max(sel["grid"])):
            ends[v] = "lowest" if sel["lr"] == min(sel["grid"]) else "highest"
    return ends


def grid_score(result: dict, variant: str, lr: float) -> float:
    """The seed-0 selection score (the validation metric) of ``variant`` of ``result`` at the
    learning rate ``lr`` of its grid."""
    sel = _searched(result, [variant])[variant]
    if lr not in sel["grid"]:
        raise ValueError(f"lr must be one of the grid searched for {variant!r}, {sel['grid']}; got {lr!r}")
    return sel["scores"][sel["grid"].index(lr)]


def _tied_with_best(sel: dict, tolerance: float) -> list[float]:
    """The rates of a recorded selection ``sel`` whose scores lie within ``tolerance`` (relative) of
    the best score, as :meth:`Experiment.choose_lr` measures ties. The record does not say whether its
    metric is maximized; the best is the extreme score that the chosen rate's score is tied with
    (the lowest, if both are: the scores then all lie within twice the tolerance)."""
    finite = [s for s in sel["scores"] if math.isfinite(s)]
    chosen = sel["scores"][sel["grid"].index(sel["lr"])]
    if not finite or not math.isfinite(chosen):
        return [sel["lr"]]
    low, high = min(finite), max(finite)
    best = low if abs(chosen - low) <= tolerance * abs(low) else high
    return [lr for lr, s in zip(sel["grid"], sel["scores"])
            if math.isfinite(s) and abs(s - best) <= tolerance * abs(best)]


def selection_report(result: dict, what: str = "validation loss", digits: int = 4,
                     variants: Sequence[str] | None = None) -> str:
    """The learning-rate search of ``result`` as text: per variant (all, or those of ``variants``), the seed-0 score (``what``, to
    ``digits`` significant digits) at each rate of its grid and the rate chosen, with the rates tied
    with it (within the selection's tolerance) and whether it is an end of the grid; then how many
    variants chose an end."""
    selection = _searched(result, variants)
    if not selection:
        return f"no learning-rate search: every variant trained at lr {result['config']['lr']:g}"
    ends = grid_ends(result, list(selection))
    width = max(len(v) for v in selection) + 2
    lines = []
    for v, sel in selection.items():
        scores = ", ".join(f"{lr:g}: {s:.{digits}g}" for lr, s in zip(sel["grid"], sel["scores"]))
        tolerance = sel.get("tolerance", 0.0)  # results recorded before the rule had a tolerance chose the best
        tied = [lr for lr in _tied_with_best(sel, tolerance) if lr != sel["lr"]]
        within = f" within {100 * tolerance:g}%" if tolerance else ""
        notes = ([f"tied{within} with {', '.join(f'{lr:g}' for lr in tied)}"] if tied else []) \
            + ([f"the {ends[v]} of the grid"] if v in ends else [])
        lines.append(f"{v:<{width}}{what} by learning rate {scores}  -> lr {sel['lr']:g}"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    lines.append(f"{len(ends)} of {len(selection)} chose a learning rate at an end of the grid"
                 + (f": {'; '.join(ends)}" if ends else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- files

def save(result: dict, out: str | os.PathLike) -> pathlib.Path:
    """Write ``result`` to ``out``: a ``.json`` file, or a folder (as ``<name>.json`` in it)."""
    path = pathlib.Path(out)
    if path.suffix != ".json":
        path = path / f"{result['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    return path


def load(name_or_path: str | os.PathLike) -> dict:
    """A recorded result: an experiment's name (read from :data:`RESULTS`) or a file's path."""
    path = pathlib.Path(name_or_path)
    if path.suffix != ".json":
        path = RESULTS / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded result {path}: run `python -m dyncore.experiments run "
                                f"{pathlib.Path(name_or_path).stem}`")
    result = json.loads(path.read_text())
    if result.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (format {result.get('format')!r})")
    return result


#: Relative tolerance of :func:`check_fresh` on a CPU with the recording machine's fingerprint:
#: training is bitwise repeatable there at a fixed thread count (and within 1.2e-7 across
#: thread counts), so all :data:`FRESH_STEPS` recorded losses are compared.
FRESH_RTOL = 1e-4
#: On another CPU (or for a result recorded before results stored the fingerprint) the first
#: :data:`FRESH_STEPS_OTHER_CPU` losses are compared, to this relative tolerance. Measured on an
#: AVX-512 machine, for results recorded on another: the first three losses moved by up to
#: 2.7e-3 (Chapter 4's heads, already at their first step: their frozen backbone is trained for
#: 192 steps first), while later steps of the least stable network (Chapter 6's DDF-ResNet with
#: batch norm on the filters) moved by 3%: the round-off of other vector instructions, amplified
#: by training.
FRESH_RTOL_OTHER_CPU = 1e-2
FRESH_STEPS_OTHER_CPU = 3


def fresh_tolerance(result: dict) -> tuple[float, int]:
    """``(rtol, steps)`` for :func:`check_fresh`: ``(FRESH_RTOL, FRESH_STEPS)`` if ``result`` was
    recorded on a CPU with this one's fingerprint, else ``(FRESH_RTOL_OTHER_CPU,
    FRESH_STEPS_OTHER_CPU)``."""
    machine = result.get("machine", {})
    if all(machine.get(k) == v for k, v in cpu_fingerprint().items()):
        return FRESH_RTOL, FRESH_STEPS
    return FRESH_RTOL_OTHER_CPU, FRESH_STEPS_OTHER_CPU


def check_fresh(result: dict, rtol: float | None = None, variants: Sequence[str] | None = None,
                experiment: Experiment | None = None, steps: int | None = None) -> list[str]:
    """Re-run the first ``steps`` training steps of each variant's first seed; return what moved
    by more than ``rtol`` (empty when the recorded numbers are still what the code computes).
    ``rtol`` and ``steps`` default to :func:`fresh_tolerance`; ``experiment`` to the registered
    one of the result's name."""
    default_rtol, default_steps = fresh_tolerance(result)
    rtol = default_rtol if rtol is None else rtol
    steps = default_steps if steps is None else steps
    problems = []
    experiment = experiment or get_experiment(result["name"])
    threads = result["threads"]["torch"]
    for v, entry in result["variants"].items():
        if variants is not None and v not in variants:
            continue
        first = entry["runs"][0]
        config = {**result["config"], "lr": entry["lr"]}
        want = first["first_losses"][:steps]
        again = run_trial(experiment, v, first["seed"], config, threads=threads,
                          stop_after=len(want))["first_losses"][:len(want)]
        if len(again) != len(want) or any(
                not math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3) for a, b in zip(again, want)):
            problems.append(f"{result['name']} / {v}: recorded first losses {want}, now {again} (rtol {rtol:g})")
    return problems
