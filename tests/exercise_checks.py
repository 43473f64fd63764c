"""What the exercise tests assert again and again, written once.

``test_exercises.py`` runs every check on its reference solution and on the notebook's stub;
each ``test_exercises_chNN.py`` feeds a chapter's checks wrong answers written on purpose and
asserts what the message says. The assertions they share live here, with the loading of a
notebook's stubs, so that a chapter's test file holds only its wrong answers and their messages.
"""

import functools
import sys
from pathlib import Path

import jupytext
import pytest
from numba import cuda

from dyncore._bootstrap import simulating
from dyncore.cuda_bridge import unravel4
from dyncore.exercises import StubError

ROOT = Path(__file__).resolve().parents[1]

#: What a check says of a function that still raises ``NotImplementedError``.
STUB = "still raises NotImplementedError"
#: What a check says of a find-the-bug function that still computes what the broken one did.
PLANTED = "the planted mistake is still there"


@functools.cache
def load_stubs(notebook: Path) -> dict:
    """The names a notebook's code cells define (the cells tagged ``raises-exception``, which
    call the checks on the stubs, are not run; nor are ``%`` and ``!`` lines)."""
    namespace: dict = {}
    for cell in jupytext.read(notebook).cells:
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, f"{notebook.name} cell", "exec"), namespace)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # the notebook's pictures: figures stay open until closed
        pyplot.close("all")
    return namespace


def notebook_stubs(stem: str) -> dict:
    """The stubs of ``exercises/<stem>_exercises.md`` (``stem="02_dynamic_filters"``)."""
    return load_stubs(ROOT / "exercises" / f"{stem}_exercises.md")


def rejects(check, wrong, match: str | None = None) -> None:
    """``check(wrong)`` raises an ``AssertionError`` whose message ``re.search``-matches ``match``,
    and calls ``wrong`` wrong, not unfinished: not a :class:`StubError` (a wrong fix of a planted
    bug is not the planted bug)."""
    with pytest.raises(AssertionError, match=match) as info:
        check(wrong)
    assert not isinstance(info.value, StubError), f"a wrong answer was taken for unfinished work: {info.value}"


def rejects_as_stub(check, stub, match: str | None = STUB) -> None:
    """``check(stub)`` raises a :class:`StubError` (not done yet, rather than wrong) matching ``match``."""
    with pytest.raises(StubError, match=match):
        check(stub)


def owned_element(*, guard=True, whole_batch=True, writes=True):
    """A CUDA device function ``element(n, shape)``: the index ``(b, c, y, x)`` of the element of a
    ``(B, C, H, W)`` array that thread ``n`` writes, with b = -1 for a thread that must return at
    once; and the mistakes :func:`wrong_kernels` switches on, compiled in as constants: no guard
    (threads past the end go on, with b >= B), a guard that counts image 0 only, or no thread
    writing at all (what a stub does on a real GPU, where its exception is not reported)."""

    @cuda.jit(device=True)
    def element(n, shape):
        B, C, H, W = shape
        if not writes or (guard and n >= (B if whole_batch else 1) * C * H * W):
            return -1, 0, 0, 0
        return unravel4(n, shape)

    return element


def wrong_kernels(kernel, solution, out: str, skip: str, never_written: str) -> dict:
    """The wrong CUDA kernels every kernel exercise's check must name, ``{id: (kernel, match)}``.

    ``kernel(**switches)`` builds the exercise's kernel with one mistake switched on (``guard``,
    ``whole_batch`` and ``writes`` as in :func:`owned_element`, and ``zero_padding``);
    ``solution`` is the reference kernel (its ``py_func`` must be refused as not a kernel);
    ``out`` names the array the kernel writes,
    ``skip`` ends the check's advice "skip the taps ...", and ``never_written`` is what the check
    says of a kernel that computes image 0 only. The simulator stops a thread at its first index
    out of bounds; on a GPU stray threads write past the end of ``out``, into the check's NaN
    guard, and reads outside the image give wrong values.
    """
    sim = simulating()
    return {
        "without-guard": (kernel(guard=False), rf"Thread n = 3[01] has no element \({out} has 30\): every "
                          rf"thread with n >= {out}\.size must return at once" if sim
                          else rf"wrote past the end of {out}.*n >= {out}\.size"),
        "without-zero-padding": (kernel(zero_padding=False), rf"Thread n = \d+ owns an element of {out} but "
                                 rf"indexed outside an array: skip the taps {skip}" if sim else r"is wrong"),
        "forgets-the-batch": (kernel(whole_batch=False), never_written),
        "writes-nothing": (kernel(writes=False), f"wrote no element of {out}"),
        "not-a-cuda-kernel": (solution.py_func, r"plain Python function, not a CUDA kernel: decorate it "
                              r"with @cuda\.jit"),
    }


def find_the_bug_test(check, planted, wrong_fixes: dict, unfinished: str = PLANTED):
    """The test of a find-the-bug exercise's ``check``, to bind to a ``test_...`` name in a test
    module: the broken function as the notebook gives it (``planted``, the check's copy of it)
    counts as not yet done, a :class:`StubError` whose message matches ``unfinished``, and each
    wrong fix in ``wrong_fixes`` (``{id: (function, what the message must say, or None)}``) as
    a wrong answer, not as unfinished work."""
    cases = {"planted": (planted, unfinished), **wrong_fixes}

    @pytest.mark.parametrize("fix,match", cases.values(), ids=cases)
    def test(fix, match):
        if fix is planted:
            rejects_as_stub(check, fix, match)
        else:
            rejects(check, fix, match)

    return test


def switched(function, **mistake):
    """``function`` with a mistake switched on: ``switched(f, flip=True)(*args)`` is ``f(*args, flip=True)``."""
    return lambda *args, **kwargs: function(*args, **kwargs, **mistake)
