"""The small segmentation experiments of Chapter 4: a backbone, training and the metrics.

* :class:`SmallBackbone` -- four 3x3 conv-BN-ReLU layers, output stride 2 (the paper's
  ResNet has output stride 8; our images are 80 pixels, not 512);
* :class:`Segmenter` -- backbone, a head (``DMHead``, ``ASPPHead``, ...), bilinear upsampling
  of the logits to the image size (as the paper does);
* :func:`train_segmenter` -- seeded Adam + one-cycle schedule with a ``tqdm.auto`` bar;
* :func:`evaluate` -- confusion matrix, IoU per class and mIoU (Sec. 4.1 of the paper), and
  IoU per object-size group (:func:`object_iou`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..utils import set_seed
from .data import CLASSES, SIZE_GROUPS, SegmentationSet
from .heads import conv_bn_relu


class SmallBackbone(nn.Sequential):
    """``(B, 3, S, S) -> (B, width, S/2, S/2)``; receptive field 17 pixels."""

    def __init__(self, width=32, in_channels=3):
        super().__init__(
            conv_bn_relu(in_channels, width // 2, 3),
            nn.Sequential(nn.Conv2d(width // 2, width, 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(width), nn.ReLU(inplace=True)),
            conv_bn_relu(width, width, 3),
            conv_bn_relu(width, width, 3, dilation=2),
        )
        self.out_channels = width


class Segmenter(nn.Module):
    """``head(backbone(x))``, upsampled bilinearly by ``scale``: ``(B, classes, S, S)``.

    With ``backbone=None`` the input is already the backbone's features (a frozen backbone
    whose features were computed once, :func:`extract_features`).
    """

    def __init__(self, backbone, head, scale=2):
        super().__init__()
        self.backbone, self.head, self.scale = backbone, head, scale

    def forward(self, x):
        features = x if self.backbone is None else self.backbone(x)
        logits = self.head(features)
        return F.interpolate(logits, scale_factor=self.scale, mode="bilinear", align_corners=False)


@torch.no_grad()
def extract_features(backbone, images, batch_size=128):
    """The (frozen, eval-mode) backbone's features of ``images``, computed once."""
    backbone.eval()
    return torch.cat([backbone(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@dataclass
class History:
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def train_segmenter(model, inputs, labels, *, epochs=8, batch_size=16, lr=4e-3, seed=0,
                    desc="training", progress=True) -> History:
    """Train ``model`` with pixel-wise cross-entropy on ``(inputs, labels)`` (images or cached
    features, and ``(N, S, S)`` classes); seeded (the model's initialisation is the caller's)."""
    set_seed(seed)
    steps_per_epoch = max(1, len(inputs) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    history = History()
    t0 = time.perf_counter()
    model.train()
    with tqdm(total=epochs * steps_per_epoch, desc=desc, leave=False, disable=not progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=gen)[: steps_per_epoch * batch_size]
            for idx in order.split(batch_size):
                loss = F.cross_entropy(model(inputs[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                history.losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{np.mean(history.losses[-10:]):.3f}")
    history.seconds = time.perf_counter() - t0
    model.eval()
    return history


@torch.no_grad()
def predict(model, images, batch_size=64):
    """Class of every pixel, ``(N, S, S)`` int64, in eval mode."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def confusion_matrix(pred, labels, num_classes=len(CLASSES)):
    """``M[true, predicted]`` pixel counts."""
    index = labels.flatten() * num_classes + pred.flatten()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(confusion):
    """``TP / (TP + FP + FN)`` per class (NaN for a class absent from both)."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return tp / union


def object_iou(pred, data: SegmentationSet, margin=3):
    """IoU of every object with the prediction of its class around it, ``(M,)`` float64.

    For object ``m`` of class ``c`` with mask ``M``: ``P`` = pixels predicted ``c`` inside the
    object's bounding box grown by ``margin`` pixels, leaving out the pixels of other objects;
    the IoU is ``|P & M| / |P | M|``. So a small object that is missed (or labelled with another
    class) scores 0, and one predicted as a blob twice its size scores about 0.5.
    """
    ious = torch.empty(len(data.objects), dtype=torch.float64)
    S = pred.shape[-1]
    for n, (img, ident, cls, _, _) in enumerate(data.objects.tolist()):
        mask = data.instances[img] == ident
        ys, xs = torch.nonzero(mask, as_tuple=True)
        y0, y1 = max(0, int(ys.min()) - margin), min(S, int(ys.max()) + margin + 1)
        x0, x1 = max(0, int(xs.min()) - margin), min(S, int(xs.max()) + margin + 1)
        window = (slice(y0, y1), slice(x0, x1))
        m = mask[window]
        free = (data.instances[img][window] == 0) | m
        p = (pred[img][window] == cls) & free
        ious[n] = (p & m).sum() / (p | m).sum()
    return ious


@dataclass
class Scores:
    miou: float
    class_iou: list
    size_iou: dict  # size group name -> mean object IoU
    confusion: torch.Tensor


def evaluate(model, data: SegmentationSet, inputs=None) -> Scores:
    """mIoU over all classes (background included, as for PASCAL VOC), IoU per size group.

    ``inputs``: what the model reads (default ``data.images``; cached features for a head).
    """
    pred = predict(model, data.images if inputs is None else inputs)
    confusion = confusion_matrix(pred, data.labels)
    per_class = iou_per_class(confusion)
    ious = object_iou(pred, data)
    size_iou = {name: float(ious[data.objects[:, 4] == g].mean()) for g, (name, _, _) in enumerate(SIZE_GROUPS)}
    return Scores(float(per_class.nanmean()), per_class.tolist(), size_iou, confusion)
