"""Argument checks that give the contract's clear errors (contract: "Bad input").

Every operator calls these before any kernel runs. Messages name the argument, what was
expected and what was given. ``TypeError`` is for the wrong kind of object or dtype,
``ValueError`` for the wrong value, rank, shape or device.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
#: Half-precision dtypes: no kernel computes in them (Numba has no bfloat16); under
#: ``torch.autocast`` the operators cast them to float32 first (:func:`autocast_inputs`). Passed
#: directly they are refused on every backend, ``"torch"`` included although PyTorch could compute
#: there: the four backends accept the same calls and agree on the result, and a bfloat16
#: ``"torch"`` result would be a different, less precise one.
HALF_DTYPES = (torch.bfloat16, torch.float16)
_AUTOCAST_DEVICES = ("cpu", "cuda")


def autocasting(t: torch.Tensor) -> bool:
    """Whether ``torch.autocast`` is on for ``t``'s device type (CPU or CUDA)."""
    kind = t.device.type
    return kind in _AUTOCAST_DEVICES and torch.is_autocast_enabled(kind)


def autocast_inputs(*tensors):
    """Under ``torch.autocast``, half-precision tensors (bfloat16, float16) become float32.

    The kernels compute in float32 or float64, so an operator inside an autocast region computes
    in float32 and returns float32, as PyTorch's autocast does for operators that need the range
    (``torch.library.register_autocast(op, device, torch.float32)``, which
    :func:`dyncore.library.define` also registers for the custom operators). Other values pass
    unchanged; float64 stays float64, as under autocast. Outside autocast nothing changes, and
    :func:`check_tensor` refuses a half-precision tensor, naming the argument. Every public
    operator calls this first, before validating, on every backend. Returns a tuple.
    """
    return tuple(t.float() if isinstance(t, torch.Tensor) and t.dtype in HALF_DTYPES and autocasting(t)
                 else t for t in tensors)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor(name: str, value, ndim: int | None = None, layout: str | None = None) -> torch.Tensor:
    """``value`` must be a float32/float64 tensor, of rank ``ndim`` if given.

    ``layout`` names the axes for the message, e.g. ``"(B, C, H, W)"``.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        kind = (
            "a complex" if value.dtype.is_complex
            else "a floating-point" if value.dtype.is_floating_point
            else "an integer/boolean"
        )
        hint = ("; the kernels compute in float32 or float64: convert it with .float(), or run "
                "under torch.autocast, which computes these operators in float32"
                if value.dtype in HALF_DTYPES else "")
        raise TypeError(
            f"{name} must be float32 or float64; got {kind} tensor of dtype {value.dtype}{hint}"
        )
    if ndim is not None and value.dim() != ndim:
        axes = f" {layout}" if layout else ""
        raise ValueError(
            f"{name} must be a {ndim}-D tensor{axes}; got a {value.dim()}-D tensor "
            f"of shape {_shape(value)}"
        )
    return value


def check_shape(name: str, value: torch.Tensor, expected: Sequence[int], layout: str) -> None:
    """``value.shape`` must equal ``expected``; ``layout`` spells the expected axes."""
    if _shape(value) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {layout} = {tuple(expected)}; got {_shape(value)}"
        )


def _check_alike(attribute: str, error: type, message: str, reference: tuple[str, torch.Tensor],
                 others: dict) -> None:
    """Every tensor of ``others`` (``None`` skipped) has ``reference``'s ``attribute``; else ``error``
    with ``message`` formatted as ``(name, its value, reference name, reference value)``."""
    ref_name, ref = reference
    for name, t in others.items():
        if t is not None and getattr(t, attribute) != getattr(ref, attribute):
            raise error(message.format(name, getattr(t, attribute), ref_name, getattr(ref, attribute)))


def check_same_dtype(reference: tuple[str, torch.Tensor], **others: torch.Tensor | None) -> None:
    _check_alike("dtype", TypeError, "{} has dtype {} but {} has dtype {}; all tensors must share one dtype",
                 reference, others)


def check_same_device(reference: tuple[str, torch.Tensor], **others: torch.Tensor | None) -> None:
    _check_alike("device", ValueError, "{} is on {} but {} is on {}; all tensors must be on one device",
                 reference, others)


def check_int(name: str, value) -> int:
    """An integer (Python or numpy), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    return int(value)


def check_positive_int(name: str, value) -> int:
    value = check_int(name, value)
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    return value


def check_nonnegative_int(name: str, value) -> int:
    value = check_int(name, value)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int; got {value}")
    return value


def check_kernel_size(name: str, value) -> int:
    """Kernel sizes are odd and positive (contract: taps are centred)."""
    value = check_int(name, value)
    if value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive int (1, 3, 5, ...); got {value}")
    return value


def as_pair(name: str, value, check=check_positive_int) -> tuple[int, int]:
    """An int or a pair of ints (like ``F.conv2d``'s ``stride``), each passed through ``check``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
        return check(f"{name}[0]", value[0]), check(f"{name}[1]", value[1])
    v = check(name, value)
    return v, v


def check_spatial_nonempty(name: str, value: torch.Tensor) -> None:
    if value.shape[-1] == 0 or value.shape[-2] == 0 or value.shape[-3] == 0:
        raise ValueError(
            f"{name} must have at least one channel and one pixel; got shape {_shape(value)}"
        )


def check_bool(name: str, value) -> bool:
    """A real ``bool`` (not ``0``/``1``, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False); got {type(value).__name__} {value!r}")
    return value


def check_choice(name: str, value, choices: Sequence):
    """One of ``choices`` (compared with ``==``); the message lists them."""
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_positive_number(name: str, value) -> float:
    """A finite real number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be a positive, finite number; got {value}")
    return value


def check_channels(**counts) -> tuple[int, ...]:
    """Channel counts of a module's constructor, each a positive int: ``check_channels(in_channels=3,
    out_channels=8)`` returns ``(3, 8)``; the message names the argument that is wrong."""
    return tuple(check_positive_int(name, value) for name, value in counts.items())
