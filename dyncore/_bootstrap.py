"""Choose between a real CUDA GPU and the Numba CUDA simulator, before Numba is imported.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, and decides then whether
``numba.cuda`` is the real CUDA target or the pure-Python simulator. So the decision has to be
made here, at the very top of ``import dyncore``, before any module imports Numba:

* if the environment already sets ``NUMBA_ENABLE_CUDASIM`` (to ``0`` or ``1``), it wins;
* otherwise, the simulator is selected exactly when PyTorch sees no CUDA GPU.

If Numba was imported before dyncore (a reader's notebook did ``import numba`` first) but
``numba.cuda`` was not, the configuration is re-read so the choice still takes effect. If
``numba.cuda`` itself was already imported as the real target on a machine without a GPU,
nothing can be changed any more: :func:`cuda_backend_problem` then explains why the ``"cuda"``
backend is unusable.
"""

from __future__ import annotations

import os
import sys

import torch

ENV_VAR = "NUMBA_ENABLE_CUDASIM"


def _gpu_present() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver is the same as no GPU for our purpose
        return False


GPU_PRESENT = _gpu_present()

if ENV_VAR not in os.environ and not GPU_PRESENT:
    os.environ[ENV_VAR] = "1"

if "numba" in sys.modules and "numba.cuda" not in sys.modules:
    # Numba was imported before us: make it read the variable we may just have set.
    from numba.core import config as _config

    _config.reload_config()
    del _config


def simulating() -> bool:
    """True when ``numba.cuda`` is the CUDA simulator (no kernels run on a GPU)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


_PROBLEM: list[str | None] = []  # the answer, once found: it cannot change within a process


@torch.compiler.assume_constant_result
def cuda_backend_problem() -> str | None:
    """Why the ``"cuda"`` backend cannot run in this process, or ``None`` if it can.

    Asked on every call of a ``"cuda"`` operator, also inside ``torch.compile``'d code: the
    compiler takes the answer as a constant of the graph rather than tracing into Numba's
    driver probe (a C function it cannot trace), and the probe runs once per process.
    """
    if not _PROBLEM:
        _PROBLEM.append(_find_cuda_backend_problem())
    return _PROBLEM[0]


def _find_cuda_backend_problem() -> str | None:
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - numba-cuda missing or broken
        return f"numba.cuda could not be imported: {exc}"
    if simulating():
        return None
    if not GPU_PRESENT:
        return (
            "numba.cuda was imported as the real CUDA target but there is no CUDA GPU; "
            "import dyncore before numba.cuda, or set NUMBA_ENABLE_CUDASIM=1"
        )
    if not cuda.is_available():  # pragma: no cover - needs a GPU with a broken driver
        return "PyTorch sees a CUDA GPU but numba.cuda does not (driver or toolkit mismatch)"
    return None
