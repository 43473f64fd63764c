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

**The recorded experiment** ``03_lsdfn_flow`` (:data:`EXPERIMENTS`, run by
:mod:`dyncore.experiments.runner`) follows the paper's placement (Sec. 4.3): a
:class:`ShallowFlowNet` whose shallow layer (1/2 resolution) gets an added block, its output
joining the decoder by a skip connection. The block is an LS-DFN block (``s = 7``, sample stride
2; ablations ``s = 3``, no residual constants, and :class:`MaxSampleLSDFN`, the paper's max over
the samples in place of attention, built on :func:`sample_outputs`) or a :class:`ConvBlock` of
two 3x3 convolutions with the same parameter count (:func:`matched_hidden`). The shapes move
further than that conv block can see (:func:`block_receptive_fields`); :func:`flow_masks` marks
large displacements and motion boundaries, where :func:`flow_trial` also measures the error;
:func:`claims` lists what the chapter tests.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb
from torch import nn

from .. import validation as Val
from ..lsdfn import LSDFN
from ..training import train_steps
from ..utils import count_parameters, set_seed
from .runner import Experiment, Trial
from .verdicts import Claim

__all__ = ["flying_shapes", "flow_to_color", "color_wheel", "aepe", "TinyFlowNet", "train_flow",
           "ConvBlock", "matched_hidden", "sample_outputs", "MaxSampleLSDFN", "ShallowFlowNet",
           "FLOW_VARIANTS", "make_flow_net", "block_receptive_fields", "flow_masks", "masked_epe",
           "prepare_flow", "flow_trial", "FLOW", "EXPERIMENTS", "claims"]


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


# --------------------------------------------------------------------------- the recorded experiment
#
# The paper's placement (Sec. 4.3): the LS-DFN block is added at a shallow layer and its output
# reaches the decoder by a skip connection; s = 7 or 9 samples at sample stride 2.


