"""The chapter's small experiments: a tiny ResNet and its DDF version; DDF-Up-Net for depth.

**Classification** (the paper's Sec. 5, Fig. 4, Tables 3a/3b at small scale).
:class:`TinyResNet` is a stem convolution, three bottleneck blocks (``1 x 1`` reduce,
``3 x 3``, ``1 x 1`` expand, BatchNorm and ReLU, a projection shortcut where the shape
changes), global average pooling and a linear classifier. ``layer`` picks what fills the
``3 x 3`` position of every block (the stem stays a convolution, as in the paper):

* ``"conv"`` -- a standard ``3 x 3`` convolution (the base model);
* ``"dwconv"`` -- a depthwise ``3 x 3`` convolution;
* ``"ddf"`` -- a :class:`~dyncore.ddf.modules.DDF` module with the same channels and stride;
  ``ddf_options`` passes ``filters=`` and ``normalization=`` for the ablations.

**Joint depth upsampling** (Sec. 6, Fig. 6b, Table 7 at small scale). :class:`DepthUpNet`
encodes the low-resolution depth (two ``3 x 3`` convolutions) and the high-resolution RGB
guidance (two ``3 x 3`` convolutions, then average pooling to every decoder level), and
upsamples ``log2(scale)`` times by 2. Each step is an *upsampler* followed by a ``3 x 3``
convolution of the upsampled features concatenated with the guidance features of that level;
the upsampler is a guided :class:`~dyncore.ddf.modules.DDFUp` (``decoder="ddf"``, DDF-Up-Net)
or bilinear interpolation (``decoder="conv"``, the plain convolutional decoder). Both predict a
residual over the bicubic upsampling of the input, so the two differ only in the upsampler.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..training import train_steps
from ..utils import count_flops, count_parameters  # noqa: F401  (the chapter calls them from here)
from .data import DepthBatch, DigitData, Motorcycle, depth_crops, make_planar_scenes, rmse, upsample_bicubic
from .modules import DDF, DDFUp

LAYERS = ("conv", "dwconv", "ddf")


def spatial_layer(layer: str, channels: int, stride: int, ddf_options=None, backend="auto") -> nn.Module:
    """What fills the ``3 x 3`` slot of a bottleneck block (``channels -> channels``)."""
    if layer == "conv":
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
    if layer == "dwconv":
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)
    if layer == "ddf":
        return DDF(channels, 3, stride=stride, backend=backend, **(ddf_options or {}))
    raise ValueError(f"layer must be one of {', '.join(map(repr, LAYERS))}; got {layer!r}")


class Bottleneck(nn.Module):
    """``1 x 1`` (in -> mid), the spatial layer (mid -> mid, stride), ``1 x 1`` (mid -> out);
    BatchNorm after each, ReLU after the first two and after the sum with the shortcut (Fig. 4)."""

    def __init__(self, in_channels, mid, out_channels, stride=1, layer="conv", ddf_options=None,
                 backend="auto"):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.spatial = spatial_layer(layer, mid, stride, ddf_options, backend)
        self.after = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(),
                                   nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else
                         nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out_channels)))

    def forward(self, x):
        return F.relu(self.after(self.spatial(self.reduce(x))) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem ``3 x 3`` conv (1 -> 32), bottlenecks 32-16-32, 32-32-64 (stride 2), 64-64-128
    (stride 2), global average pooling, linear classifier."""

    BLOCKS = ((32, 16, 32, 1), (32, 32, 64, 2), (64, 64, 128, 2))

    def __init__(self, layer="conv", num_classes=10, in_channels=1, ddf_options=None, backend="auto"):
        super().__init__()
        self.layer = layer
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(*(Bottleneck(i, m, o, s, layer, ddf_options, backend) for i, m, o, s in self.BLOCKS))
        self.fc = nn.Linear(self.BLOCKS[-1][2], num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    def spatial_layers(self):
        return [block.spatial for block in self.blocks]


def train_classifier(model: nn.Module, data: DigitData, steps: int, batch_size: int = 64, lr: float = 3e-3,
                     seed: int = 0, desc: str = "training") -> dict:
    """Adam with a one-cycle schedule on random batches (seeded). Returns the loss per step, the
    largest gradient norm seen, whether the loss ever became non-finite, and the seconds."""
    gen = torch.Generator().manual_seed(seed)
    grad_norms = []

    def batch_loss(step):
        idx = torch.randint(0, len(data.images), (batch_size,), generator=gen)
        return F.cross_entropy(model(data.images[idx]), data.labels[idx])

    def record_grad_norm():
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))

    run = train_steps(model, batch_loss, steps, lr=lr, weight_decay=1e-4, desc=desc,
                      after_backward=record_grad_norm)
    return {**run, "grad_norms": grad_norms}


