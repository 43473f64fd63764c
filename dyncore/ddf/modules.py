"""DDF's learnable layers: filter normalization (the paper's Eq. 3; Chapter 6, eq-ddf-fn), the DDF
module, DDF-Up (Chapter 6, eq-ddf-up).

:class:`DDF` (Fig. 2b of the paper) predicts the two halves of a decoupled dynamic filter from
its input and applies them with :func:`dyncore.ddf.functional.ddf`:

* **spatial branch**: one ``1 x 1`` convolution ``C -> k*k`` (with the layer's stride), one
  ``k x k`` filter per output pixel, shared by the channels;
* **channel branch**: global average pooling, then a squeeze-and-excitation pair of fully
  connected layers ``C -> round(se_ratio*C) -> C*k*k`` with a ReLU between: one ``k x k`` filter
  per channel, shared by the pixels;
* **filter normalization** (Chapter 6, eq-ddf-fn; :func:`filter_norm`) of both, before they are
  applied.

The paper's Eq. 3 (Chapter 6, eq-ddf-fn) standardizes each generated filter and then rescales
and shifts it with ``alpha`` and ``beta``, "running standard deviation and mean values ...
similar to those in batch normalization". The paper does not say how those are computed. The
book's choice follows the *structure* of the authors' public implementation (``FilterNorm`` in
``ddf/ddf.py`` of github.com/theFoxofSky/ddfnet): each filter is standardized over its ``k*k``
taps (the unbiased standard deviation plus ``eps``), **the mean is not restored** (``beta = 0``),
the spatial filter is multiplied by a fixed gain and the channel filter by a learnable scale per
channel and tap (``alpha^ch``, ``(C, k*k)``). The constants are the book's own and differ from
that code: ``eps`` = :data:`EPS` = 1e-5 (theirs 1e-10), spatial gain :data:`SPATIAL_GAIN` ``/ k``
= ``1/k`` (theirs ``calculate_gain(nonlinearity) / k``, ``sqrt(2)/k`` with ``DDFPack``'s default
``"relu"``, ``1/k`` with ``DDFUpPack``'s default ``"linear"``), ``alpha^ch`` initialized to ones (theirs ``randn * gain / k``), and a squeeze width
``round(se_ratio * C)``, at least 1 (theirs ``int(se_ratio * C)``).

**One tap.** With ``kernel_size=1`` a filter has a single tap, which standardization maps to 0:
the layer's output would be identically zero and no gradient would reach its parameters. So
:class:`DDF` and :class:`DDFUp` raise ``ValueError`` for ``kernel_size=1`` with
``normalization="filter"`` (the default); choose ``"sigmoid"``, ``"batch"`` or ``"none"`` for a
one-tap layer.

:class:`DDFUp` (Fig. 5) upsamples by ``scale`` with ``scale**2`` DDF branch pairs, one per
sub-pixel position, whose outputs are pixel-shuffled. Its spatial filters come from guidance
features: by default a depthwise ``k x k`` convolution of the input (plain upsampling); with
``guided=True`` from a separate, high-resolution guidance image (joint upsampling), each
sub-pixel branch reading the guidance at its own high-resolution pixel.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..utils import recording
from ..backend import resolve_backend
from .functional import ddf

#: How a DDF module normalizes its generated filters (the paper's Table 3b, plus none at all).
NORMALIZATIONS = ("filter", "batch", "sigmoid", "none")
#: Which filters a DDF module predicts (the paper's Table 3a): both, or one with the other = 1.
FILTERS = ("both", "spatial", "channel")
#: The fixed gain of the normalized spatial filter is ``SPATIAL_GAIN / k``.
SPATIAL_GAIN = 1.0
#: Added to the standard deviation in :func:`filter_norm`.
EPS = 1e-5


def filter_norm(filters: torch.Tensor, taps: int, eps: float = EPS) -> torch.Tensor:
    """Chapter 6, eq-ddf-fn without its ``alpha, beta``: standardize every filter over its ``taps`` taps.

    ``filters: (..., taps, ...)`` is read as ``(N, taps, M)`` groups along axis 1 after flattening:
    pass spatial filters ``(B, k*k, H, W)`` (a filter per pixel, taps on axis 1) or channel
    filters ``(B, C, k*k)`` reshaped to ``(B*C, k*k, 1)``. Returns
    ``(f - mean_t f) / (std_t f + eps)`` with the unbiased standard deviation (``k*k - 1`` in the
    denominator), so each filter has zero mean and (for ``eps -> 0``) unit standard deviation.
    """
    if filters.shape[1] != taps:
        raise ValueError(f"filters must have the {taps} taps on axis 1; got shape {tuple(filters.shape)}")
    mean = filters.mean(dim=1, keepdim=True)
    centred = filters - mean
    std = centred.std(dim=1, keepdim=True) if taps > 1 else torch.zeros_like(mean)
    return centred / (std + eps)


def branch_parameters(channels: int, kernel_size: int, se_ratio: float = 0.2) -> int:
    """Table 1's count for DDF's prediction branches, ``c*k^2 + sigma*c^2*(1 + k^2)``, with
    ``sigma*c`` rounded to the integer width of the squeeze layer (weights only, no biases)."""
    c, k = channels, kernel_size
    mid = squeeze_width(c, se_ratio)
    return c * k * k + mid * c * (1 + k * k)


def squeeze_width(channels: int, se_ratio: float) -> int:
    """The width of the channel branch's squeeze layer: ``round(se_ratio * channels)``, at least 1."""
    return max(1, int(round(se_ratio * channels)))


