"""LS-DFN in vectorized PyTorch, as the equations are written: W materialized (Eq. 6).

The kernel tensor ``W[b, v, u, t, y, x] = V[b, v, t, y, x] + [t == centre] U[b, v, u, y, x]`` is
built in full, and so are the features under every tap of every sample (one ``F.unfold`` of the
zero-padded features, sliced at the ``s*s`` sample offsets). Eq. 4 is then one batched matrix
product per pixel and tap, ``(Co x C) @ (C x s*s)``, followed by the position attention read at
the sample centres (zero-padded), the sum over taps, the sample attention and the sum over
samples (Eq. 5). PyTorch's autograd differentiates it. This is the memory-hungry baseline the
fused ``"numba"`` kernels are measured against: its two big tensors have ``Co*C*k*k*H*W`` and
``C*k*k*s*s*H*W`` elements per image.
"""

import torch
import torch.nn.functional as F

from .loops import sample_offsets


def materialize_kernels(U, V, kernel_size):
    """``W = V + [t == centre] U`` of Eq. 6 (as resolved), laid out ``(B, H, W, k*k, Co, C)``."""
    k2 = kernel_size * kernel_size
    centre = torch.zeros(k2, 1, 1, dtype=U.dtype, device=U.device)
    centre[k2 // 2] = 1
    Vp = V.permute(0, 3, 4, 2, 1).unsqueeze(-1)          # (B, H, W, k*k, Co, 1)
    Up = U.permute(0, 3, 4, 1, 2).unsqueeze(3)           # (B, H, W, 1, Co, C)
    return Vp + centre * Up


def _at_samples(t, reach, H, W, offsets):
    """``t[..., y + dy, x + dx]`` for every sample offset, stacked last: ``(..., H, W, s*s)``."""
    return torch.stack([t[..., reach + dy: reach + dy + H, reach + dx: reach + dx + W]
                        for dy, dx in offsets], dim=-1)


def large_sampling_filter_torch(x, U, V, sample_attention, position_attention,
                                kernel_size, samples, sample_stride):
    B, C, H, W = x.shape
    k = kernel_size
    r = (k - 1) // 2
    reach = (samples - 1) // 2 * sample_stride            # how far a sample centre moves
    offsets = sample_offsets(samples, sample_stride)
    kernels = materialize_kernels(U, V, k)                # (B, H, W, k*k, Co, C)
    Hp, Wp = H + 2 * reach, W + 2 * reach
    taps = F.unfold(F.pad(x, (reach + r,) * 4), k).view(B, C, k * k, Hp, Wp)  # x[u, p + o_t]
    feats = _at_samples(taps, reach, H, W, offsets)       # (B, C, k*k, H, W, s*s)
    feats = feats.permute(0, 3, 4, 2, 1, 5)               # (B, H, W, k*k, C, s*s)
    per_tap = kernels @ feats                             # (B, H, W, k*k, Co, s*s): sum_u W x
    a_pos = _at_samples(F.pad(position_attention, (reach,) * 4), reach, H, W, offsets)
    a_pos = a_pos.permute(0, 3, 4, 2, 1, 5)               # (B, H, W, k*k, Co, s*s), 0 outside
    per_sample = (a_pos * per_tap).sum(3)                 # (B, H, W, Co, s*s): Eq. 4's bracket
    a_sam = sample_attention.permute(0, 3, 4, 1, 2)       # (B, H, W, Co, s*s)
    # Eq. 5; contiguous like the kernels' output (the fake of the custom operator must match it)
    return (a_sam * per_sample).sum(-1).permute(0, 3, 1, 2).contiguous()
