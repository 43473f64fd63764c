"""Shared machinery for exercises in which the reader writes a ``@cuda.jit`` kernel.

A check launches the reader's kernel with one thread per element of the array it writes,
on the real GPU when the inputs live there and under the Numba CUDA simulator otherwise.
The written array starts as NaN, so an element no thread wrote stays NaN, and it is followed
in memory by :data:`GUARD` more NaNs, so a thread that writes past its end shows there. The
simulator reports a thread's out-of-bounds read as an ``IndexError`` naming the thread;
:func:`index_error_hint` turns that into advice.
"""

from __future__ import annotations

import re

import torch

from .._bootstrap import simulating
from ..cuda_bridge import kernel_device, launch, launch_config
from . import StubError

#: Extra NaN elements after the written array: a thread that writes past its end shows there.
GUARD = 256


def raised_not_implemented(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, wraps or was caused by a ``NotImplementedError`` (a stub kernel).

    The simulator re-raises a kernel's exception with the thread's index in the message;
    other versions or wrappers may chain it instead, so follow the chain too.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NotImplementedError) or "NotImplementedError" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def stub_error(name: str, exc: BaseException) -> StubError:
    """The failure for a kernel that still raises ``NotImplementedError``."""
    detail = str(exc).strip()
    return StubError(
        f"{name} still raises NotImplementedError: replace the stub's body with your "
        "implementation, then run this cell again"
        + (f"\n(what was raised: {type(exc).__name__}: {detail})" if detail else "")
    )


def require_cuda_kernel(kernel, default_name: str) -> str:
    """The kernel's name; a clear failure if it is a plain function rather than a CUDA kernel."""
    name = getattr(kernel, "__name__", default_name)
    if not hasattr(kernel, "__getitem__"):
        raise AssertionError(
            f"{name} is a plain Python function, not a CUDA kernel: decorate it with @cuda.jit "
            "(from numba import cuda) so that it can be launched as kernel[blocks, threads](...)"
        )
    return name


def index_error_hint(message: str, size: int, out_name: str = "out",
                     bounds_hint: str = "skip the taps whose input pixel falls outside the image "
                                        "(zero padding) before reading x") -> str:
    """Which of the two usual causes it is, from the simulator's ``tid=[..] ctaid=[..]``.

    ``bounds_hint`` completes "a thread that owns an element but indexed outside an array
    should ..." for the kernel at hand.
    """
    found = re.search(r"tid=\[(\d+), 0, 0\] ctaid=\[(\d+), 0, 0\]", message)
    if found:
        n = int(found[2]) * launch_config(size)[1] + int(found[1])
        if n >= size:
            return (f"Thread n = {n} has no element ({out_name} has {size}): every thread with "
                    f"n >= {out_name}.size must return at once.")
        return (f"Thread n = {n} owns an element of {out_name} but indexed outside an array: "
                f"{bounds_hint}.")
    return (f"Does every thread with n >= {out_name}.size return at once, and does the kernel "
            f"{bounds_hint}?")


def run_reader_kernel(kernel, name: str, inputs: tuple, out_shape: tuple, scalars: tuple,
                      what: str, out_name: str = "out", size_label: str = "",
                      bounds_hint: str | None = None) -> torch.Tensor:
    """Launch ``kernel(*inputs, out, *scalars)`` with one thread per element of ``out``.

    Returns ``out`` on the CPU (NaN where no thread wrote). Failures inside the kernel become
    clear ``AssertionError``\\ s: a stub's ``NotImplementedError`` a :class:`StubError`, an
    out-of-bounds access a hint, a write past the end of ``out`` the rule that every thread
    must first check its index.
    """
    size = 1
    for n in out_shape:
        size *= n
    device = kernel_device(inputs[0])
    buffer = torch.full((size + GUARD,), float("nan"), dtype=inputs[0].dtype, device=device)
    out = buffer[:size].view(*out_shape)
    hint_kwargs = {} if bounds_hint is None else {"bounds_hint": bounds_hint}
    try:
        launch(kernel, size, *(t.to(device).contiguous() for t in inputs), out, *scalars)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:  # an exception inside the kernel (simulator) or a compile error
        if raised_not_implemented(exc):
            raise stub_error(name, exc) from None
        if isinstance(exc, IndexError):
            raise AssertionError(f"{what}: a thread indexed outside an array ({exc}).\n"
                                 + index_error_hint(str(exc), size, out_name, **hint_kwargs)) from None
        raise AssertionError(f"{what}: the kernel failed with {type(exc).__name__}: {exc}") from None
    buffer = buffer.cpu()
    if not torch.isnan(buffer[size:]).all():
        label = size_label or "its number of elements"
        raise AssertionError(
            f"{what}: threads with n >= {label} = {size} wrote past the end of {out_name}; every "
            f"thread must first check `if n >= {out_name}.size: return`"
        )
    return buffer[:size].view(*out_shape)


def require_every_element_written(out: torch.Tensor, what: str, out_name: str,
                                  axes: tuple[str, str, str, str], sizes: tuple[str, str, str]) -> None:
    """Every element of ``out`` (NaN where no thread wrote, from :func:`run_reader_kernel`) must
    have been written; the message spells out how thread ``n`` finds its element.

    ``axes`` names the four indices of ``out`` (``("b", "o", "y", "x")``) and ``sizes`` the three
    inner sizes (``("Cout", "H", "W")``): Chapter 1's "one thread per output element", written
    out (the book's kernels call :func:`dyncore.cuda_bridge.unravel4` for it).
    """
    missing = torch.isnan(out)
    index = f"({', '.join(axes)})"
    if missing.all():
        # On a GPU a kernel's exception is not reported: a stub just writes nothing.
        raise AssertionError(
            f"{what}: the kernel wrote no element of {out_name} (is it still the stub? does each "
            f"thread compute n = cuda.grid(1) and write {out_name}[{', '.join(axes)}]?)"
        )
    if missing.any():
        (b, c, y, x), (C, H, W) = axes, sizes
        first = tuple(int(i) for i in torch.nonzero(missing)[0])
        raise AssertionError(
            f"{what}: {int(missing.sum())} of {out.numel()} elements of {out_name} were never "
            f"written, the first at {index} = {first}: does each thread n turn into "
            f"{index} with {x} = n % {W}, {y} = (n // {W}) % {H}, {c} = (n // ({W}*{H})) % {C}, "
            f"{b} = n // ({W}*{H}*{C})?"
        )


def where_kernels_run() -> str:
    """``"under the Numba CUDA simulator"`` or ``"on the GPU"``, for a check's success message."""
    return "under the Numba CUDA simulator" if simulating() else "on the GPU"
