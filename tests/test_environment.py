"""environment.yml (for conda users) must name the same packages as pyproject.toml.

pyproject.toml is the source of truth: its runtime dependencies and every optional extra.
environment.yml lists them for ``conda env create`` (in its pip section). These tests fail
when one file gains, loses or re-pins a package that the other does not.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: conda packages that provide the environment itself rather than the book's dependencies
CONDA_BASE = {"python", "pip"}


def normalize(name: str) -> str:
    """Package name as pip compares them: lowercase, runs of ``-``, ``_``, ``.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return {normalize(r.name): r for r in map(Requirement, lines)}


def environment_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    requirements = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip section; skip options such as -e . or --index-url
            for line in dep.get("pip", []):
                if not line.lstrip().startswith("-"):
                    r = Requirement(line)
                    requirements[normalize(r.name)] = r
        else:  # a conda spec such as python=3.11 or numpy>=1.26
            name = normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep).group(0))
            if name not in CONDA_BASE:
                requirements[name] = Requirement(re.sub(r"=(?=[\d*])", "==", dep, count=1))
    return requirements


def makefile_torch_pin() -> str:
    match = re.search(r"^TORCH\s*:?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile must pin torch with a line `TORCH := torch==<version>`"
    return match.group(1)


def test_same_packages():
    project, env = pyproject_requirements(), environment_requirements()
    only_project = sorted(set(project) - set(env))
    only_env = sorted(set(env) - set(project))
    assert not only_project and not only_env, (
        "pyproject.toml and environment.yml must name the same packages; "
        f"only in pyproject.toml: {only_project}; only in environment.yml: {only_env}"
    )


@pytest.mark.parametrize("name", sorted(set(pyproject_requirements()) - {"torch"}))
def test_same_version_constraints(name):
    project, env = pyproject_requirements()[name], environment_requirements().get(name)
    if env is None:
        pytest.skip(f"{name} is missing from environment.yml (test_same_packages fails)")
    assert env.specifier == project.specifier, (
        f"{name}: pyproject.toml asks for '{project.specifier}' but environment.yml "
        f"for '{env.specifier}'"
    )


def test_torch_pinned_like_the_makefile():
    pin = makefile_torch_pin()
    env = environment_requirements()["torch"]
    assert str(env.specifier) == f"=={pin}", (
        f"environment.yml must pin torch=={pin}, the version the Makefile installs; "
        f"it has '{env.specifier}'"
    )
    project = pyproject_requirements()["torch"]
    assert project.specifier.contains(Version(pin)), (
        f"pyproject.toml's torch range '{project.specifier}' excludes torch {pin}, "
        "the version the Makefile installs"
    )


def test_normalize():
    assert normalize("Scikit_Learn") == normalize("scikit-learn") == "scikit-learn"
    assert normalize("jupyter.book") == "jupyter-book"