class _FilterHead(nn.Module):
    """Normalizes raw filters the way the layer was asked to; holds the channel scale."""

    def __init__(self, channels, kernel_size, normalization, groups=1, spatial=True, channel=True,
                 device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.channels, self.k, self.normalization, self.groups = channels, kernel_size, normalization, groups
        T = kernel_size * kernel_size
        if normalization == "filter" and channel:
            self.channel_scale = nn.Parameter(torch.ones(groups, channels, T, **factory))  # alpha^ch
        elif normalization == "batch":
            self.spatial_bn = nn.BatchNorm2d(groups * T, **factory) if spatial else None
            self.channel_bn = nn.BatchNorm1d(groups * channels * T, **factory) if channel else None

    def spatial(self, raw):
        """``raw: (B, groups*T, H, W)`` -> normalized, same shape."""
        T = self.k * self.k
        if self.normalization == "filter":
            B, _, H, W = raw.shape
            z = filter_norm(raw.reshape(B * self.groups, T, H, W), T)
            return (SPATIAL_GAIN / self.k) * z.reshape(B, self.groups * T, H, W)
        if self.normalization == "batch":
            return self.spatial_bn(raw)
        if self.normalization == "sigmoid":
            return torch.sigmoid(raw)
        return raw

    def channel(self, raw):
        """``raw: (B, groups*C*T)`` -> ``(B, groups, C, T)``."""
        B = raw.shape[0]
        T, C, G = self.k * self.k, self.channels, self.groups
        if self.normalization == "filter":
            z = filter_norm(raw.reshape(B * G * C, T, 1), T).reshape(B, G, C, T)
            return z * self.channel_scale
        if self.normalization == "batch":
            return self.channel_bn(raw).reshape(B, G, C, T)
        if self.normalization == "sigmoid":
            return torch.sigmoid(raw).reshape(B, G, C, T)
        return raw.reshape(B, G, C, T)


def _set_shared_args(module, channels, kernel_size, dilation, se_ratio, normalization, backend):
    """Check the arguments :class:`DDF` and :class:`DDFUp` share and keep them on ``module``.
    Filter normalization of a one-tap filter is identically zero: refused (see the module docstring)."""
    (module.channels,) = V.check_channels(channels=channels)
    module.kernel_size = V.check_kernel_size("kernel_size", kernel_size)
    module.dilation = V.check_positive_int("dilation", dilation)
    module.se_ratio = V.check_positive_number("se_ratio", se_ratio)
    module.normalization = V.check_choice("normalization", normalization, NORMALIZATIONS)
    if module.kernel_size == 1 and module.normalization == "filter":
        raise ValueError("kernel_size=1 with normalization='filter' would standardize every one-tap "
                         "filter to 0 (an output of zeros and no gradient); use kernel_size >= 3 or "
                         "normalization='sigmoid', 'batch' or 'none'")
    resolve_backend(backend, torch.device("cpu"))
    module.backend = backend


def _autocast_input(x):
    """Under ``torch.autocast`` the layer computes in float32 (its operator does, see
    :func:`dyncore.validation.autocast_inputs`), so a half-precision input, such as the output of an
    autocast convolution before it, is first cast to float32."""
    return V.autocast_inputs(x)[0]


def _check_dtype(x, dtype):
    if x.dtype != dtype and not V.autocasting(x):
        raise TypeError(f"x has dtype {x.dtype} but the module's parameters have dtype {dtype}; "
                        "convert one of them (e.g. module.double())")


def _check_input(x, channels, name="x"):
    V.check_tensor(name, x, 4, "(B, C, H, W)")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have channels = {channels} channels (B, C, H, W); "
                         f"got shape {tuple(x.shape)}")
    V.check_spatial_nonempty(name, x)


