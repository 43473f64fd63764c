"""PAD-Nets' learnable layer: hidden priors, Gumbel-softmax gates, aggregation across layers.

A :class:`PADConv2d` layer ``l`` (Chapter 5, eq-pad-markov, eq-pad-recurrent, eq-pad-gated) computes

1. its *hidden priors* ``h^l: (B, D, H, W)``, logits over the ``D`` dilations at every pixel,
   from its input ``Y^{l-1}`` and from the previous PAD layer's priors ``h^{l-1}``, with 1 x 1
   convolutions that all have ``D`` output channels (Eq. 3-5 of the paper):

   * ``"markov"``:    ``h^l = f(U_h Y^{l-1})``
   * ``"recurrent"``: ``h^l = f(W_h h^{l-1} + U_h Y^{l-1})``
   * ``"gated"``:     ``a^l = sigmoid(W_a h^{l-1} + U_a Y^{l-1})``,
     ``h^l = f(a^l * (W_h h^{l-1}) + (1 - a^l) * (U_h Y^{l-1}))``

   with ``h^0 = 0`` (the first layer of a stack has no previous priors);
2. its *gates* from the priors (the paper's Eq. 2; Chapter 5, eq-pad-gs): in training a Gumbel-softmax sample
   (``torch.nn.functional.gumbel_softmax``, straight-through one-hot when ``hard=True``); in
   eval mode no noise: ``softmax(h / tau)``, or its one-hot argmax when ``hard=True``;
3. the gated sum :func:`dyncore.pad.adaptive_dilation_conv` with its own ``k x k`` weight,
   shared by all dilations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import validation as V
from ..utils import recording
from ..backend import resolve_backend
from .functional import adaptive_dilation_conv, check_dilations

#: The three ways of computing a layer's hidden priors (Sec. 3.2 of the paper).
AGGREGATIONS = ("markov", "gated", "recurrent")
#: The activation ``f`` of the paper's Eq. 3-4 (the paper only says "non-linear"; see the chapter).
PRIOR_ACTIVATIONS = ("identity", "tanh")


def gates_from_priors(priors: torch.Tensor, tau: float = 1.0, hard: bool = False,
                      sample: bool = True) -> torch.Tensor:
    """Gates ``(B, D, H, W)`` from hidden priors ``(B, D, H, W)``, over the dilation axis 1.

    ``sample=True`` (training): Chapter 5, eq-pad-gs, ``softmax((priors + g) / tau)`` with Gumbel(0, 1) noise
    ``g``, by ``F.gumbel_softmax``; ``hard=True`` makes its forward value one-hot (the argmax)
    with the soft sample's gradient (straight-through). ``sample=False`` (eval): no noise,
    ``softmax(priors / tau)``, or the one-hot argmax of the priors when ``hard=True``.
    """
    if sample:
        return F.gumbel_softmax(priors, tau=tau, hard=hard, dim=1)
    if hard:
        index = priors.argmax(dim=1, keepdim=True)
        return torch.zeros_like(priors).scatter_(1, index, 1.0)
    return torch.softmax(priors / tau, dim=1)


def _dilation_values(dilations, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(dilations, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def expected_dilation(gates: torch.Tensor, dilations) -> torch.Tensor:
    """``sum_d gates[:, d] * dilations[d]``: ``(B, H, W)``, the dilation a pixel uses on average
    (the maps of the paper's Fig. 4 when ``gates`` are the probabilities ``softmax(h)``)."""
    return (gates * _dilation_values(dilations, gates)).sum(1)


def dilation_variance(priors: torch.Tensor, dilations) -> torch.Tensor:
    """``(B, H, W)``: the variance of the dilation sampled at each pixel, ``Var[dil]`` for
    ``dil ~ Categorical(softmax(priors))``, the law of the Gumbel-max sample ``argmax(h + g)``
    (the paper's Table 1 reports its mean, sigma^2(d_ij)). The temperature plays no part:
    dividing by ``tau > 0`` does not move the argmax."""
    p = torch.softmax(priors, dim=1)
    values = _dilation_values(dilations, priors)
    mean = (p * values).sum(1)
    return ((p * (values - mean[:, None]) ** 2).sum(1)).clamp_min(0)


def prior_branch_parameters(in_channels: int, num_dilations: int, aggregation: str) -> int:
    """Parameters of the hidden-prior branch: every weight has ``D`` output channels.

    ``markov``: ``U_h`` (``Cin*D`` weights, ``D`` biases); ``recurrent`` adds ``W_h`` (``D*D``);
    ``gated`` has ``U_h, W_h`` and ``U_a, W_a``, twice the recurrent count.
    """
    c, d = in_channels, num_dilations
    markov = c * d + d
    return {"markov": markov, "recurrent": markov + d * d, "gated": 2 * (markov + d * d)}[aggregation]


class PADConv2d(nn.Module):
    """A ``k x k`` convolution whose dilation is chosen at every pixel (PAD-Nets).

    ``PADConv2d(in_channels, out_channels, kernel_size=3, dilations=(1, 2, 4), tau=1.0,
    hard=False, aggregation="markov")``. ``forward(x, prior=None, return_prior=False)``:
    ``x: (B, in_channels, H, W)``; ``prior`` is the previous PAD layer's hidden priors
    ``h^{l-1}: (B, D, H, W)`` (``None`` = zeros; ignored by ``"markov"``). Returns the output
    ``(B, out_channels, H, W)``, and the layer's own priors ``h^l`` too when ``return_prior``.
    :func:`record_gates` collects the priors and gates of each call; the layer keeps no tensor
    of a call on itself (so ``torch.compile`` and ``torch.export`` see a pure function).

    Keyword-only extras: ``bias``, ``prior_activation`` (``f`` of the paper's Eq. 3-4: ``"identity"``, the
    default, or ``"tanh"``) and ``backend`` of :func:`~dyncore.pad.adaptive_dilation_conv`.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, dilations=(1, 2, 4), tau=1.0,
                 hard=False, aggregation="markov", *, bias=True, prior_activation="identity",
                 backend="auto", device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = V.check_channels(in_channels=in_channels,
                                                               out_channels=out_channels)
        self.kernel_size = V.check_kernel_size("kernel_size", kernel_size)
        self.dilations = check_dilations(dilations)
        self.tau = V.check_positive_number("tau", tau)
        self.hard = V.check_bool("hard", hard)
        self.aggregation = V.check_choice("aggregation", aggregation, AGGREGATIONS)
        self.prior_activation = V.check_choice("prior_activation", prior_activation, PRIOR_ACTIVATIONS)
        V.check_bool("bias", bias)
        resolve_backend(backend, torch.device("cpu") if device is None else torch.device(device))
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        k, D = self.kernel_size, len(self.dilations)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        # The hidden-prior branch (Sec. 3.2): 1 x 1 convolutions, all with D output channels.
        self.prior_from_input = nn.Conv2d(in_channels, D, 1, **factory)               # U_h
        self.prior_from_prior = (nn.Conv2d(D, D, 1, bias=False, **factory)            # W_h
                                 if aggregation != "markov" else None)
        self.mix_from_input = (nn.Conv2d(in_channels, D, 1, **factory)                # U_a
                               if aggregation == "gated" else None)
        self.mix_from_prior = (nn.Conv2d(D, D, 1, bias=False, **factory)              # W_a
                               if aggregation == "gated" else None)
        self._recorders = []  # callbacks of record_gates (not tensors)
        self.reset_parameters()

    def reset_parameters(self):
        """The convolution like ``nn.Conv2d``; ``U_h = 0``, so every pixel starts with equal
        odds for every dilation; the other 1 x 1 maps like ``nn.Conv2d``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.prior_from_input.weight)
        nn.init.zeros_(self.prior_from_input.bias)
        for m in (self.prior_from_prior, self.mix_from_input, self.mix_from_prior):
            if m is not None:
                m.reset_parameters()

    def _f(self, t):
        return torch.tanh(t) if self.prior_activation == "tanh" else t

    def hidden_prior(self, x, prior=None):
        """``h^l`` from the layer's input ``x = Y^{l-1}`` and ``prior = h^{l-1}`` (Chapter 5, eq-pad-markov, eq-pad-recurrent, eq-pad-gated)."""
        from_input = self.prior_from_input(x)
        if self.aggregation == "markov":
            return self._f(from_input)
        if prior is None:
            prior = torch.zeros_like(from_input)  # h^0 = 0
        from_prior = self.prior_from_prior(prior)
        if self.aggregation == "recurrent":
            return self._f(from_prior + from_input)
        mix = torch.sigmoid(self.mix_from_prior(prior) + self.mix_from_input(x))  # a^l, Chapter 5, eq-pad-gated
        return self._f(mix * from_prior + (1 - mix) * from_input)

    def gates(self, prior):
        """Chapter 5, eq-pad-gs in training (Gumbel noise), its noise-free version in eval mode."""
        return gates_from_priors(prior, self.tau, self.hard, sample=self.training)

    def forward(self, x, prior=None, return_prior=False):
        x, prior = V.autocast_inputs(x, prior)  # under torch.autocast: computes in float32
        V.check_tensor("x", x, 4, "(B, Cin, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have in_channels = {self.in_channels} channels "
                             f"(B, Cin, H, W); got shape {tuple(x.shape)}")
        if x.dtype != self.weight.dtype and not V.autocasting(x):
            raise TypeError(f"x has dtype {x.dtype} but the layer's parameters have dtype "
                            f"{self.weight.dtype}; convert one of them (e.g. layer.double())")
        D = len(self.dilations)
        if prior is not None:
            V.check_tensor("prior", prior, 4, "(B, D, H, W)")
            expected = (x.shape[0], D, x.shape[2], x.shape[3])
            if tuple(prior.shape) != expected:
                raise ValueError(f"prior must have shape (B, D, H, W) = {expected}, the previous "
                                 f"PAD layer's hidden priors; got {tuple(prior.shape)}")
        h = self.hidden_prior(x, prior)
        gates = self.gates(h)
        out = adaptive_dilation_conv(x, self.weight, self.bias, gates, dilations=self.dilations,
                                     backend=self.backend)
        for record in self._recorders:
            record(self, h, gates)
        return (out, h) if return_prior else out

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"dilations={self.dilations}, tau={self.tau}, hard={self.hard}, "
                f"aggregation={self.aggregation!r}, backend={self.backend!r}")


