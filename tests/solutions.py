"""Loading the exercises' reference solutions (``exercises/solutions/NN_name.py``) in tests.

The solutions live outside the package, next to the exercise notebooks, so that a reader
does not see them by importing ``dyncore``; tests load them by path, once per process.
"""

import functools
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def load_solutions(stem: str):
    """The module ``exercises/solutions/<stem>.py`` (e.g. ``stem="05_pad_nets"``)."""
    path = ROOT / "exercises" / "solutions" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
