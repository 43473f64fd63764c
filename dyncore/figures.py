"""The book's schematic figures: every layer and model the chapters build, and the map of the
book, drawn as SVG by this module so that all of them share one palette and one style.

``python -m dyncore.figures`` writes them to ``chapters/figures/``; ``python -m dyncore.figures
--check`` exits non-zero when a committed file differs from what this module draws (the test
``tests/test_figures.py`` does the same). Each figure is a function of no argument returning the
SVG text, made by :func:`figure` from one that draws on a :class:`Canvas` and whose docstring
describes the figure (its ``<desc>``); nothing here needs PyTorch, only matplotlib's copy of the
DejaVu fonts for the text widths.
The drawing refuses to write text smaller than ``MIN_FONT``, text that does not fit its box,
runs outside the figure or overlaps other text (``ValueError``), so a figure that is written
has none of these faults.

Conventions of the drawings (one colour per role, the same in every chapter):

* a rounded, coloured box is a **tensor**, labelled with its name and its shape in the book's
  notation (``(B, C, H, W)``, ``k`` the kernel size, ``s`` a stride or scale, ...): blue for
  features (the input and what is computed from it), green for guidance (what filters are
  predicted from, when it is not the filtered input), orange for generated filters (and the
  attention maps and gates that weight a sum), purple for the output, grey for learned weights
  that are the same for every input;
* a white box is an **operation**; a thick black box is one of the book's operators (the
  kernels of the chapter), labelled with the equation it computes;
* an arrow carries a tensor from where it is made to where it is read.

All text is real SVG ``<text>``, at least ``MIN_FONT`` user units high; the figures are shown at
``WIDTH`` pixels (their viewBox width), so that is also their size in pixels.
"""

from __future__ import annotations

import argparse
import inspect
import math
import pathlib
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable
from xml.sax.saxutils import escape

#: Width of every figure's viewBox, and the width (px) at which the chapters show it.
WIDTH = 720
#: The smallest font size used (SVG user units, = px at the width shown).
MIN_FONT = 12
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#1a1a1a"
MUTED = "#555555"

#: role -> (fill, stroke, what the legend says)
ROLES = {
    "features": ("#dbe9f6", "#2b6cb0", "features"),
    "guidance": ("#dcf0df", "#2f855a", "guidance"),
    "filters": ("#fde3cc", "#c05621", "generated filters"),
    "output": ("#e9e0f5", "#6b46c1", "output"),
    "weights": ("#ececec", "#6b6b6b", "static weights"),
}

FIGURE_DIR = pathlib.Path(__file__).resolve().parents[1] / "chapters" / "figures"


# --------------------------------------------------------------------------- drawing primitives

@lru_cache(maxsize=None)
def _font(bold: bool, italic: bool, mono: bool):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    prop = font_manager.FontProperties(family="DejaVu Sans Mono" if mono else "DejaVu Sans",
                                       weight="bold" if bold else "normal",
                                       style="italic" if italic else "normal")
    return FT2Font(font_manager.findfont(prop, fallback_to_default=False))


def text_width(s: str, size: float, bold: bool = False, mono: bool = False, italic: bool = False) -> float:
    """Width of ``s`` in DejaVu Sans (or DejaVu Sans Mono), the first font the figures name,
    measured with the copy matplotlib ships (so the same everywhere), plus 3%: boxes sized with
    it hold their text in DejaVu and in the narrower fonts named after it."""
    font = _font(bold, italic, mono)
    font.set_size(size, 72)
    font.set_text(s)
    return 1.03 * font.get_width_height()[0] / 64


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self):
        return self.x + self.w / 2

    @property
    def cy(self):
        return self.y + self.h / 2

    def side(self, name: str, shift: float = 0.0) -> tuple[float, float]:
        """Midpoint of a side (``left``, ``right``, ``top``, ``bottom``), moved along it by ``shift``."""
        return {"left": (self.x, self.cy + shift), "right": (self.x + self.w, self.cy + shift),
                "top": (self.cx + shift, self.y), "bottom": (self.cx + shift, self.y + self.h)}[name]


@dataclass(frozen=True)
class Line:
    """One line of text in a box: its text, size, and style."""
    text: str
    size: float = 13
    bold: bool = False
    mono: bool = False
    italic: bool = False
    colour: str = INK


def _up(v: float, step: int = 4) -> int:
    return step * math.ceil(v / step)


