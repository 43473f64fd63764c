"""Train one of the book's models on one process or several: ``python -m dyncore.train``.

The same command runs alone or data-parallel under ``torchrun``::

    python -m dyncore.train --layer DDF --steps 200 --out ddf.pt
    torchrun --standalone --nproc_per_node=2 -m dyncore.train --layer DDF --steps 200 --out ddf.pt

The model is Chapter 7's network (stem, one dynamic layer, head; :func:`dyncore.experiments.ch07.make_model`)
on Chapter 5's stripes, trained by the book's one training loop (:func:`dyncore.training.train_steps`).
Under ``torchrun`` each of the ``N`` processes builds the same model from the same seed, draws the
same global batch of ``--batch-size`` images and trains on its ``1/N`` of it, wrapped in
``torch.nn.parallel.DistributedDataParallel``: after every backward pass the gradients are
averaged across the processes (``gloo`` on CPUs, ``nccl`` on GPUs), so every process takes the
same optimizer step as one process would on the whole batch. The recorded loss of a step is the
mean of the processes' losses, that is the loss of the whole batch.

Choose a layer without BatchNorm and without sampling noise for an exact comparison with one
process: BatchNorm's batch statistics differ per process (CPUs have no SyncBatchNorm) and
PAD's Gumbel noise is drawn per process. DDF (the default), DFN and the plain convolution
qualify.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["main", "train"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_layer() -> str:
    """DDF's layer: no BatchNorm, no sampling noise (see the module docstring)."""
    from .ddf import ddf
    from .opspec import all_specs

    return next(s.layer.name for s in all_specs() if s.function is ddf)


def train(layer: str | None = None, steps: int = 50, batch_size: int = 16, lr: float = 3e-3, channels: int = 8,
          seed: int = 0, train_size: int = 256, dtype: torch.dtype = torch.float32, backend: str = "auto",
          progress: bool = True) -> dict:
    """Train on this process, or on its share of the batch when ``torch.distributed`` is
    initialized; returns ``{"model": the (unwrapped) model, "losses": the whole batch's loss per step}``."""
    from .experiments.ch07 import make_model, make_task
    from .training import train_steps
    from .validation import check_positive_int

    layer = default_layer() if layer is None else layer
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if batch_size % world:
        raise ValueError(f"batch_size must be a multiple of the number of processes ({world}); got {batch_size}")
    device = torch.device("cuda", torch.cuda.current_device()) if (
        dist.is_initialized() and dist.get_backend() == "nccl") else torch.device("cpu")
    model = make_model(layer, channels, backend=backend, seed=seed).to(device=device, dtype=dtype)
    data, _ = make_task(train=train_size, test=1)
    images, labels = data.images.to(device=device, dtype=dtype), data.labels.to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    gen = torch.Generator().manual_seed(seed + 1)
    share = batch_size // world

    def batch_loss(step):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)  # the same on every process
        mine = idx[rank * share:(rank + 1) * share].to(device)
        return F.cross_entropy(net(images[mine]), labels[mine])

    history = train_steps(net, batch_loss, steps, lr=lr, progress=progress and rank == 0,
                          desc=f"{layer} on {world} process{'es' if world > 1 else ''}")
    losses = torch.tensor(history["losses"], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(losses)
        losses /= world
    return {"model": model, "losses": losses.cpu().tolist()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyncore.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", default=None, help="the dynamic layer in the network's slot (default: DDF's)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16, help="the global batch, split across processes")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=256)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--backend", default="auto", help="the layer's operator backend (default auto)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    p.add_argument("--out", default=None, help="write the parameters and losses here (.pt), from rank 0; "
                   "a path with {rank} in it is written by every process, each with its rank")
    args = p.parse_args(argv)

    import dyncore  # noqa: F401  first: it selects the CUDA simulator before Numba is imported
    from .utils import num_threads

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        use_nccl = torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_nccl else "gloo")
    try:
        with num_threads(args.threads):
            result = train(args.layer, args.steps, args.batch_size, args.lr, args.channels, args.seed,
                           args.train_size, DTYPES[args.dtype], args.backend)
        rank = dist.get_rank() if distributed else 0
        if rank == 0:
            print(f"{args.layer or default_layer()}: {args.steps} steps, loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}")
        every_rank = args.out is not None and "{rank}" in args.out
        if args.out and (rank == 0 or every_rank):
            state = {k: v.cpu() for k, v in result["model"].state_dict().items()}
            torch.save({"state_dict": state, "losses": result["losses"], "rank": rank,
                        "world_size": dist.get_world_size() if distributed else 1},
                       args.out.replace("{rank}", str(rank)) if every_rank else args.out)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
