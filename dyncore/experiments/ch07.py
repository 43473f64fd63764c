"""All the book's dynamic layers on one task: the closing comparison of Chapter 7.

One small network, one generated dense-prediction task, and one layer slot::

    stem (3x3 conv 1 -> C, ReLU, 3x3 conv C -> C, ReLU)
      -> LAYER (C -> C)  -> ReLU
      -> 3x3 conv C -> C, ReLU  -> 1x1 classifier C -> classes

The slot holds the layer of an operator's spec (:class:`dyncore.opspec.LayerSpec`, in each method
folder's ``spec.py``; :func:`layer_names` lists them in chapter order): the plain 3x3
convolution first (the baseline, :func:`baseline`), then each of the book's dynamic layers with
``k = 3``. A spec says how to build its layer, its paper's parameter formula, its local field
and whether it pools the whole image; nothing here lists the layers a second time.

The task is Chapter 5's stripes (:func:`dyncore.experiments.ch05.make_stripes`): the label of a pixel
is the orientation of its stripes; in *fine* cells a 3x3 window is enough and a wide one mixes
neighbouring tiles, in *coarse* cells only a window that reaches the edge of an 8-pixel bar
tells the answer. So it rewards both reading the content (how far to look depends on what is
under the pixel) and context (the coarse cells need more than the baseline's 9 x 9 field).

:func:`side_by_side` trains each model (seeded, ``tqdm.auto``) and measures it
(:func:`measure`): mIoU (:func:`dyncore.experiments.metrics.mean_iou`) and accuracy on a held-out
split, parameters, FLOPs, CPU latency ratios and the effective receptive field; the result is a
:class:`dyncore.experiments.ch07_report.ComparisonTable`, which that module also plots.

**The recorded experiment** ``07_side_by_side`` (:data:`SIDE_BY_SIDE`, run by
:mod:`dyncore.experiments.runner`, results in ``results/experiments/07_side_by_side.json``): every
layer over the same seeds (each seed gives every layer the same stem and head weights and the
same batches), each at its own learning rate chosen on a validation split, each on the CPU
backend of :data:`TRAINING_BACKENDS`; per seed, :func:`side_by_side_trial` records mIoU, accuracy
(overall, fine and coarse cells), losses, the error rate by distance to a bar's edge, the trained
network's ERF and the parameters and FLOPs. :func:`side_by_side_claims` lists what Chapter 7
tests on it (each dynamic layer against the convolution), decided by
:func:`dyncore.experiments.verdicts.verdict`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import bench
from .. import validation as V
from ..opspec import get_layer_spec, get_spec, layer_specs
from ..receptive_field import effective_receptive_field, erf_radius, receptive_field
from ..training import train_steps
from ..utils import count_flops, count_parameters, num_threads, set_seed
from .ch05 import StripeData, held_out_loss, make_stripes
from .ch07_report import ComparisonTable
from .metrics import mean_iou

__all__ = ["layer_names", "baseline", "global_context", "make_layer", "parameter_formula",
           "theoretical_receptive_field", "SideBySideNet", "make_model", "make_task", "train_model",
           "evaluate_model", "error_by_edge_distance", "ddf_active_squeeze_units", "measure_erf",
           "CPU_BACKENDS", "latency", "fastest", "pick_training_backend", "measure", "side_by_side",
           "TRAINING_BACKENDS", "EDGE_DISTANCES", "prepare_side_by_side", "held_out_loss", "side_by_side_trial",
           "SIDE_BY_SIDE", "EXPERIMENTS", "side_by_side_claims", "PAPER_FIGURES"]


# --------------------------------------------------------------------------- the layers (read from the specs)

def layer_names() -> tuple[str, ...]:
    """The layers that can fill the slot, in chapter order: the baseline first."""
    return tuple(spec.name for spec in layer_specs())


def baseline() -> str:
    """The name of the baseline layer (the plain convolution of Chapter 1: the first layer)."""
    return layer_specs()[0].name


def global_context() -> tuple[str, ...]:
    """The layers whose filters are computed from a global pooling of the image."""
    return tuple(spec.name for spec in layer_specs() if spec.global_context)


def _check_name(name) -> str:
    return get_layer_spec(name).name


def make_layer(name: str, channels: int = 8, backend: str = "auto") -> nn.Module:
    """The layer ``name`` (one of :func:`layer_names`), ``channels -> channels``, same size out."""
    spec = get_layer_spec(name)
    return spec.make(V.check_positive_int("channels", channels), backend)


def parameter_formula(name: str, channels: int = 8) -> int:
    """The layer's parameters by its paper's formula, for ``channels -> channels``, ``k = 3``
    (``LayerSpec.parameter_formula``; each spec's docstring gives the formula)."""
    spec = get_layer_spec(name)
    return spec.parameter_formula(V.check_positive_int("channels", channels))


def theoretical_receptive_field(name: str) -> int:
    """Side of the window one output pixel can see, through the local paths of the network.

    The stem's two 3x3, the layer's local field (``LayerSpec.local_field``) and the head's 3x3.
    Layers with global context also pool the whole image (their filters depend on every pixel):
    for them this is the local part.
    """
    local = get_layer_spec(name).local_field
    return receptive_field([(3, 1, 1), (3, 1, 1), (local, 1, 1), (3, 1, 1)])


class SideBySideNet(nn.Module):
    """``classifier(post(relu(layer(stem(x)))))`` with ``layer = make_layer(name, channels)``."""

    def __init__(self, name: str, channels: int = 8, in_channels: int = 1, num_classes: int = 2,
                 backend: str = "auto"):
        super().__init__()
        self.name = _check_name(name)
        C = V.check_positive_int("channels", channels)
        in_channels = V.check_positive_int("in_channels", in_channels)
        num_classes = V.check_positive_int("num_classes", num_classes)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(C, C, 3, padding=1), nn.ReLU())
        self.post = nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(C, num_classes, 1)
        # the slot last: from the same seed, every model starts with the same stem and head
        self.layer = make_layer(name, C, backend)

    def forward(self, x):
        return self.classifier(self.post(self.layer(self.stem(x))))

    def set_backend(self, backend: str) -> SideBySideNet:
        """Switch the dynamic layer's operator backend (``"numba"``, ``"torch"``, ...)."""
        if hasattr(self.layer, "backend"):
            self.layer.backend = backend
        for m in self.layer.modules():  # containers and inner modules of a layer
            if m is not self.layer and hasattr(m, "backend") and isinstance(m.backend, str):
                m.backend = backend
        return self


