"""Chapter 5's experiments (PAD-Nets): the generated stripes task, the segmentation models and
their training and evaluation.

**The task.** The chapter's generated task: stripes whose scale, and so the context they need, varies by region.

Each image is a grid of ``cell x cell`` cells. A cell is either

* **fine** (zone 0): cut into ``tile x tile`` tiles, each striped with a period of
  ``fine_period`` pixels (thin stripes), horizontal or vertical at random; a pixel's
  orientation is plain from its 3 x 3 neighbourhood, but a few pixels further the tile, and
  the answer, change: a large receptive field mixes neighbouring tiles;
* **coarse** (zone 1): one orientation for the whole cell, bars ``coarse_period / 2`` pixels
  wide: deep inside a bar every nearby pixel looks the same, and only a receptive field that
  reaches the bar's edges sees which way it runs.

The label of every pixel is the orientation of its stripes (0 = horizontal, 1 = vertical), so
the task is a two-class segmentation whose needed receptive field is small in fine cells and
large in coarse ones. ``edge_distance`` says, for a pixel of a coarse cell, how many pixels lie
between it and the nearest edge of its bar inside the cell (0 next to an edge; -1 in fine
cells): how far a pixel has to look to see one. Gaussian noise of standard deviation ``noise`` is added. Everything is
drawn from one seeded ``torch.Generator``: the same arguments give the same data.

**The experiment.** The chapter's small segmentation experiment: models, training loop, metrics.

Every model is the same network with a different *body*:

    stem (two 3 x 3 convolutions, ReLU)  ->  body (three layers)  ->  1 x 1 classifier

* ``("fixed", d)``: three ordinary 3 x 3 convolutions with dilation ``d`` (:class:`FixedDilationStack`);
* ``("multi", dilations)``: three 3 x 3 convolutions, each applied at every dilation of
  ``dilations`` and averaged (:class:`MultiDilationStack`, an ASPP-like fixed mix: it is
  :func:`~dyncore.pad.adaptive_dilation_conv` with constant gates ``1 / D``);
* ``("pad", dilations, aggregation)``: three :class:`~dyncore.pad.PADConv2d` layers
  (:class:`~dyncore.pad.PADStack`) that choose among ``dilations`` at every pixel;
* ``("pad_at", pad_layers, dilations, aggregation)``: PAD layers at the positions
  ``pad_layers`` only, plain 3 x 3 convolutions of dilation 1 elsewhere (:class:`PlacedPADStack`).

The convolutions have the same weights in all of them, so the fixed and multi-dilation models
have exactly the same parameters, and a PAD model has those plus its hidden-prior branch
(:func:`~dyncore.pad.modules.prior_branch_parameters`).

**The recorded experiment** ``05_pad_dilation`` (:data:`EXPERIMENTS`, run by
:mod:`dyncore.experiments.runner`): PAD (Markov aggregation, dilations 1, 2, 4) against every
fixed dilation and against the multi-dilation average, each at its own learning rate chosen on a
validation split, over several seeds; :func:`claims` lists what the chapter tests on it.

**The recorded experiment** ``05_pad_placement`` (same task, data and protocol): where the PAD
layer goes (the paper's Table 1: PAD in body layer 1, 2 or 3 only, a :class:`PlacedPADStack`, or
in all three) and how the layers' priors are aggregated (Table 2: Markov, gated, recurrent),
against the vanilla network; :func:`placement_claims` lists what the chapter tests on it.
:data:`CLAIMS` maps each experiment to its claims.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..pad import PADStack, adaptive_dilation_conv, dilation_variance, expected_dilation
from ..pad.modules import AGGREGATIONS, PADConv2d, prior_branch_parameters, record_gates
from ..training import train_steps
from ..utils import count_parameters  # noqa: F401  (the chapter calls it from here)
from .metrics import mean_cross_entropy, mean_iou
from .runner import Experiment, Trial
from .verdicts import Claim

#: Zone names, by zone index.
ZONES = ("fine", "coarse")
#: Class names, by label.
CLASSES = ("horizontal", "vertical")


class StripeData(NamedTuple):
    images: torch.Tensor  # (N, 1, S, S) float32
    labels: torch.Tensor  # (N, S, S) int64: 0 horizontal, 1 vertical
    zones: torch.Tensor   # (N, S, S) int64: 0 fine, 1 coarse
    edge_distance: torch.Tensor  # (N, S, S) int64: pixels to the nearest bar edge; -1 in fine cells


def _stripes(size: int, period: int, vertical: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``(n, size, size)`` square waves of ``period`` pixels (+1 for the first half, -1 for the
    second), running horizontally (constant along a row) or vertically, shifted by ``phase``."""
    pos = torch.arange(size)
    rows = ((pos[None, :, None] + phase[:, None, None]) % period) < period // 2  # along y
    cols = ((pos[None, None, :] + phase[:, None, None]) % period) < period // 2  # along x
    wave = torch.where(vertical[:, None, None], cols, rows)
    return wave.float() * 2 - 1


