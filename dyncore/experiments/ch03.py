"""Chapter 3's experiments: optical flow on generated "flying shapes" with a tiny FlowNetS.

**Data.** :func:`flying_shapes`, a generated optical-flow data set in the spirit of
FlyingChairs. Each example is two frames and the flow between them. A textured background moves
by one displacement; up to ``max_shapes`` textured discs and rectangles, drawn one over the
other, move by their own displacements. Displacements are whole pixels, so the second frame is
an exact translation of each layer (no interpolation) and the ground truth is exact. The flow is
that of the first frame: ``flow[0]`` is the horizontal, ``flow[1]`` the vertical displacement
(pixels) of the surface visible at each pixel. Nothing is downloaded; a seed fixes everything.

**Flow.**

* :func:`flow_to_color` -- the usual flow picture: hue is the direction, saturation the speed;
* :func:`aepe` -- average end-point error, the paper's metric (Table 6);
* :class:`TinyFlowNet` -- a FlowNetS-like encoder-decoder (two frames stacked as channels in,
  flow out) whose bottleneck is a plain 3x3 convolution or an :class:`~dyncore.lsdfn.LSDFN`;
* :func:`train_flow` -- seeded training with Adam and cosine annealing (:mod:`dyncore.training`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb
from torch import nn

from .. import validation as Val
from ..training import train_steps
from ..utils import set_seed

__all__ = ["flying_shapes", "flow_to_color", "color_wheel", "aepe", "TinyFlowNet", "train_flow"]


def _texture(rng, side, smooth):
    """Gaussian-smoothed white noise (periodic, by FFT), zero mean, unit std, plus a random level."""
    f = np.fft.fftfreq(side)
    gain = np.exp(-2 * np.pi**2 * smooth**2 * (f[:, None] ** 2 + f[None, :] ** 2))
    t = np.fft.ifft2(np.fft.fft2(rng.standard_normal((side, side))) * gain).real
    return (t - t.mean()) / (t.std() + 1e-8) + rng.uniform(-1.5, 1.5)


def flying_shapes(n: int, size: int = 32, max_shapes: int = 3, max_displacement: int = 6,
                  background_displacement: int = 2, seed: int = 0):
    """``n`` examples: ``frames (n, 2, size, size)`` and ``flow (n, 2, size, size)``, float32.

    Shapes move by up to ``max_displacement`` pixels along each axis, the background by up to
    ``background_displacement``.
    """
    n = Val.check_nonnegative_int("n", n)
    size = Val.check_positive_int("size", size)
    max_shapes = Val.check_nonnegative_int("max_shapes", max_shapes)
    P = Val.check_nonnegative_int("max_displacement", max_displacement)
    Pb = Val.check_nonnegative_int("background_displacement", background_displacement)
    if Pb > P:
        raise ValueError(f"background_displacement ({Pb}) must not exceed max_displacement ({P})")
    rng = np.random.default_rng(seed)
    big = size + 2 * P
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((n, 2, size, size), np.float32)
    flow = np.zeros((n, 2, size, size), np.float32)
    for e in range(n):
        layers = [(np.ones((size, size), bool), _texture(rng, big, 1.5),
                   rng.integers(-Pb, Pb + 1, size=2), None)]
        for _ in range(rng.integers(1, max_shapes + 1) if max_shapes else 0):
            cy, cx = rng.uniform(0, size, size=2)
            half = rng.uniform(size / 10, size / 4, size=2)
            kind = rng.integers(2)
            layers.append((None, _texture(rng, big, rng.uniform(0.7, 2.0)),
                           rng.integers(-P, P + 1, size=2), (kind, cy, cx, half)))
        for mask, tex, (dy, dx), shape in layers:
            for f, (sy, sx) in enumerate([(0, 0), (dy, dx)]):
                if shape is None:
                    inside = mask
                else:  # the shape's outline, moved by (sy, sx) in frame f
                    kind, cy, cx, (hy, hx) = shape
                    ry, rx = (yy - sy - cy) / hy, (xx - sx - cx) / hx
                    inside = (ry**2 + rx**2 <= 1) if kind == 0 else (np.abs(ry) <= 1) & (np.abs(rx) <= 1)
                # the texture moves with the shape: frame f shows texture pixel (y - sy, x - sx)
                seen = tex[P - sy: P - sy + size, P - sx: P - sx + size]
                frames[e, f][inside] = seen[inside]
                if f == 0:
                    flow[e, 0][inside], flow[e, 1][inside] = dx, dy
    return torch.from_numpy(frames), torch.from_numpy(flow)


def flow_to_color(flow, max_speed: float | None = None) -> np.ndarray:
    """``flow (2, H, W)`` (dx, dy) -> RGB image ``(H, W, 3)``: hue = direction, saturation = speed.

    ``max_speed`` fixes the speed shown fully saturated (default: the largest in ``flow``), so
    that pictures to be compared can share one scale.
    """
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"flow must have shape (2, H, W); got {f.shape}")
    dx, dy = f[0].astype(float), f[1].astype(float)
    speed = np.hypot(dx, dy)
    top = float(max_speed) if max_speed is not None else max(float(speed.max()), 1e-8)
    hue = (np.arctan2(-dy, -dx) / (2 * math.pi) + 0.5) % 1.0
    hsv = np.stack([hue, np.clip(speed / top, 0, 1), np.ones_like(speed)], axis=-1)
    return hsv_to_rgb(hsv)


def color_wheel(size: int = 65, max_speed: float = 1.0) -> np.ndarray:
    """The legend: the colour of every flow vector in a disc of radius ``max_speed``."""
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j] * max_speed
    img = flow_to_color(np.stack([xx, yy]), max_speed)
    img[np.hypot(xx, yy) > max_speed] = 1.0
    return img


def aepe(pred: torch.Tensor, flow: torch.Tensor) -> float:
    """Average end-point error: the mean over pixels of ``|pred - flow|_2`` (pixels)."""
    return float((pred - flow).norm(dim=1).mean())


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU())


class TinyFlowNet(nn.Module):
    """FlowNetS in miniature: ``(B, 2, H, W)`` frames -> ``(B, 2, H, W)`` flow.

    Encoder: two stride-2 3x3 convolutions and one more 3x3 (at 1/4 resolution); bottleneck:
    ``lsdfn`` (an :class:`~dyncore.lsdfn.LSDFN` mapping 32 channels to 16) or, when ``None``, a
    plain 3x3 convolution with the same output channels; decoder: upsampling, a skip connection
    from 1/2 resolution, and a flow prediction upsampled to full resolution.
    """

    def __init__(self, lsdfn: nn.Module | None = None, width: int = 32):
        super().__init__()
        self.enc1 = _conv(2, width // 2, 2)
        self.enc2 = _conv(width // 2, width, 2)
        self.enc3 = _conv(width, width)
        self.middle = lsdfn if lsdfn is not None else nn.Conv2d(width, width // 2, 3, padding=1)
        self.dec = _conv(width // 2 + width // 2, width // 2)
        self.predict = nn.Conv2d(width // 2, 2, 3, padding=1)

    def forward(self, frames):
        e1 = self.enc1(frames)
        e3 = self.enc3(self.enc2(e1))
        m = F.relu(self.middle(e3))
        up = F.interpolate(m, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        flow = self.predict(self.dec(torch.cat([up, e1], 1)))
        return 2 * F.interpolate(flow, size=frames.shape[-2:], mode="bilinear", align_corners=False)


def train_flow(model: nn.Module, frames, flow, steps: int = 400, batch_size: int = 32,
               lr: float = 2e-3, seed: int = 0, desc: str = "train"):
    """Adam on the end-point error with cosine annealing, by :func:`dyncore.training.train_steps`;
    returns the per-step losses (``nan`` from a divergence on).

    A run whose loss becomes non-finite stops there: it diverged, and the rest of its curve is
    ``nan``. The model is left in eval mode.
    """
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    def batch_loss(step):
        idx = torch.randint(0, frames.shape[0], (batch_size,), generator=gen)
        return (model(frames[idx]) - flow[idx]).norm(dim=1).mean()

    run = train_steps(model, batch_loss, steps, lr=lr, desc=desc, stop_when_diverged=True,
                      schedule=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, n))
    model.eval()
    return run["losses"]
