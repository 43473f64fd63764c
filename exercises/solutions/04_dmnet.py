"""Reference solutions to the exercises of Chapter 4, DMNet (``exercises/04_dmnet_exercises.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch04.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Exercise 1: the groups trick
# ---------------------------------------------------------------------------------------------

def context_filter_groups(x, filters):
    """``context_filter(x, filters)`` as one grouped convolution.

    Fold the batch into the channels: plane (b, c) becomes channel n = b*C + c of a single
    image, and its filter becomes filter n of a depthwise convolution (groups = B*C, one input
    channel per group). ``reshape`` keeps the row-major order of (b, c) in both tensors, so
    plane n meets filter n.
    """
    B, C, H, W = x.shape
    k = filters.shape[-1]
    out = F.conv2d(x.reshape(1, B * C, H, W), filters.reshape(B * C, 1, k, k),
                   padding=(k - 1) // 2, groups=B * C)
    return out.reshape(B, C, H, W)


# ---------------------------------------------------------------------------------------------
# Exercise 2: parameters of a DCM and of a standard convolution
# ---------------------------------------------------------------------------------------------

def parameter_counts(in_channels, channels, kernel_size):
    """``(DCM parameters, nn.Conv2d parameters)``.

    DCM(c, c', k):
      reduce    Conv2d(c, c', 1, bias=False) + BatchNorm2d(c')   c*c' + 2c'
      generate  Conv2d(c, c', 1)  (on the k x k pooled context)  c*c' + c'
      norm      BatchNorm2d(c')                                  2c'
      fuse      Conv2d(c', c', 1, bias=False) + BatchNorm2d(c')  c'^2 + 2c'
    in all 2*c*c' + c'^2 + 7c', whatever k. A k x k convolution c -> c' has c*c'*k^2 + c'.
    """
    c, cp, k = in_channels, channels, kernel_size
    dcm = 2 * c * cp + cp * cp + 7 * cp
    conv = c * cp * k * k + cp
    return dcm, conv


# ---------------------------------------------------------------------------------------------
# Exercise 3: the filter generator g_k
# ---------------------------------------------------------------------------------------------

def filter_generator(x, weight, bias, kernel_size):
    """``g_k(x)``: average x over k x k cells, then apply the 1x1 convolution to each cell.

    Adaptive average pooling gives cell i the rows floor(i*H/k) .. ceil((i+1)*H/k) - 1 (and
    likewise for columns): when H is not a multiple of k neighbouring cells overlap, and when
    k > H several cells hold the same row.
    """
    B, Cin, H, W = x.shape
    k = kernel_size
    pooled = x.new_zeros(B, Cin, k, k)
    for i in range(k):
        y0, y1 = (i * H) // k, -((-(i + 1) * H) // k)  # floor and ceil
        for j in range(k):
            x0, x1 = (j * W) // k, -((-(j + 1) * W) // k)
            pooled[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean(dim=(2, 3))
    # a 1x1 convolution is a matrix product over the channels, cell by cell
    return torch.einsum("cu,buij->bcij", weight, pooled) + bias[None, :, None, None]


# ---------------------------------------------------------------------------------------------
# Exercise 4: the gradient of the filters, by hand
# ---------------------------------------------------------------------------------------------

def context_filter_filter_grad(x, grad_out, kernel_size):
    """``dL/dfilters[b, c, i, j] = sum_{y, x} grad_out[b, c, y, x] * x[b, c, y + i - r, x + j - r]``.

    The output is linear in each filter tap, which multiplies x read at the tap's offset; so
    the gradient pairs every output gradient with the input pixel that tap read (zero outside
    the image). With the input zero-padded by r, that pixel is xp[y + i, x + j].
    """
    B, C, H, W = x.shape
    k = kernel_size
    r = (k - 1) // 2
    xp = F.pad(x, (r, r, r, r))
    grad = x.new_zeros(B, C, k, k)
    for i in range(k):
        for j in range(k):
            grad[:, :, i, j] = (grad_out * xp[:, :, i:i + H, j:j + W]).sum(dim=(2, 3))
    return grad


# ---------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the filter gradient of a sum
# ---------------------------------------------------------------------------------------------

def filter_grad_of_sum(H, W, kernel_size):
    """``dL/dfilters[i, j]`` for ``L = sum(out)`` on an all-ones image: the number of output
    pixels whose tap (i, j) reads inside the image, ``max(0, H - |i - r|) * max(0, W - |j - r|)``.

    Tap (i, j) of output pixel (y, x) reads row y + i - r, inside the image for H - |i - r| of
    the H rows (none when |i - r| >= H); rows and columns are independent, so the counts multiply.
    """
    r = (kernel_size - 1) // 2
    offsets = (torch.arange(kernel_size) - r).abs()
    rows = (H - offsets).clamp(min=0)
    cols = (W - offsets).clamp(min=0)
    return torch.outer(rows, cols).to(torch.float64)


# ---------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: the input gradient
# ---------------------------------------------------------------------------------------------

def context_filter_input_grad(filters, grad_out):
    """``dL/dx[u, v] = sum_{i, j} filters[i, j] * grad_out[u - i + r, v - j + r]``.

    The planted mistake read ``gp[:, :, i:i + H, j:j + W]``, i.e. ``grad_out[u + i - r]``: the
    offset's sign was not reversed (the filters were not rotated by 180 degrees). With
    ``grad_out`` padded by r, ``grad_out[u - i + r]`` is ``gp[u - i + 2r]``.
    """
    B, C, k, _ = filters.shape
    H, W = grad_out.shape[-2:]
    r = (k - 1) // 2
    gp = F.pad(grad_out, (r, r, r, r))
    grad_x = torch.zeros_like(grad_out)
    for i in range(k):
        for j in range(k):
            grad_x += filters[:, :, i, j, None, None] * gp[:, :, 2 * r - i:2 * r - i + H, 2 * r - j:2 * r - j + W]
    return grad_x


# ---------------------------------------------------------------------------------------------
# Exercise 7: what does g_k read? Table 3 decides
# ---------------------------------------------------------------------------------------------

def four_dcm_parameters(in_channels, channels, generator_reads):
    """Parameters of four DCMs (k = 1, 3, 5, 7), none of which depends on k.

    Per DCM: reduce c*c' + 2c', generate (c or c')*c' + c', norm 2c', fuse c'^2 + 2c'. With
    c = 2048, c' = 512 the reading "x" gives 9.45M (the paper's 9M) and "reduced" 6.31M.
    """
    c, cp = in_channels, channels
    generator_in = c if generator_reads == "x" else cp
    per_dcm = c * cp + generator_in * cp + cp * cp + 7 * cp
    return 4 * per_dcm
