"""The book's schematic figures (chapters/figures/*.svg, drawn by dyncore.figures): the committed
files are what the generator draws, every method chapter and the preface show them with alt text,
a label and a caption tied to the chapter's equations, and every file is a self-contained SVG
whose text stays readable at the width the chapter shows it."""

from __future__ import annotations

import pathlib
import re
import xml.etree.ElementTree as ET

import pytest

from dyncore import figures

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SVG = "{http://www.w3.org/2000/svg}"
#: The smallest text a reader should meet, in CSS pixels at the width shown (about 8 pt).
MIN_SHOWN_PX = 11
METHOD_CHAPTERS = ["02_dynamic_filters", "03_ls_dfn", "04_dmnet", "05_pad_nets", "06_ddf"]

FIGURE = re.compile(r"^```\{figure\}[ \t]+(?P<path>\S+)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")


def figure_directives(chapter: pathlib.Path) -> list[dict]:
    """Every ``{figure}`` directive of a chapter: its path, options and caption."""
    found = []
    for match in FIGURE.finditer(chapter.read_text(encoding="utf-8")):
        options, caption = {}, []
        for line in match["body"].splitlines():
            option = OPTION.match(line)
            if option and not caption:
                options[option["key"]] = option["value"].strip()
            elif line.strip() or caption:
                caption.append(line)
        found.append({"path": match["path"], "options": options, "caption": " ".join(caption).strip(),
                      "chapter": chapter})
    return found


ALL = [fig for chapter in sorted(CHAPTERS.glob("*.md")) for fig in figure_directives(chapter)]


def test_committed_files_are_what_the_generator_draws():
    drawn = figures.render_all()
    on_disk = {p.name for p in figures.FIGURE_DIR.glob("*.svg")}
    assert on_disk == set(drawn), "run `python -m dyncore.figures` (files and generator disagree)"
    for name, svg in drawn.items():
        assert (figures.FIGURE_DIR / name).read_text(encoding="utf-8") == svg, \
            f"{name} is out of date: run `python -m dyncore.figures`"


def test_command_line_writes_and_checks(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES", {"dfn_layer.svg": figures.dfn_layer})
    assert figures.main(["--check", "--out", str(tmp_path)]) == 1      # nothing written yet
    assert figures.main(["--out", str(tmp_path)]) == 0
    assert figures.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "dfn_layer.svg").write_text("<svg/>", encoding="utf-8")
    assert figures.main(["--check", "--out", str(tmp_path)]) == 1


def test_every_method_chapter_and_the_preface_show_a_figure():
    by_chapter = {}
    for fig in ALL:
        by_chapter.setdefault(fig["chapter"].stem, []).append(fig)
    for stem in METHOD_CHAPTERS:
        assert by_chapter.get(stem), f"chapters/{stem}.md has no figure directive"
    assert any(f["options"].get("name") == "fig-book-map" for f in by_chapter.get("00_preface", [])), \
        "the preface must show the map of the book"
    shown = {pathlib.Path(f["path"]).name for f in ALL}
    assert shown >= set(figures.FIGURES), f"figures drawn but never shown: {set(figures.FIGURES) - shown}"


@pytest.mark.parametrize("fig", ALL, ids=lambda f: f"{f['chapter'].stem}:{f['path']}")
def test_directive_has_alt_name_caption_and_equations(fig):
    options, text = fig["options"], fig["chapter"].read_text(encoding="utf-8")
    assert len(options.get("alt", "")) >= 80, "alt text should describe the figure for a reader who cannot see it"
    assert re.fullmatch(r"fig-[a-z0-9-]+", options.get("name", "")), "a :name: label fig-..."
    assert sum(f["options"].get("name") == options["name"] for f in ALL) == 1, "labels are unique"
    assert fig["caption"], "a caption"
    assert re.fullmatch(r"\d+px", options.get("width", "")), ":width: in px (the size the fonts are checked at)"
    # the caption names the equations the figure draws, and they exist in this chapter
    for label in re.findall(r"\{eq\}`([^`]+)`", fig["caption"]):
        assert f"$$ ({label})" in text, f"{label} is not an equation of {fig['chapter'].name}"
    if fig["chapter"].stem in METHOD_CHAPTERS:
        assert re.search(r"\{eq\}`", fig["caption"]), "the caption ties the figure to the equation it draws"


@pytest.mark.parametrize("fig", ALL, ids=lambda f: f"{f['chapter'].stem}:{f['path']}")
def test_svg_is_self_contained_and_readable_at_its_width(fig):
    path = (fig["chapter"].parent / fig["path"]).resolve()
    assert path.is_file(), f"{fig['path']} does not exist"
    source = path.read_text(encoding="utf-8")
    root = ET.fromstring(source)  # well-formed XML
    assert root.tag == f"{SVG}svg"
    x0, y0, view_w, view_h = map(float, root.attrib["viewBox"].split())
    assert view_w > 0 and view_h > 0
    shown = int(fig["options"]["width"][:-2])
    # no external fonts, images, links or scripts
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)|@import|@font-face|<image|<script|<a\b", source)
    texts = list(root.iter(f"{SVG}text"))
    assert texts, "labels are real SVG text"
    default = float(root.attrib.get("font-size", 16))
    for t in texts:
        size = float(t.attrib.get("font-size", default))
        assert size * shown / view_w >= MIN_SHOWN_PX, \
            f"{t.text!r}: {size} units at {shown}px of {view_w} is {size * shown / view_w:.1f}px"
        assert x0 <= float(t.attrib["x"]) <= x0 + view_w and y0 <= float(t.attrib["y"]) <= y0 + view_h


def test_generator_refuses_text_that_is_small_cramped_outside_or_overlapping():
    canvas = figures.Canvas(100, "t", "d")
    with pytest.raises(ValueError, match="does not fit"):
        canvas.op(50, 50, ["a label far too long for a box this narrow"], w=60, h=30)
    with pytest.raises(ValueError, match="under the minimum"):
        canvas.text(100, 30, "tiny", figures.MIN_FONT - 1)
    with pytest.raises(ValueError, match="outside the figure"):
        canvas.text(5, 30, "centred on the left edge")
    canvas.text(200, 30, "one label")
    with pytest.raises(ValueError, match="overlaps"):
        canvas.text(230, 34, "another label")
