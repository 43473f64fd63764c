"""Reference solutions to the exercises of Chapter 5, PAD-Nets (``exercises/05_pad_nets_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch05.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Exercise 1: Gumbel-max sampling
# ---------------------------------------------------------------------------------------------

def gumbel_max_sample(logits, uniform):
    """``argmax(logits + g)`` over the last axis, with Gumbel(0, 1) noise ``g = -log(-log u)``.

    Why it samples softmax(logits): P(argmax = d) = P(h_d + g_d > h_e + g_e for all e != d),
    and integrating the Gumbel density over g_d gives exp(h_d) / sum_e exp(h_e).
    """
    gumbel = -torch.log(-torch.log(uniform))
    return (logits + gumbel).argmax(dim=-1)


# ---------------------------------------------------------------------------------------------
# Exercise 2: straight-through gates
# ---------------------------------------------------------------------------------------------

def straight_through_gates(priors, gumbel, tau):
    """One-hot argmax of ``priors + gumbel`` over the dilation axis in value, the gradient of the
    soft sample ``softmax((priors + gumbel) / tau)`` in the backward pass.

    ``hard - soft.detach() + soft`` has the value of ``hard`` (the two ``soft`` cancel) and the
    derivative of ``soft`` (``hard`` and ``soft.detach()`` are constants for autograd). Dividing
    by ``tau > 0`` does not move the argmax, so ``hard`` does not depend on ``tau``.
    """
    soft = torch.softmax((priors + gumbel) / tau, dim=1)
    index = soft.argmax(dim=1)                                   # (B, H, W)
    hard = F.one_hot(index, priors.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)  # D last -> axis 1
    return hard - soft.detach() + soft


# ---------------------------------------------------------------------------------------------
# Exercise 3: the gradient of the gates
# ---------------------------------------------------------------------------------------------

def gate_gradient(x, weight, grad_out, dilations):
    """``dL/dgates[b, d, y, x] = sum_o grad_out[b, o, y, x] * R_d[b, o, y, x]``.

    Gate ``(b, d, y, x)`` multiplies the response ``R_d`` at its own pixel only, in every output
    channel, so its derivative collects ``G * R_d`` there, summed over the output channels.
    Neither the gates nor the bias appear, and the response of a dilation is needed even where
    its gate is zero: a gate at zero still has a gradient, which is how it can grow.
    """
    r = (weight.shape[-1] - 1) // 2
    grads = [(grad_out * F.conv2d(x, weight, padding=dil * r, dilation=dil)).sum(1)
             for dil in dilations]
    return torch.stack(grads, dim=1)


# ---------------------------------------------------------------------------------------------
# Exercise 4: the receptive field of a PAD stack
# ---------------------------------------------------------------------------------------------

def receptive_field_distribution(kernel_size, dilations, probs):
    """The law of ``1 + (k - 1) * sum_l delta_l`` for independent ``delta_l ~ probs[l]``.

    Fold the layers in one at a time: the law of a sum of independent variables is the
    convolution of their laws. Start from "side 1 with probability 1" (no layer); a layer with
    dilation d widens the side by (k - 1) * d with probability p. Its mean is
    1 + (k - 1) * sum_l E[delta_l], by linearity of expectation, whatever the dependence.
    """
    law = {1: 1.0}
    for layer in probs:
        folded = {}
        for side, p_side in law.items():
            for d, p_d in zip(dilations, layer):
                if p_d == 0:
                    continue
                wider = side + (kernel_size - 1) * d
                folded[wider] = folded.get(wider, 0.0) + p_side * p_d
        law = folded
    return law


# ---------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the gradient of the gates at one pixel
# ---------------------------------------------------------------------------------------------

def gate_grad_at_pixel(y, x, H, W, kernel_size, dilations, in_channels):
    """``dL/dgates[d]`` at (y, x) for ``L = sum(out)`` with all-ones ``x`` and ``weight``: the
    response of dilation d there, i.e. ``in_channels`` times the number of taps inside the image.

    Tap (i, j) reads row y + (i - r) d and column x + (j - r) d; rows and columns are
    independent, so the count is (rows inside) x (columns inside).
    """
    r = (kernel_size - 1) // 2
    out = []
    for d in dilations:
        rows = sum(0 <= y + (i - r) * d < H for i in range(kernel_size))
        cols = sum(0 <= x + (j - r) * d < W for j in range(kernel_size))
        out.append(in_channels * rows * cols)
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: a PAD layer from its priors
# ---------------------------------------------------------------------------------------------

def pad_layer(x, weight, prior_weight, dilations):
    """The gated sum of dilated convolutions, gates = softmax of the priors over the dilations.

    The planted mistake was ``torch.softmax(priors, dim=-1)``: a softmax over the image's
    columns, so the gates of one pixel did not add up to 1. The dilations are axis 1 of
    ``priors: (B, D, H, W)``.
    """
    k = weight.shape[-1]
    r = (k - 1) // 2
    priors = F.conv2d(x, prior_weight)
    gates = torch.softmax(priors, dim=1)
    out = 0
    for n, d in enumerate(dilations):
        out = out + gates[:, n:n + 1] * F.conv2d(x, weight, padding=d * r, dilation=d)
    return out


# ---------------------------------------------------------------------------------------------
# Exercise 7: Welch's t-test on the recorded run
# ---------------------------------------------------------------------------------------------

def welch_t_test(a, b):
    """Welch's t statistic and two-sided p-value.

    t = (mean(a) - mean(b)) / sqrt(va/na + vb/nb) with unbiased variances; the degrees of
    freedom by Welch-Satterthwaite, (va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1)).
    """
    import scipy.stats

    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    sa, sb = a.var() / len(a), b.var() / len(b)
    t = float((a.mean() - b.mean()) / (sa + sb).sqrt())
    dof = float((sa + sb) ** 2 / (sa ** 2 / (len(a) - 1) + sb ** 2 / (len(b) - 1)))
    return t, float(2 * scipy.stats.t.sf(abs(t), dof))