def make_model(name: str, channels: int = 8, backend: str = "auto", seed: int = 0) -> SideBySideNet:
    """A seeded :class:`SideBySideNet`: the same seed gives the stem and head the same weights."""
    set_seed(seed)
    return SideBySideNet(name, channels, backend=backend)


# --------------------------------------------------------------------------- the task

def make_task(train: int = 1024, test: int = 256, size: int = 32) -> tuple[StripeData, StripeData]:
    """Chapter 5's stripes: a training split (seed 1) and a held-out split (seed 2)."""
    return make_stripes(train, size=size, seed=1), make_stripes(test, size=size, seed=2)


def train_model(model: nn.Module, data: StripeData, steps: int, batch_size: int = 16,
                lr: float = 1e-2, seed: int = 0, desc: str = "training", progress: bool = True) -> dict:
    """Adam with a one-cycle schedule on seeded random batches; the loss per step and the seconds."""
    steps = V.check_positive_int("steps", steps)
    batch_size = V.check_positive_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)

    def batch_loss(step):
        idx = torch.randint(0, len(data.images), (batch_size,), generator=gen)
        return F.cross_entropy(model(data.images[idx]), data.labels[idx])

    return train_steps(model, batch_loss, steps, lr=lr, desc=desc, progress=progress)


@torch.no_grad()
def evaluate_model(model: nn.Module, data: StripeData, batch_size: int = 128) -> dict:
    """Eval mode: mean IoU over the classes, pixel accuracy, and accuracy in fine and coarse cells."""
    model.eval()
    pred = torch.cat([model(data.images[i:i + batch_size]).argmax(1)
                      for i in range(0, len(data.images), batch_size)])
    correct = (pred == data.labels).float()
    miou = mean_iou(pred, data.labels, num_classes=int(data.labels.max()) + 1)
    return {"miou": miou, "accuracy": correct.mean().item(),
            "fine": correct[data.zones == 0].mean().item(),
            "coarse": correct[data.zones == 1].mean().item()}


@torch.no_grad()
def error_by_edge_distance(model: nn.Module, data: StripeData, max_distance: int = 4,
                           batch_size: int = 128) -> list[float]:
    """Error rate of ``model`` on the coarse-cell pixels at each distance ``0 .. max_distance`` from
    the nearest bar edge (``data.edge_distance``): how far a network has to look, and whether it does."""
    model.eval()
    pred = torch.cat([model(data.images[i:i + batch_size]).argmax(1)
                      for i in range(0, len(data.images), batch_size)])
    wrong = (pred != data.labels).float()
    return [wrong[data.edge_distance == d].mean().item() for d in range(max_distance + 1)]


