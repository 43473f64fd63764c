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
* ``("pad", dilations, aggregation)``: three :class:`~dyncore.pad.PADConv2d` layers
  (:class:`~dyncore.pad.PADStack`) that choose among ``dilations`` at every pixel.

The convolutions have the same weights in both, so a PAD model has exactly the parameters of a
fixed one plus its hidden-prior branch (:func:`~dyncore.pad.modules.prior_branch_parameters`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..pad import PADStack, dilation_variance, expected_dilation
from ..training import train_steps
from ..utils import count_parameters  # noqa: F401  (the chapter calls it from here)
from .metrics import mean_iou

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


def make_segmenter(body: tuple, channels: int = 8, in_channels: int = 1, num_classes: int = 2,
                   depth: int = 3, tau: float = 1.0, backend: str = "auto") -> nn.Sequential:
    """``body`` is ``("fixed", d)`` or ``("pad", dilations, aggregation)``."""
    if body[0] == "fixed":
        middle = FixedDilationStack(channels, depth, body[1])
    elif body[0] == "pad":
        middle = PADStack(channels, depth, dilations=body[1], aggregation=body[2], tau=tau, backend=backend)
    else:
        raise ValueError(f"body must be ('fixed', d) or ('pad', dilations, aggregation); got {body!r}")
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
    sampled dilation (Table 1's sigma^2)."""
    model.eval()
    device = next(model.parameters()).device
    preds, stats = [], {"priors": []}
    body = body_of(model)
    for start in range(0, len(data.images), batch_size):
        preds.append(model(data.images[start:start + batch_size].to(device)).argmax(1).cpu())
        if isinstance(body, PADStack):
            stats["priors"].append([h.cpu() for h in body.priors()])
    pred = torch.cat(preds)
    correct = (pred == data.labels).float()
    result = {"miou": mean_iou(pred, data.labels, int(data.labels.max()) + 1), "accuracy": correct.mean().item(),
              "zone_accuracy": [correct[data.zones == z].mean().item() for z in range(2)]}
    if isinstance(body, PADStack):
        priors = [torch.cat([batch[layer] for batch in stats["priors"]])
                  for layer in range(len(body.layers))]
        dil = body.dilations
        result["expected_dilation"] = [expected_dilation(torch.softmax(h, 1), dil) for h in priors]
        result["dilation_by_zone"] = [[e[data.zones == z].mean().item() for z in range(2)]
                                      for e in result["expected_dilation"]]
        result["variance"] = torch.stack([dilation_variance(h, dil).mean() for h in priors]).mean().item()
        result["priors"] = priors
    return result
