"""Reference solutions to the exercises of Chapter 1, convolution (``exercises/01_convolution.md``).

Try each exercise before you read its solution here: the checks in the notebook tell you
what is wrong, and that feedback is most of what the exercise teaches.

Each function below passes its check, ``dyncore.exercises.ch01.CHECKS[name]``.
"""

import dyncore  # noqa: F401  first: it picks a GPU or the CUDA simulator before Numba loads
import numpy as np
import torch
import torch.nn.functional as F
from numba import cuda


# ---------------------------------------------------------------------------------------------
# Exercise 1: a depthwise convolution in plain loops
# ---------------------------------------------------------------------------------------------

def depthwise_conv2d_loops(x, weight, padding, dilation):
    """``F.conv2d(x, weight, padding=padding, dilation=dilation, groups=C)``, as loops.

    out[b, c, yo, xo] = sum_{i, j} weight[c, 0, i, j] * x[b, c, yo - p + i*d, xo - p + j*d]

    Depthwise: output channel c reads input channel c only, so there is no sum over channels.
    """
    x, weight = np.asarray(x), np.asarray(weight)  # numpy arrays, or CPU tensors made into them
    B, C, H, W = x.shape
    k = weight.shape[-1]
    p, d = padding, dilation
    # The padded image is H + 2p tall and the dilated kernel spans d*(k - 1) + 1 rows.
    Ho = H + 2 * p - d * (k - 1)
    Wo = W + 2 * p - d * (k - 1)
    out = np.zeros((B, C, Ho, Wo), dtype=x.dtype)
    for b in range(B):
        for c in range(C):
            for yo in range(Ho):
                for xo in range(Wo):
                    acc = 0.0
                    for i in range(k):
                        for j in range(k):
                            # Output pixel (yo, xo) starts at padded pixel (yo, xo), which is
                            # input pixel (yo - p, xo - p); tap (i, j) is i*d rows further down.
                            y = yo - p + i * d
                            xx = xo - p + j * d
                            if 0 <= y < H and 0 <= xx < W:  # zero padding: skip what is outside
                                acc += weight[c, 0, i, j] * x[b, c, y, xx]
                    out[b, c, yo, xo] = acc
    return out


# ---------------------------------------------------------------------------------------------
# Exercise 2: the weight gradient of a convolution, by hand
# ---------------------------------------------------------------------------------------------

def conv2d_weight_grad(x, grad_out, kernel_size, stride, padding, dilation):
    """``dL/dweight`` of ``out = F.conv2d(x, weight, stride, padding, dilation)``, given
    ``grad_out = dL/dout``.

    The forward pass is linear in the weight: out[b, o, yo, xo] = sum_{c,i,j} weight[o, c, i, j]
    * x[b, c, yo*s - p + i*d, xo*s - p + j*d]. So each weight is multiplied by exactly the
    input pixels it met on the way forward, and the chain rule gives

        dL/dweight[o, c, i, j] = sum_{b, yo, xo} grad_out[b, o, yo, xo]
                                 * x[b, c, yo*s - p + i*d, xo*s - p + j*d]

    F.unfold gathers those input pixels for us: column l = (yo, xo) of ``cols`` holds, in
    row (c, i, j), the pixel x[b, c, yo*s - p + i*d, xo*s - p + j*d] (zero when outside).
    Then the sum over b and over the output pixels l is one product.
    """
    B, Cout = grad_out.shape[:2]
    Cin, k = x.shape[1], kernel_size
    cols = F.unfold(x, k, dilation=dilation, padding=padding, stride=stride)  # (B, Cin*k*k, Ho*Wo)
    g = grad_out.reshape(B, Cout, -1)                                         # (B, Cout, Ho*Wo)
    grad_w = torch.einsum("bol,bql->oq", g, cols)                             # (Cout, Cin*k*k)
    return grad_w.reshape(Cout, Cin, k, k)


def conv2d_weight_grad_loops(x, grad_out, kernel_size, stride, padding, dilation):
    """The same gradient as plain loops: the equation above, term by term (slow; also passes)."""
    B, Cout, Ho, Wo = grad_out.shape
    _, Cin, H, W = x.shape
    k, s, p, d = kernel_size, stride, padding, dilation
    grad_w = torch.zeros(Cout, Cin, k, k, dtype=x.dtype)
    for o in range(Cout):
        for c in range(Cin):
            for i in range(k):
                for j in range(k):
                    acc = 0.0
                    for b in range(B):
                        for yo in range(Ho):
                            y = yo * s - p + i * d  # the stride multiplies the output index
                            if not 0 <= y < H:
                                continue
                            for xo in range(Wo):
                                xx = xo * s - p + j * d
                                if 0 <= xx < W:
                                    acc += float(grad_out[b, o, yo, xo] * x[b, c, y, xx])
                    grad_w[o, c, i, j] = acc
    return grad_w


# ---------------------------------------------------------------------------------------------
# Exercise 3: the receptive field of a stack of convolutions
# ---------------------------------------------------------------------------------------------

def receptive_field_of(layers):
    """Side of the input window seen by one output pixel of a stack of
    ``(kernel_size, stride, dilation)`` layers:  1 + sum_l (k_l - 1) * d_l * prod_{m<l} s_m.

    Walk the stack from the input up, keeping
    * ``rf``: how many input pixels one pixel of the current layer sees, and
    * ``jump``: how many input pixels apart two neighbouring pixels of the current layer are.
    A k x k layer with dilation d reaches (k - 1)*d steps of its input grid further, that is
    (k - 1)*d*jump input pixels. Its stride then spaces its own outputs s steps apart, which
    matters only for the layers after it.
    """
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += (k - 1) * d * jump
        jump *= s
    return rf


# ---------------------------------------------------------------------------------------------
# Exercise 4: a dilated convolution as a Numba CUDA kernel
# ---------------------------------------------------------------------------------------------

@cuda.jit
def dilated_conv2d_cuda_kernel(x, weight, out, dilation):
    """out = F.conv2d(x, weight, padding=dilation*r, dilation=dilation), one thread per element.

    x: (B, Cin, H, W), weight: (Cout, Cin, k, k), out: (B, Cout, H, W), r = (k - 1) // 2.
    """
    n = cuda.grid(1)
    B, Cout, H, W = out.shape
    if n >= B * Cout * H * W:  # the last block has threads with no element: they stop here
        return
    # Thread n owns element n of the flattened (row-major) out: x changes fastest.
    xo = n % W
    yo = (n // W) % H
    o = (n // (W * H)) % Cout
    b = n // (W * H * Cout)
    Cin, k = weight.shape[1], weight.shape[2]
    r = (k - 1) // 2
    acc = 0.0
    for c in range(Cin):
        for i in range(k):
            y = yo + (i - r) * dilation  # tap i sits (i - r)*d rows from the centre
            if y < 0 or y >= H:  # zero padding: a row outside the image adds nothing
                continue
            for j in range(k):
                xx = xo + (j - r) * dilation
                if 0 <= xx < W:
                    acc += weight[o, c, i, j] * x[b, c, y, xx]
    out[b, o, yo, xo] = acc  # each thread writes its own element only: no race
