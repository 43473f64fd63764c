"""Keep the chapters' MyST in the forms that render both in JupyterLab (jupyterlab-myst) and in
the HTML book (Jupyter Book), and write the references page from ``book/references.bib``.

    python book/reader_markup.py           # report every old form; exit 1 if there is one
    python book/reader_markup.py --fix     # rewrite the old forms in place (nothing else changes)
    python book/reader_markup.py --references   # rewrite book/references.md from references.bib

The two forms it replaces:

* Citations. jupyterlab-myst does not read BibTeX, so a ``{cite}`key``` role shows raw there.
  A citation is written instead as a short author-year label that links to the reader's entry
  on the references page: ``([Jia et al., 2016](../book/references.md#jia-et-al-2016))``. The
  link opens the page in JupyterLab, and jumps to the entry in the HTML book (the page gives
  each entry a heading; Jupyter Book anchors headings through ``myst_heading_anchors``). Inside
  parentheses the label goes without its own.
* Hints. A hint is an admonition titled "Hint..." that is closed until the reader opens it:
  ``:class: dropdown`` (sphinx-togglebutton in the HTML book, a collapsed box in JupyterLab).
  ``--fix`` adds the class to a hint admonition, or hint directive, that lacks it.

``tests/test_reader_markup.py`` runs the check, so an old form fails the tests.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
REFERENCES = ROOT / "book" / "references.md"
SOURCES = ("chapters/*.md", "exercises/*.md", "book/intro.md")

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
# An admonition or hint directive whose title starts with "Hint", in a backtick or colon fence.
HINT_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>admonition|hint|tip)\}(?P<title>.*)$")


def markdown_files() -> list[pathlib.Path]:
    return sorted(p for pattern in SOURCES for p in ROOT.glob(pattern))


# ---- the bibliography -------------------------------------------------------------------------

def read_bib(path: pathlib.Path = BIB) -> dict[str, dict[str, str]]:
    """``{key: {field: value}}`` for each ``@type{key, field = {value}, ...}`` entry."""
    text = path.read_text()
    entries = {}
    for m in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        fields, i = {"type": m.group(1).lower()}, m.end()
        while True:
            f = re.compile(r"\s*(\w+)\s*=\s*\{").match(text, i)
            if not f:
                break
            depth, j = 1, f.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            fields[f.group(1).lower()] = " ".join(text[f.end():j - 1].split())
            i = j
            comma = re.compile(r"\s*,").match(text, i)
            if not comma:
                break
            i = comma.end()
        entries[m.group(2)] = fields
    return entries


def _plain(s: str) -> str:
    return s.replace("{", "").replace("}", "").replace("--", "–")


def _surnames(entry: dict[str, str]) -> list[str]:
    return [_plain(a.split(",")[0].strip()) for a in entry["author"].split(" and ")]


def label(entry: dict[str, str]) -> str:
    """The author-year label: "Jia et al., 2016", "Yu and Koltun, 2016", "Anonymous, 2020"."""
    names = _surnames(entry)
    who = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {entry['year']}"


def slug(title: str) -> str:
    """The anchor Jupyter Book (myst-parser's default slug function) gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower().replace(" ", "-"))


def references_page(entries: dict[str, dict[str, str]]) -> str:
    lines = [
        "# References", "",
        "The papers this book implements, their common ancestor, and the work they build on. A",
        "citation in the text is the label of one entry below, linked to it. The same entries in",
        "BibTeX: `book/references.bib` (this page is written from it by `python book/reader_markup.py",
        "--references`).", "",
    ]
    for key, e in sorted(entries.items(), key=lambda kv: (_surnames(kv[1])[0], kv[1]["year"])):
        authors = [_plain(" ".join(reversed([p.strip() for p in a.split(",", 1)])))
                   for a in e["author"].split(" and ")]
        who = authors[0] if len(authors) == 1 else ", ".join(authors[:-1]) + " and " + authors[-1]
        venue = e.get("booktitle") or e.get("journal") or e.get("note", "")
        pages = f", pp. {_plain(e['pages'])}" if "pages" in e else ""
        lines += [f"## {label(e)}", "",
                  f"{who}. *{_plain(e['title'])}*. {_plain(venue)}{pages}, {e['year']}. (BibTeX key `{key}`.)", ""]
    return "\n".join(lines)


# ---- citations --------------------------------------------------------------------------------

def _inside_parentheses(text: str, pos: int) -> bool:
    """Whether position ``pos`` is inside an open parenthesis of its paragraph (prose only)."""
    start = text.rfind("\n\n", 0, pos) + 2 if "\n\n" in text[:pos] else 0
    before = re.sub(r"\$[^$]*\$|`[^`]*`", "", text[start:pos])
    return before.count("(") > before.count(")")


def convert_citations(text: str, path: pathlib.Path, entries: dict[str, dict[str, str]]) -> str:
    rel = pathlib.Path(os.path.relpath(REFERENCES, path.parent)).as_posix()
    out, last = [], 0
    for m in CITE.finditer(text):
        links = []
        for key in (k.strip() for k in m.group(1).split(",")):
            if key not in entries:
                raise ValueError(f"{path}: citation key {key!r} is not in {BIB.name}")
            lab = label(entries[key])
            links.append(f"[{lab}]({rel}#{slug(lab)})")
        cite = "; ".join(links)
        out += [text[last:m.start()], cite if _inside_parentheses(text, m.start()) else f"({cite})"]
        last = m.end()
    return "".join(out) + text[last:]


# ---- hints ------------------------------------------------------------------------------------

def hint_problems(text: str) -> list[int]:
    """Line numbers (1-based) of hint admonitions that are not closed dropdowns."""
    lines, bad = text.split("\n"), []
    for i, line in enumerate(lines):
        m = HINT_OPEN.match(line)
        if not m or not (m.group("name") == "hint" or m.group("title").strip().lower().startswith("hint")):
            continue
        options = []
        for nxt in lines[i + 1:]:
            if not nxt.startswith(":") or nxt.startswith(":::"):
                break
            options.append(nxt)
        if not any(re.match(r":class:.*\bdropdown\b", o) for o in options):
            bad.append(i + 1)
    return bad


def convert_hints(text: str) -> str:
    lines = text.split("\n")
    for n in reversed(hint_problems(text)):
        j = n  # first line after the directive's opening line
        while j < len(lines) and lines[j].startswith(":") and not lines[j].startswith(":::"):
            if lines[j].startswith(":class:"):
                lines[j] += " dropdown"
                break
            j += 1
        else:
            lines.insert(n, ":class: dropdown")
    return "\n".join(lines)


# ---- the command ------------------------------------------------------------------------------

def problems(path: pathlib.Path) -> list[str]:
    text = path.read_text()
    rel = path.relative_to(ROOT)
    found = [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: citation role {m.group(0)} "
             "(jupyterlab-myst shows it raw: write an author-year link, `--fix`)" for m in CITE.finditer(text)]
    found += [f"{rel}:{n}: hint admonition without `:class: dropdown` (shown open: `--fix`)"
              for n in hint_problems(text)]
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fix", action="store_true", help="rewrite citation roles and open hints in place")
    p.add_argument("--references", action="store_true", help="rewrite book/references.md from references.bib")
    args = p.parse_args(argv)
    entries = read_bib()
    if args.references:
        REFERENCES.write_text(references_page(entries))
        print(f"wrote {REFERENCES.relative_to(ROOT)}")
    if args.fix:
        for path in markdown_files():
            text = path.read_text()
            new = convert_hints(convert_citations(text, path, entries))
            if new != text:
                path.write_text(new)
                print(f"rewrote {path.relative_to(ROOT)}")
    found = [line for path in markdown_files() for line in problems(path)]
    print("\n".join(found) if found else "no citation role, every hint closed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
