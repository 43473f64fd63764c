"""What is special to conv (Chapter 1): the layer ``Conv2d``, the geometry of ``F.conv2d``'s
arguments, and the ``"cuda"`` backend on CPU tensors. The operator ``conv2d`` itself (every
backend against ``F.conv2d``, forward, backward, gradcheck, bad input, ...) is checked by
``tests/test_conformance.py`` from its spec, ``dyncore/conv/spec.py``."""

import pytest
import torch
import torch.nn.functional as F

from dyncore.conv import Conv2d, conv2d, conv_geometry
from dyncore.conv.spec import SPECS, conv_parameter_formula

AUTOGRAD = ["numba", "torch", "cuda"]
F64 = dict(rtol=1e-10, atol=1e-12)


def make(B, Cin, H, W, Cout, groups, kh, kw, bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, Cin, H, W, generator=g, dtype=dtype)
    w = torch.randn(Cout, Cin // groups, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(Cout, generator=g, dtype=dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("padding,stride,dilation,kernel", [
    ("same", 1, (2, 1), (4, 2)), ("valid", (2, 3), 1, (3, 3)), ((0, 3), 2, 2, (2, 5)), (1, 3, 1, (1, 1)),
])
def test_conv_geometry_is_that_of_F_conv2d(padding, stride, dilation, kernel):
    x, w, _ = make(1, 2, 9, 8, 2, 1, *kernel, bias=False)
    geometry = conv_geometry(x.shape, w.shape, stride, padding, dilation)
    assert geometry.out_size == tuple(F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[2:])


def test_same_padding_puts_the_extra_pixel_bottom_right():
    x, w, _ = make(1, 1, 6, 6, 1, 1, 4, 2, bias=False)
    assert conv_geometry(x.shape, w.shape, padding="same").padding == (1, 2, 0, 1)


# ---------------------------------------------------------------- the module

def test_module_matches_nn_conv2d_and_counts_parameters():
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2).double()
    mine = Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    mine.load_state_dict(ref.state_dict())
    assert sum(p.numel() for p in mine.parameters()) == 6 * 2 * 9 + 6
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    for backend in AUTOGRAD:
        mine.backend = backend
        torch.testing.assert_close(mine(x), ref(x), **F64)
    assert "backend='cuda'" in repr(mine)


def test_module_factory_kwargs():
    layer = Conv2d(2, 3, 3, bias=False, device="cpu", dtype=torch.float64)
    assert layer.weight.dtype == torch.float64 and layer.weight.device.type == "cpu" and layer.bias is None


def test_module_trains_a_step():
    torch.manual_seed(0)
    layer = Conv2d(1, 1, 3, padding=1, backend="numba")
    x = torch.randn(4, 1, 8, 8)
    target = F.avg_pool2d(x, 3, 1, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=0, out_channels=1, kernel_size=3), ValueError, "in_channels"),
    (dict(in_channels=1, out_channels=0, kernel_size=3), ValueError, "out_channels"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), ValueError, "groups"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, backend="gpu"), ValueError, "backend"),
    (dict(in_channels=1, out_channels=1, kernel_size=2.5), TypeError, "kernel_size"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, bias=1), TypeError, "bias must be a bool"),
])
def test_module_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2d(**kwargs)


def test_the_layer_of_chapter_7_is_a_plain_conv_with_its_formula():
    layer = SPECS[0].layer
    assert (layer.name, layer.local_field, layer.global_context) == ("conv", 3, False)
    for C in (1, 4, 8):
        module = layer.make(C, "numba")
        assert isinstance(module, torch.nn.Conv2d)
        assert sum(p.numel() for p in module.parameters()) == layer.parameter_formula(C) == conv_parameter_formula(C)
    assert [c.name for c in SPECS[0].bench] == ["conv2d", "depthwise"]


# ---------------------------------------------------------------- a real GPU

@pytest.mark.gpu
def test_cuda_backend_with_cpu_tensors_on_gpu_machine():
    x, w, b = make(1, 2, 6, 6, 2, 1, 3, 3)
    out = conv2d(x, w, b, padding=1, backend="cuda")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=1), **F64)
