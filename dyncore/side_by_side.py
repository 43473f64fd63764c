"""All the book's dynamic layers on one task: the closing table (Chapter 7).

One small network, one generated dense-prediction task, and one layer slot::

    stem (3x3 conv 1 -> C, ReLU, 3x3 conv C -> C, ReLU)
      -> LAYER (C -> C)  -> ReLU
      -> 3x3 conv C -> C, ReLU  -> 1x1 classifier C -> classes

The slot holds a plain 3x3 convolution (the baseline) or one of the book's dynamic layers,
each with ``k = 3`` (:func:`make_layer`, names in :data:`LAYERS`):

* ``"conv"``   -- ``nn.Conv2d(C, C, 3, padding=1)``;
* ``"DFN"``    -- :class:`dyncore.dfn.DynamicFilterLayer`, a 3x3 filter per pixel (Chapter 2);
* ``"LS-DFN"`` -- :class:`dyncore.lsdfn.LSDFN`, ``s = 3`` samples at stride 2, a feature
  branch of ``C/2`` channels (its cost grows with ``C``; Chapter 3);
* ``"DCM"``    -- :class:`dyncore.dmnet.DCM`, a 3x3 depthwise filter per image (Chapter 4);
* ``"PAD"``    -- :class:`dyncore.pad.PADConv2d`, dilation 1, 2 or 4 per pixel (Chapter 5);
* ``"DDF"``    -- :class:`dyncore.ddf.modules.DDF`, decoupled spatial x channel filters (Chapter 6).

The task is Chapter 5's stripes (:func:`dyncore.experiments.ch05.make_stripes`): the label of a pixel
is the orientation of its stripes; in *fine* cells a 3x3 window is enough and a wide one mixes
neighbouring tiles, in *coarse* cells only a window that reaches the edge of an 8-pixel bar
tells the answer. So it rewards both reading the content (how far to look depends on what is
under the pixel) and context (the coarse cells need more than the baseline's 9 x 9 field).

:func:`side_by_side` trains each model (seeded, ``tqdm.auto``) and measures it
(:func:`measure`): accuracy on a held-out split, parameters, FLOPs, CPU latency ratios and the
effective receptive field; the result is a :class:`ComparisonTable`. :func:`plot_comparison`
draws the figure.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import bench
from . import validation as V
from .experiments.ch05 import StripeData, make_stripes
from .training import train_steps
from .receptive_field import effective_receptive_field, erf_radius, receptive_field
from .utils import count_flops, count_parameters, num_threads, set_seed

#: The layers that can fill the slot, the plain convolution first (the baseline).
LAYERS = ("conv", "DFN", "LS-DFN", "DCM", "PAD", "DDF")
#: The paper (bibliography key) behind each layer.
PAPERS = {"conv": "", "DFN": "dfn2016", "LS-DFN": "lsdfn2018", "DCM": "dmnet2019",
          "PAD": "padnets2020", "DDF": "ddf2021"}
#: Hyper-parameters of the layers (all with a 3x3 kernel).
KERNEL_SIZE = 3
LSDFN_SAMPLES, LSDFN_SAMPLE_STRIDE = 3, 2


def lsdfn_feature_channels(channels: int) -> int:
    """The LS-DFN feature branch's width ``C``: half the slot's channels (at least 1)."""
    return max(1, channels // 2)
PAD_DILATIONS = (1, 2, 4)
DDF_SE_RATIO = 0.2


def ddf_class():
    """The DDF module of Chapter 6 (``dyncore.ddf.modules.DDF``), or ``None`` while it is missing.

    This is the one place the comparison looks for DDF: when the module imports, ``"DDF"``
    joins :func:`available_layers`; until then the comparison runs without it and says so.
    """
    try:
        from .ddf.modules import DDF
    except ImportError:
        return None
    return DDF


def available_layers() -> tuple[str, ...]:
    """The names of :data:`LAYERS` whose modules exist in this install."""
    return tuple(name for name in LAYERS if name != "DDF" or ddf_class() is not None)


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {LAYERS}; got {type(name).__name__} {name!r}")
    if name not in LAYERS:
        raise ValueError(f"name must be one of {LAYERS}; got {name!r}")
    if name not in available_layers():
        raise ValueError(f"name {name!r}: dyncore.ddf.modules.DDF is not available in this install")
    return name


def make_layer(name: str, channels: int = 8, backend: str = "auto") -> nn.Module:
    """The layer ``name`` (one of :data:`LAYERS`), ``channels -> channels``, same size out."""
    _check_name(name)
    C = V.check_positive_int("channels", channels)
    k = KERNEL_SIZE
    if name == "conv":
        return nn.Conv2d(C, C, k, padding=k // 2)
    if name == "DFN":
        from .dfn import DynamicFilterLayer
        return DynamicFilterLayer(C, k, hidden_channels=(C, C), backend=backend)
    if name == "LS-DFN":
        from .lsdfn import LSDFN
        return LSDFN(C, lsdfn_feature_channels(C), C, kernel_size=k, samples=LSDFN_SAMPLES,
                     sample_stride=LSDFN_SAMPLE_STRIDE, backend=backend)
    if name == "DCM":
        from .dmnet import DCM
        return DCM(C, C, k, backend=backend)
    if name == "PAD":
        from .pad import PADConv2d
        return PADConv2d(C, C, k, dilations=PAD_DILATIONS, backend=backend)
    return ddf_class()(C, kernel_size=k, se_ratio=DDF_SE_RATIO, backend=backend)


def parameter_formula(name: str, channels: int = 8) -> int:
    """The layer's parameters by its paper's formula, for ``channels -> channels``, ``k = 3``.

    * conv: ``C^2 k^2 + C``;
    * DFN: the filter branch, two 3x3 convolutions ``C -> C`` and a 1x1 one to ``k^2`` taps:
      ``2 (C*9 + 1) C + (C + 1) k^2``;
    * LS-DFN: three 3x3 branches on the ``C_in`` input channels with ``C``, ``Co (C + k^2)`` and
      ``Co (s^2 + k^2)`` outputs: ``(9 C_in + 1) (C + Co (C + k^2) + Co (s^2 + k^2))``, with
      ``C_in = Co`` the slot's channels and ``C`` the feature width;
    * DCM: ``2 C_in C + C^2`` weights plus ``7 C`` (generator bias, three BatchNorms);
    * PAD: the convolution ``C^2 k^2 + C`` plus the hidden-prior branch ``C D + D`` (Markov);
    * DDF: Table 1 of its paper, ``c k^2 + sigma c^2 (1 + k^2)``, with ``sigma c`` rounded to
      the module's squeeze width, plus biases and Eq. 3's scale (:func:`ddf_parameter_formula`).
    """
    _check_name(name)
    C = V.check_positive_int("channels", channels)
    k, s = KERNEL_SIZE, LSDFN_SAMPLES
    if name == "conv":
        return C * C * k * k + C
    if name == "DFN":
        return 2 * (C * 9 + 1) * C + (C + 1) * k * k
    if name == "LS-DFN":
        Cf = lsdfn_feature_channels(C)
        return (9 * C + 1) * (Cf + C * (Cf + k * k) + C * (s * s + k * k))
    if name == "DCM":
        return 2 * C * C + C * C + 7 * C
    if name == "PAD":
        D = len(PAD_DILATIONS)
        return C * C * k * k + C + C * D + D
    return ddf_parameter_formula(C)


def ddf_parameter_formula(channels: int) -> int:
    """DDF's Table 1, ``c k^2 + sigma c^2 (1 + k^2)`` weights (``sigma c`` rounded to the squeeze
    width ``m``: :func:`dyncore.ddf.modules.branch_parameters`), plus what the table leaves out:
    the biases of the three prediction layers (``k^2 + m + c k^2``) and the learnable scale
    ``alpha`` of Eq. 3 on the channel filter (``c k^2``)."""
    from .ddf.modules import branch_parameters, squeeze_width

    c, k = channels, KERNEL_SIZE
    m = squeeze_width(c, DDF_SE_RATIO)
    return branch_parameters(c, k, DDF_SE_RATIO) + (k * k + m + c * k * k) + c * k * k


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
        for m in self.layer.modules():  # DMHead-like containers and DDF's inner modules
            if m is not self.layer and hasattr(m, "backend") and isinstance(m.backend, str):
                m.backend = backend
        return self


def make_model(name: str, channels: int = 8, backend: str = "auto", seed: int = 0) -> SideBySideNet:
    """A seeded :class:`SideBySideNet`: the same seed gives the stem and head the same weights."""
    set_seed(seed)
    return SideBySideNet(name, channels, backend=backend)


def theoretical_receptive_field(name: str) -> int:
    """Side of the window one output pixel can see, through the local paths of the network.

    The stem, the head's 3x3 and the layer's local field: 3x3 (conv, DCM, DDF); for DFN the
    filter branch's two 3x3 convolutions (5 x 5: a pixel's filter is predicted from there, and
    applied to its 3 x 3 neighbours, inside it); for LS-DFN the sampling field plus the feature
    branch's 3x3 (``(s-1) g + k + 2``); the widest dilation for PAD (``2 * 4 + 1``). DCM and DDF also
    pool the whole image (their filters depend on every pixel): for them this is the local part.
    """
    _check_name(name)
    local = {"conv": 3, "DCM": 3, "DDF": 3, "DFN": 5,
             "LS-DFN": (LSDFN_SAMPLES - 1) * LSDFN_SAMPLE_STRIDE + KERNEL_SIZE + 2,
             "PAD": (KERNEL_SIZE - 1) * max(PAD_DILATIONS) + 1}[name]
    return receptive_field([(3, 1, 1), (3, 1, 1), (local, 1, 1), (3, 1, 1)])


#: Layers whose filters are computed from a global pooling of the image.
GLOBAL_CONTEXT = ("DCM", "DDF")


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
    ious = []
    for c in range(int(data.labels.max()) + 1):
        inter = ((pred == c) & (data.labels == c)).sum().item()
        union = ((pred == c) | (data.labels == c)).sum().item()
        ious.append(inter / union if union else 1.0)
    return {"miou": sum(ious) / len(ious), "accuracy": correct.mean().item(),
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
    """``(active, total)``: how many ReLU units of a DDF slot's squeeze layer are positive for at
    least one image of ``data``. With none active the channel filter is the same for every image
    (the layer loses its global context). ``None`` for other slots."""
    branch = getattr(model.layer, "channel_branch", None)
    if model.name != "DDF" or not isinstance(branch, nn.Sequential):
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
    return name if name == "conv" else f"{name} [{backend}]"


def latency(models: dict, x: torch.Tensor, part: str = "model", baseline: str = "conv",
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
           for be in (backends[:1] if name == "conv" else backends)}
    with num_threads(threads):
        table = bench.compare(fns, baseline=baseline, min_run_time=min_run_time, title=title)
    for m in models.values():
        m.set_backend("auto")
    return table


def fastest(table: bench.BenchmarkTable, name: str, backends: Sequence[str] = CPU_BACKENDS):
    """``(backend, time / baseline)`` of the fastest backend of ``name`` in a :func:`latency` table."""
    if name == "conv":
        return "torch", table.ratio("conv")
    timed = [be for be in backends if _label(name, be) in table.timings]
    best = min(timed, key=lambda be: table.median(_label(name, be)))
    return best, table.ratio(_label(name, best))


def pick_training_backend(name: str, train: StripeData, channels: int = 8, batch_size: int = 16,
                          backends: Sequence[str] = CPU_BACKENDS, min_run_time: float = 0.05):
    """The backend with the fastest training step (forward, backward, Adam) for layer ``name``,
    timed here and now (``"torch"`` for the plain conv, which has no other)."""
    if name == "conv":
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


# --------------------------------------------------------------------------- the table

#: The table's columns: (key, header, format).
COLUMNS = (
    ("layer", "layer", "{}"),
    ("layer_params", "layer params", "{:,}"),
    ("model_params", "model params", "{:,}"),
    ("mflops", "layer MFLOPs", "{:.3f}"),
    ("mflops_all", "+elementwise", "{:.3f}"),
    ("miou", "mIoU", "{:.3f}"),
    ("accuracy", "pixel acc", "{:.3f}"),
    ("fine", "fine acc", "{:.3f}"),
    ("coarse", "coarse acc", "{:.3f}"),
    ("backend", "fast backend", "{}"),
    ("layer_time", "layer time x conv", "{:.2f}"),
    ("model_time", "model time x conv", "{:.2f}"),
    ("erf_radius", "ERF r95", "{}"),
    ("erf_support", "ERF support", "{}"),
    ("train_s", "train s", "{:.1f}"),
)


@dataclass
class ComparisonTable:
    """One row (a dict with every key of :data:`COLUMNS`) per layer; prints as a table."""

    rows: list[dict]
    notes: dict = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in COLUMNS)

    def row(self, layer: str) -> dict:
        for r in self.rows:
            if r["layer"] == layer:
                return r
        raise KeyError(f"no row for layer {layer!r}; rows: {[r['layer'] for r in self.rows]}")

    def column(self, key: str) -> list:
        return [r[key] for r in self.rows]

    def best(self, key: str) -> str:
        """The layer with the highest value of ``key``."""
        return max(self.rows, key=lambda r: r[key])["layer"]

    def _cells(self):
        head = [h for _, h, _ in COLUMNS]
        body = [[fmt.format(r[key]) for key, _, fmt in COLUMNS] for r in self.rows]
        return head, body

    def __str__(self) -> str:
        head, body = self._cells()
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]
        line = lambda cells: "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])

    def _repr_html_(self) -> str:
        head, body = self._cells()
        th = "".join(f"<th>{h}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in b) + "</tr>" for b in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def measure(models: dict, histories: dict, test: StripeData, size: int = 32, batch: int = 32,
            min_run_time: float = 0.3) -> tuple[ComparisonTable, dict]:
    """Every column of the table for trained ``models`` (``{name: SideBySideNet}``, ``"conv"``
    among them). Returns the table and the extras (ERF maps, the two latency tables)."""
    if "conv" not in models:
        raise ValueError(f"models must include the 'conv' baseline; got {list(models)}")
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
    layers = tuple(available_layers() if layers is None else layers)
    for name in layers:
        _check_name(name)
    if "conv" not in layers:
        raise ValueError(f"layers must include the 'conv' baseline; got {layers}")
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


# --------------------------------------------------------------------------- the figure

#: What :func:`plot_comparison` can put on the scatter's x axis: (column, label, log scale).
X_AXES = {
    "layer_params": ("parameters of the layer", True),
    "mflops_all": ("MFLOPs of the layer per image (with elementwise)", True),
    "layer_time": ("CPU time of the layer / conv", True),
    "model_time": ("CPU time of the model / conv", True),
    "erf_radius": ("ERF radius (95% of the mass), pixels", False),
}
COLOURS = {"conv": "0.3", "DFN": "tab:blue", "LS-DFN": "tab:orange", "DCM": "tab:green",
           "PAD": "tab:red", "DDF": "tab:purple"}


Y_LABELS = {"miou": "held-out mIoU", "accuracy": "held-out pixel accuracy"}


def plot_comparison(table: ComparisonTable, erfs: dict | None = None, x: str = "layer_time",
                    y: str = "miou", baseline_range: tuple[float, float] | None = None, fig=None):
    """The closing figure: ``y`` against ``x`` for every layer (the conv's values as dashed lines,
    ``baseline_range`` -- the conv's ``y`` over several seeds -- as a grey band), the accuracy in
    fine and coarse cells, and, given ``erfs``, the ERF maps (log10) in a row below."""
    import matplotlib.pyplot as plt
    import numpy as np

    if x not in X_AXES:
        raise ValueError(f"x must be one of {list(X_AXES)}; got {x!r}")
    if y not in Y_LABELS:
        raise ValueError(f"y must be one of {list(Y_LABELS)}; got {y!r}")
    names = table.column("layer")
    n = len(names)
    if fig is None:
        fig = plt.figure(figsize=(12, 7.6 if erfs else 4.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.5, 1]) if erfs else (fig, None)
    ax0, ax1 = top.subplots(1, 2)
    label, log = X_AXES[x]
    base = table.row("conv")
    if baseline_range is not None:
        ax0.axhspan(*baseline_range, color="0.85", zorder=0, label="conv over seeds")
        ax0.legend(loc="lower right", fontsize=8)
    for r in table.rows:
        ax0.scatter(r[x], r[y], s=60, color=COLOURS.get(r["layer"], "k"), zorder=3)
        ax0.annotate(r["layer"], (r[x], r[y]), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax0.axhline(base[y], color="0.5", ls="--", lw=1)
    ax0.axvline(base[x], color="0.5", ls="--", lw=1)
    if log:
        ax0.set_xscale("log")
    ax0.set_xlabel(label)
    ax0.set_ylabel(Y_LABELS[y])
    ax0.set_title(f"{Y_LABELS[y]} against cost (dashed: the 3x3 conv)", fontsize=10)
    pos = np.arange(n)
    ax1.bar(pos - 0.2, table.column("fine"), 0.4, label="fine cells", color="0.75")
    ax1.bar(pos + 0.2, table.column("coarse"), 0.4, label="coarse cells",
            color=[COLOURS.get(nm, "k") for nm in names])
    lo = min(table.column("fine") + table.column("coarse"))
    ax1.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax1.set_xticks(pos, names)
    ax1.set_ylabel("held-out pixel accuracy")
    ax1.set_title("by zone: fine cells (grey), coarse cells (colour)", fontsize=10)
    if erfs:
        for ax, name in zip(np.atleast_1d(bottom.subplots(1, n)), names):
            e = erfs[name].numpy()
            ax.imshow(np.log10(e + 1e-8), cmap="magma", vmin=-6, vmax=float(np.log10(e.max())))
            r = table.row(name)["erf_radius"]
            c = e.shape[0] // 2
            ax.add_patch(plt.Rectangle((c - r - 0.5, c - r - 0.5), 2 * r + 1, 2 * r + 1,
                                       fill=False, ec="cyan", lw=1))
            ax.set_title(f"{name}\nr95 = {r}, support {table.row(name)['erf_support']}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("One task, one slot, six layers" + (
        "  (bottom: log10 ERF of the centre output of each trained model, cyan: its 95% square)"
        if erfs else ""), fontsize=11)
    return fig


@torch.no_grad()
def plot_errors(models: dict, data: StripeData, index: int = 0, fig=None):
    """The image ``index`` of ``data``, its zones, and each model's wrong pixels (red) in eval mode."""
    import matplotlib.pyplot as plt

    index = V.check_nonnegative_int("index", index)
    if index >= len(data.images):
        raise ValueError(f"index must be below the {len(data.images)} images of data; got {index}")
    n = len(models) + 2
    if fig is None:
        fig = plt.figure(figsize=(2 * n, 2.5))
    axes = fig.subplots(1, n)
    axes[0].imshow(data.images[index, 0].numpy(), cmap="gray")
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(data.zones[index].numpy(), cmap="Greys", vmin=-0.5, vmax=1.5)
    axes[1].set_title("zones (dark: coarse)", fontsize=9)
    x = data.images[index:index + 1]
    for ax, (name, model) in zip(axes[2:], models.items()):
        model.eval()
        wrong = (model(x).argmax(1)[0] != data.labels[index]).float()
        overlay = torch.zeros(*wrong.shape, 4)
        overlay[..., 0], overlay[..., 3] = 1.0, 0.85 * wrong  # red where wrong, clear elsewhere
        ax.imshow(data.images[index, 0].numpy(), cmap="gray", alpha=0.5)
        ax.imshow(overlay.numpy())
        ax.set_title(f"{name}: {int(wrong.sum())} wrong", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
