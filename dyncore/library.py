"""The book's operators as PyTorch custom operators: ``torch.ops.dyncore.<name>``.

A Numba kernel is opaque to PyTorch: ``torch.compile`` cannot trace into it and ``torch.export``
cannot record it. Registered with :func:`torch.library.custom_op`, it becomes one node of the
graph, like ``aten::conv2d``: the compiler needs only

* its **schema** (argument names and types; the backend, ``"numba"`` or ``"cuda"``, is a string
  argument, since on CPU tensors ``"cuda"`` means the CUDA simulator and the device alone cannot
  choose it);
* a **fake** implementation, which says what the output looks like (shape, dtype, device) without
  computing it. Here it is the operator's vectorized PyTorch version run on fake tensors: it
  computes nothing, and it cannot disagree with the kernels about the output's shape;
* its **autograd** formula: the hand-derived backward kernels, themselves a second custom
  operator ``torch.ops.dyncore.<name>_backward``, so a compiled training step keeps them too;
* its **autocast** rule: the kernels have no half precision (Numba has no bfloat16), so under
  ``torch.autocast`` a bfloat16 or float16 input is cast to float32 and the operator returns
  float32 (``register_autocast``; the public functions cast first, before validating, on every
  backend: :func:`dyncore.validation.autocast_inputs`).

:func:`define` does this for one operator; each method's ``functional.py`` calls it once, and its
public function routes the ``"numba"`` and ``"cuda"`` backends through the operator
(:func:`dyncore.backend.dispatch`). ``torch.library.opcheck`` tests the registrations
(``tests/test_library.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["NAMESPACE", "OpDef", "define", "operators"]

NAMESPACE = "dyncore"
_DEFINED: dict[str, "OpDef"] = {}


@dataclass(frozen=True)
class OpDef:
    """One registered operator: its forward and backward custom ops and how to call them."""

    name: str
    tensors: tuple[str, ...]
    params: tuple[str, ...]
    forward: object  # the CustomOpDef of torch.ops.dyncore.<name>
    backward: object  # ... and of <name>_backward

    def __call__(self, *args):
        return self.forward(*args)


def _arg_name(decl: str) -> str:
    return decl.split()[-1]


def _plain(value):
    """Schema lists arrive as lists: the kernels take tuples (hashable configs)."""
    return tuple(value) if isinstance(value, list) else value


def define(name: str, tensors: tuple[str, ...], params: tuple[str, ...], *, kernels: dict,
           vectorized: Callable, config: Callable | None = None) -> OpDef:
    """Register ``torch.ops.dyncore.<name>`` and ``torch.ops.dyncore.<name>_backward``.

    ``tensors`` names the tensor arguments in order, a trailing ``?`` marking an optional one
    (``("x", "weight", "bias?", "gates")``); ``params`` the other arguments as schema fragments
    (``("int kernel_size", "int[] dilations")``). ``kernels`` maps ``"numba"`` and ``"cuda"`` to
    their :class:`dyncore.autograd.KernelSet`, whose ``forward(config, *tensors)`` and
    ``backward(config, grad, *tensors, needs=...)`` receive ``config(*params)`` (by default the
    params as a tuple). ``vectorized(*tensors, *params)`` is the PyTorch version, used as the fake.
    """
    if name in _DEFINED:
        return _DEFINED[name]
    make_config = config or (lambda *p: tuple(p))
    n = len(tensors)
    tensor_decls = [f"Tensor? {t[:-1]}" if t.endswith("?") else f"Tensor {t}" for t in tensors]
    signature = ", ".join([*tensor_decls, *params, "str backend"])

    def split(args):
        tensors_, rest = args[:n], args[n:]
        return tensors_, tuple(_plain(v) for v in rest[:-1]), rest[-1]

    def forward_impl(*args):
        tensors_, values, backend = split(args)
        return kernels[backend].forward(make_config(*values), *tensors_)

    forward = torch.library.custom_op(f"{NAMESPACE}::{name}", forward_impl, mutates_args=(),
                                      schema=f"({signature}) -> Tensor")

    def forward_fake(*args):
        tensors_, values, _ = split(args)
        return vectorized(*tensors_, *values)

    forward.register_fake(forward_fake)

    def backward_impl(grad, *args):
        *rest, needs = args
        tensors_, values, backend = split(tuple(rest))
        grads = kernels[backend].backward(make_config(*values), grad.contiguous(), *tensors_,
                                          needs=tuple(needs))
        # A custom op returns fresh tensors, never None: an absent or unneeded gradient is an
        # empty tensor here, and None again in the autograd formula below.
        return [g if (g is not None and need and t is not None) else grad.new_empty(0)
                for g, t, need in zip(grads, tensors_, needs)]

    backward = torch.library.custom_op(
        f"{NAMESPACE}::{name}_backward", backward_impl, mutates_args=(),
        schema=f"(Tensor grad, {signature}, bool[] needs) -> Tensor[]")

    def backward_fake(grad, *args):
        *rest, needs = args
        tensors_, _, _ = split(tuple(rest))
        return [torch.empty_like(t) if (t is not None and need) else grad.new_empty(0)
                for t, need in zip(tensors_, needs)]

    backward.register_fake(backward_fake)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*[t for t in inputs[:n] if t is not None])
        ctx.present = [t is not None for t in inputs[:n]]
        ctx.rest = inputs[n:]

    def autograd_backward(ctx, grad):
        backend = ctx.rest[-1]
        if torch.is_grad_enabled():  # only true under create_graph=True
            raise RuntimeError(
                f"the {backend!r} backend's backward kernels are first-order only: double "
                "backward (create_graph=True) is not supported; use backend='torch'")
        saved = iter(ctx.saved_tensors)
        tensors_ = [next(saved) if p else None for p in ctx.present]
        needs = [bool(need and p) for need, p in zip(ctx.needs_input_grad[:n], ctx.present)]
        grads = backward(grad, *tensors_, *ctx.rest, needs)
        return (*[g if need else None for g, need in zip(grads, needs)], *([None] * len(ctx.rest)))

    forward.register_autograd(autograd_backward, setup_context=setup_context)
    # Under torch.autocast the kernels compute in float32 (they have no half precision): a
    # bfloat16 or float16 input is cast up, float64 stays (dyncore.validation.autocast_inputs
    # does the same in the public functions, before validation, for every backend).
    for device_type in ("cpu", "cuda"):
        forward.register_autocast(device_type, torch.float32)
    op = OpDef(name, tuple(_arg_name(t.rstrip("?")) for t in tensors), tuple(params), forward, backward)
    _DEFINED[name] = op
    return op


def operators() -> dict[str, OpDef]:
    """The operators registered so far (every one, once ``dyncore`` is imported)."""
    return dict(_DEFINED)
