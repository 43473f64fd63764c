"""Chapter 7's comparison, reported: the table (:class:`ComparisonTable`) and its figures
(:func:`plot_comparison`, :func:`plot_errors`). The runs themselves are in
:mod:`dyncore.experiments.ch07`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import validation as V
from ..opspec import layer_specs
from .ch05 import StripeData

__all__ = ["COLUMNS", "ComparisonTable", "X_AXES", "Y_LABELS", "colour", "plot_comparison", "plot_errors"]


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


#: What :func:`plot_comparison` can put on the scatter's x axis: (column, label, log scale).
X_AXES = {
    "layer_params": ("parameters of the layer", True),
    "mflops_all": ("MFLOPs of the layer per image (with elementwise)", True),
    "layer_time": ("CPU time of the layer / conv", True),
    "model_time": ("CPU time of the model / conv", True),
    "erf_radius": ("ERF radius (95% of the mass), pixels", False),
}
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan")


def colour(name: str) -> str:
    """The colour of layer ``name`` in the figures: grey for the baseline (the first layer of
    :func:`dyncore.opspec.layer_specs`), the next colours of the palette for the others in
    chapter order, black for a name no spec has."""
    names = [spec.name for spec in layer_specs()]
    if name not in names:
        return "k"
    i = names.index(name)
    return "0.3" if i == 0 else _PALETTE[(i - 1) % len(_PALETTE)]


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
    base = table.row(layer_specs()[0].name)  # the baseline
    if baseline_range is not None:
        ax0.axhspan(*baseline_range, color="0.85", zorder=0, label="conv over seeds")
        ax0.legend(loc="lower right", fontsize=8)
    for r in table.rows:
        ax0.scatter(r[x], r[y], s=60, color=colour(r["layer"]), zorder=3)
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
            color=[colour(nm) for nm in names])
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
