"""Measurements shared by the chapters' experiments."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou", "mean_cross_entropy"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted class."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have one shape; got {tuple(pred.shape)} and {tuple(target.shape)}")
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor, absent: float = 1.0) -> torch.Tensor:
    """Intersection over union, ``TP / (TP + FP + FN)``, of each class from a confusion matrix.

    A class that is neither present nor predicted gets ``absent`` instead of 0/0: 1 by default
    (nothing to get wrong), or ``float("nan")`` to leave it out of a ``nanmean``."""
    confusion = confusion.double()
    inter = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, absent))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Mean over classes of the intersection over union of ``pred`` and ``target`` (class ids)."""
    if num_classes is None:
        num_classes = int(max(pred.max(), target.max())) + 1 if target.numel() else 1
    return iou_per_class(confusion_matrix(pred, target, num_classes)).mean().item()


@torch.no_grad()
def mean_cross_entropy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       batch_size: int = 128) -> float:
    """Mean cross-entropy of ``model`` (as it is: the caller sets eval mode) over every label of
    ``labels``: one per image for a classifier, one per pixel for a segmenter. Batches of
    ``batch_size`` images, summed in order."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have one length; got {len(images)} and {len(labels)}")
    total = 0.0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        total += F.cross_entropy(logits, labels[start:start + batch_size], reduction="sum").item()
    return total / labels.numel()
