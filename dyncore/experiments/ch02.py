"""Chapter 2's experiment data: moving digits for next-frame prediction (generated, seeded, no download).

scikit-learn's 1797 handwritten digits (8 x 8 pixels, bundled with the package) are placed on
a larger black canvas and moved by a whole number of pixels per frame, each with its own
velocity ``(vy, vx)``, drawn uniformly from ``{-max_speed, ..., max_speed}^2``. The start
position is drawn so that the digit stays entirely on the canvas for all frames, so the next
frame is *exactly* the current one moved: a filter that copies the pixel at offset
``(-vy, -vx)`` predicts it perfectly. Several digits on one canvas are combined with a
pixel-wise maximum.

The digit images are split once, by index, into a training pool (four fifths) and a test
pool (one fifth), so that test sequences show handwriting the model has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .. import validation as V

DIGIT_SIZE = 8
SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]


def digit_pool(split: str) -> np.ndarray:
    """The digit images of ``split``: ``"train"`` (index % 5 != 0) or ``"test"`` (index % 5 == 0)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    images = _digit_images()
    held_out = np.arange(len(images)) % 5 == 0
    return images[held_out] if split == "test" else images[~held_out]


@dataclass
class MovingDigits:
    """A batch of sequences.

    * ``frames``: ``(N, T, H, W)`` float32 in ``[0, 1]``;
    * ``velocity``: ``(N, D, 2)`` long, ``(vy, vx)`` in pixels per frame of each of the ``D`` digits;
    * ``flow``: ``(N, 2, H, W)`` long, the velocity of the digit that is brightest at each pixel
      of the *last* frame (zero where no digit is);
    * ``mask``: ``(N, H, W)`` bool, the pixels of the last frame that some digit covers.
    """

    frames: torch.Tensor
    velocity: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]

    def inputs_and_target(self, context: int | None = None):
        """``(inputs (N, context, H, W), target (N, 1, H, W))``: the frames before the last, and the last."""
        T = self.frames.shape[1]
        context = T - 1 if context is None else context
        return self.frames[:, T - 1 - context:T - 1], self.frames[:, T - 1:]


def moving_digits(n: int, *, frames: int = 3, canvas: int = 20, digits: int = 1,
                  max_speed: int = 2, split: str = "train", seed: int = 0) -> MovingDigits:
    """``n`` sequences of ``frames`` frames of ``digits`` moving digits on a ``canvas x canvas`` image."""
    n = V.check_nonnegative_int("n", n)
    frames = V.check_positive_int("frames", frames)
    canvas = V.check_positive_int("canvas", canvas)
    digits = V.check_positive_int("digits", digits)
    max_speed = V.check_nonnegative_int("max_speed", max_speed)
    travel = max_speed * (frames - 1)
    if canvas < DIGIT_SIZE + travel:
        raise ValueError(
            f"canvas must be at least {DIGIT_SIZE} + max_speed*(frames - 1) = "
            f"{DIGIT_SIZE + travel} pixels for a digit to stay on it; got {canvas}"
        )
    pool = digit_pool(split)
    rng = np.random.default_rng(seed)
    video = np.zeros((n, frames, canvas, canvas), dtype=np.float32)
    owner = np.full((n, canvas, canvas), -1)  # which digit is brightest in the last frame
    best = np.zeros((n, canvas, canvas), dtype=np.float32)
    velocity = rng.integers(-max_speed, max_speed + 1, size=(n, digits, 2))
    for s in range(n):
        for m in range(digits):
            image = pool[rng.integers(len(pool))]
            vy, vx = velocity[s, m]
            # the top-left corner stays in [0, canvas - 8] in every frame
            y0 = rng.integers(max(0, -vy * (frames - 1)), canvas - DIGIT_SIZE - max(0, vy * (frames - 1)) + 1)
            x0 = rng.integers(max(0, -vx * (frames - 1)), canvas - DIGIT_SIZE - max(0, vx * (frames - 1)) + 1)
            for f in range(frames):
                y, x = y0 + vy * f, x0 + vx * f
                patch = video[s, f, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE]
                np.maximum(patch, image, out=patch)
            y, x = y0 + vy * (frames - 1), x0 + vx * (frames - 1)
            region = (slice(y, y + DIGIT_SIZE), slice(x, x + DIGIT_SIZE))
            brighter = image > best[s][region]
            best[s][region] = np.where(brighter, image, best[s][region])
            owner[s][region] = np.where(brighter, m, owner[s][region])
    mask = owner >= 0
    index = np.clip(owner, 0, None)
    flow = np.take_along_axis(velocity[:, None, None, :, :], index[..., None, None], axis=3)[..., 0, :]
    flow = np.where(mask[..., None], flow, 0).transpose(0, 3, 1, 2)  # (N, 2, H, W)
    return MovingDigits(torch.from_numpy(video), torch.from_numpy(velocity).long(),
                        torch.from_numpy(np.ascontiguousarray(flow)).long(), torch.from_numpy(mask))
