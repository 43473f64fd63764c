"""Small helpers the chapters share: seeding, showing source, the device, the machine."""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
import platform
import random
import textwrap

import numpy as np
import torch

from . import _bootstrap

#: True when running under continuous integration (``CI`` set): chapters shrink heavy sweeps.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def set_seed(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def num_threads(n: int):
    """Run PyTorch's and Numba's parallel loops on ``n`` threads inside a ``with`` block.

    A parallel loop costs microseconds to start and waits for its slowest thread: on tiny
    inputs (``gradcheck``, training on small batches) or on a machine whose cores are busy,
    one thread is often faster. Both settings are restored on exit.
    """
    import numba

    from .validation import check_positive_int

    n = min(check_positive_int("n", n), numba.config.NUMBA_NUM_THREADS)
    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def default_device() -> torch.device:
    """The GPU when PyTorch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def source(obj) -> str:
    """The source code of a function, class, module, Numba (CPU or CUDA) kernel."""
    target = getattr(obj, "py_func", obj)  # Numba dispatchers keep the Python function here
    return textwrap.dedent(inspect.getsource(target))


def show_source(*objs):
    """Show the syntax-highlighted source of package code in a notebook.

    Returns an ``IPython.display.Code`` object, so it renders when it is a cell's last
    expression (and prints as plain text outside a notebook).
    """
    from IPython.display import Code

    return Code("\n\n".join(source(o).rstrip() for o in objs), language="python")


def machine_report() -> str:
    """One line per fact: versions, CPU threads, and where ``"cuda"`` kernels run."""
    import numba

    if _bootstrap.simulating():
        cuda_line = "Numba CUDA simulator (no GPU: 'cuda' kernels run as Python threads, slowly)"
    elif torch.cuda.is_available():
        cuda_line = f"GPU: {torch.cuda.get_device_name()}"
    else:  # pragma: no cover
        cuda_line = "no CUDA"
    return "\n".join([
        f"python {platform.python_version()}, torch {torch.__version__}, numba {numba.__version__}, "
        f"numpy {np.__version__}",
        f"CPU: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"numba threads {numba.config.NUMBA_NUM_THREADS}",
        f"cuda backend: {cuda_line}",
    ])