@torch.no_grad()
def accuracy(model: nn.Module, data: DigitData, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data.images), batch_size):
        pred = model(data.images[start:start + batch_size]).argmax(1)
        correct += (pred == data.labels[start:start + batch_size]).sum().item()
    return correct / len(data.images)


# --------------------------------------------------------------------------------------------
# Joint depth upsampling
# --------------------------------------------------------------------------------------------

DECODERS = ("ddf", "conv")


def _conv_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class DepthUpNet(nn.Module):
    """``DepthUpNet(scale, decoder="ddf"|"conv", channels=16)``; ``forward(low, rgb)``:
    ``low: (B, 1, h, w)``, ``rgb: (B, 3, scale*h, scale*w)`` -> depth ``(B, 1, scale*h, scale*w)``."""

    def __init__(self, scale=4, decoder="ddf", channels=16, backend="auto"):
        super().__init__()
        steps = int(round(math.log2(scale)))
        if scale < 2 or 2 ** steps != scale:
            raise ValueError(f"scale must be a power of 2, at least 2; got {scale}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(map(repr, DECODERS))}; got {decoder!r}")
        self.scale, self.decoder, self.steps = scale, decoder, steps
        C = channels
        self.depth_encoder = nn.Sequential(_conv_relu(1, C), _conv_relu(C, C))
        self.rgb_encoder = nn.Sequential(_conv_relu(3, C), _conv_relu(C, C))
        self.upsamplers = nn.ModuleList(
            DDFUp(C, 2, 3, guided=True, backend=backend) if decoder == "ddf" else nn.Identity()
            for _ in range(steps))
        self.fuse = nn.ModuleList(_conv_relu(2 * C, C) for _ in range(steps))
        self.head = nn.Conv2d(C, 1, 3, padding=1)

    def forward(self, low, rgb):
        guide_full = self.rgb_encoder(rgb)
        h = self.depth_encoder(low)
        for level, (up, fuse) in enumerate(zip(self.upsamplers, self.fuse)):
            pool = 2 ** (self.steps - level - 1)
            guide = F.avg_pool2d(guide_full, pool) if pool > 1 else guide_full
            if self.decoder == "ddf":
                h = up(h, guide)
            else:
                h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = fuse(torch.cat([h, guide], 1))
        return upsample_bicubic(low, self.scale) + self.head(h)


def depth_batch(scene: Motorcycle, batch_size: int, crop: int, scale: int, seed: int,
                planar_fraction: float = 0.5) -> DepthBatch:
    """``batch_size`` training samples: random crops of the real image's training part and
    generated piecewise-planar scenes (``planar_fraction`` of the batch, rounded down)."""
    n_planar = int(batch_size * planar_fraction)
    parts = []
    if batch_size - n_planar:
        parts.append(depth_crops(scene, batch_size - n_planar, crop, scale, seed=seed))
    if n_planar:
        parts.append(make_planar_scenes(n_planar, crop, scale, seed=10_000_019 + seed))
    return DepthBatch(*(torch.cat(tensors) for tensors in zip(*parts)))


def train_depth(model: DepthUpNet, scene: Motorcycle, steps: int, batch_size: int = 8, crop: int = 64,
                lr: float = 3e-3, seed: int = 0, planar_fraction: float = 0.5, desc: str = "training") -> dict:
    """Adam, one-cycle schedule; each step draws fresh samples (seeded, :func:`depth_batch`).
    The loss is the mean squared error over valid pixels."""
    def batch_loss(step):
        batch = depth_batch(scene, batch_size, crop, model.scale, seed * 100_003 + step, planar_fraction)
        pred = model(batch.low, batch.rgb)
        return ((pred - batch.depth) ** 2)[batch.valid].mean()

    return train_steps(model, batch_loss, steps, lr=lr, desc=desc,
                       postfix=lambda mean: f"rmse={100 * mean ** 0.5:.2f}")


@torch.no_grad()
def depth_rmse(model: DepthUpNet, test: DepthBatch) -> tuple[float, torch.Tensor]:
    """RMSE on the valid pixels of a test batch (the real test region, or generated scenes), and
    the prediction."""
    model.eval()
    pred = torch.cat([model(test.low[i:i + 8], test.rgb[i:i + 8]) for i in range(0, len(test.low), 8)]).clamp(0, 1)
    return rmse(pred, test.depth, test.valid), pred
