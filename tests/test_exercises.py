"""Every exercise check passes on its reference solution and fails on its stub.

For ``exercises/NN_name.md`` the checks are ``dyncore.exercises.chNN.CHECKS`` (function
name -> check), the stubs are the functions its code cells define (cells tagged
``raises-exception``, which call the checks, are not run), and the solutions live in
``exercises/solutions/NN_name.py``.
"""

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import jupytext
import pytest

from exercise_checks import ROOT, load_stubs, rejects_as_stub
from solutions import load_solutions

NOTEBOOKS = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.md"))


def checks_for_module(notebook: Path):
    return importlib.import_module(f"dyncore.exercises.ch{notebook.stem[:2]}")


def checks_for(notebook: Path) -> dict:
    return checks_for_module(notebook).CHECKS


CASES = [(nb, name) for nb in NOTEBOOKS for name in checks_for(nb)]
#: The find-the-bug exercises: the check module keeps the broken function as ``planted_<name>``.
PLANTED = [(nb, name[len("planted_"):]) for nb in NOTEBOOKS
           for name, value in vars(checks_for_module(nb)).items()
           if name.startswith("planted_") and callable(value)]
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
    """As not yet done (a StubError), not as wrong, and the message names the function and what it
    still does: raise NotImplementedError, or (a find-the-bug exercise) what the broken one did."""
    still = "raises NotImplementedError|computes what the broken version computed|gives the shapes it gave"
    rejects_as_stub(checks_for(notebook)[name], load_stubs(notebook)[name], rf"^{name}\b.*? still ({still})")


def _code(function: ast.FunctionDef) -> tuple[str, ...]:
    """A function's arguments and statements, without its docstring, comments or name."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (ast.dump(function.args), *(ast.dump(statement) for statement in body))


@pytest.mark.parametrize("notebook,name", PLANTED, ids=[f"{nb.stem}:{name}" for nb, name in PLANTED])
def test_notebook_gives_the_planted_bug(notebook, name):
    """The broken function the reader edits is, statement for statement, the one its check knows
    as unfixed (so the check can say "still the planted bug" and not "wrong": test_check_fails_on_stub
    and each chapter's find-the-bug test)."""
    planted = getattr(checks_for_module(notebook), f"planted_{name}")
    source = "\n".join(cell.source for cell in jupytext.read(notebook).cells if cell.cell_type == "code")
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    given = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef) and node.name == name]
    assert len(given) == 1, f"{notebook.name} defines {name} {len(given)} times"
    assert _code(given[0]) == _code(ast.parse(textwrap.dedent(inspect.getsource(planted))).body[0]), (
        f"{notebook.name}'s {name} differs from {planted.__module__}.planted_{name}")