def _n(v: float) -> str:
    """Numbers as short, stable text (the files are compared byte for byte)."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


class Canvas:
    """An SVG drawing ``WIDTH`` wide and ``height`` high, built from boxes, text and arrows."""

    def __init__(self, height: float, title: str, description: str):
        self.height, self.title, self.description = height, title, description
        self.items: list[str] = []
        self.markers: dict[str, str] = {}
        self.text_boxes: list[tuple[float, float, float, float, str]] = []

    # text ------------------------------------------------------------------------------------
    def text(self, x, y, s, size=13, *, bold=False, mono=False, italic=False, anchor="middle",
             colour=INK, halo=False):
        if size < MIN_FONT:
            raise ValueError(f"font size {size} is under the minimum {MIN_FONT}: {s!r}")
        width = text_width(s, size, bold, mono, italic)
        left = x - {"start": 0, "middle": width / 2, "end": width}[anchor]
        if left < 2 or left + width > WIDTH - 2 or y - size < 0 or y > self.height:
            raise ValueError(f"{s!r} runs outside the figure ({left:.0f} to {left + width:.0f}, y {y:.0f})")
        top, bottom = y - 0.78 * size, y + 0.22 * size
        for l2, t2, r2, b2, other in self.text_boxes:
            if left < r2 and l2 < left + width and top < b2 and t2 < bottom:
                raise ValueError(f"{s!r} overlaps {other!r}")
        self.text_boxes.append((left, top, left + width, bottom, s))
        attrs = [f'x="{_n(x)}"', f'y="{_n(y)}"', f'font-size="{_n(size)}"']
        if mono:
            attrs.append(f'font-family="{MONO}"')
        if bold:
            attrs.append('font-weight="bold"')
        if italic:
            attrs.append('font-style="italic"')
        if anchor != "start":
            attrs.append(f'text-anchor="{anchor}"')
        if colour != INK:
            attrs.append(f'fill="{colour}"')
        if halo:
            attrs.append('stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"')
        self.items.append(f"<text {' '.join(attrs)}>{escape(s)}</text>")

    def lines(self, box: Box, lines: list[Line], pad: float = 4):
        """Lines centred in ``box``; raises if one does not fit."""
        gap = 3
        total = sum(l.size for l in lines) + gap * (len(lines) - 1)
        y = box.cy - total / 2
        for l in lines:
            width = text_width(l.text, l.size, l.bold, l.mono, l.italic)
            if width > box.w - 2 * pad + 1e-9:
                raise ValueError(f"{l.text!r} ({width:.0f} wide) does not fit a box {box.w:.0f} wide")
            y += l.size
            self.text(box.cx, y - 0.2 * l.size, l.text, l.size, bold=l.bold, mono=l.mono,
                      italic=l.italic, colour=l.colour)
            y += gap
        if total > box.h - 4:
            raise ValueError(f"{[l.text for l in lines]} do not fit a box {box.h:.0f} high")

    # boxes -----------------------------------------------------------------------------------
    def _rect(self, box: Box, fill, stroke, width=1.4, rx=4, dash=None):
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.w)}" height="{_n(box.h)}" '
                          f'rx="{_n(rx)}" fill="{fill}" stroke="{stroke}" stroke-width="{_n(width)}"{extra}/>')

    @staticmethod
    def _fit(lines: list[Line], w, h, pad=10):
        if w is None:
            # rounded up to 4 units, so that a tiny change in the font's metrics moves nothing
            w = _up(max(text_width(l.text, l.size, l.bold, l.mono, l.italic) for l in lines) + 2 * pad)
        if h is None:
            h = sum(l.size for l in lines) + 3 * (len(lines) - 1) + 14
        return w, h

    def tensor(self, cx, cy, name, shape, role, *, w=None, h=None, note=None) -> Box:
        """A tensor: ``name`` over ``shape``, coloured by ``role``; ``note`` a third, grey line."""
        fill, stroke, _ = ROLES[role]
        lines = [Line(name, 13, bold=True)]
        if shape:
            lines.append(Line(shape, 12, mono=True))
        if note:
            lines.append(Line(note, 12, italic=True, colour=MUTED))
        w, h = self._fit(lines, w, h)
        box = Box(cx - w / 2, cy - h / 2, w, h)
        self._rect(box, fill, stroke, 1.6, rx=11)
        self.lines(box, lines)
        return box

    def op(self, cx, cy, lines, *, w=None, h=None, operator=False) -> Box:
        """An operation: a white box with ``lines`` (str or Line); ``operator=True`` for the
        book's operators (thick black border, the name in bold monospace)."""
        lines = [l if isinstance(l, Line) else Line(l, 13) for l in lines]
        if operator:
            lines = [Line(lines[0].text, 13, bold=True, mono=True)] + lines[1:]
        w, h = self._fit(lines, w, h)
        box = Box(cx - w / 2, cy - h / 2, w, h)
        self._rect(box, "#ffffff", INK if operator else "#666666", 2.6 if operator else 1.3, rx=3)
        self.lines(box, lines)
        return box

    def frame(self, box: Box, label: str | None = None):
        """A dashed frame around a group of boxes, with a label on its top edge."""
        self._rect(box, "none", "#8a8a8a", 1.2, rx=8, dash="5 4")
        if label:
            w = _up(text_width(label, 12, italic=True))
            x = box.x + 12
            self.items.append(f'<rect x="{_n(x - 4)}" y="{_n(box.y - 8)}" width="{_n(w + 8)}" height="16" fill="#ffffff"/>')
            self.text(x, box.y + 4.5, label, 12, italic=True, colour=MUTED, anchor="start")

    # arrows ----------------------------------------------------------------------------------
    def _marker(self, colour: str) -> str:
        if colour not in self.markers:
            mid = f"arrow{len(self.markers)}"
            self.markers[colour] = (
                f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
                f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
                f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
        return self.markers[colour].split('"')[1]

    def line(self, points, role=None):
        """A polyline without an arrowhead (a branch of a bus of arrows)."""
        colour = ROLES[role][1] if role else "#444444"
        d = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        self.items.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.7"/>')

    def arrow(self, points, role=None, *, label=None, at=None, dash=None):
        """A polyline from ``points[0]`` to an arrowhead at ``points[-1]``, in the colour of
        ``role``; ``label`` is written at ``at`` (default: above the first segment's middle)."""
        colour = ROLES[role][1] if role else "#444444"
        d = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.7"'
                          f'{extra} marker-end="url(#{self._marker(colour)})"/>')
        if label:
            if at is None:
                (x0, y0), (x1, y1) = points[0], points[1]
                at = ((x0 + x1) / 2, (y0 + y1) / 2 - 6)
            self.text(at[0], at[1], label, 12, colour=colour if role else MUTED, halo=True)

    def link(self, a: Box, b: Box, role=None, *, sides=None, label=None, at=None, via=(), shift=(0, 0)):
        """An arrow from box ``a`` to box ``b`` (right -> left by default), through ``via``."""
        sa, sb = sides or ("right", "left")
        p0, p1 = a.side(sa, shift[0]), b.side(sb, shift[1])
        self.arrow([p0, *via, p1], role, label=label, at=at)

    def path(self, boxes, role=None, **kwargs):
        """:meth:`link` each box to the next, all in ``role`` (a pipeline of steps)."""
        for a, b in zip(boxes, boxes[1:]):
            self.link(a, b, role, **kwargs)

    def chain(self, y, items, *, x0=24, x1=WIDTH - 24, h=None):
        """A row of boxes joined by arrows (a model, layer after layer). Each item is
        ``(role or None, lines)``: a tensor box when ``role`` is given, else an operation."""
        fitted = []
        for role, lines in items:
            lines = [l if isinstance(l, Line) else Line(l, 12) for l in lines]
            if role:
                lines = [Line(lines[0].text, 12, bold=True)] + [Line(l.text, 12, mono=True) for l in lines[1:]]
            fitted.append((role, lines, *self._fit(lines, None, h, pad=7)))
        gap = (x1 - x0 - sum(f[2] for f in fitted)) / (len(fitted) - 1)
        if gap < 16:
            raise ValueError(f"the chain at y={y} does not fit: gaps of {gap:.0f}")
        boxes, x = [], x0
        for role, lines, w, bh in fitted:
            box = Box(x, y - bh / 2, w, bh)
            if role:
                self._rect(box, ROLES[role][0], ROLES[role][1], 1.6, rx=11)
            else:
                self._rect(box, "#ffffff", "#666666", 1.3, rx=3)
            self.lines(box, lines, pad=5)
            if boxes:
                self.link(boxes[-1], box, role)
            boxes.append(box)
            x += w + gap
        return boxes

    def model_strip(self, top, height, label, y, items):
        """The strip under a layer's diagram: a dashed :meth:`frame` from ``top``, ``height`` high,
        labelled with the network the layer serves, holding that network as a :meth:`chain` at
        ``y`` across the figure."""
        self.frame(Box(10, top, WIDTH - 20, height), label)
        return self.chain(y, items, x0=22, x1=WIDTH - 22)

    def legend(self, y, roles, *, operator=True):
        """A row of swatches: the roles drawn, and the book's operator box."""
        entries = [(r, ROLES[r][2]) for r in roles] + ([("op", "operator")] if operator else [])
        widths = [26 + 6 + _up(text_width(t, 12)) for _, t in entries]
        total = sum(widths) + 18 * (len(entries) - 1)
        if total > WIDTH - 20:
            raise ValueError(f"the legend is {total:.0f} wide")
        x = (WIDTH - total) / 2
        for (role, label), w in zip(entries, widths):
            if role == "op":
                self._rect(Box(x, y - 8, 26, 16), "#ffffff", INK, 2.6, rx=3)
            else:
                fill, stroke, _ = ROLES[role]
                self._rect(Box(x, y - 8, 26, 16), fill, stroke, 1.6, rx=7)
            self.text(x + 32, y + 4.5, label, 12, anchor="start", colour=MUTED)
            x += w + 18

    # output ----------------------------------------------------------------------------------
    def svg(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {_n(self.height)}" '
                f'width="{WIDTH}" height="{_n(self.height)}" role="img" font-family="{FONT}" '
                f'font-size="13" fill="{INK}">')
        body = [head, f"<title>{escape(self.title)}</title>", f"<desc>{escape(self.description)}</desc>",
                f'<rect x="0" y="0" width="{WIDTH}" height="{_n(self.height)}" fill="#ffffff"/>']
        if self.markers:
            body.append("<defs>" + "".join(self.markers.values()) + "</defs>")
        body += self.items
        body.append("</svg>")
        return "\n".join(body) + "\n"


