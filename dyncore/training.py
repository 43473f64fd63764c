"""The book's training loop: Adam (or another optimizer) with a one-cycle schedule, one batch per
step, a progress bar.

The chapters' experiments differ in their data, loss and optimizer, not in how they step it;
:func:`train_steps` is that shared part. The caller gives a function that returns the loss of
step ``i``'s batch (drawing the batch from its own seeded generator, so that runs repeat), and
may give the optimizer (Chapter 4 trains with AdamW) and the warm-up fraction of the schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


def train_steps(model: nn.Module, batch_loss: Callable[[int], torch.Tensor], steps: int, *,
                lr: float, weight_decay: float = 0.0, desc: str = "training", progress: bool = True,
                postfix: Callable[[float], str] | None = None,
                after_backward: Callable[[], None] | None = None, every: int = 25,
                optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                pct_start: float = 0.3, schedule: Callable | None = None,
                stop_when_diverged: bool = False) -> dict:
    """Train ``model`` for ``steps`` steps; returns ``{"losses": [...], "seconds": wall time}``.

    ``batch_loss(i)`` returns the (scalar) loss of step ``i``. Each step zeroes the gradients,
    calls ``loss.backward()``, then ``after_backward()`` if given (e.g. to record the gradient
    norm), then the optimizer's step -- skipped when the loss is not finite, so that one bad
    batch does not turn every weight into NaN -- and the one-cycle schedule's step (peak ``lr``,
    warm-up over the first ``pct_start`` of the steps). Every ``every`` steps the bar shows
    ``postfix(mean loss of those steps)`` (default ``loss=...``).

    ``optimizer(parameters)`` builds the optimizer (e.g.
    ``lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=1e-4)``); by default it is
    ``torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)``. ``schedule(optimizer,
    steps)`` replaces the one-cycle schedule (Chapter 3 uses cosine annealing). With
    ``stop_when_diverged=True`` a non-finite loss ends the run before its backward pass: the run
    diverged, and the rest of its loss curve is ``nan``. The model is left in training mode.
    """
    if optimizer is None:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = optimizer(model.parameters())
    if schedule is None:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                    pct_start=pct_start)
    else:
        sched = schedule(opt, steps)
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, leave=False, disable=not progress)
    for step in bar:
        loss = batch_loss(step)
        if stop_when_diverged and not torch.isfinite(loss):
            losses += [float("nan")] * (steps - len(losses))
            break
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
