""""Flying shapes": a generated optical-flow data set (Chapter 3), in the spirit of FlyingChairs.

Each example is two frames and the flow between them. A textured background moves by one
displacement; up to ``max_shapes`` textured discs and rectangles, drawn one over the other, move
by their own displacements. Displacements are whole pixels, so the second frame is an exact
translation of each layer (no interpolation) and the ground truth is exact. The flow is that of
the first frame: ``flow[0]`` is the horizontal, ``flow[1]`` the vertical displacement (pixels)
of the surface visible at each pixel. Nothing is downloaded; a seed fixes everything.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import validation as Val


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
