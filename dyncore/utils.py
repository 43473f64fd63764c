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


def cpu_fingerprint() -> dict:
    """What decides which vector code runs on this CPU, and so the round-off of training and the
    speed of a kernel: PyTorch's CPU capability (its own kernels, e.g. ``AVX512`` or ``AVX2``)
    and the CPU that LLVM compiles Numba's kernels for. Result files store it."""
    import llvmlite.binding as llvm

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "llvm_cpu": llvm.get_host_cpu_name()}


def count_parameters(module: torch.nn.Module) -> int:
    """The number of learnable and fixed parameters of ``module`` (every ``nn.Parameter``)."""
    return sum(p.numel() for p in module.parameters())


@contextmanager
def recording(model: torch.nn.Module, types: tuple):
    """Inside the ``with`` block, collect what every layer of ``model`` of one of ``types`` reports.

    Such a layer keeps a list ``_recorders`` of callbacks (empty outside a recording, so a
    compiled or exported forward stores nothing) and calls each as ``record(self, *tensors)``
    with the tensors it computed. The block yields a dictionary ``{layer: tensors}``, detached,
    of each layer's last call; :func:`dyncore.ddf.record_filters` and
    :func:`dyncore.pad.record_gates` are this for their layers.
    """
    layers = [m for m in model.modules() if isinstance(m, types)]
    seen = {}

    def record(layer, *tensors):
        seen[layer] = tuple(t.detach() for t in tensors)

    for layer in layers:
        layer._recorders.append(record)
    try:
        yield seen
    finally:
        for layer in layers:
            layer._recorders.remove(record)


def set_backend(module: torch.nn.Module, backend: str) -> dict:
    """Set ``backend`` on ``module`` and every submodule that has one (every dyncore layer does);
    returns ``{submodule: previous backend}`` for :func:`restore_backends`."""
    saved = {}
    for m in module.modules():
        if isinstance(getattr(m, "backend", None), str):
            saved[m] = m.backend
            m.backend = backend
    return saved


def restore_backends(saved: dict) -> None:
    """Undo :func:`set_backend`."""
    for m, backend in saved.items():
        m.backend = backend


def _elementwise_flops(*args, out_shape=None, **kwargs) -> int:
    """One flop per output element (a multiply or an add)."""
    return int(np.prod(out_shape)) if out_shape is not None else 0


def _reduction_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    """One add per input element folded into the output."""
    return max(0, int(np.prod(x_shape)) - int(np.prod(out_shape)))


#: Elementwise arithmetic that ``torch.utils.flop_counter`` does not count by default, but that
#: is the dynamic layers' own work when their ``"torch"`` backend is a product and a sum
#: (DFN's unfold-multiply-sum, the gates of PAD, the attention of LS-DFN).
ELEMENTWISE_FLOPS = {
    torch.ops.aten.mul: _elementwise_flops,
    torch.ops.aten.add: _elementwise_flops,
    torch.ops.aten.sum: _reduction_flops,
}


def count_flops(module: torch.nn.Module, *inputs, elementwise: bool = False, backend: str = "torch") -> int:
    """FLOPs of one forward pass ``module(*inputs)`` by ``torch.utils.flop_counter`` (a
    multiply-add counts 2), in eval mode and without autograd.

    The counter sees PyTorch operators only, not Numba kernels: every dyncore layer inside is
    switched to ``backend`` (``"torch"``) for the count and switched back after. By default the
    counter counts convolutions and matrix products; ``elementwise=True`` also counts every
    elementwise multiply, add and sum (:data:`ELEMENTWISE_FLOPS`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    saved = set_backend(module, backend)
    was_training = module.training
    module.eval()
    try:
        mapping = ELEMENTWISE_FLOPS if elementwise else None
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            module(*inputs)
    finally:
        restore_backends(saved)
        module.train(was_training)
    return int(counter.get_total_flops())
