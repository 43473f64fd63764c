"""Measurements shared by the chapters' experiments."""

from __future__ import annotations

import torch

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]


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