class ConvBlock(nn.Module):
    """Two 3x3 convolutions ``in_channels -> hidden -> out_channels`` with a ReLU between them:
    the plain block that the recorded experiment puts where the LS-DFN block goes."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.hidden = Val.check_positive_int("hidden", hidden)
        self.body = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, out_channels, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def matched_hidden(in_channels: int, out_channels: int, parameters: int) -> int:
    """The ``hidden`` width whose :class:`ConvBlock` has the parameter count nearest ``parameters``."""
    parameters = Val.check_positive_int("parameters", parameters)
    per = 9 * in_channels + 1 + 9 * out_channels  # parameters each hidden channel adds
    return max(1, round((parameters - out_channels) / per))


def sample_outputs(x, U, V, kernel_size: int, samples: int, sample_stride: int):
    """The output of every sample separately, ``(B, Co, s*s, H, W)``, with the position attention
    at 1: ``out[:, :, m, p] = sum_c sum_t W_p[c, t] x[c, p + o_m + t]`` for ``W = V + [centre] U``,
    and 0 for a sample whose centre ``p + o_m`` lies outside the image (the operator reads the
    position attention there as 0). Summed over ``m`` it is
    :func:`~dyncore.lsdfn.large_sampling_filter` with both attentions at 1. Also returns the
    ``(1, 1, s*s, H, W)`` mask of the samples whose centre is inside the image."""
    B, C, H, W = x.shape
    k, s, g = kernel_size, samples, sample_stride
    r, rs = (k - 1) // 2, (s - 1) // 2 * g
    # U: the features at every sample centre, (B, C, s*s, H, W), samples in the order m = a*s + b
    centres = F.unfold(F.pad(x, (rs,) * 4), s, dilation=g).reshape(B, C, s * s, H, W)
    out = torch.einsum("bochw,bcmhw->bomhw", U, centres)
    # V is shared by the input channels: it sees their sum, at every tap of every sample
    xs = F.pad(x.sum(1, keepdim=True), (rs + r,) * 4)
    for t in range(k * k):
        i, j = divmod(t, k)  # tap t = i*k + j sits at offset (i - r, j - r)
        window = xs[:, :, i:i + H + 2 * rs, j:j + W + 2 * rs]
        taps = F.unfold(window, s, dilation=g).reshape(B, 1, s * s, H, W)
        out = out + V[:, :, t, None] * taps
    inside = F.unfold(F.pad(x.new_ones(1, 1, H, W), (rs,) * 4), s, dilation=g).reshape(1, 1, s * s, H, W)
    return out * inside, inside > 0


class MaxSampleLSDFN(nn.Module):
    """The paper's LS-DFN without attention (Sec. 4.1, Table 3-4): the samples are combined by a
    max over the sample dimension instead of the attention-weighted sum (over the samples whose
    centre lies inside the image; the centre sample always does). The feature and kernel
    branches, and the residual constant on ``U``, are those of :class:`~dyncore.lsdfn.LSDFN`
    (``attention=False``), whose parameters it holds."""

    def __init__(self, in_channels, feature_channels, out_channels, kernel_size=3, samples=3,
                 sample_stride=1, residual=True):
        super().__init__()
        self.block = LSDFN(in_channels, feature_channels, out_channels, kernel_size, samples,
                           sample_stride, attention=False, residual=residual, backend="torch")

    def forward(self, inputs):
        b = self.block
        x, U, V, _, _ = b.dynamic_inputs(inputs)
        out, inside = sample_outputs(x, U, V, b.kernel_size, b.samples, b.sample_stride)
        return out.masked_fill(~inside, float("-inf")).amax(2)


class ShallowFlowNet(nn.Module):
    """FlowNetS in miniature with a block added at its shallow layer (the paper's placement).

    ``enc1`` (stride 2, ``width/2`` channels, at 1/2 resolution) feeds both the encoder
    (``enc2`` stride 2 to ``width``, ``enc3``, a bottleneck 3x3 to ``width/2``, at 1/4) and the
    added ``block`` (``block_channels`` out, at 1/2). The decoder upsamples the bottleneck to 1/2
    resolution and concatenates it with ``enc1`` and the block's output (the skip connections),
    then a 3x3 convolution and a 3x3 flow prediction, upsampled to full resolution.
    """

    def __init__(self, block: nn.Module, block_channels: int, width: int = 32):
        super().__init__()
        self.enc1 = _conv(2, width // 2, 2)
        self.block = block
        self.enc2 = _conv(width // 2, width, 2)
        self.enc3 = _conv(width, width)
        self.middle = _conv(width, width // 2)
        self.dec = _conv(width // 2 + width // 2 + block_channels, width // 2)
        self.predict = nn.Conv2d(width // 2, 2, 3, padding=1)

    def forward(self, frames):
        e1 = self.enc1(frames)
        skip = F.relu(self.block(e1))
        m = self.middle(self.enc3(self.enc2(e1)))
        up = F.interpolate(m, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        flow = self.predict(self.dec(torch.cat([up, e1, skip], 1)))
        return 2 * F.interpolate(flow, size=frames.shape[-2:], mode="bilinear", align_corners=False)


#: The variants of ``03_lsdfn_flow``: (kind, samples, attention, residual).
FLOW_VARIANTS = {
    "conv block": ("conv", None, None, None),
    "LS-DFN s=7": ("lsdfn", 7, True, True),
    "LS-DFN s=3": ("lsdfn", 3, True, True),
    "LS-DFN s=7, max over samples": ("max", 7, False, True),
    "LS-DFN s=7, no residual": ("lsdfn", 7, True, False),
}


def lsdfn_block(config: dict, samples: int, attention: bool = True, residual: bool = True) -> nn.Module:
    c = config
    return LSDFN(c["width"] // 2, c["feature_channels"], c["block_channels"], 3, samples,
                 c["sample_stride"], attention=attention, residual=residual, backend=c["backend"])


def make_flow_net(variant: str, config: dict) -> ShallowFlowNet:
    """The network of ``variant`` (a key of :data:`FLOW_VARIANTS`) for ``config``. The conv
    block's width matches the parameters of the ``LS-DFN s=<config["samples"]>`` block."""
    kind, s, attention, residual = FLOW_VARIANTS[Val.check_choice("variant", variant, tuple(FLOW_VARIANTS))]
    c = config
    cin, co = c["width"] // 2, c["block_channels"]
    if kind == "conv":
        target = count_parameters(lsdfn_block(c, c["samples"]))
        block = ConvBlock(cin, matched_hidden(cin, co, target), co)
    elif kind == "max":
        block = MaxSampleLSDFN(cin, c["feature_channels"], co, 3, s, c["sample_stride"], residual)
    else:
        block = lsdfn_block(c, s, attention, residual)
    return ShallowFlowNet(block, co, c["width"])


def block_receptive_fields(config: dict) -> dict:
    """Theoretical receptive field (input pixels, side) of the block's output at its layer:
    ``enc1`` then the conv block's two 3x3 convolutions, or the LS-DFN's 3x3 branches and its
    sampling window ``(s-1) g + k`` (the operator as one layer of that size)."""
    from ..receptive_field import receptive_field

    enc1 = [(3, 2, 1)]
    out = {"conv block": receptive_field(enc1 + [(3, 1, 1), (3, 1, 1)])}
    for s in sorted({FLOW_VARIANTS[v][1] for v in FLOW_VARIANTS if FLOW_VARIANTS[v][1]}):
        window = (s - 1) * config["sample_stride"] + 3
        out[f"LS-DFN s={s}"] = receptive_field(enc1 + [(3, 1, 1), (window, 1, 1)])
    return out


def flow_masks(flow: torch.Tensor, large: float) -> dict:
    """Boolean masks ``(N, H, W)``: ``large`` (|flow| above ``large`` pixels) and ``boundary``
    (a pixel whose flow differs from one of its 4 neighbours', or next to such a pixel)."""
    speed = flow.norm(dim=1)
    diff = torch.zeros_like(speed, dtype=torch.bool)
    dy = (flow[:, :, 1:] != flow[:, :, :-1]).any(1)
    dx = (flow[:, :, :, 1:] != flow[:, :, :, :-1]).any(1)
    diff[:, 1:] |= dy
    diff[:, :-1] |= dy
    diff[:, :, 1:] |= dx
    diff[:, :, :-1] |= dx
    boundary = F.max_pool2d(diff[:, None].float(), 3, 1, 1)[:, 0] > 0
    return {"large": speed > large, "boundary": boundary}


def masked_epe(pred: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean end-point error over the pixels of ``mask`` (``nan`` for an empty mask)."""
    err = (pred - flow).norm(dim=1)
    return float(err[mask].mean()) if mask.any() else float("nan")


def prepare_flow(config: dict) -> dict:
    """Training, validation and test pairs of :func:`flying_shapes`, each from its own seed,
    and the test and validation masks of :func:`flow_masks`."""
    keys = ("size", "max_shapes", "max_displacement", "background_displacement", "sample_stride",
            *(f"{a}_{split}" for a in ("n", "seed") for split in ("train", "val", "test")))
    key = tuple(config[k] for k in keys)
    if key not in _FLOW_DATA:  # the data do not depend on the learning rate or the model
        _FLOW_DATA.clear()
        c = config
        common = dict(size=c["size"], max_shapes=c["max_shapes"], max_displacement=c["max_displacement"],
                      background_displacement=c["background_displacement"])
        data = {split: flying_shapes(c[f"n_{split}"], seed=c[f"seed_{split}"], **common)
                for split in ("train", "val", "test")}
        large = (block_receptive_fields(c)["conv block"] - 1) / 2
        data["masks"] = {split: flow_masks(data[split][1], large) for split in ("val", "test")}
        _FLOW_DATA[key] = data
    return _FLOW_DATA[key]


_FLOW_DATA: dict = {}


@torch.no_grad()
def _predict(model, frames, batch_size=128):
    return torch.cat([model(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)])


def flow_trial(t: Trial) -> dict:
    """Train ``t.variant`` on the training pairs (Adam on the end-point error, cosine annealing)
    and measure on the test pairs: aEPE overall, on large displacements and on motion boundaries,
    ``val_loss`` (the validation aEPE) and ``train_epe`` (the aEPE on the first ``n_val``
    training pairs, in eval mode: the end of the paper's Fig. 8)."""
    c = t.config
    model = make_flow_net(t.variant, c)
    frames, flow = t.data["train"]
    val_frames, val_flow = t.data["val"]
    held_frames, held_flow = t.data["test"]
    t.count(model, frames[:1])
    gen = torch.Generator().manual_seed(1000 + t.seed)

    def batch_loss(step):
        idx = torch.randint(0, len(frames), (c["batch_size"],), generator=gen)
        return (model(frames[idx]) - flow[idx]).norm(dim=1).mean()

    t.train(model, batch_loss, c["steps"], validate=lambda: aepe(_predict(model, val_frames), val_flow),
            eval_every=c["eval_every"], stop_when_diverged=True,
            schedule=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, n))
    model.eval()
    pred = _predict(model, held_frames)
    masks = t.data["masks"]["test"]
    metrics = {"aepe": aepe(pred, held_flow), "aepe_large": masked_epe(pred, held_flow, masks["large"]),
               "aepe_boundary": masked_epe(pred, held_flow, masks["boundary"]),
               "val_loss": t.record["curves"]["val_loss"][-1][1],
               "train_epe": aepe(_predict(model, frames[:c["n_val"]]), flow[:c["n_val"]])}
    if not all(math.isfinite(v) for v in metrics.values()):  # diverged: no numbers to compare
        metrics = {k: float("nan") for k in metrics}
    return metrics


FLOW = Experiment(
    name="03_lsdfn_flow", chapter=3,
    title="LS-DFN added at the shallow layer of a tiny FlowNetS, against a conv block of the same size",
    variants=tuple(FLOW_VARIANTS),
    config={"n_train": 4000, "n_val": 128, "n_test": 512, "seed_train": 1, "seed_val": 3, "seed_test": 2,
            "size": 32, "max_shapes": 3, "max_displacement": 8, "background_displacement": 2,
            "width": 32, "feature_channels": 8, "block_channels": 4, "samples": 7, "sample_stride": 2,
            "backend": "auto", "steps": 400, "batch_size": 8, "eval_every": 50, "lr": 2e-3},
    quick={"n_train": 64, "n_val": 16, "n_test": 16, "steps": 6, "eval_every": 3},
    prepare=prepare_flow, trial=flow_trial,
    lr_grid=(3e-4, 1e-3, 3e-3, 1e-2),
    description="Optical flow on generated flying shapes (32x32 frames; shapes move up to 8 px "
                "along each axis, the background up to 2). Network: a FlowNetS in miniature (two "
                "stride-2 3x3 convolutions to 32 channels, a 3x3 at 1/4 resolution, a 3x3 "
                "bottleneck, a decoder at 1/2 resolution). At the shallow layer (after the first "
                "convolution, 1/2 resolution, 16 channels) a block is added whose 4 output channels "
                "reach the decoder by a skip connection: an LS-DFN block (C = 8, Co = 4, k = 3, "
                "s = 7 or 3, sample stride 2; attention and residual constants on or off; or, "
                "without attention, a max over the samples as in the paper) or a plain block of two "
                "3x3 convolutions. Adam on the end-point error, batches of 8, cosine annealing; "
                "learning rate per variant from the grid by the final validation aEPE of seed 0. "
                "Metrics on the test pairs: aEPE, aEPE where |flow| exceeds the conv block's reach "
                "(5 px), aEPE on motion boundaries (pixels within 1 px of a change of flow).",
    matched="the conv block's hidden width is chosen so that it has the parameters of the "
            "LS-DFN s=7 block (44,711 vs 44,660: within 0.2%); s=3, max-over-samples (no attention "
            "branch) and no-residual blocks keep the LS-DFN structure, so their counts differ "
            "(recorded per variant).",
)

EXPERIMENTS = (FLOW,)


def claims() -> tuple[Claim, ...]:
    """What the chapter tests on a recorded ``03_lsdfn_flow`` run (lower aEPE is better)."""
    main = "LS-DFN s=7"
    return (
        Claim("LS-DFN beats the conv block on aEPE", "aepe", main, "conv block", lower_is_better=True,
              paper="FlowNetS 2.78 -> 2.34 with LS-DFN s=7 (Table 6, FlyingChairs)", source="Table 6"),
        Claim("LS-DFN beats the conv block on large displacements", "aepe_large", main, "conv block",
              lower_is_better=True, paper="large displacements captured (Sec. 4.3, not measured)"),
        Claim("LS-DFN beats the conv block on motion boundaries", "aepe_boundary", main, "conv block",
              lower_is_better=True, paper="sharper flow (Fig. 7, qualitative)", source="Fig. 7"),
        Claim("LS-DFN reaches a lower training loss", "train_epe", main, "conv block", lower_is_better=True,
              paper="lower training loss (Fig. 8)", source="Fig. 8"),
        Claim("s=7 beats s=3 on aEPE", "aepe", main, "LS-DFN s=3", lower_is_better=True,
              paper="more samples help, then saturate (Table 4, detection mAP)", source="Table 4"),
        Claim("attention beats the max over samples on aEPE", "aepe", main, "LS-DFN s=7, max over samples",
              lower_is_better=True, paper="attention +0.5 to +1 mAP (Table 3-4, detection)", source="Table 3"),
        Claim("the residual constants help on aEPE", "aepe", main, "LS-DFN s=7, no residual",
              lower_is_better=True, paper="residual learning eases training (Sec. 3.4, Table 2)", source="Table 2"),
    )
