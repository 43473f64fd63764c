"""Reference solutions to the exercises of Chapter 1, convolution (``exercises/01_convolution_exercises.md``).

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


# ---------------------------------------------------------------------------------------------
# Exercise 5: predict, then measure: the FLOPs of a convolution layer
# ---------------------------------------------------------------------------------------------

def predict_conv2d_flops(x_shape, weight_shape, stride, padding, dilation):
    """Forward: each of the B*Cout*Ho*Wo outputs is a sum of Cin*k*k products, one multiply
    and one add each. Backward: dL/dx and dL/dweight are each a sum of the same products
    (Exercise 2 and Exercise 6), so twice the forward."""
    B, Cin, H, W = x_shape
    Cout, _, k, _ = weight_shape
    s, p, d = stride, padding, dilation
    Ho = (H + 2 * p - d * (k - 1) - 1) // s + 1
    Wo = (W + 2 * p - d * (k - 1) - 1) // s + 1
    forward = 2 * B * Cout * Ho * Wo * Cin * k * k
    return forward, 2 * forward


# ---------------------------------------------------------------------------------------------
# Exercise 6: find and fix the bug: the input gradient, scattered tap by tap
# ---------------------------------------------------------------------------------------------

def conv2d_grad_input(grad_out, weight, input_size, stride, padding, dilation):
    """``dL/dx`` of ``F.conv2d(x, weight, stride, padding, dilation)``, by scattering.

    The mistake was ``weight[:, :, k - 1 - i, k - 1 - j]``. Tap (i, j) of output pixel (yo, xo)
    multiplied padded pixel (yo*s + i*d, xo*s + j*d) by weight[:, :, i, j], so that pixel's
    gradient gets grad_out[yo, xo] times the *same* weight. The flip belongs to the other way of
    writing the same sum, as a gather (a convolution of the zero-interleaved gradient), where
    each input pixel looks for the output pixels that read it.
    """
    B, Cout, Ho, Wo = grad_out.shape
    _, Cin, k, _ = weight.shape
    H, W = input_size
    s, p, d = stride, padding, dilation
    grad_xp = grad_out.new_zeros(B, Cin, H + 2 * p, W + 2 * p)  # the gradient of the padded input
    for i in range(k):
        for j in range(k):
            w_ij = weight[:, :, i, j]  # the weight that multiplied the pixel: no flip
            contrib = torch.einsum("oc,bohw->bchw", w_ij, grad_out)
            # tap (i, j) of output pixel (yo, xo) read padded pixel (yo*s + i*d, xo*s + j*d)
            grad_xp[:, :, i * d: i * d + s * (Ho - 1) + 1: s,
                    j * d: j * d + s * (Wo - 1) + 1: s] += contrib
    return grad_xp[:, :, p: p + H, p: p + W]


# ---------------------------------------------------------------------------------------------
# Exercise 7: which spelling of the sum? Probe a black box
# ---------------------------------------------------------------------------------------------

def which_spelling(op, kernel_size):
    """One bright pixel and a kernel with a single non-zero tap, the top-left one (asymmetric,
    so a flip moves it): where the bright pixel lands tells the spelling.

    Centred cross-correlation: out[p] = x[p - (r, r)], the spot moves by +r.
    Centred convolution (flipped): out[p] = x[p + (r, r)], the spot moves by -r.
    Top-left cross-correlation: out[p] = x[p], the spot stays.
    """
    k = kernel_size
    r = (k - 1) // 2
    n = 2 * k + 1
    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    x[0, 0, k, k] = 1.0
    w = torch.zeros(1, 1, k, k, dtype=torch.float64)
    w[0, 0, 0, 0] = 1.0
    out = op(x, w)[0, 0]
    y, _ = divmod(int(out.abs().argmax()), out.shape[-1])
    return {k + r: "cross-correlation", k - r: "convolution", k: "top-left"}[y]
