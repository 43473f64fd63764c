"""The one bridge between PyTorch tensors and Numba CUDA kernels.

Every ``"cuda"`` kernel of the book is launched through :func:`launch`, which

* computes the launch configuration in one place (:func:`launch_config`: a 1-D grid with one
  thread per work item, :data:`THREADS_PER_BLOCK` threads per block);
* on a real GPU passes CUDA tensors to the kernel without copies
  (``numba.cuda.as_cuda_array``) and launches on PyTorch's current stream, so kernels are
  ordered with PyTorch's own work;
* under the Numba CUDA simulator (no GPU) passes numpy views of CPU tensors: the simulator is
  about a thousand times slower on torch tensors than on numpy arrays.

:func:`on_kernel_device` wraps the host-side function of a kernel set so that its tensors are
on the device the kernels run on (contiguous), and its results go back where the inputs were:
asking for ``backend="cuda"`` with CPU tensors on a GPU machine copies them to the GPU and back.

What the kernels share is written once here: :func:`unravel4` (and :func:`unravel3`,
:func:`unravel5`), which turns a thread's index into the element it owns; :data:`tap_at`, the
pixel a tap reads (or the pixel whose tap reads this one), :data:`inside`, whether a pixel lies in
the image, and :data:`valid_range`, the pixels where a tap stays inside it; and
:func:`sum_axis1`, an ordered sum along one axis.
"""

from __future__ import annotations

import functools
import math

import torch
from numba import cuda

from . import geometry
from ._bootstrap import simulating

#: Threads per block on a real GPU: a multiple of the warp size that keeps several blocks
#: resident per multiprocessor for these register-light kernels.
THREADS_PER_BLOCK = 128
#: Under the simulator each thread is a Python thread; small blocks keep memory use low and
#: cost nothing extra, since simulated blocks run one after another anyway.
SIMULATOR_THREADS_PER_BLOCK = 32


def device_function(fn):
    """A CUDA device function (``cuda.jit(device=True)``): compiled into the kernels that call it.

    Under the simulator it stays the plain Python function. The simulator runs kernels as Python
    anyway, and its device-function wrapper (which swaps the module's ``cuda`` for a fake one on
    every call) costs as much as nine array reads: for these helpers, which use no ``cuda.*``
    API, the plain call computes the same thing, and the simulated kernels run faster.
    """
    return fn if simulating() else cuda.jit(device=True)(fn)


@device_function
def unravel4(n, shape):
    """Flat index ``n`` of a contiguous ``(B, C, H, W)`` tensor -> ``(b, c, y, x)``.

    Every kernel of the book runs one thread per element of the tensor it writes; this is how a
    thread finds its element (Chapter 1 writes it out once, "One thread per output element").
    The grid is a whole number of blocks, so the last block may have spare threads: theirs is
    ``n >= B*C*H*W``, which is ``b >= B``, so a kernel tests ``b`` against ``B`` before it writes.
    """
    _, C, H, W = shape
    return n // (C * H * W), (n // (H * W)) % C, (n // W) % H, n % W


#: :func:`dyncore.geometry.valid_range`, the same source compiled for the device: ``[lo, hi)``, the
#: output indices ``o < n_out`` whose input ``o*stride + offset`` lies in ``[0, n_in)``. A kernel
#: that sweeps the pixels a tap reads loops over exactly these, with no test per pixel.
valid_range = device_function(geometry.valid_range.py_func)


#: :func:`dyncore.geometry.tap_at` for the device: the pixel tap ``t`` reads from ``(y, x)``
#: (``sign = 1``), or the pixel whose tap ``t`` reads ``(y, x)`` (``sign = -1``).
tap_at = device_function(geometry.tap_at.py_func)

#: :func:`dyncore.geometry.inside` for the device: does ``(y, x)`` lie in an ``H x W`` image?
inside = device_function(geometry.inside.py_func)


@device_function
def unravel3(n, shape):
    """:func:`unravel4` for a contiguous 3-D tensor ``(B, H, W)`` -> ``(b, y, x)``."""
    _, H, W = shape
    return n // (H * W), (n // W) % H, n % W


@device_function
def unravel5(n, shape):
    """:func:`unravel4` for a contiguous 5-D tensor ``(B, V, M, H, W)`` -> ``(b, v, m, y, x)``."""
    _, V, M, H, W = shape
    return n // (V * M * H * W), (n // (M * H * W)) % V, (n // (H * W)) % M, (n // W) % H, n % W


@cuda.jit(cache=True)
def sum_axis1_kernel(a, out):
    """``out[p, q] = sum_i a[p, i, q]``: a thread per element of ``out``, adding in the order of
    ``i``, so the sum does not depend on scheduling."""
    n = cuda.grid(1)
    p, q = n // out.shape[1], n % out.shape[1]
    if p >= out.shape[0]:  # a spare thread of the last block
        return
    acc = out.dtype.type(0)
    for i in range(a.shape[1]):
        acc += a[p, i, q]
    out[p, q] = acc


def sum_axis1(a: torch.Tensor) -> torch.Tensor:
    """``a.sum(1)`` of a contiguous 3-D tensor ``(P, N, Q)`` on :func:`kernel_device`, by
    :func:`sum_axis1_kernel`: LS-DFN's channel sum and the last stage of DDF's ``dL/dchannel``."""
    out = a.new_empty(a.shape[0], a.shape[2])
    launch(sum_axis1_kernel, out.numel(), a, out)
    return out


def launch_config(n_items: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for a 1-D grid covering ``n_items`` work items."""
    threads = SIMULATOR_THREADS_PER_BLOCK if simulating() else THREADS_PER_BLOCK
    return max(1, math.ceil(n_items / threads)), threads


def kernel_device(like: torch.Tensor) -> torch.device:
    """The device whose memory the kernels read: the GPU, or the CPU under the simulator."""
    if simulating():
        return torch.device("cpu")
    if like.device.type == "cuda":
        return like.device
    return torch.device("cuda", torch.cuda.current_device())


def _as_kernel_array(t: torch.Tensor):
    t = t.detach()
    if simulating():
        return t.numpy()
    return cuda.as_cuda_array(t)


def launch(kernel, n_items: int, *args) -> None:
    """Launch ``kernel`` with one thread per work item (``cuda.grid(1) < n_items``).

    Tensor arguments must already be on :func:`kernel_device` and contiguous (use
    :func:`on_kernel_device`); other arguments (ints, floats) are passed as they are.
    """
    if n_items == 0:
        return
    blocks, threads = launch_config(n_items)
    arrays = [_as_kernel_array(a) if isinstance(a, torch.Tensor) else a for a in args]
    if simulating():
        kernel[blocks, threads](*arrays)
        return
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    with cuda.gpus[device.index]:
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kernel[blocks, threads, stream](*arrays)


def on_kernel_device(fn):
    """Decorator: tensor arguments go to the kernels' device (contiguous), results come back.

    Results (a tensor, or a tuple of tensors and ``None``) are returned on the device of the
    first tensor argument.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = next(a for a in args if isinstance(a, torch.Tensor))
        home, target = first.device, kernel_device(first)

        def move(a):
            return a.to(target).contiguous() if isinstance(a, torch.Tensor) else a

        result = fn(*[move(a) for a in args], **{k: move(v) for k, v in kwargs.items()})
        if home == target:
            return result

        def back(r):
            return r.to(home) if isinstance(r, torch.Tensor) else r

        return tuple(back(r) for r in result) if isinstance(result, tuple) else back(result)

    return wrapper
