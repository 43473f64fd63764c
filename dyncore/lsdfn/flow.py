"""Optical flow for Chapter 3: the colour-wheel picture, end-point error, and a tiny FlowNetS.

* :func:`flow_to_color` -- the usual flow picture: hue is the direction, saturation the speed;
* :func:`aepe` -- average end-point error, the paper's metric (Table 6);
* :class:`TinyFlowNet` -- a FlowNetS-like encoder-decoder (two frames stacked as channels in,
  flow out) whose bottleneck is a plain 3x3 convolution or an :class:`~dyncore.lsdfn.LSDFN`;
* :func:`train_flow` -- a seeded training loop with a ``tqdm.auto`` progress bar.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb
from torch import nn
from tqdm.auto import tqdm

from ..utils import set_seed


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
    """Adam on the end-point error; returns the per-step losses (``nan`` from a divergence on).

    A run whose loss becomes non-finite stops there: it diverged, and the rest of its curve is
    ``nan``.
    """
    set_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=desc, leave=False):
        idx = torch.randint(0, frames.shape[0], (batch_size,), generator=gen)
        loss = (model(frames[idx]) - flow[idx]).norm(dim=1).mean()
        if not torch.isfinite(loss):
            losses += [float("nan")] * (steps - len(losses))
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
