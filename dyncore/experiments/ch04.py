"""Chapter 4's experiments: a generated multi-scale segmentation set, a small backbone, the
segmentation model, its training and its metrics.

**Data** (no downloads, seeded).

Each ``size x size`` colour image shows objects of four classes on a textured background:

    class 1 "striped disc"   class 2 "striped square"   class 3 "checked disc"   class 4 "checked square"

so that a class is told apart from the others by its **shape** (disc or square) *and* its
**texture** (stripes or checks); neither cue alone is enough. Both textures have the same
period (:data:`PERIOD` pixels) at every object size, and random orientation; colours are
random per image and per object, so colour says nothing about the class. The background is
smooth coloured blotches plus a fine grain.

Objects come in three size groups (:data:`SIZE_GROUPS`, side in pixels): ``small`` (4-6),
``medium`` (10-16) and ``large`` (36-48), so the large ones are about 8x the small ones. The
large objects are the hard case for a small receptive field: inside a 40-pixel striped object
every 15-pixel window looks the same whether it is a disc or a square; only the outline, far
away, says which. The small ones are the hard case for a coarse one.

:func:`make_dataset` returns a :class:`SegmentationSet` with the images, the class of every
pixel, and an instance map with a table of objects, for IoU per size group.

**Experiments.**

* :class:`SmallBackbone` -- four 3x3 conv-BN-ReLU layers, output stride 2 (the paper's
  ResNet has output stride 8; our images are 80 pixels, not 512);
* :class:`Segmenter` -- backbone, a head (``DMHead``, ``ASPPHead``, ...), bilinear upsampling
  of the logits to the image size (as the paper does);
* :func:`train_segmenter` -- seeded AdamW + one-cycle schedule, by
  :func:`dyncore.training.train_steps`;
* :func:`evaluate` -- confusion matrix, IoU per class and mIoU (Sec. 4.1 of the paper, with
  :mod:`dyncore.experiments.metrics`), and IoU per object-size group (:func:`object_iou`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..dmnet.modules import conv_bn_relu
from ..training import train_steps
from ..utils import set_seed
from .metrics import confusion_matrix, iou_per_class

__all__ = ["CLASSES", "SIZE_GROUPS", "PERIOD", "SegmentationSet", "make_image", "make_dataset",
           "CLASS_COLOURS", "colour_labels", "to_rgb", "SmallBackbone", "Segmenter",
           "extract_features", "History", "train_segmenter", "predict", "object_iou", "Scores",
           "evaluate"]


CLASSES = ("background", "striped disc", "striped square", "checked disc", "checked square")
#: (name, smallest side, largest side) in pixels, both included.
SIZE_GROUPS = (("small", 4, 6), ("medium", 10, 16), ("large", 36, 48))
#: Period of both textures, in pixels (stripes: one dark and one light band; checks: 2x2 cells).
PERIOD = 4


@dataclass
class SegmentationSet:
    """``images: (N, 3, S, S)`` float32, ``labels: (N, S, S)`` int64 class per pixel,
    ``instances: (N, S, S)`` int64 object id per pixel (0 = background, ids from 1 per image),
    ``objects: (M, 5)`` int64 rows ``(image, id, class, side, group)``, ``group`` indexing
    :data:`SIZE_GROUPS`."""

    images: torch.Tensor
    labels: torch.Tensor
    instances: torch.Tensor
    objects: torch.Tensor

    def __len__(self):
        return self.images.shape[0]

    def subset(self, index):
        """The images at ``index`` (a slice or an index tensor), with their objects renumbered."""
        idx = torch.arange(len(self))[index]
        keep = torch.isin(self.objects[:, 0], idx)
        objects = self.objects[keep].clone()
        new_pos = torch.full((len(self),), -1, dtype=torch.int64)
        new_pos[idx] = torch.arange(len(idx))
        objects[:, 0] = new_pos[objects[:, 0]]
        return SegmentationSet(self.images[idx], self.labels[idx], self.instances[idx], objects)


def _blotches(rng, size, scale):
    """Smooth noise: white noise low-passed in Fourier space to features of about ``scale`` px."""
    noise = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size)
    radius2 = f[:, None] ** 2 + f[None, :] ** 2
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-radius2 * (np.pi * scale) ** 2)))
    return smooth / (smooth.std() + 1e-12)


def _draw_object(rng, image, labels, instances, cls, side, cy, cx, ident):
    """Paint one object of class ``cls`` and side ``side`` centred on ``(cy, cx)``."""
    size = image.shape[1]
    half = side / 2
    y0, y1 = max(0, int(np.floor(cy - half)) - 1), min(size, int(np.ceil(cy + half)) + 2)
    x0, x1 = max(0, int(np.floor(cx - half)) - 1), min(size, int(np.ceil(cx + half)) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx  # pixel centres relative to the object's centre
    disc = cls in (1, 3)
    if disc:
        inside = dy ** 2 + dx ** 2 <= half ** 2
    else:  # a square turned by a random angle
        a = rng.uniform(0, np.pi / 2)
        u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
        inside = (np.abs(u) <= half) & (np.abs(v) <= half)
    b = rng.uniform(0, np.pi)  # texture orientation
    u, v = np.cos(b) * xx + np.sin(b) * yy, -np.sin(b) * xx + np.cos(b) * yy
    phase = rng.uniform(0, PERIOD, size=2)
    if cls in (1, 2):  # stripes
        pattern = np.sin(2 * np.pi * (u + phase[0]) / PERIOD) > 0
    else:  # checks
        pattern = np.sin(2 * np.pi * (u + phase[0]) / PERIOD) * np.sin(2 * np.pi * (v + phase[1]) / PERIOD) > 0
    dark, light = rng.uniform(-1.4, -0.6, size=3), rng.uniform(0.6, 1.4, size=3)
    colour = np.where(pattern[None], light[:, None, None], dark[:, None, None])
    region = image[:, y0:y1, x0:x1]
    region[:, inside] = colour[:, inside]
    labels[y0:y1, x0:x1][inside] = cls
    instances[y0:y1, x0:x1][inside] = ident
    return int(inside.sum())


def _place(rng, occupied, side, size, margin):
    """A centre for a ``side``-pixel object that keeps ``margin`` pixels from the others, or None."""
    half = side / 2 * 1.42 + margin  # the bounding circle of a turned square
    for _ in range(60):
        cy, cx = rng.uniform(side / 2, size - side / 2, size=2)
        if all((cy - oy) ** 2 + (cx - ox) ** 2 >= (half + oh) ** 2 for oy, ox, oh in occupied):
            occupied.append((cy, cx, side / 2 * 1.42))
            return cy, cx
    return None


def make_image(rng, size=80, grain=0.25, counts=(5, 2, 1)):
    """One image: ``(3, S, S)`` float32, labels, instances, and its objects ``(id, class, side, group)``.

    ``counts``: how many objects to try to place per size group (large ones first).
    """
    base = rng.uniform(-0.3, 0.3, size=3)
    image = (base[:, None, None] + 0.45 * np.stack([_blotches(rng, size, 8.0) for _ in range(3)])
             + grain * rng.standard_normal((3, size, size)))
    labels = np.zeros((size, size), dtype=np.int64)
    instances = np.zeros((size, size), dtype=np.int64)
    occupied, objects = [], []
    for group in (2, 1, 0):  # large first: they need the most room
        _, lo, hi = SIZE_GROUPS[group]
        n = counts[group]
        if group == 2:
            n = int(rng.random() < 0.85) * n  # some images have no large object
        for _ in range(n):
            side = int(rng.integers(lo, hi + 1))
            centre = _place(rng, occupied, side, size, margin=2)
            if centre is None:
                continue
            cls = int(rng.integers(1, len(CLASSES)))
            ident = len(objects) + 1
            if _draw_object(rng, image, labels, instances, cls, side, *centre, ident) > 0:
                objects.append((ident, cls, side, group))
    return image.astype(np.float32), labels, instances, objects


def make_dataset(n, size=80, seed=0, grain=0.25):
    """``n`` images of ``size x size`` pixels, reproducible from ``seed``."""
    n = V.check_nonnegative_int("n", n)
    size = V.check_positive_int("size", size)
    if size < SIZE_GROUPS[-1][2] + 8:
        raise ValueError(f"size must be at least {SIZE_GROUPS[-1][2] + 8} pixels to hold the "
                         f"large objects; got {size}")
    rng = np.random.default_rng(seed)
    images, labels, instances, table = [], [], [], []
    for i in range(n):
        img, lab, inst, objs = make_image(rng, size, grain)
        images.append(img)
        labels.append(lab)
        instances.append(inst)
        table += [(i, *o) for o in objs]
    as_tensor = lambda a, shape: torch.from_numpy(np.stack(a)) if a else torch.zeros(shape)  # noqa: E731
    return SegmentationSet(
        as_tensor(images, (0, 3, size, size)).float(),
        as_tensor(labels, (0, size, size)).long(),
        as_tensor(instances, (0, size, size)).long(),
        torch.tensor(table, dtype=torch.int64).reshape(-1, 5),
    )


#: An RGB colour per class, for pictures of labels (background dark grey).
CLASS_COLOURS = np.array([[0.15, 0.15, 0.15], [0.90, 0.35, 0.20], [0.95, 0.75, 0.20],
                          [0.25, 0.55, 0.95], [0.45, 0.85, 0.45]])


def colour_labels(labels):
    """``(H, W)`` class ids -> ``(H, W, 3)`` RGB in ``[0, 1]`` with :data:`CLASS_COLOURS`."""
    return CLASS_COLOURS[np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)]


def to_rgb(image):
    """``(3, H, W)`` image of the set -> ``(H, W, 3)`` in ``[0, 1]`` for ``imshow``."""
    img = (image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(image)).permute(1, 2, 0)
    return ((img - img.min()) / (img.max() - img.min() + 1e-12)).numpy()


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
    features, and ``(N, S, S)`` classes); seeded (the model's initialisation is the caller's).

    AdamW (weight decay ``1e-4``) with a one-cycle schedule warming up over the first 20% of the
    steps, run by :func:`dyncore.training.train_steps`; each epoch visits the examples in a new
    seeded order. The model is left in eval mode.
    """
    set_seed(seed)
    steps_per_epoch = max(1, len(inputs) // batch_size)
    gen = torch.Generator().manual_seed(seed)
    batches = []

    def batch_loss(step):
        if step % steps_per_epoch == 0:  # a new epoch: a new order of the examples
            order = torch.randperm(len(inputs), generator=gen)[: steps_per_epoch * batch_size]
            batches[:] = order.split(batch_size)
        idx = batches[step % steps_per_epoch]
        return F.cross_entropy(model(inputs[idx]), labels[idx])

    run = train_steps(model, batch_loss, epochs * steps_per_epoch, lr=lr, desc=desc,
                      progress=progress, every=10, pct_start=0.2,
                      optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=1e-4))
    model.eval()
    return History(run["losses"], run["seconds"])


@torch.no_grad()
def predict(model, images, batch_size=64):
    """Class of every pixel, ``(N, S, S)`` int64, in eval mode."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


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
    confusion = confusion_matrix(pred, data.labels, len(CLASSES))
    per_class = iou_per_class(confusion, absent=float("nan"))  # an absent class: left out
    ious = object_iou(pred, data)
    size_iou = {name: float(ious[data.objects[:, 4] == g].mean()) for g, (name, _, _) in enumerate(SIZE_GROUPS)}
    return Scores(float(per_class.nanmean()), per_class.tolist(), size_iou, confusion)
