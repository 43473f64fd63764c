"""Reference solutions to the exercises of Chapter 2, dynamic filters (``exercises/02_dynamic_filters_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch02.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import torch
import torch.nn.functional as F
from numba import cuda

from dyncore.cuda_bridge import unravel4


# ---------------------------------------------------------------------------------------------
# Exercise 1: the filter gradient, by hand
# ---------------------------------------------------------------------------------------------

def dynamic_filter_grad_filters(x, grad_out, kernel_size, dilation):
    """``dL/dfilters`` of ``out = dynamic_filter(x, filters, kernel_size, dilation)``, given
    ``grad_out = dL/dout``.

    out[b, c, y, x] = sum_t filters[b, t, y, x] * x[b, c, y + oy_t, x + ox_t] is linear in the
    filters, and filters[b, t, y, x] multiplies, in each channel c, the neighbour at tap t's
    offset. So the chain rule gives

        dL/dfilters[b, t, y, x] = sum_c grad_out[b, c, y, x] * x[b, c, y + oy_t, x + ox_t]

    F.unfold gathers the neighbours: viewed as (B, C, k*k, H, W), entry t at (y, x) is
    x[b, c, y + oy_t, x + ox_t] (zero outside the image). Multiply by grad_out, broadcast over
    the taps, and sum over the channels.
    """
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    cols = F.unfold(x, k, dilation=d, padding=d * r).view(B, C, k * k, H, W)
    return (grad_out.unsqueeze(2) * cols).sum(dim=1)


def dynamic_filter_grad_filters_loops(x, grad_out, kernel_size, dilation):
    """The same gradient as plain loops, the equation term by term (slow; also passes)."""
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    grad = torch.zeros(B, k * k, H, W, dtype=x.dtype)
    for b in range(B):
        for t in range(k * k):
            oy, ox = (t // k - r) * d, (t % k - r) * d
            for y in range(H):
                for xx in range(W):
                    if 0 <= y + oy < H and 0 <= xx + ox < W:  # a tap on the padding read a zero
                        grad[b, t, y, xx] = sum(float(grad_out[b, c, y, xx] * x[b, c, y + oy, xx + ox])
                                                for c in range(C))
    return grad


# ---------------------------------------------------------------------------------------------
# Exercise 2: the unfold formulation, from scratch
# ---------------------------------------------------------------------------------------------

def dynamic_filter_unfold(x, filters, kernel_size, dilation):
    """Chapter 2, eq-dfn with ``F.unfold``: gather each pixel's neighbourhood, weight it, sum the taps.

    F.unfold(x, k, dilation=d, padding=d*r) has shape (B, C*k*k, H*W): the rows are ordered
    channel-major, (c, t) with t = i*k + j fastest, so it views as (B, C, k*k, H, W). The
    padding must be d*r, the reach of the dilated kernel, for the output to keep the size.
    The filters have no channel axis: unsqueeze one, so that every channel uses them.
    """
    B, C, H, W = x.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    cols = F.unfold(x, k, dilation=d, padding=d * r).view(B, C, k * k, H, W)
    return (cols * filters.unsqueeze(1)).sum(dim=2)


# ---------------------------------------------------------------------------------------------
# Exercise 3: a filter that implements a translation
# ---------------------------------------------------------------------------------------------

def translation_filter(dy, dx, kernel_size, dilation):
    """The ``k*k`` taps of a filter that moves an image by ``(dy, dx)``.

    Moving by (dy, dx) means out[y, x] = image[y - dy, x - dx]: every pixel copies the pixel
    at offset (-dy, -dx). Tap t = i*k + j reads at ((i - r)*d, (j - r)*d), so the filter is
    one-hot at i = r - dy/d, j = r - dx/d, if those are whole numbers in [0, k).
    """
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    if dy % d or dx % d or abs(dy) > r * d or abs(dx) > r * d:
        raise ValueError(
            f"a {k} x {k} filter with dilation {d} reads at offsets that are multiples of {d} "
            f"up to {r * d} pixels away; it cannot move an image by ({dy}, {dx})"
        )
    i, j = r - dy // d, r - dx // d
    taps = torch.zeros(k * k)
    taps[i * k + j] = 1.0
    return taps


# ---------------------------------------------------------------------------------------------
# Exercise 4: the input gradient as a CUDA kernel
# ---------------------------------------------------------------------------------------------

@cuda.jit
def grad_input_cuda_kernel(grad_out, filters, grad_x, kernel_size, dilation):
    """grad_x[b, c, y, x] = sum_t grad_out[b, c, y - oy_t, x - ox_t] * filters[b, t, y - oy_t, x - ox_t]

    (Chapter 2, eq-dfn-grad-x), one thread per element of grad_x: a gather, so no two threads
    write the same element and no atomics are needed.
    """
    n = cuda.grid(1)
    B, C, H, W = grad_x.shape
    if n >= B * C * H * W:  # the last block has threads with no element: they stop here
        return
    b, c, y, xx = unravel4(n, grad_x.shape)  # Chapter 1: x = n % W, y = (n // W) % H, ...
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    acc = 0.0
    for t in range(k * k):
        # input pixel (y, x) was read by tap t of the output pixel (y - oy, x - ox)
        yo = y - (t // k - r) * d
        xo = xx - (t % k - r) * d
        if 0 <= yo < H and 0 <= xo < W:
            acc += grad_out[b, c, yo, xo] * filters[b, t, yo, xo]
    grad_x[b, c, y, xx] = acc


# ---------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the best a shared kernel can do
# ---------------------------------------------------------------------------------------------

def predict_best_shared_loss(q):
    """Every region has the same texture, so its neighbourhoods' second moments are the same,
    in proportion to its area: the least-squares kernel is w = (1 - q) K + q (-K) = (1 - 2q) K.
    It misses the K region by 2q K and the -K region by (2 - 2q) K, so the loss it leaves, as
    a fraction of the zero kernel's, is (1 - q) (2q)^2 + q (2 - 2q)^2 = 4 q (1 - q)."""
    return 4 * q * (1 - q)