# --------------------------------------------------------------------------- the figures

#: Every figure: its file name in ``chapters/figures/`` -> the function that draws it (no
#: argument; returns the SVG text), in the order of the book. :func:`figure` fills it.
FIGURES: dict[str, Callable[[], str]] = {}


def figure(name: str, height: float, title: str):
    """Registers ``draw(c)`` in :data:`FIGURES` as the file ``name``. ``draw`` draws on a
    :class:`Canvas` ``height`` high with ``title``, whose description (the ``<desc>`` a screen
    reader reads) is the body of ``draw``'s docstring, after its first line. The decorated name
    becomes a function of no argument that draws the figure and returns its SVG text."""
    def register(draw: Callable[[Canvas], None]) -> Callable[[], str]:
        body = inspect.cleandoc(draw.__doc__ or "").partition("\n\n")[2]

        def svg() -> str:
            c = Canvas(height, title, " ".join(body.split()))
            draw(c)
            if not c.description:
                raise ValueError(f"{name} has no description: write it in the docstring of {draw.__name__}")
            return c.svg()

        svg.__name__ = svg.__qualname__ = draw.__name__
        svg.__doc__ = draw.__doc__
        FIGURES[name] = svg
        return svg
    return register


@figure("book_map.svg", 648, "Map of the book")
def book_map(c: Canvas) -> None:
    """Preface: chapters -> operators -> modules -> what each chapter trains; the backends.

    Each method chapter takes one operator from its paper's equation to four backends, wraps it in a
    module and trains a small model with it; Chapter 7 compares all, Chapter 8 takes them into a
    PyTorch training stack.
    """
    cols = {"chapter": 74, "operator": 259, "module": 464, "model": 643}
    heads = {"chapter": "chapter", "operator": "operator (kernels)", "module": "module (layer)",
             "model": "experiment"}
    for key, x in cols.items():
        c.text(x, 24, heads[key], 13, bold=True, colour=MUTED)
    rows = [
        ("1  Convolution", "conv2d", "conv.Conv2d", ("digit classifier", "(a small CNN)")),
        ("2  DFN", "dynamic_filter", "dfn.DynamicFilterLayer", ("next frame of", "moving digits")),
        ("3  LS-DFN", "large_sampling_filter", "lsdfn.LSDFN", ("optical flow of", "flying shapes")),
        ("4  DMNet", "context_filter", "dmnet.DCM, DMHead", ("segmentation of", "3 object sizes")),
        ("5  PAD-Nets", "adaptive_dilation_conv", "pad.PADConv2d", ("stripe orientation", "at every pixel")),
        ("6  DDF", "ddf", "ddf.DDF, DDFUp", ("digits (ResNet);", "depth upsampling")),
    ]
    y0, dy, h = 62, 50, 40
    for n, (chapter, op, module, model) in enumerate(rows):
        y = y0 + n * dy
        a = c.op(cols["chapter"], y, [Line(chapter, 13, bold=True)], w=132, h=h)
        b = c.op(cols["operator"], y, [op], w=192, h=h, operator=True)
        m = c.op(cols["module"], y, [Line(module, 12, mono=True)], w=172, h=h)
        e = c.op(cols["model"], y, [Line(t, 12) for t in model], w=140, h=h)
        c.path([a, b, m, e])
    # Chapter 7 reads every operator
    y7 = y0 + 6 * dy + 10
    ch7 = c.op(cols["chapter"], y7, [Line("7  Performance", 13, bold=True)], w=132, h=h)
    perf = c.op(cols["operator"] + 175, y7,
                ["all six operators: scaling, roofline, tuning, GPU;", "the five layers on one task"],
                w=360, h=h + 6)
    c.link(ch7, perf)
    # Chapter 8 takes every module into a PyTorch training stack
    y8 = y7 + dy + 6
    ch8 = c.op(cols["chapter"], y8, [Line("8  In PyTorch", 13, bold=True)], w=132, h=h)
    stack = c.op(cols["operator"] + 175, y8,
                 ["every module: custom ops, torch.compile, export,", "bfloat16 autocast, torchrun"],
                 w=360, h=h + 6)
    c.link(ch8, stack)
    # the four backends and the autograd glue shared by every operator
    top = y8 + 42
    c.frame(Box(14, top, WIDTH - 28, c.height - top - 12),
            "every operator: one folder, dyncore/<method>/, its files in the order of its chapter")
    row1, row2 = top + 46, top + 132
    functional = c.op(300, row2, [Line("functional.py", 12, bold=True, mono=True),
                                  Line("picks the backend;", 12), Line("backward by hand", 12)],
                      w=170, h=58)
    backends = [("loops.py", '"loops"', "the equation as loops"), ("numba_cpu.py", '"numba"', "compiled, fused"),
                ("vectorized.py", '"torch"', "unfold, einsum"), ("cuda_kernels.py", '"cuda"', "a thread per output")]
    for n, (name, backend, what) in enumerate(backends):
        x = 100 + n * 166
        box = c.op(x, row1, [Line(name, 12, bold=True, mono=True), Line(backend, 12, mono=True),
                             Line(what, 12)], w=154, h=56)
        c.line([box.side("bottom"), (x, row1 + 44)])
    c.line([(100, row1 + 44), (100 + 3 * 166, row1 + 44)])
    c.arrow([(functional.cx, row1 + 44), (functional.cx, functional.y)])
    modules = c.op(560, row2, [Line("modules.py", 12, bold=True, mono=True),
                               Line("the learnable layer", 12), Line("(an nn.Module)", 12)], w=170, h=58)
    c.link(functional, modules)