@torch.no_grad()
def ddf_active_squeeze_units(model: SideBySideNet, data: StripeData) -> tuple[int, int] | None:
    """``(active, total)``: how many ReLU units of a DDF slot's squeeze layer (its ``channel_branch``)
    are positive for at least one image of ``data``. With none active the channel filter is the
    same for every image (the layer loses its global context). ``None`` for other slots."""
    branch = getattr(model.layer, "channel_branch", None)
    if not isinstance(branch, nn.Sequential):
        return None
    model.eval()
    pooled = model.stem(data.images).mean((2, 3))            # the global average pool
    hidden = branch[1](branch[0](pooled))                   # Linear, ReLU: the squeeze
    return int((hidden > 0).any(0).sum()), hidden.shape[1]


# --------------------------------------------------------------------------- measurements

def measure_erf(model: nn.Module, size: int = 33, samples: int = 8) -> dict:
    """The ERF of the centre output on random inputs, in eval mode: the map, its 95% radius and the
    side of its support (pixels with a non-zero gradient). Measured in float64 on a copy."""
    model = copy.deepcopy(model).double().eval()
    erf = effective_receptive_field(model, 1, size, samples=samples, dtype=torch.float64)
    rows = torch.nonzero(erf.sum(1) > 0).flatten()
    return {"erf": erf.float(), "radius": erf_radius(erf, 0.95),
            "support": int(rows.max() - rows.min() + 1) if len(rows) else 0}


#: The CPU backends each dynamic layer is timed with; the faster one is its "fast backend".
CPU_BACKENDS = ("numba", "torch")


def _label(name: str, backend: str) -> str:
    return name if name == baseline() else f"{name} [{backend}]"


def latency(models: dict, x: torch.Tensor, part: str = "model", baseline_name: str | None = None,
            backends: Sequence[str] = CPU_BACKENDS, min_run_time: float = 0.3, threads: int = 1,
            title: str = "") -> bench.BenchmarkTable:
    """Inference time of each model (``part="model"``) or of its layer alone on the stem's output
    (``part="layer"``), without gradients, with every backend in ``backends`` (the conv has
    one), by :func:`dyncore.bench.compare` in one run. Entries are named ``"PAD [numba]"``."""
    if part not in ("model", "layer"):
        raise ValueError(f"part must be 'model' or 'layer'; got {part!r}")

    def runner(model, backend):
        model.eval()
        with torch.no_grad():
            inp = x if part == "model" else model.stem(x)
        fn = model if part == "model" else model.layer

        def run():
            model.set_backend(backend)
            with torch.no_grad():
                fn(inp)
        return run

    fns = {_label(name, be): runner(m, be) for name, m in models.items()
           for be in (backends[:1] if name == baseline() else backends)}
    with num_threads(threads):
        table = bench.compare(fns, baseline=baseline_name or baseline(), min_run_time=min_run_time,
                              title=title)
    for m in models.values():
        m.set_backend("auto")
    return table


def fastest(table: bench.BenchmarkTable, name: str, backends: Sequence[str] = CPU_BACKENDS):
    """``(backend, time / baseline)`` of the fastest backend of ``name`` in a :func:`latency` table."""
    if name == baseline():
        return "torch", table.ratio(baseline())
    timed = [be for be in backends if _label(name, be) in table.timings]
    best = min(timed, key=lambda be: table.median(_label(name, be)))
    return best, table.ratio(_label(name, best))


