"""Reference solutions for exercises/03_ls_dfn.md (try first!)."""

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
