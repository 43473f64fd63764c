"""The book's markup renders where it is read (JupyterLab with jupyterlab-myst, and the HTML book).

book/reader_markup.py holds the rules; these tests fail on a citation role, a hint that is
not a closed dropdown, a references page out of step with references.bib, or a citation
link to an entry the page lacks. ``python book/reader_markup.py --fix`` rewrites the old forms.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reader_markup", ROOT / "book" / "reader_markup.py")
rm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm)

LINK = re.compile(r"\]\(((?:\.\./book/)?references\.md)#([\w-]+)\)")


@pytest.mark.parametrize("path", rm.markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_old_markup(path):
    assert rm.problems(path) == [], "run `python book/reader_markup.py --fix`"


def test_references_page_is_written_from_the_bib():
    assert rm.REFERENCES.read_text() == rm.references_page(rm.read_bib()), \
        "run `python book/reader_markup.py --references`"


def test_every_citation_links_to_an_entry():
    anchors = {rm.slug(line[3:]) for line in rm.REFERENCES.read_text().splitlines() if line.startswith("## ")}
    cited = {m.group(2) for p in rm.markdown_files() for m in LINK.finditer(p.read_text())}
    assert cited, "no citation link found"
    assert cited <= anchors, f"links to missing entries: {sorted(cited - anchors)}"


def test_conversion_of_the_old_forms():
    entries = {"dfn2016": {"author": "Jia, Xu and De Brabandere, Bert and Tuytelaars, Tinne", "year": "2016"},
               "dilated2016": {"author": "Yu, Fisher and Koltun, Vladlen", "year": "2016"}}
    page = rm.ROOT / "chapters" / "x.md"
    assert rm.convert_citations("DFN {cite}`dfn2016` works.", page, entries) == \
        "DFN ([Jia et al., 2016](../book/references.md#jia-et-al-2016)) works."
    assert rm.convert_citations("(as in {cite}`dfn2016,dilated2016`)", page, entries) == \
        ("(as in [Jia et al., 2016](../book/references.md#jia-et-al-2016); "
         "[Yu and Koltun, 2016](../book/references.md#yu-and-koltun-2016))")
    with pytest.raises(ValueError, match="nokey"):
        rm.convert_citations("{cite}`nokey`", page, entries)
    old = "```{admonition} Hint\nThe answer.\n```\n\n:::{admonition} Hint 2\n:class: tip\nMore.\n:::\n"
    assert rm.hint_problems(old) == [1, 5]
    new = rm.convert_hints(old)
    assert new == ("```{admonition} Hint\n:class: dropdown\nThe answer.\n```\n\n"
                   ":::{admonition} Hint 2\n:class: tip dropdown\nMore.\n:::\n")
    assert rm.hint_problems(new) == []
    # other admonitions may stay open
    assert rm.hint_problems("```{admonition} Debugging\nText.\n```\n") == []


def test_stub_error_shows_one_line_without_paths(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("from dyncore.exercises import StubError\n"
                   "def check():\n    raise StubError('f still raises NotImplementedError: replace the stub')\n"
                   "check()")
    out = capsys.readouterr().out
    assert "StubError" in out and "replace the stub" in out
    assert "Traceback" not in out and "/" not in out.replace("\x1b", "")


def test_interact_shows_one_output_with_a_static_copy():
    """plotting.interact: one output holding the widget and a PNG of its first figure; the
    widget's own output area holds the same figure (JupyterLab shows it once)."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt, ipywidgets as widgets\nfrom dyncore import plotting\n"
        "def draw(k=3):\n    plt.figure(figsize=(2, 2)); plt.plot([0, k]); plt.show()\n"
        "plotting.interact(draw, k=widgets.IntSlider(value=3, min=1, max=7))")]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    (out,) = nb.cells[0].outputs
    assert {"application/vnd.jupyter.widget-view+json", "image/png"} <= set(out["data"])
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    areas = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert [["image/png" in o.get("data", {}) for o in a] for a in areas] == [[True]]


def test_interact_rejects_a_non_callable():
    from dyncore import plotting

    with pytest.raises(TypeError, match="function"):
        plotting.interact(3)


def test_thread_map_numbers_are_at_least_8_pt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from dyncore import plotting

    fig, axes = plt.subplots(2, 1, figsize=(9.5, 13))  # Chapter 1's layout
    plotting.thread_map((10, 15), 128, ax=axes[0])
    plotting.thread_map((10, 15), 32, ax=axes[1])
    sizes = [t.get_fontsize() for ax in axes for t in ax.texts]
    plt.close(fig)
    assert len(sizes) == 300 and min(sizes) >= 8


def test_plotting_helpers_write_no_text_under_8_pt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.text import Text
    from dyncore import plotting

    figures = [plotting.tap_grid(7, 3).figure, plotting.tap_grid(3, 1).figure,
               plotting.plot_erf(torch.rand(15, 15), rf=7, title="ERF").figure,
               plotting.thread_map((4, 6), 8).figure]
    for fig in figures:
        fig.canvas.draw()
        small = {t.get_text(): t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_fontsize() < 8}
        plt.close(fig)
        assert not small, small