def pick_training_backend(name: str, train: StripeData, channels: int = 8, batch_size: int = 16,
                          backends: Sequence[str] = CPU_BACKENDS, min_run_time: float = 0.05):
    """The backend with the fastest training step (forward, backward, Adam) for layer ``name``,
    timed here and now (``"torch"`` for the plain conv, the baseline, which has no other)."""
    if name == baseline():
        return "torch", None
    model = make_model(name, channels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xb, yb = train.images[:batch_size], train.labels[:batch_size]

    def step(backend):
        def run():
            model.set_backend(backend)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
        return run

    table = bench.compare({be: step(be) for be in backends}, min_run_time=min_run_time,
                          title=f"one training step of the {name} model")
    return min(backends, key=table.median), table


def measure(models: dict, histories: dict, test: StripeData, size: int = 32, batch: int = 32,
            min_run_time: float = 0.3) -> tuple[ComparisonTable, dict]:
    """Every column of the table for trained ``models`` (``{name: SideBySideNet}``, the
    :func:`baseline` among them). Returns the table and the extras (ERF maps, the two latency tables)."""
    if baseline() not in models:
        raise ValueError(f"models must include the {baseline()!r} baseline; got {list(models)}")
    x1 = test.images[:1, :, :size, :size]
    xb = test.images[:batch]
    flops, flops_all = {}, {}
    for name, model in models.items():
        model.eval()
        model.set_backend("torch")  # the counter sees PyTorch operators only
        with torch.no_grad():
            features = model.stem(x1)
        flops[name] = count_flops(model.layer, features)
        flops_all[name] = count_flops(model.layer, features, elementwise=True)
        model.set_backend("auto")
    layer_times = latency(models, xb, "layer", min_run_time=min_run_time,
                          title=f"the layer alone, batch {batch} of 8 x {size} x {size}")
    model_times = latency(models, xb, "model", min_run_time=min_run_time,
                          title=f"the whole model, batch {batch} of 1 x {size} x {size}")
    erfs, rows = {}, []
    for name, model in models.items():
        scores = evaluate_model(model, test)
        e = measure_erf(model)
        erfs[name] = e["erf"]
        rows.append({
            "layer": name, "layer_params": count_parameters(model.layer),
            "model_params": count_parameters(model),
            "mflops": flops[name] / 1e6, "mflops_all": flops_all[name] / 1e6, **scores,
            "backend": fastest(layer_times, name)[0], "layer_time": fastest(layer_times, name)[1],
            "model_time": fastest(model_times, name)[1],
            "erf_radius": e["radius"], "erf_support": e["support"],
            "train_s": histories[name]["seconds"] if name in histories else float("nan"),
        })
    return ComparisonTable(rows), {"erf": erfs, "layer_times": layer_times, "model_times": model_times}


def side_by_side(layers: Sequence[str] | None = None, steps: int = 200, channels: int = 8,
                 train: StripeData | None = None, test: StripeData | None = None, seed: int = 0,
                 threads: int = 1, min_run_time: float = 0.3, progress: bool = True):
    """Train one model per layer (same seed, data, schedule) and measure them all.

    Returns ``(table, models, histories, extras)``.
    """
    layers = tuple(layer_names() if layers is None else layers)
    for name in layers:
        _check_name(name)
    if baseline() not in layers:
        raise ValueError(f"layers must include the {baseline()!r} baseline; got {layers}")
    if train is None or test is None:
        train, test = make_task()
    models, histories = {}, {}
    with num_threads(threads):
        for name in tqdm(layers, desc="models", disable=not progress):
            backend, _ = pick_training_backend(name, train, channels)
            model = make_model(name, channels, seed=seed).set_backend(backend)
            histories[name] = train_model(model, train, steps, seed=seed, desc=name, progress=progress)
            histories[name]["backend"] = backend
            models[name] = model.set_backend("auto")
    table, extras = measure(models, histories, test, min_run_time=min_run_time)
    return table, models, histories, extras


# --------------------------------------------------------------------------- the recorded experiment

#: The CPU backend each layer trains with in the recorded run (its spec's ``training_backend``:
#: the faster one for a training step at batch 16 on this machine, timed when the experiment was
#: set up; fixed so that a re-run, and the freshness check, compute exactly the same numbers).
TRAINING_BACKENDS = {spec.name: spec.training_backend for spec in layer_specs()}
#: Distances (pixels) to a coarse bar's edge at which each run's error rate is recorded.
EDGE_DISTANCES = 5


def prepare_side_by_side(config: dict) -> dict:
    """The three splits of the stripes task (:func:`dyncore.experiments.ch05.prepare_stripes`)."""
    from .ch05 import prepare_stripes

    return prepare_stripes(config)


def side_by_side_trial(t) -> dict:
    """One layer in the slot (``t.variant``), one seed: count its parameters and FLOPs (with
    elementwise work, on the ``"torch"`` backend), train it on the training split with its
    :data:`TRAINING_BACKENDS` backend, and measure it on the test split: mIoU, accuracy, accuracy
    in fine and coarse cells, the loss, the error rate by distance to a bar's edge, the trained
    network's ERF and, for DDF, its active squeeze units."""
    c = t.config
    name = t.variant
    model = make_model(name, c["channels"], seed=t.seed)
    train, val, held = t.data["train"], t.data["val"], t.data["test"]
    x1 = train.images[:1]
    model.eval().set_backend("torch")
    with torch.no_grad():
        features = model.stem(x1)
    t.record["parameters"] = count_parameters(model)
    t.record["flops"] = count_flops(model, x1, elementwise=True)
    t.record["layer_parameters"] = count_parameters(model.layer)
    t.record["layer_flops"] = count_flops(model.layer, features, elementwise=True)
    model.train().set_backend(c["backends"][name])
    gen = torch.Generator().manual_seed(1000 + t.seed)

    def batch_loss(step):
        idx = torch.randint(0, len(train.images), (c["batch_size"],), generator=gen)
        return F.cross_entropy(model(train.images[idx]), train.labels[idx])

    t.train(model, batch_loss, c["steps"], validate=lambda: held_out_loss(model, val),
            eval_every=c["eval_every"], desc=f"{name} seed {t.seed}")
    scores = evaluate_model(model, held)
    metrics = {"miou": scores["miou"], "accuracy": scores["accuracy"], "fine_accuracy": scores["fine"],
               "coarse_accuracy": scores["coarse"], "val_loss": t.record["curves"]["val_loss"][-1][1]}
    model.eval()
    metrics["test_loss"] = held_out_loss(model, held)
    edges = error_by_edge_distance(model, held, EDGE_DISTANCES - 1)
    metrics.update({f"edge_error_{d}": e for d, e in enumerate(edges)})
    erf = measure_erf(model, samples=c["erf_samples"])
    metrics["erf_radius"], metrics["erf_support"] = erf["radius"], erf["support"]
    units = ddf_active_squeeze_units(model, held)
    if units is not None:
        metrics["ddf_active_units"], metrics["ddf_units"] = units
    return metrics


def _side_by_side_experiment():
    from .runner import Experiment

    return Experiment(
        name="07_side_by_side", chapter=7,
        title="Every layer of the book in one slot of one network, stripes task",
        variants=layer_names(),
        config={"n_train": 1024, "n_val": 256, "n_test": 512, "seed_train": 1, "seed_val": 3, "seed_test": 2,
                "size": 32, "cell": 16, "tile": 4, "fine_period": 2, "coarse_period": 16, "noise": 0.5,
                "channels": 8, "backends": dict(TRAINING_BACKENDS), "steps": 1200, "batch_size": 16,
                "eval_every": 60, "erf_samples": 8, "lr": 1e-2},
        quick={"n_train": 128, "n_val": 32, "n_test": 32, "steps": 20, "eval_every": 10, "erf_samples": 2},
        prepare=prepare_side_by_side, trial=side_by_side_trial,
        lr_grid=(1e-2, 3e-2, 1e-1, 3e-1),
        description="Segmentation of the stripes task (Chapter 5's: the orientation of the stripes at "
                    "every pixel; fine cells need a small window, coarse ones a wide one). One network, "
                    "stem (two 3x3 convolutions, 8 channels) -> slot -> ReLU -> 3x3 convolution -> 1x1 "
                    "classifier; the slot holds the plain 3x3 convolution (the baseline) or one of the "
                    "book's dynamic layers with k = 3, each as its operator's spec builds it. The same "
                    "seed gives every network the same stem and head. Adam with a one-cycle schedule, "
                    "batches of 16 drawn by the same seeded generator for every layer; learning rate "
                    "per layer from the grid by the final validation loss of seed 0.",
        matched="not matched: each layer at its natural size for 8 -> 8 channels (the same stem and "
                "head around it); parameters and FLOPs of the layer and of the whole network are "
                "recorded next to its accuracy.",
    )


SIDE_BY_SIDE = _side_by_side_experiment()
EXPERIMENTS = (SIDE_BY_SIDE,)


def side_by_side_claims(result: dict) -> tuple:
    """Each dynamic layer of a recorded ``07_side_by_side`` run against the plain convolution
    on test mIoU (decided by :func:`dyncore.experiments.verdicts.verdict`), with the paper's
    headline figure for what its layer brings over a plain convolution."""
    from .verdicts import Claim

    base = baseline()
    out = [Claim(f"{name} in the slot beats the 3x3 convolution on mIoU", "miou", name, base,
                 paper=PAPER_FIGURES.get(name, "no figure"), source="Chapter 7")
           for name in result["variants"] if name != base]
    wide = get_spec("large_sampling_filter").layer.name
    if wide in result["variants"]:
        out.append(Claim(f"{wide} widens the effective receptive field over the 3x3 convolution", "erf_radius",
                         wide, base, paper=f"Fig. 1: one {wide} layer enlarges the ERF (qualitative)",
                         source="Chapter 7"))
    return tuple(out)


#: Each layer's paper: its headline figure for the layer against a plain (or its own static)
#: baseline, as the book's chapters quote it.
PAPER_FIGURES = {spec.name: spec.headline for spec in layer_specs() if spec.headline}
