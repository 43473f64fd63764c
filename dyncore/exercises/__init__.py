"""Automatic checks for the book's exercises (one module per chapter: ``ch01``, ``ch02``, ...).

An exercise notebook (``exercises/NN_name.md``) gives a stub per exercise that raises
``NotImplementedError``, and a cell that calls the chapter's check on it. A check runs the
reader's function on inputs of its choosing and compares with the package's reference; it
raises an ``AssertionError`` that says what is wrong (never just prints). Each chapter
module lists its checks in ``CHECKS`` (exercise function name -> check), which the tests use
to prove every check passes on the reference solution (``exercises/solutions/NN_name.py``)
and fails on the stub.
"""

from __future__ import annotations

import torch


class StubError(AssertionError):
    """The reader's function is still the stub.

    In a notebook it shows as one line, ``StubError: <what to do>``, with no traceback: the
    frames would only point into the checks (and, in the HTML book, at the folders of the
    machine that built it). IPython shows an exception through its ``_render_traceback_``
    method when it has one.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def shape_str(t) -> str:
    """``"(2, 3, 5, 5)"``: a tensor's shape, as the checks' messages print it."""
    return str(tuple(t.shape))


def call(fn, *args, name: str | None = None, **kwargs):
    """Call the reader's function; a stub's ``NotImplementedError`` becomes a clear failure."""
    label = name or getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise StubError(
            f"{label} still raises NotImplementedError{detail}: replace the stub's body with "
            "your implementation, then run this cell again"
        ) from None


def reject_planted_bug(got, planted, expected, what: str, *, reference: str = "the reference",
                       clue: str = "") -> None:
    """A find-the-bug exercise's stub is the broken code itself: while the reader's result ``got``
    is still the planted bug's result ``planted`` (and that one is wrong), the exercise is not yet
    done, which is a :class:`StubError` and not a wrong answer. Tensors or arrays; NaN equals NaN
    (a kernel that leaves part of ``out`` unwritten). ``clue`` ends the message."""
    if got is None or getattr(got, "shape", None) != getattr(expected, "shape", None):
        return
    got, planted, expected = (torch.as_tensor(a) for a in (got, planted, expected))
    if torch.allclose(got, planted, equal_nan=True) and not torch.allclose(planted, expected, equal_nan=True):
        error = (got - expected).abs().nan_to_num(nan=float("inf")).max()
        raise StubError(f"{what} still computes what the broken version computed: the planted mistake "
                        f"is still there (it differs from {reference} by up to {error:.3g}). "
                        f"{clue or 'Find the one wrong line and fix it.'}")


def expect_close(actual, expected, what: str, rtol: float = 1e-6, atol: float = 1e-8,
                 shape_hint: str = "") -> None:
    """``actual`` must match ``expected`` (tensors or numbers); the message says where not.

    ``shape_hint`` is appended to the message when the shapes differ (e.g. the formula for the
    output size), since a wrong shape usually means a wrong formula rather than a slip.
    """
    if actual is None:
        raise AssertionError(f"{what} returned None: did you forget to `return` the result?")
    hint = f" {shape_hint}" if shape_hint else ""
    shape = getattr(actual, "shape", None)
    if shape is not None and tuple(shape) != tuple(torch.as_tensor(expected).shape):
        raise AssertionError(
            f"{what}: expected shape {tuple(torch.as_tensor(expected).shape)}, got {tuple(shape)}.{hint}")
    if not isinstance(actual, torch.Tensor):
        try:
            actual = torch.as_tensor(actual, dtype=expected.dtype if isinstance(expected, torch.Tensor) else None)
        except Exception:
            raise AssertionError(f"{what}: expected a tensor or array, got {type(actual).__name__}") from None
    expected = torch.as_tensor(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}.{hint}")
    try:
        torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        raise AssertionError(f"{what} is wrong:\n{exc}") from None


def passed(message: str) -> None:
    """What a check prints when it passes (it returns nothing, so Jupyter shows it once)."""
    print(f"Correct: {message}")
