"""Chapter 7's comparison, reported: the table (:class:`ComparisonTable`) and its figures
(:func:`plot_comparison`, :func:`plot_errors`). The runs themselves are in
:mod:`dyncore.experiments.ch07`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import validation as V
from ..opspec import layer_specs
from .ch05 import StripeData
from .ch06 import DEPTH

__all__ = ["COLUMNS", "ComparisonTable", "X_AXES", "Y_LABELS", "colour", "plot_comparison", "plot_errors",
           "summary", "format_summary", "plot_curves", "plateau", "budget_check", "PaperClaim", "PAPER_CLAIMS", "claims_for",
           "DERIVED", "NOT_TESTED", "FindingsTable", "findings", "with_recorded"]


#: The table's columns: (key, header, format).
COLUMNS = (
    ("layer", "layer", "{}"), ("layer_params", "layer params", "{:,}"),
    ("model_params", "model params", "{:,}"), ("mflops", "layer MFLOPs", "{:.3f}"),
    ("mflops_all", "+elementwise", "{:.3f}"), ("miou", "mIoU", "{:.3f}"),
    ("accuracy", "pixel acc", "{:.3f}"), ("fine", "fine acc", "{:.3f}"), ("coarse", "coarse acc", "{:.3f}"),
    ("backend", "fast backend", "{}"), ("layer_time", "layer time x conv", "{:.2f}"),
    ("model_time", "model time x conv", "{:.2f}"), ("erf_radius", "ERF r95", "{}"),
    ("erf_support", "ERF support", "{}"), ("train_s", "train s", "{:.1f}"),
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


# --------------------------------------------------------------------------- the recorded side-by-side

#: The side-by-side's summary columns: (metric, header, digits).
SUMMARY_METRICS = (("miou", "test mIoU", 3), ("accuracy", "accuracy", 3), ("fine_accuracy", "fine cells", 3),
                   ("coarse_accuracy", "coarse cells", 3), ("test_loss", "test loss", 3),
                   ("erf_radius", "ERF r95", 1))


def summary(result: dict, metrics=SUMMARY_METRICS) -> list[dict]:
    """One row per layer of a recorded ``07_side_by_side`` run: its learning rate, parameters and
    FLOPs (layer and network; FLOPs with elementwise work, per 32 x 32 image), and for each of
    ``metrics`` the mean, standard deviation and number of seeds, with a ``"m ± s"`` text."""
    from .verdicts import mean_std, values

    rows = []
    for name, entry in result["variants"].items():
        first = entry["runs"][0]
        row = {"layer": name, "lr": entry["lr"], "parameters": entry["parameters"], "flops": entry["flops"],
               "layer_parameters": first["layer_parameters"], "layer_flops": first["layer_flops"],
               "train_seconds": sum(r["train_seconds"] for r in entry["runs"]) / len(entry["runs"])}
        for metric, _, digits in metrics:
            m, s, n = mean_std(values(result, name, metric))
            row[metric] = (m, s, n)
            row[f"{metric}_text"] = f"{m:.{digits}f} ± {s:.{digits}f}"
        rows.append(row)
    return rows


def format_summary(rows: list[dict], metrics=SUMMARY_METRICS) -> str:
    """:func:`summary`'s rows as a text table."""
    head = ["layer", "lr", "layer params", "network params", "layer MFLOPs"] + [h for _, h, _ in metrics] + ["train s"]
    body = [[r["layer"], f"{r['lr']:g}", f"{r['layer_parameters']:,}", f"{r['parameters']:,}",
             f"{r['layer_flops'] / 1e6:.2f}"] + [r[f"{m}_text"] for m, _, _ in metrics]
            + [f"{r['train_seconds']:.0f}"] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def plot_curves(result: dict, keys=("val_loss", "train_loss"), fig=None):
    """The loss curves of a recorded run, one panel per key: the mean over the seeds of each
    layer (its colour), shaded between the lowest and the highest seed."""
    import matplotlib.pyplot as plt
    import numpy as np

    keys = tuple(keys)
    recorded = set(next(iter(result["variants"].values()))["runs"][0]["curves"])
    if not keys or any(k not in recorded for k in keys):
        raise ValueError(f"keys must name recorded curves, some of {sorted(recorded)}; got {keys}")
    if fig is None:
        fig = plt.figure(figsize=(6 * len(keys), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    titles = {"val_loss": "validation loss", "train_loss": "training loss (window means)"}
    for key, ax in zip(keys, axes):
        for name, entry in result["variants"].items():
            curves = np.array([[p[1] for p in r["curves"][key]] for r in entry["runs"]])
            steps = [p[0] for p in entry["runs"][0]["curves"][key]]
            ax.plot(steps, curves.mean(0), color=colour(name), label=name)
            ax.fill_between(steps, curves.min(0), curves.max(0), color=colour(name), alpha=0.2)
        ax.set(xlabel="step", ylabel="cross-entropy per pixel", yscale="log", title=titles.get(key, key))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def plateau(result: dict, key: str = "val_loss", last: float = 0.25, of: str = "final") -> dict:
    """For each variant: how much its mean ``key`` curve (the mean over the seeds) still fell over
    the last ``last`` of training (0: flat; negative: it rose), as a fraction of

    * ``of="final"``: the curve's final value (a loss that keeps halving never counts as settled);
    * ``of="total"``: the curve's whole fall, from its first recorded point to its last: the share
      of the learning seen on the curve that happened in the last ``last`` of training (a curve
      that has flattened scores near 0 even if its loss is small and still creeping down); nan
      for a curve that ends no lower than it began;
    * ``of="seeds"``: the standard deviation over the seeds of the final value: a fall below 1
      is smaller than the seed-to-seed spread that the verdicts' tests already weigh (needs at
      least two seeds).
    """
    import numpy as np

    if of not in ("final", "total", "seeds"):
        raise ValueError(f"of must be 'final', 'total' or 'seeds', got {of!r}")
    if not 0 < last < 1:
        raise ValueError(f"last must be a fraction in (0, 1), got {last!r}")
    out = {}
    for name, entry in result["variants"].items():
        per_seed = np.array([[p[1] for p in r["curves"][key]] for r in entry["runs"]])
        curves = per_seed.mean(0)
        steps = np.array([p[0] for p in entry["runs"][0]["curves"][key]])
        before = curves[np.searchsorted(steps, steps[-1] * (1 - last))]
        if of == "seeds" and len(per_seed) < 2:
            raise ValueError(f"of='seeds' needs at least two seeds; {name!r} has {len(per_seed)}")
        scale = {"final": curves[-1], "total": curves[0] - curves[-1],
                 "seeds": per_seed[:, -1].std(ddof=1) if len(per_seed) > 1 else 0.0}[of]
        out[name] = float((before - curves[-1]) / scale) if scale > 0 else math.nan
    return out


def budget_check(result: dict, at: float = 0.8, key: str = "val_loss") -> list[dict]:
    """Would the last part of training have changed a comparison? For each pair of variants
    that a claim on ``result`` compares (:func:`claims_for`, derived results left out), the
    verdict of Welch's test on the seeds' ``key`` (lower is better) at the first recorded point
    at or after the fraction ``at`` of training, and at the end.

    Returns one dict per pair, in claim order: ``a``, ``b``, ``early`` and ``final`` (each the
    :class:`dyncore.experiments.verdicts.Verdict`), ``step`` (the early point's step) and
    ``changed``. It judges the validation loss, which every experiment records along the way,
    not the claim's own metric, which is measured once at the end: a proxy for whether the
    budget decided the verdict."""
    import numpy as np

    from .verdicts import Claim, verdict

    if not 0 < at < 1:
        raise ValueError(f"at must be a fraction in (0, 1), got {at!r}")
    out, seen = [], set()
    for res, claim in claims_for(result):
        pair = (claim.a, claim.b)
        if res is not result or pair in seen or (claim.b, claim.a) in seen:
            continue
        seen.add(pair)
        runs = {v: result["variants"][v]["runs"] for v in pair}
        if not all(key in r.get("curves", {}) for rs in runs.values() for r in rs):
            continue
        steps = np.array([q[0] for q in runs[claim.a][0]["curves"][key]])
        early = int(np.searchsorted(steps, steps[-1] * at))
        point = {}
        for when, i in (("early", early), ("final", -1)):
            fake = {"variants": {v: {"runs": [{"metrics": {key: r["curves"][key][i][1]}} for r in rs]}
                                 for v, rs in runs.items()}}
            point[when] = verdict(fake, Claim(f"{claim.a} vs {claim.b}", key, claim.a, claim.b, paper="",
                                              lower_is_better=True))
        out.append({"a": claim.a, "b": claim.b, "step": int(steps[early]), **point,
                    "changed": point["early"].verdict != point["final"].verdict})
    return out


# --------------------------------------------------------------------------- the findings table

@dataclass(frozen=True)
class PaperClaim:
    """A claim of one of the five papers, and the recorded experiments that test it (by name);
    ``chapter`` is the chapter that tests it, or would."""

    paper: str
    claim: str
    figure: str
    chapter: int
    experiments: tuple[str, ...] = ()


#: Every claim of the five papers the book sets out to test, by paper, read from
#: ``paper_claims.csv`` next to this module (one row per claim: paper, chapter, claim, the paper's
#: figure, the recorded experiments that test it, separated by spaces). A claim whose experiments
#: have no recorded result is listed by :func:`findings` as not tested yet.
def _read_paper_claims() -> tuple[PaperClaim, ...]:
    import csv
    import pathlib

    with open(pathlib.Path(__file__).with_name("paper_claims.csv"), newline="") as f:
        return tuple(PaperClaim(row["paper"], row["claim"], row["figure"], int(row["chapter"]),
                                tuple(row["experiments"].split())) for row in csv.DictReader(f))


PAPER_CLAIMS = _read_paper_claims()


def claims_for(result: dict) -> list:
    """The claims the book tests on a recorded result, found in its chapter's module
    (``dyncore.experiments.chNN``): its ``CLAIMS[name](result)`` if the module has that
    mapping, otherwise every function of the module whose name ends in ``claims`` (called with
    the result, or with nothing) and every tuple constant whose name ends in ``CLAIMS``, whose
    claims all name variants and metrics the result holds. Claims on a derived
    result (:data:`DERIVED`) are added as ``(derived_result, claim)`` pairs; the others come as
    ``(result, claim)``."""
    import importlib
    import inspect

    from .verdicts import Claim

    try:
        module = importlib.import_module(f"{__package__}.ch{int(result['chapter']):02d}")
    except ImportError:
        return []

    def holds_all(claims) -> bool:
        return bool(claims) and all(
            isinstance(c, Claim) and c.a in result["variants"] and c.b in result["variants"]
            and all(c.metric in r.get("metrics", {}) for v in (c.a, c.b) for r in result["variants"][v]["runs"])
            for c in claims)

    explicit = getattr(module, "CLAIMS", None)
    if isinstance(explicit, dict) and result["name"] in explicit:
        found = list(explicit[result["name"]](result))
    else:
        found, names = [], set()
        for attr, value in inspect.getmembers(module):
            if inspect.isfunction(value) and attr.endswith("claims") and value.__module__ == module.__name__:
                try:  # claims(result), or claims() for a chapter with one experiment
                    takes_result = bool(inspect.signature(value).parameters)
                    claims = tuple(value(result) if takes_result else value())
                except Exception:  # a function for another experiment of the chapter
                    continue
            elif attr.endswith("CLAIMS") and isinstance(value, tuple):
                claims = value  # a constant tuple of claims
            else:
                continue
            if holds_all(claims):  # every claim of it names this result's variants and metrics
                for c in claims:
                    if c.name not in names:
                        names.add(c.name)
                        found.append(c)
    pairs = [(result, c) for c in found]
    derive = DERIVED.get(result["name"])
    if derive is not None:
        pairs += derive(result)
    return pairs


def _pad_zones(result: dict) -> list:
    from . import ch05

    out = [(ch05.zone_result(result), ch05.ZONE_CLAIMS[0])]
    metrics = result["variants"]["PAD markov"]["runs"][0]["metrics"]
    if "dilation_edge_3" in metrics and "dilation_edge_0" in metrics:
        out.append((ch05.zone_result(result, metrics=("dilation_edge_3", "dilation_edge_0"),
                                     names=("3 pixels", "0 pixels")), ch05.ZONE_CLAIMS[1]))
    return out


def _ddfup_bicubic(result: dict) -> list:
    from . import ch06

    both = ch06.with_bicubic(result)
    return [(both, c) for c in ch06.depth_claims(both) if c.b.startswith("bicubic")]


#: Claims made on a result derived from a recorded one (a variant's measurements compared with
#: each other, or with bicubic interpolation), by experiment name.
DERIVED = {"05_pad_dilation": _pad_zones, **{e.name: _ddfup_bicubic for e in DEPTH.values()}}

NOT_TESTED = "not tested yet"
#: A verdict whose p value lies in this open interval is a close call: a few more seeds, or the
#: round-off of another CPU, could carry it across the 5% line.
CLOSE_CALL = (0.01, 0.1)


def _ours(v, digits: int = 4) -> str:
    def fmt(m):
        return f"{m[0]:.{digits}g} ± {m[1]:.2g} (n={m[2]})"
    return f"{v.claim.a}: {fmt(v.a)}; {v.claim.b}: {fmt(v.b)}"


@dataclass(repr=False)
class FindingsTable:
    """The book's findings: one row per claim tested on a recorded result (``experiment``,
    ``chapter``, ``claim``, ``paper``, ``ours``, ``p``, ``verdict``), then one per claim of
    :data:`PAPER_CLAIMS` that no recorded result tests yet (``verdict`` :data:`NOT_TESTED`)."""

    rows: list[dict]
    recorded: list[str]

    HEAD = (("chapter", "ch."), ("experiment", "experiment"), ("claim", "claim"), ("paper", "paper's figure"),
            ("ours", "ours (mean ± std, n seeds)"), ("p", "p"), ("verdict", "verdict"))

    @staticmethod
    def is_close(row: dict, band: tuple[float, float] = CLOSE_CALL) -> bool:
        """Is ``row``'s verdict a close call (its p value inside ``band``)?"""
        return row["verdict"] != NOT_TESTED and row["p"] is not None and band[0] < row["p"] < band[1]

    def close_calls(self, band: tuple[float, float] = CLOSE_CALL) -> list[dict]:
        """The tested rows whose p value lies inside ``band`` (:data:`CLOSE_CALL`)."""
        return [r for r in self.rows if self.is_close(r, band)]

    def _cell(self, row: dict, key: str) -> str:
        if key == "p":
            return "" if row["p"] is None else f"{row['p']:.2g}"
        if key == "verdict" and self.is_close(row):
            return f"{row['verdict']} (close call)"
        return str(row[key])

    def counts(self) -> dict:
        out: dict = {}
        for r in self.rows:
            out[r["verdict"]] = out.get(r["verdict"], 0) + 1
        return out

    def tested(self) -> list[dict]:
        return [r for r in self.rows if r["verdict"] != NOT_TESTED]

    def untested(self) -> list[dict]:
        return [r for r in self.rows if r["verdict"] == NOT_TESTED]

    def __str__(self) -> str:
        lines = []
        for r in self.rows:
            p = "" if r["p"] is None else f" (p = {self._cell(r, 'p')})"
            lines.append(f"[ch. {r['chapter']}] {r['experiment']}: {r['claim']}\n"
                         f"    paper: {r['paper']}\n    ours:  {r['ours']}\n    verdict: {self._cell(r, 'verdict')}{p}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        th = "".join(f"<th>{h}</th>" for _, h in self.HEAD)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(self._cell(r, k))}</td>" for k, _ in self.HEAD) + "</tr>"
                      for r in self.rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def findings(folder=None) -> FindingsTable:
    """The findings table from every recorded result in ``folder`` (default
    ``results/experiments/``): each claim its chapter tests on it (:func:`claims_for`), decided by
    :func:`dyncore.experiments.verdicts.verdict` (Welch's t-test at 5%), then the claims of
    :data:`PAPER_CLAIMS` that no recorded result tests yet, with the chapter that would."""
    import math
    import pathlib

    from . import runner
    from .verdicts import verdict

    folder = pathlib.Path(runner.RESULTS if folder is None else folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be a folder of recorded results; got {str(folder)!r}")
    rows, recorded = [], []
    for path in sorted(folder.glob("*.json")):
        result = runner.load(path)
        recorded.append(result["name"])
        pairs = claims_for(result)
        if not pairs:
            rows.append({"chapter": result["chapter"], "experiment": result["name"],
                         "claim": result["title"], "paper": "", "ours": "recorded; its chapter states no claims "
                         "on it yet", "p": None, "verdict": NOT_TESTED})
        for data, claim in pairs:
            v = verdict(data, claim)
            rows.append({"chapter": result["chapter"], "experiment": result["name"], "claim": claim.name,
                         "paper": claim.paper, "ours": _ours(v), "p": v.p_value if math.isfinite(v.p_value) else None,
                         "verdict": v.verdict})
    for pc in PAPER_CLAIMS:
        if not any(name in recorded for name in pc.experiments):
            where = (f"Chapter {pc.chapter} would test it"
                     + (f" ({' or '.join(pc.experiments)}, not recorded)" if pc.experiments else ""))
            rows.append({"chapter": pc.chapter, "experiment": "-", "claim": f"{pc.paper}: {pc.claim}",
                         "paper": pc.figure, "ours": where, "p": None, "verdict": NOT_TESTED})
    return FindingsTable(rows, recorded)


def with_recorded(table: ComparisonTable, result: dict,
                  columns=(("miou", "miou"), ("accuracy", "accuracy"), ("fine", "fine_accuracy"),
                           ("coarse", "coarse_accuracy"))) -> ComparisonTable:
    """``table`` (costs measured here) with its accuracy ``columns`` replaced by the means over
    the seeds of a recorded ``07_side_by_side`` run (``(column, metric)`` pairs); layers the run
    lacks keep their own values."""
    from .verdicts import mean_std, values

    rows = []
    for r in table.rows:
        r = dict(r)
        if r["layer"] in result["variants"]:
            for col, metric in columns:
                r[col] = mean_std(values(result, r["layer"], metric))[0]
        rows.append(r)
    return ComparisonTable(rows, {**table.notes, "accuracy": f"means over the seeds of {result['name']}"})