class PADStack(nn.Module):
    """``depth`` :class:`PADConv2d` layers ``channels -> channels``, each followed by a ReLU,
    each passing its hidden priors to the next (the aggregation of Chapter 5, eq-pad-markov, eq-pad-recurrent, eq-pad-gated).

    :func:`record_gates` collects each layer's priors and gates of a call.
    """

    def __init__(self, channels, depth=3, kernel_size=3, dilations=(1, 2, 4), tau=1.0, hard=False,
                 aggregation="markov", *, prior_activation="identity", backend="auto", device=None,
                 dtype=None):
        super().__init__()
        depth = V.check_positive_int("depth", depth)
        self.layers = nn.ModuleList(
            PADConv2d(channels, channels, kernel_size, dilations, tau, hard, aggregation,
                      prior_activation=prior_activation, backend=backend, device=device, dtype=dtype)
            for _ in range(depth))

    @property
    def dilations(self):
        return self.layers[0].dilations

    @property
    def tau(self):
        return self.layers[0].tau

    @tau.setter
    def tau(self, value):
        for layer in self.layers:
            layer.tau = V.check_positive_number("tau", value)

    def forward(self, x):
        prior = None
        for layer in self.layers:
            x, prior = layer(x, prior, return_prior=True)
            x = F.relu(x)
        return x


def record_gates(model: nn.Module):
    """Collect the hidden priors and gates of every :class:`PADConv2d` layer of ``model``.

    ``with record_gates(model) as seen: model(x)``; afterwards ``seen[layer]`` is the pair
    ``(prior, gates)``, both ``(B, D, H, W)`` and detached, of ``layer``'s last call inside the
    ``with`` block: ``h^l`` and the gates it applied (in training mode the Gumbel sample it
    drew). The tensors live in the dictionary, not on the layers: outside the block the layers
    record nothing.
    """
    return recording(model, (PADConv2d,))