# ---------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: the input gradient, tap by tap
# ---------------------------------------------------------------------------------------------

def dfn_grad_input(grad_out, filters, kernel_size, dilation):
    """``dL/dx`` of the dynamic filter, one tap at a time.

    The mistake was ``f_t = filters[:, t: t + 1]``: the filter of the input pixel (y, x). The
    product that read x[y, x] through tap t belongs to output pixel (y - oy, x - ox), and used
    *that* pixel's filter, so the filter is shifted exactly like grad_out (and is zero where the
    output pixel would be outside the image).
    """
    B, C, H, W = grad_out.shape
    k, d = kernel_size, dilation
    r = (k - 1) // 2
    R = r * d
    Gp = F.pad(grad_out, (R, R, R, R))  # zero outside the image
    Fp = F.pad(filters, (R, R, R, R))
    grad_x = torch.zeros_like(grad_out)
    for t in range(k * k):
        oy, ox = (t // k - r) * d, (t % k - r) * d
        # input pixel (y, x) was read through tap t by output pixel (y - oy, x - ox)
        G_t = Gp[:, :, R - oy: R - oy + H, R - ox: R - ox + W]
        f_t = Fp[:, t: t + 1, R - oy: R - oy + H, R - ox: R - ox + W]
        grad_x += G_t * f_t
    return grad_x


# ---------------------------------------------------------------------------------------------
# Exercise 7: an ablation: softmax-normalized filters
# ---------------------------------------------------------------------------------------------

def fit_free_filters(x, target, kernel_size, softmax, steps, lr):
    """Free per-pixel filters (logits, from zero), trained with Adam on the sum of squared
    errors; the filters are the logits, or their softmax over the taps."""
    from dyncore.dfn import dynamic_filter

    B, _, H, W = x.shape
    k = kernel_size
    logits = torch.zeros(B, k * k, H, W, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)

    def loss():
        filters = logits.softmax(dim=1) if softmax else logits
        return ((dynamic_filter(x, filters, kernel_size=k, backend="torch") - target) ** 2).sum()

    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        return float(loss() / (target ** 2).sum())
