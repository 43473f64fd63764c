"""The autograd pattern of the ``"numba"`` and ``"cuda"`` backends.

Each operator has one :class:`torch.autograd.Function` subclass of :class:`KernelFunction`.
What differs between the two backends is only the *kernel set*: an object with

* ``forward(config, *inputs) -> output`` and
* ``backward(config, grad_output, *inputs, needs=(bool, ...)) -> tuple of grads``,

whose methods call hand-written kernels (Numba CPU or Numba CUDA). ``config`` is a small
hashable tuple of the operator's non-tensor arguments (stride, dilation, ...). Backward kernels
are written as *gathers* (each thread or loop iteration owns one gradient element and sums what
flows into it), never as scatters with atomics, so their results are deterministic.

The backward is first-order only: ``gradcheck`` checks it, and asking for a graph of the
gradient (``create_graph=True``, needed for double backward) raises a clear error instead of
returning gradients that silently do not depend on the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class KernelSet:
    """The forward and backward host functions of one operator on one backend."""

    name: str
    forward: Callable
    backward: Callable


class KernelFunction(torch.autograd.Function):
    """Base class: ``SomeOpFunction.apply(kernels, config, *inputs)``.

    ``inputs`` may contain ``None`` (an absent bias); its gradient is then ``None``.
    """

    @staticmethod
    def forward(ctx, kernels: KernelSet, config: tuple, *inputs):
        ctx.kernels, ctx.config = kernels, config
        ctx.save_for_backward(*inputs)
        return kernels.forward(config, *inputs)

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():  # only true under create_graph=True
            raise RuntimeError(
                f"the {ctx.kernels.name!r} backend's backward kernels are first-order only: "
                "double backward (create_graph=True) is not supported; use backend='torch'"
            )
        needs = tuple(ctx.needs_input_grad[2:])
        grads = ctx.kernels.backward(
            ctx.config, grad_output.contiguous(), *ctx.saved_tensors, needs=needs
        )
        grads = tuple(g if need else None for g, need in zip(grads, needs))
        return (None, None, *grads)


def numpy_view(t: torch.Tensor):
    """A numpy array sharing memory with (a contiguous copy of) CPU tensor ``t``, no autograd."""
    return t.detach().contiguous().numpy()
