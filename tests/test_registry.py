"""No second list of operators: the specs (``spec.py`` in each method folder) are the only place
a benchmark-case name or a layer name of the registry is written.

The benchmark, the cost model and Chapter 7's comparison read :mod:`dyncore.opspec`; if someone
writes ``"ddf"`` or ``"LS-DFN"`` as a string literal elsewhere in ``dyncore/``, a second list
is creeping back, and this test names the file and line. A method's own folder may use its own
operator's function name (``"ddf"`` in ``dyncore/ddf/``: the name of the function it registers),
and ``__all__`` lists public Python names, which are not registry entries.
"""

import ast
from pathlib import Path

import pytest

from dyncore.opspec import all_specs

PACKAGE = Path(__file__).resolve().parents[1] / "dyncore"

#: Literals that equal a registry name by coincidence, in files that are not about the registry:
#: ``{path relative to dyncore/: {literal: why}}``. Keep it short; every entry says why.
COINCIDENCES = {
    "__init__.py": {name: "a subpackage name in the lazy-import table" for name in ("conv", "ddf", "dfn", "lsdfn", "pad")},
    "exercises/ch04.py": {"conv2d": "the attribute name of F.conv2d, patched to spy on calls"},
    "experiments/ch03.py": {"conv": "a kind of Chapter 3's shallow flow block ('conv', 'lsdfn', 'max')",
                            "lsdfn": "a kind of Chapter 3's shallow flow block ('conv', 'lsdfn', 'max')"},
    "experiments/ch04.py": {"depthwise": "a kind of Chapter 4's Table 1 head ('depthwise': fixed filters, 'DMNet')"},
    "experiments/ch05.py": {"pad": "the kind of Chapter 5's stripes body ('fixed', 'multi', 'pad')"},
    "experiments/ch06.py": {"conv": "a choice of Chapter 6's ResNet slot ('conv', 'dwconv', 'ddf')",
                            "ddf": "a choice of Chapter 6's ResNet slot and decoder",
                            "DDF": "a network of Chapter 6's recorded ResNet table (the DDF-ResNet)",
                            "depthwise": "a network of Chapter 6's recorded ResNet table"},
    "figures.py": {name: "a label drawn in a schematic figure (the function or module it shows)"
                   for name in ("conv2d", "ddf", "DCM", "DDF")},
    # not a coincidence: a use of the registry by name, as the command line's default choice
}


def _registry_names() -> dict[str, str]:
    names = {}
    for spec in all_specs():
        for case in spec.bench:
            names[case.name] = f"bench case of {spec.name}"
        if spec.layer is not None:
            names[spec.layer.name] = f"layer of {spec.name}"
    return names


def _own_names(rel: Path) -> set[str]:
    """The function names of the specs of the method folder that holds ``rel`` (if any)."""
    if len(rel.parts) < 2:
        return set()
    folder = rel.parts[0]
    return {s.name for s in all_specs() if s.function.__module__.split(".")[1] == folder}


def _all_literals(tree: ast.AST) -> set[int]:
    """ids of the string constants inside ``__all__ = [...]`` assignments."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                inside |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    return inside


def registry_literals(root: Path = PACKAGE) -> list[str]:
    """``path:line: 'name' (what it is)`` for each registry name written outside the specs."""
    registry = _registry_names()
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        rel = "/".join(parts)
        if path.name == "spec.py" and len(parts) == 2:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        allowed = _own_names(path.relative_to(root)) | set(COINCIDENCES.get(rel, {}))
        skip = _all_literals(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in registry and node.value not in allowed and id(node) not in skip):
                found.append(f"dyncore/{rel}:{node.lineno}: {node.value!r} ({registry[node.value]})")
    return found


def test_registry_names_are_written_only_in_the_specs():
    found = registry_literals()
    assert not found, ("registry names written outside the method folders' spec.py files (read "
                       "them from dyncore.opspec instead):\n" + "\n".join(found))


def test_the_coincidences_are_still_needed():
    """An entry of COINCIDENCES that no longer matches anything is stale: remove it."""
    registry = _registry_names()
    for rel, literals in COINCIDENCES.items():
        path = PACKAGE / rel
        if not path.exists():
            pytest.fail(f"COINCIDENCES names dyncore/{rel}, which no longer exists")
        strings = {n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for literal in literals:
            assert literal in registry and literal in strings, (rel, literal)


def test_the_check_finds_a_second_list(tmp_path):
    """The check itself works: a module that lists a layer and a bench case is reported, the
    same names in a method folder's spec.py and in ``__all__`` are not."""
    layer = next(s.layer.name for s in all_specs() if s.layer is not None)
    case = next(c.name for s in all_specs() for c in s.bench)
    (tmp_path / "probe.py").write_text(f"LAYERS = ({layer!r},)\n__all__ = [{case!r}]\nOPS = [{case!r}]\n")
    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "spec.py").write_text(f"NAME = {layer!r}\n")
    found = registry_literals(tmp_path)
    assert [line.split(" ")[0] for line in found] == ["dyncore/probe.py:1:", "dyncore/probe.py:3:"], found