def _edge_distance(cell: int, period: int, vertical: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``(n, cell, cell)``: distance, across the bars, to the nearest bar edge inside the cell."""
    pos = torch.arange(cell)
    light = ((pos[None, :] + phase[:, None]) % period) < period // 2            # (n, cell)
    edge = light[:, 1:] != light[:, :-1]                                        # edge between t, t+1
    t = torch.arange(cell - 1)
    gap = torch.where(pos[:, None] > t[None, :], pos[:, None] - t[None, :] - 1, t[None, :] - pos[:, None])
    far = torch.full_like(gap, 2 * cell)
    dist = torch.where(edge[:, None, :], gap[None], far[None]).min(-1).values   # (n, cell)
    across_x = dist[:, None, :].expand(-1, cell, cell)  # vertical bars: edges along x
    across_y = dist[:, :, None].expand(-1, cell, cell)  # horizontal bars: edges along y
    return torch.where(vertical[:, None, None], across_x, across_y)


def make_stripes(n: int, size: int = 32, cell: int = 16, tile: int = 4, fine_period: int = 2,
                 coarse_period: int = 16, noise: float = 0.5, p_coarse: float = 0.5,
                 seed: int = 0) -> StripeData:
    """``n`` images of ``size x size`` pixels (see the module's docstring)."""
    n = V.check_nonnegative_int("n", n)
    size = V.check_positive_int("size", size)
    cell = V.check_positive_int("cell", cell)
    tile = V.check_positive_int("tile", tile)
    fine_period = V.check_positive_int("fine_period", fine_period)
    coarse_period = V.check_positive_int("coarse_period", coarse_period)
    if size % cell or cell % tile:
        raise ValueError(f"cell must divide size and tile must divide cell; got size={size}, "
                         f"cell={cell}, tile={tile}")
    if fine_period < 2 or coarse_period < 2:
        raise ValueError("fine_period and coarse_period must be at least 2 (a stripe and a gap)")
    if not (noise >= 0):
        raise ValueError(f"noise must be a non-negative number; got {noise}")
    if not (0 <= p_coarse <= 1):
        raise ValueError(f"p_coarse must be a probability in [0, 1]; got {p_coarse}")
    gen = torch.Generator().manual_seed(seed)
    cells, tiles = size // cell, cell // tile
    images = torch.empty(n, size, size)
    labels = torch.empty(n, size, size, dtype=torch.int64)
    zones = torch.empty(n, size, size, dtype=torch.int64)
    edge_distance = torch.empty(n, size, size, dtype=torch.int64)
    for cy in range(cells):
        for cx in range(cells):
            ys, xs = slice(cy * cell, (cy + 1) * cell), slice(cx * cell, (cx + 1) * cell)
            coarse = torch.rand(n, generator=gen) < p_coarse
            # coarse: one orientation and phase for the whole cell
            vertical = torch.rand(n, generator=gen) < 0.5
            phase = torch.randint(0, coarse_period, (n,), generator=gen)
            coarse_img = _stripes(cell, coarse_period, vertical, phase)
            coarse_lab = vertical[:, None, None].expand(n, cell, cell).long()
            # fine: an orientation and a phase per tile
            fine_img = torch.empty(n, cell, cell)
            fine_lab = torch.empty(n, cell, cell, dtype=torch.int64)
            for ty in range(tiles):
                for tx in range(tiles):
                    v = torch.rand(n, generator=gen) < 0.5
                    ph = torch.randint(0, fine_period, (n,), generator=gen)
                    t_y, t_x = slice(ty * tile, (ty + 1) * tile), slice(tx * tile, (tx + 1) * tile)
                    # the tile's stripes continue the image's grid, so the phase is global
                    wave = _stripes(cell, fine_period, v, ph)
                    fine_img[:, t_y, t_x] = wave[:, t_y, t_x]
                    fine_lab[:, t_y, t_x] = v[:, None, None].long()
            c = coarse[:, None, None]
            images[:, ys, xs] = torch.where(c, coarse_img, fine_img)
            labels[:, ys, xs] = torch.where(c, coarse_lab, fine_lab)
            zones[:, ys, xs] = c.long().expand(n, cell, cell)
            edge_distance[:, ys, xs] = torch.where(
                c, _edge_distance(cell, coarse_period, vertical, phase), torch.full_like(coarse_lab, -1))
    images = images + noise * torch.randn(n, size, size, generator=gen)
    return StripeData(images[:, None].contiguous(), labels, zones, edge_distance)


class FixedDilationStack(nn.Module):
    """``depth`` 3 x 3 convolutions ``channels -> channels`` with one dilation, each with a ReLU."""

    def __init__(self, channels: int, depth: int = 3, dilation: int = 1, kernel_size: int = 3):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.dilation = dilation
        self.layers = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size, padding=pad, dilation=dilation)
                                    for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


class MultiDilationStack(nn.Module):
    """``depth`` 3 x 3 convolutions ``channels -> channels``, each applied with every dilation of
    ``dilations`` and averaged, each followed by a ReLU: a fixed, equal mix of receptive fields
    (like ASPP, but with one shared weight, so it has exactly the parameters of
    :class:`FixedDilationStack`). Each layer equals
    ``adaptive_dilation_conv(x, weight, bias, gates=1/D everywhere, dilations=dilations)``."""

    def __init__(self, channels: int, depth: int = 3, dilations: tuple = (1, 2, 4), kernel_size: int = 3):
        super().__init__()
        self.dilations = tuple(V.check_positive_int("dilations", d) for d in dilations)
        if not self.dilations:
            raise ValueError("dilations must be a non-empty tuple of positive ints; got ()")
        self.kernel_size = kernel_size
        self.layers = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size) for _ in range(depth))

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` before its ReLU: the mean over the dilations of the dilated convolution."""
        conv, r = self.layers[i], (self.kernel_size - 1) // 2
        return sum(F.conv2d(x, conv.weight, conv.bias, padding=d * r, dilation=d)
                   for d in self.dilations) / len(self.dilations)

    def as_gated(self, i: int, x: torch.Tensor, backend: str = "torch") -> torch.Tensor:
        """Layer ``i`` through :func:`~dyncore.pad.adaptive_dilation_conv` with gates ``1 / D``."""
        D = len(self.dilations)
        gates = x.new_full((x.shape[0], D, x.shape[2], x.shape[3]), 1.0 / D)
        conv = self.layers[i]
        return adaptive_dilation_conv(x, conv.weight, conv.bias, gates, dilations=self.dilations, backend=backend)

    def forward(self, x):
        for i in range(len(self.layers)):
            x = F.relu(self.layer(i, x))
        return x


class PlacedPADStack(nn.Module):
    """``depth`` 3 x 3 layers ``channels -> channels``, each followed by a ReLU: a
    :class:`~dyncore.pad.PADConv2d` at the positions ``pad_layers`` (counted from 1) and a plain
    3 x 3 convolution with dilation 1 everywhere else (the paper's Table 1: which layers get the
    PAD kernels). A PAD layer receives the hidden priors of the previous PAD layer of the stack
    (none for the first one), as in :class:`~dyncore.pad.PADStack`; with every position a PAD
    layer it is that stack, layer for layer (same parameters, same initialization, same output).
    The convolutions have the parameters of :class:`FixedDilationStack`; each PAD layer adds
    its prior branch (:func:`~dyncore.pad.modules.prior_branch_parameters`)."""

    def __init__(self, channels: int, depth: int = 3, pad_layers: tuple = (3,), dilations: tuple = (1, 2, 4),
                 aggregation: str = "markov", tau: float = 1.0, kernel_size: int = 3, backend: str = "auto"):
        super().__init__()
        depth = V.check_positive_int("depth", depth)
        if isinstance(pad_layers, int) or not isinstance(pad_layers, (tuple, list)):
            raise TypeError(f"pad_layers must be a tuple of layer positions (1 to depth); got {pad_layers!r}")
        positions = tuple(V.check_positive_int("pad_layers", p) for p in pad_layers)
        if not positions or len(set(positions)) != len(positions) or max(positions) > depth:
            raise ValueError(f"pad_layers must be a non-empty tuple of distinct positions from 1 to "
                             f"depth = {depth}; got {pad_layers!r}")
        V.check_choice("aggregation", aggregation, AGGREGATIONS)
        self.pad_layers = tuple(sorted(positions))
        self.layers = nn.ModuleList(
            PADConv2d(channels, channels, kernel_size, dilations, tau, aggregation=aggregation, backend=backend)
            if i + 1 in self.pad_layers
            else nn.Conv2d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
            for i in range(depth))

    @property
    def dilations(self):
        return self.pads()[0].dilations

    def pads(self) -> list:
        """The PAD layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, PADConv2d)]

    def forward(self, x):
        prior = None
        for layer in self.layers:
            if isinstance(layer, PADConv2d):
                x, prior = layer(x, prior, return_prior=True)
            else:
                x = layer(x)
            x = F.relu(x)
        return x


def make_segmenter(body: tuple, channels: int = 8, in_channels: int = 1, num_classes: int = 2,
                   depth: int = 3, tau: float = 1.0, backend: str = "auto") -> nn.Sequential:
    """``body`` is ``("fixed", d)``, ``("multi", dilations)``, ``("pad", dilations, aggregation)``
    (PAD in every body layer) or ``("pad_at", pad_layers, dilations, aggregation)`` (PAD at the
    positions ``pad_layers``, counted from 1, plain 3 x 3 convolutions elsewhere:
    :class:`PlacedPADStack`)."""
    if not isinstance(body, (tuple, list)) or not body:
        raise ValueError(f"body must be ('fixed', d), ('multi', dilations), ('pad', dilations, aggregation) "
                         f"or ('pad_at', pad_layers, dilations, aggregation); got {body!r}")
    if body[0] == "fixed":
        middle = FixedDilationStack(channels, depth, body[1])
    elif body[0] == "multi":
        middle = MultiDilationStack(channels, depth, body[1])
    elif body[0] == "pad":
        middle = PADStack(channels, depth, dilations=body[1], aggregation=body[2], tau=tau, backend=backend)
    elif body[0] == "pad_at" and len(body) == 4:
        middle = PlacedPADStack(channels, depth, pad_layers=body[1], dilations=body[2], aggregation=body[3],
                                tau=tau, backend=backend)
    else:
        raise ValueError(f"body must be ('fixed', d), ('multi', dilations), ('pad', dilations, aggregation) "
                         f"or ('pad_at', pad_layers, dilations, aggregation); got {body!r}")
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        middle,
        nn.Conv2d(channels, num_classes, 1))


def body_of(model: nn.Sequential) -> nn.Module:
    return model[4]


def train_segmenter(model: nn.Module, data: StripeData, steps: int, batch_size: int = 16,
                    lr: float = 1e-2, seed: int = 0, desc: str = "training") -> dict:
    """Adam with a one-cycle schedule on random batches (seeded); returns the loss per step and
    the seconds it took."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device

    def batch_loss(step):
        idx = torch.randint(0, len(data.images), (batch_size,), generator=gen)
        return F.cross_entropy(model(data.images[idx].to(device)), data.labels[idx].to(device))

    return train_steps(model, batch_loss, steps, lr=lr, desc=desc)


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, data: StripeData, batch_size: int = 128) -> dict:
    """Eval mode (no Gumbel noise): mean IoU over the classes, pixel accuracy, accuracy per zone,
    and for a PAD body the expected dilation per layer and zone and the mean variance of the
    sampled dilation (Table 1's sigma^2); for a :class:`PlacedPADStack` the same for its PAD
    layers, whose positions ``pad_layers`` lists."""
    model.eval()
    device = next(model.parameters()).device
    preds, stats = [], {"priors": []}
    body = body_of(model)
    pads = (list(body.layers) if isinstance(body, PADStack) else body.pads() if isinstance(body, PlacedPADStack)
            else [])
    for start in range(0, len(data.images), batch_size):
        with record_gates(model) as seen:
            preds.append(model(data.images[start:start + batch_size].to(device)).argmax(1).cpu())
        if pads:
            stats["priors"].append([seen[layer][0].cpu() for layer in pads])
    pred = torch.cat(preds)
    correct = (pred == data.labels).float()
    result = {"miou": mean_iou(pred, data.labels, int(data.labels.max()) + 1), "accuracy": correct.mean().item(),
              "zone_accuracy": [correct[data.zones == z].mean().item() for z in range(2)]}
    if pads:
        priors = [torch.cat([batch[layer] for batch in stats["priors"]])
                  for layer in range(len(pads))]
        result["pad_layers"] = (list(body.pad_layers) if isinstance(body, PlacedPADStack)
                                else list(range(1, len(pads) + 1)))
        dil = body.dilations
        result["expected_dilation"] = [expected_dilation(torch.softmax(h, 1), dil) for h in priors]
        result["dilation_by_zone"] = [[e[data.zones == z].mean().item() for z in range(2)]
                                      for e in result["expected_dilation"]]
        result["variance"] = torch.stack([dilation_variance(h, dil).mean() for h in priors]).mean().item()
        result["priors"] = priors
    return result


# --------------------------------------------------------------------------- the recorded experiment

#: The models the chapter's experiments compare, by variant name.
BODIES = {
    "fixed d=1": ("fixed", 1),
    "fixed d=2": ("fixed", 2),
    "fixed d=4": ("fixed", 4),
    "multi-dilation average": ("multi", (1, 2, 4)),
    "PAD markov": ("pad", (1, 2, 4), "markov"),
    "PAD gated": ("pad", (1, 2, 4), "gated"),
    "PAD recurrent": ("pad", (1, 2, 4), "recurrent"),
    "PAD layer 1": ("pad_at", (1,), (1, 2, 4), "markov"),
    "PAD layer 2": ("pad_at", (2,), (1, 2, 4), "markov"),
    "PAD layer 3": ("pad_at", (3,), (1, 2, 4), "markov"),
}
#: The fixed-dilation variants, by dilation.
FIXED = {1: "fixed d=1", 2: "fixed d=2", 4: "fixed d=4"}
#: Test images whose hidden priors the first seed of each PAD variant records (for the maps).
MAP_IMAGES = 2


def prepare_stripes(config: dict) -> dict:
    """The three splits of the stripes task, each from its own data seed."""
    common = {k: config[k] for k in ("size", "cell", "tile", "fine_period", "coarse_period", "noise")}
    return {split: make_stripes(config[f"n_{split}"], seed=config[f"seed_{split}"], **common)
            for split in ("train", "val", "test")}


def held_out_loss(model: nn.Module, data: StripeData, batch_size: int = 128) -> float:
    """Mean cross-entropy per pixel of ``model`` on ``data`` (the caller sets eval mode)."""
    return mean_cross_entropy(model, data.images, data.labels, batch_size)


def pad_measurements(evaluation: dict, data: StripeData) -> dict:
    """Scalar measurements of a PAD body from :func:`evaluate_segmenter`'s result: expected
    dilation per zone (mean of the PAD layers, and per PAD layer, named by its position in the
    body), against the distance to a bar's edge in coarse cells (``dilation_edge_k``), and the
    variance of the sampled dilation."""
    by_zone = evaluation["dilation_by_zone"]
    out = {"dilation_fine": sum(f for f, _ in by_zone) / len(by_zone),
           "dilation_coarse": sum(c for _, c in by_zone) / len(by_zone),
           "dilation_variance": evaluation["variance"]}
    positions = evaluation.get("pad_layers", range(1, len(by_zone) + 1))
    for position, (f, c) in zip(positions, by_zone):
        out[f"dilation_fine_{position}"], out[f"dilation_coarse_{position}"] = f, c
    mean_map = torch.stack(evaluation["expected_dilation"]).mean(0)
    for k in range(int(data.edge_distance.max()) + 1):
        here = data.edge_distance == k
        if here.any():
            out[f"dilation_edge_{k}"] = mean_map[here].mean().item()
    return out


def stripes_trial(t: Trial) -> dict:
    """Train variant ``t.variant`` on the training split and evaluate it on the test split: mIoU,
    accuracy, accuracy in fine and coarse cells, the loss (``test_loss``, and ``val_loss`` on the
    validation split), and for a PAD body :func:`pad_measurements` (with seed 0, also the
    dilation priors of the first test images)."""
    c = t.config
    body = BODIES[t.variant]
    model = make_segmenter(body, channels=c["channels"], depth=c["depth"], tau=c["tau"], backend=c["backend"])
    train, val, held = t.data["train"], t.data["val"], t.data["test"]
    t.count(model, train.images[:1])
    gen = torch.Generator().manual_seed(1000 + t.seed)

    def batch_loss(step):
        idx = torch.randint(0, len(train.images), (c["batch_size"],), generator=gen)
        return F.cross_entropy(model(train.images[idx]), train.labels[idx])

    t.train(model, batch_loss, c["steps"], validate=lambda: held_out_loss(model, val), eval_every=c["eval_every"])
    result = evaluate_segmenter(model, held)
    metrics = {"miou": result["miou"], "accuracy": result["accuracy"],
               "fine_accuracy": result["zone_accuracy"][0], "coarse_accuracy": result["zone_accuracy"][1],
               "val_loss": t.record["curves"]["val_loss"][-1][1]}
    model.eval()
    metrics["test_loss"] = held_out_loss(model, held)
    if body[0] in ("pad", "pad_at"):
        metrics.update(pad_measurements(result, held))
        if t.seed == 0:
            # (image, layer, dilation, y, x), to 4 decimals
            t.record["priors"] = (torch.stack(result["priors"], 1)[:MAP_IMAGES] * 1e4).round().div(1e4).tolist()
    return metrics


DILATION = Experiment(
    name="05_pad_dilation", chapter=5,
    title="PAD against every fixed dilation and the multi-dilation average, stripes task",
    variants=("fixed d=1", "fixed d=2", "fixed d=4", "multi-dilation average", "PAD markov"),
    config={"n_train": 1024, "n_val": 256, "n_test": 512, "seed_train": 1, "seed_val": 3, "seed_test": 2,
            "size": 32, "cell": 16, "tile": 4, "fine_period": 2, "coarse_period": 16, "noise": 0.5,
            "channels": 8, "depth": 3, "tau": 1.0, "backend": "torch",
            "steps": 1800, "batch_size": 16, "eval_every": 180, "lr": 1e-2},
    quick={"n_train": 128, "n_val": 32, "n_test": 32, "steps": 20, "eval_every": 10},
    prepare=prepare_stripes, trial=stripes_trial,
    lr_grid=(1e-2, 3e-2, 1e-1, 3e-1),
    description="Segmentation of the stripes task (orientation of the stripes at every pixel; fine "
                "cells need a small receptive field, coarse ones a large one). Every model: a stem of "
                "two 3x3 convolutions, a body of three 3x3 layers, a 1x1 classifier, 8 channels. "
                "Bodies: fixed dilation 1, 2 or 4; the multi-dilation average (each layer's weights "
                "applied at dilations 1, 2, 4 and averaged); PAD with Markov aggregation over "
                "{1, 2, 4} (Gumbel-softmax gates, tau = 1, no noise in eval). Adam with a one-cycle "
                "schedule, batches of 16; learning rate per variant from the grid by the final "
                "validation loss of seed 0.",
    matched="fixed d=1, 2, 4 and the multi-dilation average have exactly the same parameters; "
            "PAD has those plus its prior branch (3 layers x (8 x 3 + 3) = 81).",
)


def _placement_matched() -> str:
    one = prior_branch_parameters(8, 3, "markov")
    per = {agg: prior_branch_parameters(8, 3, agg) for agg in AGGREGATIONS}
    return (f"every body has the same three 3x3 convolutions (the parameters of fixed d=1); a PAD layer adds "
            f"its prior branch: PAD in one layer (Markov, its U_h: 8 x 3 weights + 3 biases) +{one}; PAD in "
            f"all three layers +3 x {per['markov']} = {3 * per['markov']} (Markov), +3 x {per['recurrent']} = "
            f"{3 * per['recurrent']} (recurrent: U_h and W_h, 3 x 3), +3 x {per['gated']} = {3 * per['gated']} "
            f"(gated: U_h, W_h, U_a, W_a). Nothing else differs.")


PLACEMENT = Experiment(
    name="05_pad_placement", chapter=5,
    title="Where the PAD layer goes (Table 1) and how the layers' priors are aggregated (Table 2), stripes task",
    variants=("fixed d=1", "PAD layer 1", "PAD layer 2", "PAD layer 3", "PAD markov", "PAD gated",
              "PAD recurrent"),
    config=dict(DILATION.config), quick=dict(DILATION.quick),
    prepare=prepare_stripes, trial=stripes_trial,
    lr_grid=DILATION.lr_grid,
    description="The stripes task and network of 05_pad_dilation (stem of two 3x3 convolutions, a body of "
                "three 3x3 layers, a 1x1 classifier, 8 channels). Placement (the paper's Table 1): PAD "
                "(Markov, dilations {1, 2, 4}) in body layer 1, 2 or 3 only, the other two plain 3x3 "
                "convolutions of dilation 1; PAD in all three layers (PAD markov); the vanilla network "
                "(fixed d=1). Aggregation (the paper's Table 2): PAD in all three layers with Markov, gated "
                "or recurrent hidden priors. Adam with a one-cycle schedule, batches of 16; learning rate "
                "per variant from the grid by the final validation loss of seed 0.",
    matched=_placement_matched(),
)

EXPERIMENTS = (DILATION, PLACEMENT)


def claims(result: dict) -> tuple[Claim, ...]:
    """What the chapter tests on a recorded ``05_pad_dilation`` run (decided by
    :func:`dyncore.experiments.verdicts.verdict`). The best fixed dilation is the one with the
    highest mean test mIoU, a choice that favours the baseline."""
    from .verdicts import mean_std, values

    best = max(FIXED.values(), key=lambda v: mean_std(values(result, v, "miou"))[0])
    return (
        Claim("PAD beats the vanilla network (fixed d=1) on mIoU", "miou", "PAD markov", "fixed d=1",
              paper="66.5 vs 64.7 mIoU (Table 2, VGG-16 FCN-8s, VOC)", source="Table 2"),
        Claim(f"PAD beats the best fixed dilation ({best}) on mIoU", "miou", "PAD markov", best,
              paper="not compared in the paper"),
        Claim("PAD beats the multi-dilation average on mIoU", "miou", "PAD markov", "multi-dilation average",
              paper="not compared in the paper"),
        Claim("PAD beats the best fixed dilation in fine cells", "fine_accuracy", "PAD markov", best,
              paper="not compared in the paper"),
        Claim("PAD beats the best fixed dilation in coarse cells", "coarse_accuracy", "PAD markov", best,
              paper="not compared in the paper"),
    )


#: The paper's mIoU for PAD in one VGG-16 block (Table 1, FCN-8s on VOC 2012), by our body layer.
PAPER_PLACEMENT = {1: ("conv3", 63.9), 2: ("conv4", 64.7), 3: ("conv5", 66.5)}
#: The paper's Table 1 row with PAD in all three blocks, and Table 2 (PAD in the three layers of
#: conv5, by aggregation; "vanilla" is its backbone row).
PAPER_ALL_BLOCKS = 65.9
#: Table 1's sigma^2(d_ij), the variance of the sampled dilation, by our body layer (PAD in one block).
PAPER_VARIANCE = {1: 1.96e-4, 2: 1.84e-4, 3: 4.01e-6}
PAPER_AGGREGATION = {"markov": 66.5, "gated": 65.5, "recurrent": 65.3, "vanilla": 64.7}


def placement_claims(result: dict | None = None) -> tuple[Claim, ...]:
    """What the chapter tests on a recorded ``05_pad_placement`` run (decided by
    :func:`dyncore.experiments.verdicts.verdict`), with the paper's figures. Body layers 1, 2, 3
    stand for the paper's blocks conv3, conv4, conv5: the same order in depth, but one layer each
    and all at one resolution. Note that the paper's own figures do not say that PAD beats the
    backbone at every placement: at conv3 it is below it, at conv4 equal."""
    van = PAPER_AGGREGATION["vanilla"]
    (b1, p1), (b2, p2), (b3, p3) = (PAPER_PLACEMENT[k] for k in (1, 2, 3))
    out = [Claim("PAD in the deepest layer beats PAD in layer 1", "miou", "PAD layer 3", "PAD layer 1",
                 paper=f"{p3} ({b3} only) vs {p1} ({b1} only) mIoU (Table 1)", source="Table 1"),
           Claim("PAD in the deepest layer beats PAD in layer 2", "miou", "PAD layer 3", "PAD layer 2",
                 paper=f"{p3} ({b3} only) vs {p2} ({b2} only) mIoU (Table 1)", source="Table 1"),
           Claim("PAD in the deepest layer alone beats PAD in all three layers", "miou", "PAD layer 3", "PAD markov",
                 paper=f"{p3} ({b3} only) vs {PAPER_ALL_BLOCKS} (conv3-5) mIoU (Table 1)", source="Table 1")]
    for k in (1, 2):
        block, _ = PAPER_PLACEMENT[k]
        out.append(Claim(f"PAD in the deepest layer samples its dilation with less variance than in layer {k}",
                         "dilation_variance", "PAD layer 3", f"PAD layer {k}", lower_is_better=True,
                         paper=f"sigma^2 {PAPER_VARIANCE[3]:.2e} ({b3} only) vs {PAPER_VARIANCE[k]:.2e} ({block} "
                               f"only) (Table 1)", source="Table 1"))
    for k in (1, 2, 3):
        block, p = PAPER_PLACEMENT[k]
        sign = ">" if p > van else "=" if p == van else "<"
        out.append(Claim(f"PAD in layer {k} beats the vanilla network", "miou", f"PAD layer {k}", "fixed d=1",
                         paper=f"{p} ({block} only, Table 1) {sign} {van} (backbone, Table 2) mIoU",
                         source="Tables 1, 2"))
    out.append(Claim("PAD in all three layers beats the vanilla network", "miou", "PAD markov", "fixed d=1",
                     paper=f"{PAPER_ALL_BLOCKS} (conv3-5, Table 1) > {van} (backbone, Table 2) mIoU",
                     source="Tables 1, 2"))
    for agg in ("gated", "recurrent"):
        out.append(Claim(f"Markov aggregation beats {agg}", "miou", "PAD markov", f"PAD {agg}",
                         paper=f"{PAPER_AGGREGATION['markov']} vs {PAPER_AGGREGATION[agg]} mIoU (Table 2, VGG-16)",
                         source="Table 2"))
    for agg in ("gated", "recurrent"):
        out.append(Claim(f"PAD with {agg} aggregation beats the vanilla network", "miou", f"PAD {agg}", "fixed d=1",
                         paper=f"{PAPER_AGGREGATION[agg]} vs {van} mIoU (Table 2, VGG-16)", source="Table 2"))
    return tuple(out)


#: The claims each recorded experiment of this chapter is tested on, by experiment name (what
#: :func:`dyncore.experiments.ch07_report.claims_for` reads).
CLAIMS = {"05_pad_dilation": claims, "05_pad_placement": placement_claims}


def zone_result(result: dict, variant: str = "PAD markov", metrics: tuple[str, str] = ("dilation_coarse", "dilation_fine"),
                names: tuple[str, str] = ("coarse cells", "fine cells")) -> dict:
    """A result-shaped dict whose two "variants" are two measurements of one variant's seeds
    (by default its mean expected dilation in coarse and in fine cells, as ``"dilation"``), so
    that :func:`~dyncore.experiments.verdicts.verdict` can compare them."""
    runs = result["variants"][variant]["runs"]
    return {"variants": {name: {"runs": [{"seed": r["seed"], "metrics": {"dilation": r["metrics"][m]}}
                                         for r in runs]}
                         for name, m in zip(names, metrics)}}


#: Claims on :func:`zone_result`: where PAD looks further.
ZONE_CLAIMS = (
    Claim("PAD looks further in coarse cells than in fine ones", "dilation", "coarse cells", "fine cells",
          paper="larger dilations for larger objects (Fig. 4, qualitative)"),
    Claim("PAD looks further 3 pixels from a bar's edge than next to it", "dilation", "3 pixels", "0 pixels",
          paper="not measured in the paper"),
)
