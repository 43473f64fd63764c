"""Reference solutions to the exercises of Chapter 6, DDF (``exercises/06_ddf_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch06.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Exercise 1: the channel-filter gradient
# ---------------------------------------------------------------------------------------------

def channel_filter_gradient(x, spatial, grad_out, kernel_size, dilation, stride):
    """``dL/dchannel[b, c, t] = sum_{yo, xo} G[b, c, yo, xo] * spatial[b, t, yo, xo]
    * x[b, c, yo*stride + oy_t, xo*stride + ox_t]``.

    ``channel[b, c, t]`` multiplies the term of tap ``t`` at every output pixel of channel ``c``,
    so its gradient sums, over the pixels, ``G`` times the term's two other factors. ``F.unfold``
    with the forward pass's padding, dilation and stride gathers ``x[..., yo*s + oy_t, xo*s + ox_t]``
    for every tap and pixel (zeros outside the image).
    """
    B, C, H, W = x.shape
    k = kernel_size
    Ho, Wo = grad_out.shape[2:]
    cols = F.unfold(x, k, dilation=dilation, padding=dilation * (k - 1) // 2, stride=stride)
    cols = cols.view(B, C, k * k, Ho * Wo)                       # x read by tap t at pixel p
    weighted = spatial.reshape(B, 1, k * k, Ho * Wo) * grad_out.reshape(B, C, 1, Ho * Wo)
    return (cols * weighted).sum(-1)                              # (B, C, k*k)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the FLOP count
# ---------------------------------------------------------------------------------------------

def ddf_flops(n, c, k, mid):
    """Sec. 4.1 of the paper, a multiply-add counted as 2 FLOPs.

    * spatial branch: a 1 x 1 convolution c -> k^2 at n pixels: ``2 n c k^2``;
    * channel branch: c -> mid and mid -> c k^2 on the pooled vector: ``2 mid c (1 + k^2)``
      (pooling's n c additions are left out, as in the paper);
    * combination and application: per output value and tap, one product of the two filters
      and one multiply-add: ``3 n c k^2``.
    """
    spatial = 2 * n * c * k * k
    channel = 2 * mid * c * (1 + k * k)
    apply = 3 * n * c * k * k
    return {"spatial": spatial, "channel": channel, "apply": apply, "total": spatial + channel + apply}


# ---------------------------------------------------------------------------------------------
# Exercise 3: DDF-Up's sub-pixel shuffle
# ---------------------------------------------------------------------------------------------

def subpixel_shuffle(branches, scale):
    """``out[b, c, s*y + i, s*x + j] = branches[b, i*s + j, c, y, x]``, by indexing.

    ``view`` splits the branch axis into ``(i, j)``; ``permute`` puts each offset next to its
    coordinate, ``(B, C, H, i, W, j)``, and merging ``(H, i)`` and ``(W, j)`` gives row
    ``s*y + i`` and column ``s*x + j``. (``F.pixel_shuffle`` does the same once the branch axis
    sits after the channel axis: ``branches.transpose(1, 2).reshape(B, C*s*s, H, W)``.)
    """
    B, P, C, H, W = branches.shape
    s = scale
    out = branches.view(B, s, s, C, H, W).permute(0, 3, 4, 1, 5, 2)  # (B, C, H, i, W, j)
    return out.reshape(B, C, H * s, W * s)


# ---------------------------------------------------------------------------------------------
# Exercise 4: filter normalization
# ---------------------------------------------------------------------------------------------

def filter_normalize(filters, eps):
    """Each filter (axis 1) minus its mean, divided by its unbiased standard deviation plus eps."""
    centred = filters - filters.mean(dim=1, keepdim=True)
    return centred / (centred.std(dim=1, keepdim=True) + eps)


# ---------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: what the FLOP counter sees
# ---------------------------------------------------------------------------------------------

def counted_ddf_flops(B, C, H, W, kernel_size, stride, mid):
    """The counter sees the spatial branch's 1x1 convolution (C -> k^2 at every output pixel),
    the application (a product over C k^2 per output pixel: the "torch" backend's einsum) and
    the channel branch's two linear layers (C -> mid -> C k^2, once per image); not the nck^2
    products that combine the filters, nor the pooling or the normalization. Output pixels:
    n = ((H - 1) // stride + 1) * ((W - 1) // stride + 1).
    """
    k2 = kernel_size * kernel_size
    n = ((H - 1) // stride + 1) * ((W - 1) // stride + 1)
    spatial = 2 * n * C * k2
    apply = 2 * n * C * k2
    channel = 2 * (C * mid + mid * C * k2)
    return B * (spatial + apply + channel)


# ---------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: DDF with unfold
# ---------------------------------------------------------------------------------------------

def ddf_unfold(x, spatial, channel, kernel_size, dilation, stride):
    """``F.unfold`` lays its rows out channel-major: row ``c*k*k + t`` is tap t of channel c.

    The planted mistake viewed them as ``(k*k, C)`` and transposed, which pairs each tap with
    the wrong channel; it is invisible with one channel or one tap.
    """
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    Ho, Wo = spatial.shape[-2:]
    cols = F.unfold(x, k, dilation=d, padding=d * ((k - 1) // 2), stride=stride)
    cols = cols.view(B, C, k * k, Ho, Wo)
    return (cols * spatial[:, None] * channel[:, :, :, None, None]).sum(2)


# ---------------------------------------------------------------------------------------------
# Exercise 7: how the output scales with the input
# ---------------------------------------------------------------------------------------------

def output_scaling_exponent(normalization):
    """Out = sum over taps of spatial * channel * x. ``x`` contributes one power of a. The
    filters: standardized ("filter") or saturated ("sigmoid") filters do not grow with a; an
    eval-mode BatchNorm is a fixed affine map and no normalization at all leaves each filter
    linear in a (the spatial branch is a 1x1 convolution, the channel branch linear-ReLU-linear
    of the mean), so 1 + 1 + 1 = 3."""
    return {"filter": 1, "sigmoid": 1, "batch": 3, "none": 3}[normalization]
