"""Backend names and dispatch, shared by every operator (contract: "Backends").

An operator validates its arguments, then asks :func:`resolve_backend` which implementation to
run. ``"auto"`` means ``"cuda"`` for CUDA tensors and ``"numba"`` for CPU tensors.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch

from . import _bootstrap
from . import validation as V

#: The concrete backends, in the order the chapters teach them.
BACKENDS = ("loops", "numba", "torch", "cuda")


def backends() -> list[str]:
    """The backends usable in this process (``"cuda"`` runs under the simulator without a GPU)."""
    usable = ["loops", "numba", "torch"]
    if _bootstrap.cuda_backend_problem() is None:
        usable.append("cuda")
    return usable


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn the ``backend`` argument into one of :data:`BACKENDS` for tensors on ``device``.

    Raises ``ValueError`` for an unknown name, for ``"numba"`` with CUDA tensors, and for
    ``"cuda"`` when this process cannot run Numba CUDA kernels.
    """
    if not isinstance(backend, str) or backend not in BACKENDS + ("auto",):
        raise ValueError(
            f"backend must be one of {', '.join(repr(b) for b in BACKENDS + ('auto',))}; "
            f"got {backend!r}"
        )
    on_gpu = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = "cuda" if on_gpu else "numba"
    if backend == "numba" and on_gpu:
        raise ValueError(
            "backend='numba' runs on the CPU but the tensors are on a CUDA device; "
            "use backend='cuda' (or 'auto'), or move the tensors with .cpu()"
        )
    if backend == "cuda":
        problem = _bootstrap.cuda_backend_problem()
        if problem is not None:
            raise ValueError(f"backend='cuda' is unavailable: {problem}")
    return backend


def run_loops(fn: Callable[..., np.ndarray], *args, like: torch.Tensor):
    """Run a ``"loops"`` implementation (written on numpy arrays) on tensor arguments.

    Tensors become numpy arrays on the CPU; the result comes back as a tensor on ``like``'s
    device and dtype. The loops backend is the executable specification and has no autograd:
    its result is detached, and a warning says so when a gradient was wanted.
    """
    if torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args
    ):
        warnings.warn(
            "backend='loops' computes the forward pass only; its result does not track "
            "gradients (use 'numba', 'torch' or 'cuda' to train)",
            stacklevel=3,
        )
    converted = [
        a.detach().cpu().contiguous().numpy() if isinstance(a, torch.Tensor) else a for a in args
    ]
    out = fn(*converted)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=like.device, dtype=like.dtype)


def dispatch(backend: str, inputs: tuple, config: tuple, *, out_shape, loops: Callable,
             vectorized: Callable, kernels: dict, op=None):
    """Run one operator on the backend asked for; every operator's public function ends here.

    ``inputs`` are the operator's tensor arguments (``None`` for an absent optional one, such as
    a bias), already validated; ``config`` its non-tensor arguments (kernel size, dilation, ...),
    passed after the inputs to ``loops`` (on numpy arrays, the specification) and ``vectorized``
    (PyTorch, differentiated by autograd), and as the ``config`` of the hand-written kernel sets
    ``kernels["numba"]`` and ``kernels["cuda"]`` (:class:`dyncore.autograd.KernelSet`), which run
    under :class:`dyncore.autograd.KernelFunction`. An output with no elements (an empty batch)
    is returned as zeros of ``out_shape`` without running anything. Under ``torch.autocast`` the
    inputs are float32 already (:func:`dyncore.validation.autocast_inputs`) and the ``"torch"``
    backend runs with autocast off, so that every backend computes in float32. With ``op`` (the operator's
    :class:`dyncore.library.OpDef`), the two kernel backends run as the custom operator
    ``torch.ops.dyncore.<name>(*inputs, *config, backend)``, which ``torch.compile`` and
    ``torch.export`` understand.
    """
    from .autograd import KernelFunction

    like = inputs[0]
    name = resolve_backend(backend, like.device)
    if any(n == 0 for n in out_shape):
        # Zeros that still hang on the autograd graph (an empty slice of each input adds 0), so
        # that backward through an empty batch gives empty gradients rather than an error.
        out = like.new_zeros(out_shape)
        for t in inputs:
            if t is not None and t.requires_grad:
                out = out + t.reshape(-1)[:0].sum()
        return out
    if name == "loops":
        return run_loops(lambda *arrays: loops(*arrays, *config), *inputs, like=like)
    if name == "torch":
        if V.autocasting(like):  # compute in float32 like the kernels, not in autocast's half
            with torch.autocast(like.device.type, enabled=False):
                return vectorized(*inputs, *config)
        return vectorized(*inputs, *config)
    if op is not None:
        return op(*inputs, *config, name)
    return KernelFunction.apply(kernels[name], config, *inputs)
