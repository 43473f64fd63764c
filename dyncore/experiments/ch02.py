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

**Recorded experiment** (:data:`EXPERIMENTS`, run by :mod:`dyncore.experiments.runner`, results
in ``results/experiments/``): ``02_dfn_moving_digits`` (:data:`MOVING_DIGITS`), the chapter's
next-frame predictors over seeds: :class:`DynamicPredictor` (DFN's dynamic filter layer)
against :func:`static_predictor` (a CNN of the same parameter budget that outputs the pixels)
and against copying the last frame, trained by :func:`digits_trial`; :func:`digits_claims`
lists what the chapter tests on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..dfn import DynamicFilterLayer
from ..geometry import tap_offsets
from .runner import FRESH_STEPS, Experiment, Trial
from .verdicts import Claim

__all__ = ["DIGIT_SIZE", "SPLITS", "digit_pool", "MovingDigits", "moving_digits", "DynamicPredictor",
           "static_predictor", "edge_energy", "VARIANTS", "make_predictor", "prepare_digits", "test_split",
           "digits_trial", "DIGITS_CONFIG", "DIGITS_QUICK", "MOVING_DIGITS", "EXPERIMENTS", "digits_claims"]

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


# --------------------------------------------------------------------------- the recorded experiment

# The models of the chapter's training section, and the experiment ``02_dfn_moving_digits``
# (:data:`MOVING_DIGITS`, run by :mod:`dyncore.experiments.runner`): the dynamic-filter predictor
# against a static CNN of the same parameter budget and against copying the last frame, over seeds.


class DynamicPredictor(nn.Module):
    """Next frame = the last frame, filtered by filters predicted from the past frames.

    A :class:`~dyncore.dfn.DynamicFilterLayer` whose branch (``hidden x hidden`` convolutions of
    ``branch_kernel_size``, a ``1 x 1`` convolution to ``kernel_size**2`` taps, softmax) reads
    every context frame; the filters are applied to the last one. ``forward(frames)``:
    ``(B, context, H, W) -> (B, 1, H, W)``."""

    def __init__(self, context=2, hidden=12, kernel_size=5, branch_kernel_size=5, backend="numba"):
        super().__init__()
        self.layer = DynamicFilterLayer(1, kernel_size, guidance_channels=context, hidden_channels=(hidden, hidden),
                                        branch_kernel_size=branch_kernel_size, backend=backend)

    def filters(self, frames):
        """The predicted filters, ``(B, kernel_size**2, H, W)`` (softmax over the taps)."""
        return self.layer.predict_filters(frames)

    def forward(self, frames):
        return self.layer(frames[:, -1:], guidance=frames)


def static_predictor(context=2, hidden=12, kb=5):
    """The static CNN: the same trunk as :class:`DynamicPredictor`'s branch, but its last layer is
    a ``kb x kb`` convolution that outputs the frame itself (the same filters at every pixel)."""
    return nn.Sequential(nn.Conv2d(context, hidden, kb, padding=kb // 2), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, kb, padding=kb // 2), nn.ReLU(),
                         nn.Conv2d(hidden, 1, kb, padding=kb // 2))


def edge_energy(frames):
    """Mean squared difference between horizontally and vertically adjacent pixels."""
    return ((frames[..., 1:, :] - frames[..., :-1, :]).square().mean()
            + (frames[..., :, 1:] - frames[..., :, :-1]).square().mean()).item()


#: The variants of ``02_dfn_moving_digits``.
VARIANTS = ("copy last frame", "static CNN", "dynamic filters")


def make_predictor(variant: str, config: dict) -> nn.Module:
    """The model of a trained variant (``"static CNN"`` or ``"dynamic filters"``)."""
    V.check_choice("variant", variant, VARIANTS[1:])
    if variant == "static CNN":
        return static_predictor(config["context"], config["hidden"], config["branch_kernel_size"])
    return DynamicPredictor(config["context"], config["hidden"], config["kernel_size"],
                            config["branch_kernel_size"], backend=config["backend"])


def prepare_digits(config: dict) -> dict:
    """The training and validation splits, each ``(inputs, target, MovingDigits)``, both drawn
    from the training digit images (different sequences). The test split is drawn per seed
    (:func:`test_split`)."""
    out = {}
    for split in ("train", "val"):
        data = moving_digits(config[f"n_{split}"], frames=config["context"] + 1, canvas=config["canvas"],
                             max_speed=config["max_speed"], split="train", seed=config[f"seed_{split}"])
        out[split] = (*data.inputs_and_target(config["context"]), data)
    return out


def test_split(config: dict, seed: int):
    """Seed ``seed``'s test sequences, ``(inputs, target, MovingDigits)``: held-out digit images,
    drawn with ``seed_test + 1000 * seed`` (seed 0's are the chapter's test set)."""
    data = moving_digits(config["n_test"], frames=config["context"] + 1, canvas=config["canvas"],
                         max_speed=config["max_speed"], split="test", seed=config["seed_test"] + 1000 * seed)
    return (*data.inputs_and_target(config["context"]), data)


@torch.no_grad()
def _predict(model, X, batch_size=500):
    model.eval()
    return torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


def _batches(config: dict, seed: int, n: int):
    gen = torch.Generator().manual_seed(1000 + seed)
    return lambda: torch.randint(n, (config["batch_size"],), generator=gen)


def digits_trial(t: Trial) -> dict:
    """Train variant ``t.variant`` (Adam, one-cycle schedule, MSE, batches drawn by a generator
    seeded from the seed) and evaluate it: ``val_loss`` (the MSE on the validation split, by
    which the learning rate is chosen), ``test_mse`` (on the seed's test split), ``sharpness``
    (neighbour differences of the predictions over those of the targets), and for the dynamic
    filters ``tap_hit`` (share of digit pixels whose largest tap is the true displacement) and
    ``peak`` (mean weight of the largest tap on digit pixels).

    ``"copy last frame"`` trains nothing: its prediction is the last input frame; its
    ``first_losses`` are its MSE on the first training batches (what the freshness check
    compares)."""
    c, P = t.config, t.data
    X, Y, _ = P["train"]
    Xe, Ye, data = test_split(c, t.seed)
    next_batch = _batches(c, t.seed, len(X))
    if t.variant == "copy last frame":
        firsts = []
        for _ in range(FRESH_STEPS):
            idx = next_batch()
            firsts.append(F.mse_loss(X[idx, -1:], Y[idx]).item())
        t.record["first_losses"] = firsts
        t.record["parameters"] = 0
        pred = Xe[:, -1:]
        Xv, Yv, _ = P["val"]
        val_loss = F.mse_loss(Xv[:, -1:], Yv).item()
    else:
        model = make_predictor(t.variant, c)
        t.count(model, X[:1])

        def batch_loss(step):
            idx = next_batch()
            return F.mse_loss(model(X[idx]), Y[idx])

        Xv, Yv, _ = P["val"]
        t.train(model, batch_loss, c["steps"], validate=lambda: F.mse_loss(_predict(model, Xv), Yv).item(),
                eval_every=c["eval_every"], every=100)
        pred = _predict(model, Xe)
    mse = F.mse_loss(pred, Ye).item()
    metrics = {"test_mse": mse, "sharpness": edge_energy(pred) / edge_energy(Ye),
               "val_loss": t.record["curves"]["val_loss"][-1][1] if "curves" in t.record else val_loss}
    if t.variant == "dynamic filters":
        with torch.no_grad():
            filters = model.filters(Xe)
        k = c["kernel_size"]
        strongest = tap_offsets(k)[filters.argmax(1)]
        wanted = -data.flow.permute(0, 2, 3, 1)
        metrics["tap_hit"] = (strongest == wanted).all(-1)[data.mask].float().mean().item()
        metrics["peak"] = filters.max(1).values[data.mask].mean().item()
    return metrics


#: The full run's configuration (the data of the chapter's training section).
DIGITS_CONFIG = {"n_train": 4000, "n_val": 500, "n_test": 500, "seed_train": 0, "seed_val": 2, "seed_test": 1,
                 "context": 2, "canvas": 20, "max_speed": 2, "hidden": 12, "kernel_size": 5,
                 "branch_kernel_size": 5, "backend": "numba", "batch_size": 32, "steps": 4000,
                 "eval_every": 200, "lr": 1e-2}
#: The quick configuration CI runs.
DIGITS_QUICK = {"n_train": 256, "n_val": 64, "n_test": 64, "steps": 20, "eval_every": 10}

MOVING_DIGITS = Experiment(
    name="02_dfn_moving_digits", chapter=2,
    title="Next-frame prediction of moving digits: dynamic filters, a static CNN of equal size, copying the last frame",
    variants=VARIANTS, config=DIGITS_CONFIG, quick=DIGITS_QUICK, prepare=prepare_digits, trial=digits_trial,
    lr_grid=(3e-3, 1e-2, 3e-2),
    description="Two frames of 8x8 scikit-learn digits moving on a 20x20 canvas (velocity per sequence in "
                "{-2..2}^2) predict the third. 4000 training sequences; 500 validation sequences of the "
                "training digit images; 500 test sequences of held-out digit images. Both trained models "
                "read both frames through two 5x5 convolutions of 12 channels with ReLUs; the dynamic one "
                "ends in a 1x1 convolution to 25 taps, a softmax and DFN's dynamic filter applied to the "
                "last frame (Numba kernels), the static one in a 5x5 convolution that outputs the frame. "
                "Adam with a one-cycle schedule, MSE, batches of 32; a seed sets the initialization, the "
                "order of the batches and the test sequences (training and validation data are the same "
                "for every seed). Copying the last frame trains nothing; its error differs between seeds "
                "only through their test sequences. Learning rate per trained variant from the grid by the final validation MSE of seed 0.",
    matched="in parameters: the static CNN has 4,525 (its last 5x5 convolution 12 -> 1), the dynamic one "
            "4,549 (its 1x1 convolution 12 -> 25), 0.5% more; copying the last frame has none.",
)

EXPERIMENTS = (MOVING_DIGITS,)


def digits_claims(result: dict) -> tuple[Claim, ...]:
    """What the chapter tests on a recorded ``02_dfn_moving_digits`` run."""
    paper = ("lower prediction error than a baseline network of about the same size that predicts the "
             "pixels directly (Jia et al., 2016, moving MNIST; its figures are not quoted here)")
    out = (
        Claim("dynamic filters beat a static CNN of equal size", "test_mse", "dynamic filters", "static CNN",
              paper=paper, lower_is_better=True, source="DFN, moving MNIST"),
        Claim("dynamic filters beat copying the last frame", "test_mse", "dynamic filters", "copy last frame",
              paper="not measured in the paper", lower_is_better=True),
        Claim("a static CNN beats copying the last frame", "test_mse", "static CNN", "copy last frame",
              paper="not measured in the paper", lower_is_better=True),
        Claim("dynamic filters predict sharper frames than a static CNN", "sharpness", "dynamic filters",
              "static CNN", paper="not measured in the paper (this chapter's measure of blur)"),
    )
    return tuple(c for c in out if c.a in result["variants"] and c.b in result["variants"])
