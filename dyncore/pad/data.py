"""The chapter's generated task: stripes whose scale, and so the context they need, varies by region.

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
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import validation as V

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