@figure("conv_geometry.svg", 470, "Convolution geometry")
def conv_geometry(c: Canvas) -> None:
    """Chapter 1: where the taps of one output pixel read, with stride, dilation and padding."""
    k, d, s_, H = 3, 2, 2, 9
    r, pad, Ho = (k - 1) // 2, (k - 1) // 2 * d, (H - 1) // s_ + 1
    yo, xo = 1, 2
    # the description names the numbers drawn, so it is written from them
    c.description = (f"An input of {H} x {H} pixels with zero padding {pad}; the output pixel ({yo}, {xo}) of a "
                     f"{k} x {k} convolution with dilation {d} and stride {s_} reads the nine taps t = i k + j "
                     f"around input pixel ({s_ * yo}, {s_ * xo}); the output has {Ho} x {Ho} pixels.")
    cell, gx, gy = 18, 24, 56
    fill, stroke, _ = ROLES["features"]
    c.text(gx, 26, f"x: one channel, H = W = {H}", 13, bold=True, anchor="start")
    c.text(gx, 44, f"grey: zero padding p = r d = {pad}", 12, colour=MUTED, anchor="start")
    for row in range(-pad, H + pad):
        for col in range(-pad, H + pad):
            inside = 0 <= row < H and 0 <= col < H
            box = Box(gx + (col + pad) * cell, gy + (row + pad) * cell, cell, cell)
            c._rect(box, fill if inside else "#f4f4f4", stroke if inside else "#bbbbbb", 0.7, rx=0)
    taps = {}
    for t in range(k * k):
        i, j = divmod(t, k)
        ry, rx = s_ * yo + (i - r) * d, s_ * xo + (j - r) * d
        taps[t] = Box(gx + (rx + pad) * cell, gy + (ry + pad) * cell, cell, cell)
        centre = t == k * k // 2
        c._rect(taps[t], stroke if centre else "#9ec5ea", stroke, 1.6, rx=0)
        c.text(taps[t].cx, taps[t].cy + 4.5, str(t), 12, bold=centre, colour="#ffffff" if centre else INK)
    grid_right = gx + (H + 2 * pad) * cell
    # the weight, with its taps numbered
    wx, wy, wc = 336, 74, 24
    c.text(wx + 1.5 * wc, 32, "w[o, c, t]", 13, bold=True)
    c.text(wx + 1.5 * wc, 48, "(Cout, Cin, k, k)", 12, mono=True)
    for t in range(k * k):
        i, j = divmod(t, k)
        box = Box(wx + j * wc, wy + i * wc, wc, wc)
        c._rect(box, ROLES["weights"][0], ROLES["weights"][1], 1.2, rx=0)
        c.text(box.cx, box.cy + 4.5, str(t), 12)
    c.text(wx + 3 * wc + 10, wy + 1.5 * wc + 4.5, "tap t = i k + j", 12, colour=MUTED, anchor="start")
    op = c.op(372, 240, ["conv2d", Line("tap t reads", 12),
                         Line("((i - r) d, (j - r) d) from", 12), Line("(s yo, s xo)", 12)],
              w=196, h=84, operator=True)
    c.arrow([(wx + 1.5 * wc, wy + 3 * wc), (wx + 1.5 * wc, op.y)])
    centre = taps[k * k // 2]
    c.arrow([(grid_right, centre.cy), (grid_right + 12, centre.cy), (grid_right + 12, op.cy), op.side("left")], "features")
    # the output
    ox, oy = 560, 150
    c.text(ox + Ho * cell / 2, oy - 40, "out", 13, bold=True)
    c.text(ox + Ho * cell / 2, oy - 24, "(B, Cout, Ho, Wo)", 12, mono=True)
    for row in range(Ho):
        for col in range(Ho):
            hit = (row, col) == (yo, xo)
            box = Box(ox + col * cell, oy + row * cell, cell, cell)
            c._rect(box, ROLES["output"][1] if hit else ROLES["output"][0], ROLES["output"][1], 0.8, rx=0)
    target = Box(ox + xo * cell, oy + yo * cell, cell, cell)
    c.arrow([op.side("right"), (ox - 14, op.cy), (ox - 14, target.cy), (ox, target.cy)], "output")
    c.text(ox + Ho * cell / 2, oy + Ho * cell + 20, f"Ho = (H - 1) // s + 1 = {Ho}", 12, colour=MUTED)
    c.text(ox + Ho * cell / 2, oy + Ho * cell + 36, f"(yo, xo) = ({yo}, {xo})", 12, colour=MUTED)
    c.text(WIDTH / 2, 324, f"k = {k}, r = {r}, dilation d = {d}, stride s = {s_}: the window is centred on "
           f"input pixel (s yo, s xo) = ({s_ * yo}, {s_ * xo})", 12, italic=True, colour=MUTED)
    c.model_strip(344, 78, "the model of this chapter: a digit classifier on dyncore.conv.Conv2d", 386,
                  [("features", ["digits", "(B, 1, 8, 8)"]), (None, ["Conv2d 3 x 3", "to 16, ReLU"]),
                   (None, ["Conv2d, stride 2", "to 32, ReLU"]), (None, ["Conv2d, stride 2", "to 32, ReLU"]),
                   (None, ["flatten,", "linear"]), ("output", ["logits", "(B, 10)"])])
    c.legend(448, ["features", "output", "weights"])


@figure("dfn_layer.svg", 330, "DFN's dynamic filtering layer")
def dfn_layer(c: Canvas) -> None:
    """Chapter 2: DFN's layer, a filter-generating branch and the dynamic filter.

    A filter-generating branch reads the guidance and predicts k*k taps per pixel; a softmax
    normalizes them; dynamic_filter applies each pixel's filter to the neighbourhood of that pixel
    in every channel of x.
    """
    g = c.tensor(88, 62, "guidance", "(B, c₀, H, W)", "guidance", note="frames 0, 1: c₀ = 2", w=156)
    branch = c.op(298, 62, [Line("filter-generating branch", 13, bold=True),
                            "L x (k_b x k_b conv, ReLU),", "1 x 1 conv to k² channels"], w=214, h=70)
    soft = c.op(491, 62, ["softmax", "over the k² taps"], w=124, h=50)
    f = c.tensor(640, 62, "filters f", "(B, k², H, W)", "filters", note="k = 5: 25 taps", w=140)
    c.link(g, branch, "guidance")
    c.path([branch, soft, f], "filters")
    x = c.tensor(88, 200, "x", "(B, C, H, W)", "features", note="frame 1: C = 1", w=156)
    op = c.op(360, 200, ["dynamic_filter", Line("out = Σₜ f · x shifted", 12),
                         Line("one filter per pixel, all channels", 12)], w=262, h=70, operator=True)
    out = c.tensor(640, 200, "out", "(B, C, H, W)", "output", note="frame 2, predicted", w=140)
    c.link(x, op, "features")
    c.link(f, op, "filters", sides=("bottom", "top"), via=[(640, 130), (360, 130)])
    c.link(op, out, "output")
    c.text(360, 262, "parameters: only in the branch; the dynamic filtering has none",
           12, italic=True, colour=MUTED)
    c.legend(305, ["guidance", "features", "filters", "output"])


@figure("lsdfn_block.svg", 548, "The LS-DFN block")
def lsdfn_block(c: Canvas) -> None:
    """Chapter 3: the LS-DFN block (the paper's Fig. 2 and Fig. 5) and the flow network.

    Three 3 x 3 convolutions read the block's input: the feature branch makes x, the kernel branch
    the two factors U and V of the position-specific kernels, the attention branch the sample and
    position attention; large_sampling_filter combines them.
    """
    inp = c.tensor(58, 175, "inputs", "(B, c, H, W)", "features", w=100, h=56)
    branches = {}
    for key, y, lines in [("feature", 48, [Line("feature branch", 13, bold=True), "3 x 3 conv to C"]),
                          ("kernel", 141, [Line("kernel branch", 13, bold=True), "3 x 3 conv",
                                           "to Co (C + k²)"]),
                          ("attention", 271, [Line("attention branch", 13, bold=True), "3 x 3 conv",
                                              "to Co (s² + k²)"])]:
        branches[key] = c.op(222, y, lines, w=146, h=52 if key == "feature" else 66)
    bus = 128
    c.line([inp.side("right"), (bus, inp.cy)])
    c.line([(bus, branches["feature"].cy), (bus, branches["attention"].cy)])
    for box in branches.values():
        c.arrow([(bus, box.cy), box.side("left")])
    tx, tw = 398, 150
    x = c.tensor(tx, 48, "x", "(B, C, H, W)", "features", w=tw, h=44)
    U = c.tensor(tx, 112, "U", "(B, Co, C, H, W)", "filters", w=tw, note="+ 1/C (residual)")
    V = c.tensor(tx, 172, "V", "(B, Co, k², H, W)", "filters", w=tw, note="one weight per tap")
    Asam = c.tensor(tx, 240, "A_sam", "(B, Co, s², H, W)", "filters", w=tw, note="(+ 1) / s²")
    Apos = c.tensor(tx, 302, "A_pos", "(B, Co, k², H, W)", "filters", w=tw, note="+ 1 (residual)")
    c.link(branches["feature"], x, "features")
    for t in (U, V):
        c.arrow([branches["kernel"].side("right"), (296, branches["kernel"].cy), (296, t.cy), t.side("left")], "filters")
    for t in (Asam, Apos):
        c.arrow([branches["attention"].side("right"), (296, branches["attention"].cy), (296, t.cy), t.side("left")], "filters")
    op = c.op(612, 175, ["large_sampling_filter", Line("with the kernels W:", 12),
                         Line("s x s windows,", 12),
                         Line("g pixels apart,", 12), Line("each a k x k filter", 12)],
              w=190, h=296, operator=True)
    for t in (x, U, V, Asam, Apos):
        c.link(t, op, "features" if t is x else "filters", shift=(0, t.cy - op.cy))
    out = c.tensor(612, 366, "out", "(B, Co, H, W)", "output", w=130, h=44)
    c.link(op, out, "output", sides=("bottom", "top"))
    c.model_strip(408, 96, "the model of this chapter: a small FlowNetS, LS-DFN added at its shallow layer",
                  456,
                  [("features", ["frames", "(B, 2, 32, 32)"]),
                   (None, ["3 x 3 conv, s. 2", "16 ch., 1/2"]),
                   (None, [Line("LS-DFN block", 12, bold=True), "C = 8, Co = 4,", "s = 7, g = 2"]),
                   (None, ["skip to", "decoder"]),
                   ("output", ["flow", "(B, 2, 32, 32)"])])
    c.legend(530, ["features", "filters", "output"])


@figure("dmnet_dcm.svg", 546, "DMNet: the Dynamic Convolutional Module and the head")
def dmnet_dcm(c: Canvas) -> None:
    """Chapter 4: the Dynamic Convolutional Module and the DMNet head.

    A DCM pools its input to k x k cells and turns them into one k x k filter per reduced channel,
    applies them depthwise to the reduced features with context_filter, and fuses the result; the
    head runs DCMs of four kernel sizes in parallel.
    """
    c.text(12, 20, "(a) one DCM, kernel size k", 13, bold=True, anchor="start", colour=MUTED)
    x = c.tensor(62, 130, "x", "(B, c, H, W)", "features", w=104, h=48)
    pool = c.op(186, 62, ["adaptive avg", "pool to k x k"], w=118, h=48)
    pk = c.tensor(316, 62, "P_k(x)", "(B, c, k, k)", "features", w=112, h=48)
    gen = c.op(466, 62, ["1 x 1 conv", "G, β"], w=104, h=48)
    w = c.tensor(604, 62, "filters w", "(B, c', k, k)", "filters", w=124, h=48)
    c.arrow([x.side("top"), (62, 62), pool.side("left")], "features")
    c.path([pool, pk, gen], "features")
    c.link(gen, w, "filters")
    c.text(400, 104, "g_k(x): pool to k x k, then 1 x 1 conv", 12, italic=True, colour=MUTED)
    red = c.op(186, 190, ["f_k: 1 x 1 conv,", "BN, ReLU"], w=118, h=48)
    fx = c.tensor(316, 190, "f_k(x)", "(B, c', H, W)", "features", w=112, h=48)
    op = c.op(478, 190, ["context_filter", Line("depthwise, one filter", 12), Line("per image and channel", 12)],
              w=164, h=84, operator=True)
    fuse = c.op(640, 190, ["BN, ReLU,", "1 x 1 fusion"], w=116, h=48)
    O = c.tensor(640, 285, "O_k", "(B, c', H, W)", "output", w=116, h=48)
    c.arrow([x.side("bottom"), (62, 190), red.side("left")], "features")
    c.path([red, fx, op], "features")
    c.arrow([w.side("bottom"), (604, 118), (op.cx, 118), op.side("top")], "filters")
    c.link(op, fuse, "features", label="h_k", at=(((op.x + op.w) + fuse.x) / 2, 182))
    c.link(fuse, O, "output", sides=("bottom", "top"))
    c.text(300, 285, "h_k = f_k(x) ⊗ g_k(x)", 13, colour=INK)
    # (b) the head
    c.frame(Box(10, 322, WIDTH - 20, 178), "(b) the DMNet head, on the features of a frozen backbone")
    feats = c.tensor(72, 410, "x", "(B, c, H, W)", "features", w=112, note="c = 24, H = 40")
    dcms = [c.op(222, 352 + 34 * n, [f"DCM, k = {k}"], w=112, h=28) for n, k in enumerate((1, 3, 5, 7))]
    cat = c.tensor(378, 410, "concat [x, O_k]", "(B, c + 4c', H, W)", "features", w=150, note="c' = 16")
    head = c.op(528, 410, ["3 x 3 conv, BN,", "ReLU; 1 x 1 conv", "to K classes"], w=120, h=62)
    logits = c.tensor(661, 410, "logits", "(B, K, H, W)", "output", w=100, note="x 2 up")
    for d in dcms:
        c.arrow([feats.side("right"), (150, feats.cy), (150, d.cy), d.side("left")], "features")
        c.arrow([d.side("right"), (292, d.cy), (292, cat.cy), cat.side("left")], "output")
    c.arrow([feats.side("bottom"), (72, 484), (378, 484), cat.side("bottom")], "features")
    c.link(cat, head, "features")
    c.link(head, logits, "output")
    c.legend(526, ["features", "filters", "output"])


@figure("pad_layer.svg", 508, "A PAD layer")
def pad_layer(c: Canvas) -> None:
    """Chapter 5: a PAD layer (prior branch, Gumbel-softmax gates, gated dilations) and the stack.

    1 x 1 convolutions of the input (and of the previous layer's priors) give hidden priors h over D
    dilations; a Gumbel-softmax turns them into gates; adaptive_dilation_conv sums the D dilated
    convolutions, which share one weight, weighted by the gates at every pixel.
    """
    hp = c.tensor(74, 56, "h of layer l - 1", "(B, D, H, W)", "filters", w=132, note="0 at layer 1")
    prior = c.op(256, 56, [Line("prior branch", 13, bold=True), "1 x 1 convs U_h, W_h",
                           "markov / recurrent / gated"], w=184, h=66)
    h = c.tensor(427, 56, "priors h", "(B, D, H, W)", "filters", w=112, h=48)
    gum = c.op(590, 56, ["Gumbel-softmax, τ", "eval: softmax(h / τ)"], w=164, h=66)
    gates = c.tensor(590, 160, "gates", "(B, D, H, W)", "filters", w=120, h=48)
    c.path([hp, prior, h, gum], "filters")
    c.link(gum, gates, "filters", sides=("bottom", "top"))
    c.arrow([h.side("bottom"), (427, 118)], "filters", dash="5 3")
    c.text(427, 134, "to layer l + 1", 12, italic=True, colour=ROLES["filters"][1])
    x = c.tensor(74, 250, "x", "(B, Cin, H, W)", "features", w=132, h=48)
    c.arrow([x.side("top"), (74, 150), (256, 150), prior.side("bottom")], "features")
    op = c.op(352, 250, ["adaptive_dilation_conv", Line("Σ_d gates_d · R_d + bias", 12),
                         Line("R_d: the convolution with dilation δ_d", 12)], w=292, h=70, operator=True)
    out = c.tensor(620, 250, "out", "(B, Cout, H, W)", "output", w=132, h=48)
    weight = c.tensor(352, 345, "weight, bias", "(Cout, Cin, k, k)", "weights", w=150, note="shared by all D")
    c.link(x, op, "features")
    c.arrow([gates.side("left"), (430, gates.cy), (430, op.y)], "filters")
    c.link(op, out, "output")
    c.link(weight, op, None, sides=("top", "bottom"))
    c.model_strip(392, 76, "the model of this chapter: stripes, orientation at every pixel", 432,
                  [("features", ["image", "(B, 1, 32, 32)"]), (None, ["2 x 3 x 3 conv", "8 channels"]),
                   (None, [Line("3 PAD layers", 12, bold=True), "D = 3: (1, 2, 4)"]),
                   (None, ["1 x 1 conv"]), ("output", ["logits", "(B, 2, 32, 32)"])])
    c.legend(490, ["features", "filters", "output", "weights"])


@figure("ddf_module.svg", 512, "The DDF module")
def ddf_module(c: Canvas) -> None:
    """Chapter 6: the DDF module (the paper's Fig. 2b) and where the ResNet uses it.

    A spatial branch predicts one k x k filter per output pixel, a channel branch one k x k filter
    per channel; both are normalized (filter norm); ddf multiplies them tap by tap and applies the
    product to x.
    """
    x = c.tensor(360, 38, "x", "(B, C, H, W)", "features", w=120, h=48)
    sb = c.op(140, 118, [Line("spatial branch", 13, bold=True), "1 x 1 conv to k²,", "stride s"], w=176, h=66)
    cb = c.op(580, 118, [Line("channel branch", 13, bold=True), "global average pool,",
                         "1 x 1: C → σC, ReLU, → C k²"], w=218, h=66)
    sn = c.op(140, 205, ["filter norm", "standardized"], w=120, h=44)
    cn = c.op(580, 205, ["filter norm", "standardized"], w=120, h=44)
    sp = c.tensor(140, 290, "spatial", "(B, k², Ho, Wo)", "filters", w=144, note="one filter per pixel")
    ch = c.tensor(580, 290, "channel", "(B, C, k²)", "filters", w=160, note="one filter per channel")
    c.arrow([x.side("left"), (140, x.cy), sb.side("top")], "features")
    c.arrow([x.side("right"), (580, x.cy), cb.side("top")], "features")
    c.link(sb, sn, "filters", sides=("bottom", "top"))
    c.link(cb, cn, "filters", sides=("bottom", "top"))
    c.link(sn, sp, "filters", sides=("bottom", "top"))
    c.link(cn, ch, "filters", sides=("bottom", "top"))
    op = c.op(360, 290, ["ddf", Line("Σₜ spatial", 12), Line("· channel · x", 12)],
              w=180, h=66, operator=True)
    c.link(x, op, "features", sides=("bottom", "top"))
    c.link(sp, op, "filters")
    c.link(ch, op, "filters", sides=("left", "right"))
    out = c.tensor(360, 375, "out", "(B, C, Ho, Wo)", "output", w=130, h=44)
    c.link(op, out, "output", sides=("bottom", "top"))
    c.model_strip(410, 70, "experiment 1: DDF in the 3 x 3 slot of every bottleneck of a tiny ResNet", 446,
                  [("features", ["digit", "(B, 1, 16, 16)"]), (None, ["3 x 3 stem"]),
                   (None, [Line("3 bottlenecks: 1 x 1, DDF, 1 x 1", 12)]), (None, ["pool, linear"]),
                   ("output", ["logits", "(B, 10)"])])
    c.legend(496, ["features", "filters", "output"])


@figure("ddf_up.svg", 520, "DDF-Up")
def ddf_up(c: Canvas) -> None:
    """Chapter 6: DDF-Up (the paper's Fig. 5) as the book builds it, and the depth network.

    s*s branch pairs, one per sub-pixel position p: the spatial filters of pair p come from
    sub-pixel grid p of the guidance, the channel filters from the pooled input; s*s ddf operations
    on the low-resolution input, interleaved by a pixel shuffle.
    """
    g = c.tensor(84, 50, "guidance", "(B, Cg, sH, sW)", "guidance", w=144, h=48)
    un = c.op(250, 50, ["pixel_unshuffle", "by s"], w=130, h=48)
    gg = c.tensor(410, 50, "s² grids", "(B, s² Cg, H, W)", "guidance", w=150, h=48)
    sb = c.op(596, 50, ["s² x (1 x 1 conv", "to k²), filter norm"], w=170, h=48)
    sp = c.tensor(596, 140, "spatial_p", "(B, s², k², H, W)", "filters", w=160, h=48)
    c.path([g, un, gg, sb], "guidance")
    c.link(sb, sp, "filters", sides=("bottom", "top"))
    x = c.tensor(84, 236, "x", "(B, C, H, W)", "features", w=136, note="low resolution")
    cb = c.op(236, 330, ["pool; s² x SE", "C → σC → C k²;", "filter norm"], w=140, h=66)
    ch = c.tensor(400, 330, "channel_p", "(B, s², C, k²)", "filters", w=150, h=48)
    c.arrow([x.side("bottom"), (84, 330), cb.side("left")], "features")
    c.link(cb, ch, "filters")
    op = c.op(400, 236, ["ddf", Line("s² times,", 12), Line("once per p = i s + j:", 12),
                         Line("(B, s² C, H, W)", 12, mono=True)], w=170, h=84, operator=True)
    c.link(x, op, "features")
    c.arrow([sp.side("bottom"), (596, 190), (440, 190), (440, op.y)], "filters")
    c.link(ch, op, "filters", sides=("top", "bottom"))
    shuf = c.op(596, 236, ["pixel_shuffle", "by s"], w=120, h=48)
    c.link(op, shuf, "output")
    out = c.tensor(596, 330, "out", "(B, C, sH, sW)", "output", w=140, h=48)
    c.link(shuf, out, "output", sides=("bottom", "top"))
    c.model_strip(380, 100, "experiment 2: joint depth upsampling by S = 4 or 8, guided by the RGB image", 428,
                  [("features", ["depth", "(B, 1, h, w)"]), (None, ["2 x conv", "16 channels"]),
                   (None, [Line("log₂ S x (DDF-Up x 2,", 12), "concat guidance,", "conv)"]),
                   (None, ["3 x 3 conv", "+ bicubic"]), ("output", ["depth", "(B, 1, Sh, Sw)"])])
    c.text(360, 470, "guidance at each scale: RGB (B, 3, Sh, Sw) through 2 convs, average-pooled", 12,
           italic=True, colour=ROLES["guidance"][1])
    c.legend(500, ["guidance", "features", "filters", "output"])


@figure("side_by_side.svg", 430, "Six layers in one slot")
def side_by_side(c: Canvas) -> None:
    """Chapter 7: one network, one slot, six layers, and what each generates per input.

    One network, stem, slot and head, whose slot holds in turn a 3 x 3 convolution and the five
    dynamic layers of the book; each card names what the layer generates from its input, and its
    shape.
    """
    boxes = c.chain(44, [("features", ["stripes", "(B, 1, 32, 32)"]), (None, ["stem: 2 x 3 x 3", "conv, C = 8"]),
                         (None, [Line("slot", 12, bold=True), "C → C, k = 3"]), (None, ["3 x 3 conv,", "1 x 1 to 2"]),
                         ("output", ["logits", "(B, 2, 32, 32)"])], x0=22, x1=WIDTH - 22)
    slot = boxes[2]
    cards = [("nn.Conv2d", "Ch. 1: nothing, one filter", "weight", "(C, C, k, k)", "weights"),
             ("DynamicFilterLayer", "Ch. 2: a filter per pixel", "f", "(B, k², H, W)", "filters"),
             ("LSDFN, s = 3, g = 2", "Ch. 3: kernels, attention", "U, V, A_sam, A_pos", "(B, Co, ·, H, W)", "filters"),
             ("DCM", "Ch. 4: a filter per image", "w", "(B, C, k, k)", "filters"),
             ("PADConv2d, δ = 1, 2, 4", "Ch. 5: a dilation per pixel", "gates", "(B, D, H, W)", "filters"),
             ("DDF", "Ch. 6: per pixel x per channel", "spatial; channel", "(B, k², H, W); (B, C, k²)", "filters")]
    cw, ch, top = 224, 124, 112
    for n, (module, what, name, shape, role) in enumerate(cards):
        col, row = n % 3, n // 3
        card = Box(12 + col * (cw + 12), top + row * (ch + 14), cw, ch)
        c._rect(card, "#fafafa", "#999999", 1.1, rx=6)
        c.text(card.cx, card.y + 20, module, 13, bold=True, mono=True)
        c.text(card.cx, card.y + 38, what, 12, italic=True, colour=MUTED)
        c.tensor(card.cx, card.y + 80, name, shape, role, w=cw - 20, h=48)
    c.arrow([slot.side("bottom"), (slot.cx, top - 6)], dash="5 3")
    c.text(slot.cx + 10, top - 16, "filled in turn by", 12, italic=True, colour=MUTED, anchor="start")
    c.legend(416, ["features", "filters", "output", "weights"], operator=False)


def render_all() -> dict[str, str]:
    """Every figure's file name and SVG text."""
    return {name: draw() for name, draw in FIGURES.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dyncore.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--out", type=pathlib.Path, default=FIGURE_DIR, help="folder (default chapters/figures)")
    args = parser.parse_args(argv)
    stale = []
    for name, svg in render_all().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != svg:
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(svg, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("out of date (run python -m dyncore.figures):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
