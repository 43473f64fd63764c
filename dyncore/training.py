"""The book's training loop: Adam with a one-cycle schedule, one batch per step, a progress bar.

The chapters' experiments differ in their data and loss, not in how they step the optimizer;
:func:`train_steps` is that shared part. The caller gives a function that returns the loss of
step ``i``'s batch (drawing the batch from its own seeded generator, so that runs repeat).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm


def train_steps(model: nn.Module, batch_loss: Callable[[int], torch.Tensor], steps: int, *,
                lr: float, weight_decay: float = 0.0, desc: str = "training", progress: bool = True,
                postfix: Callable[[float], str] | None = None,
                after_backward: Callable[[], None] | None = None, every: int = 25) -> dict:
    """Train ``model`` for ``steps`` steps; returns ``{"losses": [...], "seconds": wall time}``.

    ``batch_loss(i)`` returns the (scalar) loss of step ``i``. Each step zeroes the gradients,
    calls ``loss.backward()``, then ``after_backward()`` if given (e.g. to record the gradient
    norm), then ``Adam.step()`` -- skipped when the loss is not finite, so that one bad batch
    does not turn every weight into NaN -- and the one-cycle schedule's step (peak ``lr``).
    Every ``every`` steps the bar shows ``postfix(mean loss of those steps)``
    (default ``loss=...``).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, leave=False, disable=not progress)
    for step in bar:
        loss = batch_loss(step)
        opt.zero_grad()
        loss.backward()
        if after_backward is not None:
            after_backward()
        value = loss.item()
        if math.isfinite(value):
            opt.step()
        sched.step()
        losses.append(value)
        if len(losses) % every == 0:
            mean = sum(losses[-every:]) / every
            bar.set_postfix_str(postfix(mean) if postfix is not None else f"loss={mean:.3f}")
    return {"losses": losses, "seconds": time.perf_counter() - start}
