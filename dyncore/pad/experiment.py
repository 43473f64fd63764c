"""The chapter's small segmentation experiment: models, training loop, metrics.

Every model is the same network with a different *body*:

    stem (two 3 x 3 convolutions, ReLU)  ->  body (three layers)  ->  1 x 1 classifier

* ``("fixed", d)``: three ordinary 3 x 3 convolutions with dilation ``d`` (:class:`FixedDilationStack`);
* ``("pad", dilations, aggregation)``: three :class:`~dyncore.pad.PADConv2d` layers
  (:class:`~dyncore.pad.PADStack`) that choose among ``dilations`` at every pixel.

The convolutions have the same weights in both, so a PAD model has exactly the parameters of a
fixed one plus its hidden-prior branch (:func:`~dyncore.pad.modules.prior_branch_parameters`).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..training import train_steps
from ..utils import count_parameters  # noqa: F401  (the chapter calls it from here)
from .data import StripeData
from .modules import PADStack, dilation_variance, expected_dilation


class FixedDilationStack(nn.Module):
    """``depth`` 3 x 3 convolutions ``channels -> channels`` with one dilation, each with a ReLU."""

    def __init__(self, channels: int, depth: int = 3, dilation: int = 1, kernel_size: int = 3):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.dilation = dilation
        self.layers = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size, padding=pad, dilation=dilation)
                                    for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


def make_segmenter(body: tuple, channels: int = 8, in_channels: int = 1, num_classes: int = 2,
                   depth: int = 3, tau: float = 1.0, backend: str = "auto") -> nn.Sequential:
    """``body`` is ``("fixed", d)`` or ``("pad", dilations, aggregation)``."""
    if body[0] == "fixed":
        middle = FixedDilationStack(channels, depth, body[1])
    elif body[0] == "pad":
        middle = PADStack(channels, depth, dilations=body[1], aggregation=body[2], tau=tau, backend=backend)
    else:
        raise ValueError(f"body must be ('fixed', d) or ('pad', dilations, aggregation); got {body!r}")
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        middle,
        nn.Conv2d(channels, num_classes, 1))


def body_of(model: nn.Sequential) -> nn.Module:
    return model[4]


def train_segmenter(model: nn.Module, data: StripeData, steps: int, batch_size: int = 16,
                    lr: float = 1e-2, seed: int = 0, desc: str = "training") -> dict:
    """Adam with a one-cycle schedule on random batches (seeded); returns the loss per step and
    the seconds it took."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device

    def batch_loss(step):
        idx = torch.randint(0, len(data.images), (batch_size,), generator=gen)
        return F.cross_entropy(model(data.images[idx].to(device)), data.labels[idx].to(device))

    return train_steps(model, batch_loss, steps, lr=lr, desc=desc)


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, data: StripeData, batch_size: int = 128) -> dict:
    """Eval mode (no Gumbel noise): mean IoU over the classes, pixel accuracy, accuracy per zone,
    and for a PAD body the expected dilation per layer and zone and the mean variance of the
    sampled dilation (Table 1's sigma^2)."""
    model.eval()
    device = next(model.parameters()).device
    preds, stats = [], {"priors": []}
    body = body_of(model)
    for start in range(0, len(data.images), batch_size):
        preds.append(model(data.images[start:start + batch_size].to(device)).argmax(1).cpu())
        if isinstance(body, PADStack):
            stats["priors"].append([h.cpu() for h in body.priors()])
    pred = torch.cat(preds)
    correct = (pred == data.labels).float()
    ious = []
    for c in range(int(data.labels.max()) + 1):
        inter = ((pred == c) & (data.labels == c)).sum().item()
        union = ((pred == c) | (data.labels == c)).sum().item()
        ious.append(inter / union)
    result = {"miou": sum(ious) / len(ious), "accuracy": correct.mean().item(),
              "zone_accuracy": [correct[data.zones == z].mean().item() for z in range(2)]}
    if isinstance(body, PADStack):
        priors = [torch.cat([batch[layer] for batch in stats["priors"]])
                  for layer in range(len(body.layers))]
        dil = body.dilations
        result["expected_dilation"] = [expected_dilation(torch.softmax(h, 1), dil) for h in priors]
        result["dilation_by_zone"] = [[e[data.zones == z].mean().item() for z in range(2)]
                                      for e in result["expected_dilation"]]
        result["variance"] = torch.stack([dilation_variance(h, dil).mean() for h in priors]).mean().item()
        result["priors"] = priors
    return result
