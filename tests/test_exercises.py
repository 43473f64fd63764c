"""Every exercise check passes on its reference solution and fails on its stub.

For ``exercises/NN_name.md`` the checks are ``dyncore.exercises.chNN.CHECKS`` (function
name -> check), the stubs are the functions its code cells define (cells tagged
``raises-exception``, which call the checks, are not run), and the solutions live in
``exercises/solutions/NN_name.py``.
"""

import functools
import importlib
import sys
from pathlib import Path

import jupytext
import pytest

from dyncore.exercises import StubError
from solutions import load_solutions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.md"))


def checks_for(notebook: Path) -> dict:
    return importlib.import_module(f"dyncore.exercises.ch{notebook.stem[:2]}").CHECKS


@functools.cache
def load_stubs(notebook: Path) -> dict:
    nb = jupytext.read(notebook)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, f"{notebook.name} cell", "exec"), namespace)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # the notebook's pictures: figures stay open until closed
        pyplot.close("all")
    return namespace


CASES = [(nb, name) for nb in NOTEBOOKS for name in checks_for(nb)]
IDS = [f"{nb.stem}:{name}" for nb, name in CASES]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_solutions_and_checks_name_the_same_exercises(notebook):
    checks = checks_for(notebook)
    assert len(checks) >= 3, f"{notebook.name} needs at least three exercises"
    stubs, solutions = load_stubs(notebook), load_solutions(notebook.stem.removesuffix("_exercises"))
    for name in checks:
        assert callable(stubs.get(name)), f"{notebook.name} defines no stub named {name}"
        assert callable(getattr(solutions, name, None)), f"the solutions define no {name}"


@pytest.mark.parametrize("notebook,name", CASES, ids=IDS)
def test_check_passes_on_solution(notebook, name, capsys):
    checks_for(notebook)[name](getattr(load_solutions(notebook.stem.removesuffix("_exercises")), name))
    printed = capsys.readouterr().out
    assert printed.count("Correct:") == 1, f"a passing check prints one 'Correct:' line, got {printed!r}"


@pytest.mark.parametrize("notebook,name", CASES, ids=IDS)
def test_check_fails_on_stub(notebook, name):
    with pytest.raises(StubError):
        checks_for(notebook)[name](load_stubs(notebook)[name])
