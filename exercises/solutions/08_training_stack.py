"""Reference solutions to the exercises of Chapter 8, the layers in a training stack
(``exercises/08_training_stack_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch08.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Exercise 1: bfloat16's rounding error
# ---------------------------------------------------------------------------------------------

def bf16_error_bound(x):
    """Half the spacing of bfloat16's numbers in the binade of ``x``.

    bfloat16 keeps 8 significant bits (an implicit leading 1 and 7 stored bits). Between
    ``2**e`` and ``2**(e+1)`` its numbers are ``2**(e-7)`` apart, and rounding to the nearest
    one moves ``x`` by at most half of that, ``2**(e-8)``. ``torch.frexp`` writes
    ``|x| = m * 2**f`` with ``0.5 <= m < 1``, so ``e = f - 1`` exactly (``log2`` in float32
    would round a value just below a power of two up to the power).
    """
    _, f = torch.frexp(x.to(torch.float64))
    return torch.ldexp(torch.ones_like(x, dtype=torch.float64), f - 1 - 8)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the fake implementation
# ---------------------------------------------------------------------------------------------

def ddf_fake(x, spatial, channel, kernel_size, dilation, stride):
    """The output has ``ceil(H / stride) = (H - 1) // stride + 1`` rows (output row ``yo`` is
    centred on input row ``yo * stride``, for every ``yo * stride <= H - 1``), not
    ``H // stride``, which loses a row when ``H`` is odd and the stride 2; the same for the
    columns. ``new_empty`` keeps ``x``'s dtype and device."""
    B, C, H, W = x.shape
    return x.new_empty(B, C, (H - 1) // stride + 1, (W - 1) // stride + 1)


# ---------------------------------------------------------------------------------------------
# Exercise 3: data-parallel gradients in one process
# ---------------------------------------------------------------------------------------------

def data_parallel_gradients(model, images, labels, world):
    """Each "process" ``r`` takes the ``r``-th of ``world`` equal shards, computes its mean loss
    and its gradient; the all-reduce sums the gradients and divides by ``world``."""
    share = len(images) // world
    total = [torch.zeros_like(p) for p in model.parameters()]
    for r in range(world):
        model.zero_grad()
        shard = slice(r * share, (r + 1) * share)
        F.cross_entropy(model(images[shard]), labels[shard]).backward()
        for t, p in zip(total, model.parameters()):
            t += p.grad
    return [t / world for t in total]