class DDF(nn.Module):
    """The DDF module (Fig. 2b): ``DDF(channels, kernel_size=3, stride=1, dilation=1, se_ratio=0.2)``.

    ``forward(x)``: ``x: (B, channels, H, W)`` -> ``(B, channels, Ho, Wo)``,
    ``Ho = (H - 1)//stride + 1``. The filters it applies: :meth:`predict_filters` computes them
    for an input, ``(spatial (B, k*k, Ho, Wo), channel (B, channels, k*k))``; :func:`record_filters`
    collects those of every call inside a network. The module keeps no tensor of a call on
    itself (so ``torch.compile`` and ``torch.export`` see a pure function).

    Keyword-only extras, for the paper's ablations and the chapter's experiments:
    ``filters`` (``"both"``, or ``"spatial"``/``"channel"`` alone with the other set to 1,
    Table 3a), ``normalization`` (``"filter"``, Chapter 6, eq-ddf-fn as the book reads it; ``"batch"``;
    ``"sigmoid"``; ``"none"``, Table 3b) and ``backend`` of :func:`~dyncore.ddf.functional.ddf`.
    ``kernel_size=1`` with ``normalization="filter"`` raises ``ValueError`` (a one-tap filter
    standardizes to 0; see the module docstring). The module has no bias: a BatchNorm follows it in a network (Fig. 4).
    """

    def __init__(self, channels, kernel_size=3, stride=1, dilation=1, se_ratio=0.2, *,
                 filters="both", normalization="filter", backend="auto", device=None, dtype=None):
        super().__init__()
        _set_shared_args(self, channels, kernel_size, dilation, se_ratio, normalization, backend)
        self.stride = V.check_positive_int("stride", stride)
        self.filters = V.check_choice("filters", filters, FILTERS)
        factory = {"device": device, "dtype": dtype}
        C, k = self.channels, self.kernel_size
        T = k * k
        mid = squeeze_width(C, self.se_ratio)
        self.spatial_branch = (nn.Conv2d(C, T, 1, stride=self.stride, **factory)
                               if filters in ("both", "spatial") else None)
        self.channel_branch = (nn.Sequential(nn.Linear(C, mid, **factory), nn.ReLU(inplace=True),
                                             nn.Linear(mid, C * T, **factory))
                               if filters in ("both", "channel") else None)
        self.norm = _FilterHead(C, k, normalization, spatial=self.spatial_branch is not None,
                                channel=self.channel_branch is not None, **factory)
        self._recorders = []  # callbacks of record_filters (not tensors)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's defaults, except the spatial branch's weight, which starts at zero: every
        pixel then starts with the same spatial filter (its normalized bias) and the layer with
        a static depthwise filter, which it learns to vary. (The paper does not say how it
        initializes; with the default random weight every pixel starts with a random filter, and
        the chapter's small networks took several times as many steps to leave chance level.)
        With ``normalization="batch"`` the weight keeps its random start: batch norm of filters
        that are the same at every pixel would divide by a zero variance."""
        if self.spatial_branch is not None:
            self.spatial_branch.reset_parameters()
            if self.normalization != "batch":
                nn.init.zeros_(self.spatial_branch.weight)
        if self.channel_branch is not None:
            for m in self.channel_branch:
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()

    def spatial_filter(self, x):
        """``(B, k*k, Ho, Wo)``: the normalized spatial filters (ones when not predicted)."""
        B, _, H, W = x.shape
        T = self.kernel_size ** 2
        if self.spatial_branch is None:
            Ho, Wo = (H - 1) // self.stride + 1, (W - 1) // self.stride + 1
            return x.new_ones(B, T, Ho, Wo)
        return self.norm.spatial(self.spatial_branch(x))

    def channel_filter(self, x):
        """``(B, channels, k*k)``: the normalized channel filters (ones when not predicted)."""
        B, C = x.shape[:2]
        T = self.kernel_size ** 2
        if self.channel_branch is None:
            return x.new_ones(B, C, T)
        return self.norm.channel(self.channel_branch(x.mean(dim=(2, 3))))[:, 0]

    def predict_filters(self, x):
        """The filters the layer applies to ``x``: ``spatial (B, k*k, Ho, Wo)`` and ``channel
        (B, channels, k*k)``, normalized (ones for a branch the layer does not predict).
        Differentiable; in training mode with ``normalization="batch"`` it updates the running
        statistics, as a forward call does."""
        x = _autocast_input(x)
        _check_input(x, self.channels)
        _check_dtype(x, self.norm_dtype())
        return self.spatial_filter(x), self.channel_filter(x)

    def forward(self, x):
        x = _autocast_input(x)
        _check_input(x, self.channels)
        _check_dtype(x, self.norm_dtype())
        spatial, channel = self.spatial_filter(x), self.channel_filter(x)
        for record in self._recorders:
            record(self, spatial, channel)
        return ddf(x, spatial, channel, kernel_size=self.kernel_size, dilation=self.dilation,
                   stride=self.stride, backend=self.backend)

    def norm_dtype(self):
        return next(self.parameters()).dtype

    def extra_repr(self):
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, se_ratio={self.se_ratio}, filters={self.filters!r}, "
                f"normalization={self.normalization!r}, backend={self.backend!r}")


class DDFUp(nn.Module):
    """DDF-Up (Fig. 5; Chapter 6, eq-ddf-up): ``DDFUp(channels, scale=2, kernel_size=3, guided=False)``.

    ``forward(x)`` (``guided=False``) or ``forward(x, guidance)`` (``guided=True``):
    ``x: (B, channels, H, W)`` -> ``(B, channels, scale*H, scale*W)``; ``guidance:
    (B, guidance_channels, scale*H, scale*W)``.

    There are ``scale**2`` branch pairs, one per sub-pixel position ``(i, j)``, ``0 <= i, j <
    scale``, numbered ``p = i*scale + j``. Pair ``p`` predicts a spatial filter
    ``(B, k*k, H, W)`` and a channel filter ``(B, channels, k*k)`` and applies
    :func:`~dyncore.ddf.functional.ddf` to ``x`` (stride 1); its output becomes the output pixels
    ``(scale*y + i, scale*x + j)`` (``F.pixel_shuffle``).

    * Spatial filters, from *guidance features*: ``guided=False`` -- a depthwise ``k x k``
      convolution of ``x``, then one ``1 x 1`` convolution to ``scale**2 * k*k`` channels;
      ``guided=True`` -- the guidance image is cut into its ``scale**2`` sub-pixel grids
      (``F.pixel_unshuffle``) and pair ``p`` maps grid ``p`` with its own ``1 x 1`` convolution
      (``guidance_channels -> k*k``): the filter for output pixel ``(scale*y + i, scale*x + j)``
      is predicted from the guidance at that very pixel.
    * Channel filters: global average pooling of ``x``, then for each pair its own
      squeeze-excitation ``C -> round(se_ratio*C) -> C*k*k``.
    * Both normalized as in :class:`DDF` (so ``kernel_size=1`` with ``normalization="filter"``
      raises ``ValueError``).

    The guidance is read at the *output* resolution, one high-resolution pixel per sub-pixel
    branch. The authors' ``DDFUpPack`` (``ddf/ddf.py`` of github.com/theFoxofSky/ddfnet) instead
    takes its ``joint_x`` at the *input* resolution (``H x W``, with the input's channels) and
    feeds the same guidance pixel to all ``scale**2`` branches.

    :meth:`filters` computes the filters for an input; :func:`record_filters` collects those
    of every call inside a network (the module keeps no tensor of a call on itself).

    Keyword-only extras: ``dilation``, ``se_ratio``, ``guidance_channels`` (default
    ``channels``), ``normalization``, ``backend``.
    """

    def __init__(self, channels, scale=2, kernel_size=3, guided=False, *, dilation=1, se_ratio=0.2,
                 guidance_channels=None, normalization="filter", backend="auto", device=None, dtype=None):
        super().__init__()
        _set_shared_args(self, channels, kernel_size, dilation, se_ratio, normalization, backend)
        self.scale = V.check_positive_int("scale", scale)
        self.guided = V.check_bool("guided", guided)
        self.guidance_channels = (self.channels if guidance_channels is None
                                  else V.check_channels(guidance_channels=guidance_channels)[0])
        if guidance_channels is not None and not guided:
            raise ValueError("guidance_channels is only used with guided=True")
        factory = {"device": device, "dtype": dtype}
        C, k, P = self.channels, self.kernel_size, self.scale ** 2
        T = k * k
        mid = squeeze_width(C, self.se_ratio)
        if guided:
            self.guide = None
            self.spatial_branch = nn.Conv2d(P * self.guidance_channels, P * T, 1, groups=P, **factory)
        else:
            self.guide = nn.Conv2d(C, C, k, padding=self.dilation * (k - 1) // 2,
                                   dilation=self.dilation, groups=C, **factory)  # depthwise guidance
            self.spatial_branch = nn.Conv2d(C, P * T, 1, **factory)
        # P squeeze-excitation branches, as one squeeze to P*mid and a grouped excitation
        self.squeeze = nn.Linear(C, P * mid, **factory)
        self.excite = nn.Conv1d(P * mid, P * C * T, 1, groups=P, **factory)
        self.norm = _FilterHead(C, k, normalization, groups=P, **factory)
        self._recorders = []  # callbacks of record_filters (not tensors)

    def filters(self, x, guidance=None):
        """``spatial: (B, P, k*k, H, W)``, ``channel: (B, P, channels, k*k)``, ``P = scale**2``."""
        B, C, H, W = x.shape
        P, T = self.scale ** 2, self.kernel_size ** 2
        if self.guided:
            g = F.pixel_unshuffle(guidance, self.scale)                 # (B, Cg*P, H, W), p fastest
            g = g.reshape(B, self.guidance_channels, P, H, W).transpose(1, 2).reshape(B, P * self.guidance_channels, H, W)
            raw = self.spatial_branch(g)
        else:
            raw = self.spatial_branch(self.guide(x))
        spatial = self.norm.spatial(raw).reshape(B, P, T, H, W)
        hidden = F.relu(self.squeeze(x.mean(dim=(2, 3))))               # (B, P*mid)
        channel = self.norm.channel(self.excite(hidden[:, :, None])[:, :, 0])  # (B, P, C, T)
        return spatial, channel

    def forward(self, x, guidance=None):
        x, guidance = _autocast_input(x), _autocast_input(guidance)
        _check_input(x, self.channels)
        _check_dtype(x, self.spatial_branch.weight.dtype)
        B, C, H, W = x.shape
        s, P, k = self.scale, self.scale ** 2, self.kernel_size
        if self.guided:
            if guidance is None:
                raise ValueError("guidance is required when guided=True: a (B, guidance_channels, "
                                 "scale*H, scale*W) tensor")
            V.check_tensor("guidance", guidance, 4, "(B, Cg, scale*H, scale*W)")
            expected = (B, self.guidance_channels, s * H, s * W)
            if tuple(guidance.shape) != expected:
                raise ValueError(f"guidance must have shape (B, guidance_channels, scale*H, scale*W) = "
                                 f"{expected} for x of shape {tuple(x.shape)} and scale={s}; "
                                 f"got {tuple(guidance.shape)}")
            V.check_same_dtype(("x", x), guidance=guidance)
            V.check_same_device(("x", x), guidance=guidance)
        elif guidance is not None:
            raise ValueError("guidance was given but the module has guided=False; "
                             "construct it with DDFUp(..., guided=True)")
        spatial, channel = self.filters(x, guidance)
        for record in self._recorders:
            record(self, spatial, channel)
        # the P branches as one batch of B*P images: (B, P, ...) -> (B*P, ...)
        xs = x[:, None].expand(B, P, C, H, W).reshape(B * P, C, H, W)
        out = ddf(xs, spatial.reshape(B * P, k * k, H, W), channel.reshape(B * P, C, k * k),
                  kernel_size=k, dilation=self.dilation, stride=1, backend=self.backend)
        # out[b*P + p, c] -> channel c*P + p of a (B, C*P, H, W) tensor, as pixel_shuffle reads it
        out = out.reshape(B, P, C, H, W).transpose(1, 2).reshape(B, C * P, H, W)
        return F.pixel_shuffle(out, s)

    def extra_repr(self):
        return (f"{self.channels}, scale={self.scale}, kernel_size={self.kernel_size}, "
                f"guided={self.guided}, dilation={self.dilation}, se_ratio={self.se_ratio}, "
                f"normalization={self.normalization!r}, backend={self.backend!r}")


def record_filters(model: nn.Module):
    """Collect the filters every :class:`DDF` and :class:`DDFUp` layer of ``model`` applies.

    ``with record_filters(model) as filters: model(x)``; afterwards ``filters[layer]`` is the pair
    ``(spatial, channel)`` that ``layer`` applied in its last call inside the ``with`` block,
    detached: ``(B, k*k, Ho, Wo)`` and ``(B, channels, k*k)`` for a DDF, ``(B, P, k*k, H, W)`` and
    ``(B, P, channels, k*k)`` for a DDF-Up (``P = scale**2``). The tensors live in the dictionary,
    not on the layers: outside the block the layers record nothing.
    """
    return recording(model, (DDF, DDFUp))
