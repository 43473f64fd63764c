"""Reference solutions for exercises/03_ls_dfn_exercises.md (try first!)."""

import torch
import torch.nn.functional as F

from dyncore.lsdfn import large_sampling_filter


def per_tap_factorized(x, U, V, kernel_size):
    B, C, H, W = x.shape
    k = kernel_size
    S = x.sum(1, keepdim=True)                                         # the channel-sum map
    S_taps = F.unfold(S, k, padding=(k - 1) // 2).view(B, 1, k * k, H, W)
    out = V * S_taps                                                   # V[t] * S[p + o_t]
    centre = torch.zeros(k * k, 1, 1, dtype=x.dtype)
    centre[k * k // 2] = 1
    return out + centre * (U * x[:, None]).sum(2, keepdim=True)        # + [t == c] U . x[p]


def sampling_field(kernel_size, samples, sample_stride):
    return (samples - 1) * sample_stride + kernel_size


def grad_sample_attention(x, U, V, sample_attention, position_attention, grad_out,
                          kernel_size, samples, sample_stride):
    # The bracket of Eq. 4 for sample m is the operator's output with A_sam one-hot at m.
    grads = torch.empty_like(sample_attention)
    for m in range(samples * samples):
        one_hot = torch.zeros_like(sample_attention)
        one_hot[:, :, m] = 1
        bracket = large_sampling_filter(x, U, V, one_hot, position_attention,
                                        kernel_size=kernel_size, samples=samples,
                                        sample_stride=sample_stride)
        grads[:, :, m] = grad_out * bracket
    return grads


def predict_lsdfn_flops(B, C, Co, H, W, k, s, g):
    """The "torch" backend builds W (k*k taps x Co x C per pixel) and multiplies it with the
    features under every tap of every sample: per output, s*s samples times k*k taps times C
    channels, one multiply-add each (2 FLOPs). The sample stride g moves the samples, it does
    not change their number. The factorization eq-factor would need s*s*(C + k*k) instead."""
    return 2 * B * Co * H * W * s * s * C * k * k


def shifted(z, dy, dx):
    """``out[..., y, x] = z[..., y + dy, x + dx]``, zero outside (``ch03.shifted``)."""
    H, W = z.shape[-2:]
    out = torch.zeros_like(z)
    if abs(dy) < H and abs(dx) < W:
        out[..., max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)] = \
            z[..., max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx)]
    return out


def lsdfn_forward(x, U, V, sample_attention, position_attention, kernel_size, samples,
                  sample_stride):
    """eq-lsdfn by shifted maps. The mistake was ``ty, tx = (t // k - r) * g, (t % k - r) * g``:
    the sample stride g spaces the sample centres; the k x k taps around each centre are one
    pixel apart (eq-sample-offset and the tap offsets o_t = (i - r, j - r))."""
    k, s, g = kernel_size, samples, sample_stride
    r, rs = (k - 1) // 2, (s - 1) // 2
    S = x.sum(1, keepdim=True)                           # (B, 1, H, W): the channel-sum map
    out = torch.zeros_like(sample_attention[:, :, 0])    # (B, Co, H, W)
    for m in range(s * s):
        my, mx = (m // s - rs) * g, (m % s - rs) * g     # sample m's centre, from the pixel
        bracket = torch.zeros_like(out)
        for t in range(k * k):
            ty, tx = t // k - r, t % k - r               # tap t, from the sample's centre
            term = V[:, :, t] * shifted(S, my + ty, mx + tx)
            if t == k * k // 2:                          # U at the centre tap (eq-kernels)
                term = term + (U * shifted(x, my, mx)[:, None]).sum(2)
            bracket += shifted(position_attention[:, :, t], my, mx) * term
        out += sample_attention[:, :, m] * bracket
    return out


def position_attention_reading(op, kernel_size, samples, sample_stride):
    """A probe: features all ones, U = 0, V = 1, the sample attention on the top-left sample
    only (centred at -(reach, reach) from the pixel), the position attention one at a single
    pixel q. Read at the sample centre, it reaches the output pixel p with p_m = q, i.e.
    p = q + (reach, reach); read at the output pixel, it shows at p = q."""
    k, s, g = kernel_size, samples, sample_stride
    reach = (s - 1) // 2 * g
    n = 4 * reach + 2 * k + 3
    c = n // 2
    f64 = dict(dtype=torch.float64)
    x = torch.ones(1, 1, n, n, **f64)
    U = torch.zeros(1, 1, 1, n, n, **f64)
    V = torch.ones(1, 1, k * k, n, n, **f64)
    sample_attention = torch.zeros(1, 1, s * s, n, n, **f64)
    sample_attention[:, :, 0] = 1
    position_attention = torch.zeros(1, 1, k * k, n, n, **f64)
    position_attention[..., c, c] = 1
    out = op(x, U, V, sample_attention, position_attention, k, s, g)[0, 0]
    y, _ = divmod(int(out.abs().argmax()), n)
    return "sample centre" if y == c + reach else "output pixel"
