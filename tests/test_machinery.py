"""The shared machinery: bootstrap, dispatch, validation, CUDA bridge, benchmarks, helpers."""

import os
import subprocess
import sys
import textwrap

import dyncore  # first: it selects the CUDA simulator before Numba is imported  # noqa: I001
import numpy as np
import pytest
import torch
from numba import cuda

from dyncore import _bootstrap, bench, cuda_bridge, utils
from dyncore import validation as V
from dyncore.receptive_field import effective_receptive_field, erf_radius, receptive_field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(env)
    environ["PYTHONPATH"] = ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------- bootstrap and dispatch

def test_backends_lists_all_four_here():
    assert dyncore.backends() == ["loops", "numba", "torch", "cuda"]
    assert dyncore.BACKENDS == ("loops", "numba", "torch", "cuda")


def test_the_cuda_probe_is_asked_once_and_is_a_constant_to_the_compiler(monkeypatch):
    """On a GPU the probe ends in a C function of Numba's driver that torch.compile cannot
    trace: a "cuda" operator inside a fullgraph compile must take its answer as a constant.
    Here the probe is replaced by one that calls a C function too (through ctypes)."""
    import ctypes

    probes = []

    def probe():
        probes.append(1)
        return None if ctypes.c_int(0).value == 0 else "never"

    monkeypatch.setattr(_bootstrap, "_PROBLEM", [])
    monkeypatch.setattr(_bootstrap, "_find_cuda_backend_problem", probe)

    def step(x):
        return x + len(dyncore.backend.resolve_backend("cuda", x.device))

    torch._dynamo.reset()
    x = torch.zeros(3)
    out = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, x + 4)
    assert dyncore.backend.resolve_backend("cuda", x.device) == "cuda"
    assert probes == [1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_simulator_is_selected_without_a_gpu():
    assert _bootstrap.simulating()
    assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_simulator_is_selected_even_if_numba_was_imported_first():
    r = run_python("""
        import numba
        import dyncore
        from numba import config
        assert config.ENABLE_CUDASIM, 'simulator not selected'
        print(dyncore.backends())
    """)
    assert r.returncode == 0, r.stderr
    assert "'cuda'" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_environment_override_disables_the_simulator_and_cuda_is_reported_unusable():
    r = run_python("""
        import torch, dyncore
        from dyncore.conv import conv2d
        print(dyncore.backends())
        try:
            conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1), backend='cuda')
        except ValueError as e:
            print('ValueError:', e)
    """, NUMBA_ENABLE_CUDASIM="0")
    assert r.returncode == 0, r.stderr
    assert "['loops', 'numba', 'torch']" in r.stdout
    assert "ValueError: backend='cuda' is unavailable" in r.stdout


def test_resolve_backend():
    cpu = torch.device("cpu")
    assert dyncore.resolve_backend("auto", cpu) == "numba"
    for name in dyncore.BACKENDS:
        assert dyncore.resolve_backend(name, cpu) == name
    with pytest.raises(ValueError, match="backend must be one of 'loops', 'numba', 'torch', 'cuda', 'auto'; got 'Numba'"):
        dyncore.resolve_backend("Numba", cpu)
    with pytest.raises(ValueError, match="runs on the CPU but the tensors are on a CUDA device"):
        dyncore.resolve_backend("numba", torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.gpu
def test_auto_is_cuda_for_cuda_tensors():
    assert dyncore.resolve_backend("auto", torch.device("cuda")) == "cuda"


# ---------------------------------------------------------------- validation

def test_validation_messages_name_the_argument():
    with pytest.raises(TypeError, match="filters must be a torch.Tensor; got ndarray"):
        V.check_tensor("filters", np.zeros(3))
    with pytest.raises(TypeError, match="an integer/boolean tensor of dtype torch.int64"):
        V.check_tensor("x", torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="boolean"):
        V.check_tensor("x", torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x must be a 4-D tensor \(B, C, H, W\); got a 2-D tensor of shape \(2, 3\)"):
        V.check_tensor("x", torch.zeros(2, 3), 4, "(B, C, H, W)")
    with pytest.raises(ValueError, match=r"filters must have shape \(B, k\*k, H, W\) = \(1, 9, 4, 4\); got \(1, 8, 4, 4\)"):
        V.check_shape("filters", torch.zeros(1, 8, 4, 4), (1, 9, 4, 4), "(B, k*k, H, W)")
    for bad in (0, 2, -3):
        with pytest.raises(ValueError, match="kernel_size must be an odd positive int"):
            V.check_kernel_size("kernel_size", bad)
    with pytest.raises(TypeError, match="kernel_size must be an int; got float 3.0"):
        V.check_kernel_size("kernel_size", 3.0)
    assert V.check_kernel_size("k", np.int64(5)) == 5
    assert V.as_pair("stride", 2) == (2, 2) and V.as_pair("stride", [1, 3]) == (1, 3)


# ---------------------------------------------------------------- the CUDA bridge

@cuda.jit
def _axpy(a, x, y, out):
    n = cuda.grid(1)
    if n < out.size:
        out[n] = a * x[n] + y[n]


def test_launch_config_covers_the_work_exactly_once():
    for n in (1, 31, 32, 33, 1000, 4097):
        blocks, threads = cuda_bridge.launch_config(n)
        assert blocks * threads >= n > (blocks - 1) * threads


def test_launch_runs_a_kernel_on_tensors():
    x, y = torch.arange(50.0), torch.ones(50)
    out = torch.empty(50)
    cuda_bridge.launch(_axpy, out.numel(), 2.0, x, y, out)
    torch.testing.assert_close(out, 2 * x + 1)
    cuda_bridge.launch(_axpy, 0, 2.0, x, y, out)  # nothing to do is fine


def test_on_kernel_device_makes_inputs_contiguous_and_passes_none_through():
    seen = {}

    @cuda_bridge.on_kernel_device
    def host(config, t, maybe, needs=None):
        seen["contiguous"] = t.is_contiguous()
        seen["device"] = t.device
        return t * 2, None

    t = torch.arange(12.0).reshape(3, 4).t()
    doubled, none = host((1,), t, None, needs=(True,))
    assert seen["contiguous"] and none is None
    assert doubled.device == t.device
    torch.testing.assert_close(doubled, 2 * t)


# ---------------------------------------------------------------- helpers

def test_set_seed_reproduces():
    utils.set_seed(3)
    a = (torch.rand(3), np.random.rand(3))
    utils.set_seed(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_show_source_of_python_numba_and_cuda_functions():
    from dyncore.conv import cuda_kernels, loops, numba_cpu

    for fn, head in [(loops.conv2d_loops, "def conv2d_loops"),
                     (numba_cpu.conv2d_forward_kernel, "def conv2d_forward_kernel"),
                     (cuda_kernels.conv2d_forward_kernel, "def conv2d_forward_kernel")]:
        code = utils.show_source(fn)
        assert head in code.data
    assert "class Conv2d" in utils.source(dyncore.conv.Conv2d)


def test_machine_report_and_device():
    report = utils.machine_report()
    assert "torch" in report and "cuda backend" in report
    assert utils.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_benchmark_compare_reports_medians_and_ratios():
    x = torch.randn(200, 200)
    table = bench.compare({"matmul": lambda: x @ x, "add": lambda: x + x}, baseline="add",
                          min_run_time=0.05, title="toy")
    assert table.median("matmul") > 0 and table.ratio("add") == 1.0
    assert table.speedup("add", over="matmul") == pytest.approx(table.ratio("matmul"))
    text = str(table)
    assert "toy" in text and "matmul" in text and "x add" in text
    assert "<table>" in table._repr_html_()
    with pytest.raises(ValueError, match="baseline"):
        bench.compare({"a": lambda: None}, baseline="b")
    with pytest.raises(ValueError, match="at least one"):
        bench.compare({})


def test_plotting_helpers_draw():
    import matplotlib
    matplotlib.use("Agg")
    from dyncore import plotting

    fig = plotting.imshow_grid([torch.randn(5, 5), np.ones((3, 3))], titles=["a", "b"], symmetric=True)
    assert len(fig.axes) == 2
    ax = plotting.plot_curves({"loss": [3, 2, 1], "other": [1, 1, 1]}, logy=True)
    assert ax.get_yscale() == "log"
    ax = plotting.thread_map((4, 6), 8)
    assert len(ax.texts) == 24


# ---------------------------------------------------------------- receptive fields

def test_receptive_field_formula():
    assert receptive_field([]) == 1
    assert receptive_field([(3, 1, 1)] * 4) == 9
    assert receptive_field([(3, 1, 2)] * 4) == 17
    assert receptive_field([(3, 2, 1), (3, 2, 1), (3, 1, 1)]) == 1 + 2 + 4 + 8
    with pytest.raises(ValueError, match="kernel_size, stride, dilation"):
        receptive_field([(3, 1)])
    with pytest.raises(ValueError, match=r"layers\[1\] dilation must be a positive int"):
        receptive_field([(3, 1, 1), (3, 1, 0)])


@pytest.mark.parametrize("dilation", [1, 2])
def test_effective_receptive_field_lies_inside_the_theoretical_one(dilation):
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(2, 2, 3, padding=dilation, dilation=dilation) for _ in range(3)]
    model = torch.nn.Sequential(*layers).double()
    erf = effective_receptive_field(model, 2, 31, samples=2, dtype=torch.float64)
    rf = receptive_field([(3, 1, dilation)] * 3)
    support = (erf > 0).nonzero()
    extent = int(support[:, 0].max() - support[:, 0].min()) + 1
    assert extent <= rf
    assert erf.sum().item() == pytest.approx(1.0)
    assert 0 < erf_radius(erf, 0.95) <= rf // 2


def test_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    n = 4_000_000  # 16 MB of float32

    def big():
        t = torch.ones(n)
        return float(t[0])

    def small():
        return float(torch.ones(10)[0])

    assert 0.9 * 4 * n <= bench.peak_memory(big) <= 1.5 * 4 * n
    assert bench.peak_memory(small) < 0.1 * 4 * n


def test_num_threads_sets_and_restores_both_pools():
    import numba

    before = torch.get_num_threads(), numba.get_num_threads()
    with utils.num_threads(1):
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    with pytest.raises(ValueError, match="n must be a positive int"):
        with utils.num_threads(0):
            pass


# ---------------------------------------------------------------- the validation helpers

@pytest.mark.parametrize("value", [True, False])
def test_check_bool_accepts_bools(value):
    assert V.check_bool("hard", value) is value


@pytest.mark.parametrize("value", [0, 1, "yes", None, np.bool_(True)])
def test_check_bool_refuses_non_bools(value):
    with pytest.raises(TypeError, match=r"hard must be a bool \(True or False\)"):
        V.check_bool("hard", value)


def test_check_choice():
    assert V.check_choice("aggregation", "gated", ("markov", "gated")) == "gated"
    with pytest.raises(ValueError, match=r"aggregation must be one of 'markov', 'gated'; got 'sum'"):
        V.check_choice("aggregation", "sum", ("markov", "gated"))
    with pytest.raises(ValueError, match="scale must be one of 1, 2"):
        V.check_choice("scale", True, (1, 2))  # True == 1, but it is not the int 1


@pytest.mark.parametrize("value,expected", [(1, 1.0), (0.5, 0.5), (np.float32(2.0), 2.0)])
def test_check_positive_number_accepts(value, expected):
    out = V.check_positive_number("tau", value)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value,error,match", [
    (0, ValueError, "tau must be a positive, finite number; got 0.0"),
    (-1.5, ValueError, "positive, finite"),
    (float("inf"), ValueError, "positive, finite"),
    (float("nan"), ValueError, "positive, finite"),
    (True, TypeError, "tau must be a positive number; got bool"),
    ("1", TypeError, "got str"),
    (None, TypeError, "got NoneType"),
])
def test_check_positive_number_refuses(value, error, match):
    with pytest.raises(error, match=match):
        V.check_positive_number("tau", value)


def test_check_channels_names_the_argument_that_is_wrong():
    assert V.check_channels(in_channels=3, out_channels=8) == (3, 8)
    assert V.check_channels() == ()
    with pytest.raises(ValueError, match="out_channels"):
        V.check_channels(in_channels=3, out_channels=0)
    with pytest.raises(TypeError, match="in_channels"):
        V.check_channels(in_channels=2.0, out_channels=3)


# ---------------------------------------------------------------- geometry

def _brute_valid_range(n_out, n_in, stride, offset):
    inside = [o for o in range(n_out) if 0 <= o * stride + offset < n_in]
    return (inside[0], inside[-1] + 1) if inside else None


def test_valid_range_against_brute_force():
    """Every size, stride and offset up to small bounds: ``[lo, hi)`` holds exactly the outputs
    whose input lies inside (contiguous), and is empty (``lo == hi``) when there are none."""
    from dyncore.geometry import output_size, valid_range

    for n_in in range(1, 9):
        for stride in range(1, 4):
            for n_out in {output_size(n_in, stride), 1, n_in + 2}:
                for offset in range(-10, 11):
                    lo, hi = valid_range(n_out, n_in, stride, offset)
                    expected = _brute_valid_range(n_out, n_in, stride, offset)
                    if expected is None:
                        assert lo == hi, (n_out, n_in, stride, offset, lo, hi)
                    else:
                        assert (lo, hi) == expected, (n_out, n_in, stride, offset)


def test_shifted_row_against_brute_force():
    """``shifted_row`` gives the row a tap (or a sample) reads, its column offset, and exactly
    the columns whose shifted column lies inside; an empty range when the row is outside. Both
    directions: ``sign = 1`` (where the tap reads) and ``-1`` (whose tap reads this row)."""
    from dyncore.geometry import shifted_row

    for H, W in [(1, 1), (2, 7), (5, 3), (6, 6)]:
        for k, d in [(1, 1), (3, 1), (3, 2), (5, 1), (7, 3)]:
            r = (k - 1) // 2
            for t in range(k * k):
                for y in range(H):
                    for sign in (1, -1):
                        ys, ox, lo, hi = shifted_row(t, k, d, y, H, W, sign)
                        oy, ox_ = sign * (t // k - r) * d, sign * (t % k - r) * d
                        inside = [x for x in range(W) if 0 <= y + oy < H and 0 <= x + ox_ < W]
                        assert (ys, ox) == (y + oy, ox_)
                        assert list(range(lo, hi)) == inside, (H, W, k, d, t, y, sign)


def test_tap_at_and_inside_agree_with_tap_offset_and_the_device_copies():
    """``tap_at`` is the pixel a tap reads (``sign = 1``) or whose tap reads this one (``-1``):
    the two are inverse; ``inside`` is the image test; the CUDA bridge's copies are the same
    functions."""
    from dyncore import cuda_bridge
    from dyncore.geometry import inside, tap_at, tap_offset

    for k, d in [(1, 1), (3, 1), (3, 2), (5, 3)]:
        for t in range(k * k):
            oy, ox = tap_offset(t, k, d)
            assert tap_at(t, k, d, 4, 9, 1) == (4 + oy, 9 + ox)
            assert tap_at(t, k, d, *tap_at(t, k, d, 4, 9, 1), -1) == (4, 9)
    for y, x in [(0, 0), (4, 6), (-1, 0), (0, -1), (5, 0), (0, 7), (5, 7)]:
        assert inside(y, x, 5, 7) == (0 <= y < 5 and 0 <= x < 7)
    for name in ("tap_at", "inside", "valid_range"):
        device = getattr(cuda_bridge, name)
        source = getattr(device, "py_func", device)  # the simulator keeps the plain function
        assert source is getattr(__import__("dyncore.geometry", fromlist=[name]), name).py_func


def test_output_size_and_tap_offsets_match_conv2d():
    from dyncore.geometry import output_size, tap_offset, tap_offsets

    for k, d in [(1, 1), (3, 1), (3, 2), (5, 3)]:
        offsets = tap_offsets(k, d)
        assert offsets.shape == (k * k, 2) and offsets.dtype == torch.long
        assert offsets[k * k // 2].tolist() == [0, 0]  # the centre tap reads the pixel itself
        assert offsets.tolist() == [list(tap_offset(t, k, d)) for t in range(k * k)]
        r = (k - 1) // 2
        assert offsets[0].tolist() == [-r * d, -r * d] and offsets[-1].tolist() == [r * d, r * d]
        # tap t of a one-hot weight picks x at that offset: F.conv2d agrees
        x = torch.arange(1.0, 1 + 15 * 17).reshape(1, 1, 15, 17)  # every tap of (7, 8) inside
        for t in range(k * k):
            w = torch.zeros(1, 1, k, k)
            w.view(-1)[t] = 1
            out = torch.nn.functional.conv2d(x, w, padding=d * r, dilation=d)
            oy, ox = offsets[t].tolist()
            assert out[0, 0, 7, 8] == x[0, 0, 7 + oy, 8 + ox]
    for n in range(1, 10):
        for s in range(1, 4):
            x = torch.zeros(1, 1, n, 1)
            assert output_size(n, s) == torch.nn.functional.conv2d(x, torch.zeros(1, 1, 3, 1), stride=s,
                                                                   padding=(1, 0)).shape[2]
    with pytest.raises(ValueError, match="kernel_size"):
        tap_offsets(4)
    with pytest.raises(ValueError, match="dilation"):
        tap_offsets(3, 0)


# ---------------------------------------------------------------- backend.dispatch and the CUDA bridge

@pytest.mark.parametrize("backend", ["loops", "numba", "torch", "cuda"])
def test_dispatch_returns_zeros_for_an_empty_output_without_running_anything(backend):
    from dyncore.backend import dispatch

    def never(*args):
        raise AssertionError("nothing should run for an empty output")

    x = torch.randn(0, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out = dispatch(backend, (x, w, None), (3,), out_shape=(0, 2, 4, 5), loops=never, vectorized=never,
                   kernels={"numba": None, "cuda": None})
    assert out.shape == (0, 2, 4, 5) and out.dtype == x.dtype
    out.sum().backward()  # still on the graph: empty gradients, not an error
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))


def test_dispatch_routes_loops_and_torch():
    from dyncore.backend import dispatch

    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    scale = 2.0
    common = dict(out_shape=tuple(x.shape), kernels={})
    out = dispatch("loops", (x,), (scale,), loops=lambda a, s: a * s, vectorized=None, **common)
    torch.testing.assert_close(out, x * scale)
    out = dispatch("torch", (x,), (scale,), loops=None, vectorized=lambda a, s: a * s + 1, **common)
    torch.testing.assert_close(out, x * scale + 1)


def test_unravel4_in_a_kernel():
    """``b, c, y, x = unravel4(n, out.shape)`` in a kernel (the simulator without a GPU) gives
    the same index as ``numpy.unravel_index``."""
    unravel4 = cuda_bridge.unravel4

    @cuda.jit
    def kernel(out):
        n = cuda.grid(1)
        if n < out.size:
            b, c, y, x = unravel4(n, out.shape)
            out[b, c, y, x] = n

    shape = (2, 3, 4, 5)
    out = np.full(shape, -1.0)
    blocks, threads = cuda_bridge.launch_config(out.size)
    kernel[blocks, threads](out)
    assert np.array_equal(out, np.arange(out.size, dtype=float).reshape(shape))
    for n in (0, 7, 59, 119):
        assert tuple(int(v) for v in np.unravel_index(n, shape)) == tuple(
            int(v) for v in (n // 60, (n // 20) % 3, (n // 5) % 4, n % 5))


@pytest.mark.parametrize("name, shape", [("unravel3", (2, 3, 5)), ("unravel4", (2, 3, 4, 5)),
                                         ("unravel5", (2, 3, 2, 4, 3))])
def test_unravel_in_a_kernel_and_the_spare_threads(name, shape):
    """Every thread of a launch unravels its index as ``numpy.unravel_index`` does; the spare
    threads of the last block (none of these sizes fills it) get a first index ``>= shape[0]``,
    which is how the kernels retire them."""
    unravel = getattr(cuda_bridge, name)
    n_items = int(np.prod(shape))
    blocks, threads = cuda_bridge.launch_config(n_items)
    got = np.full((blocks * threads, len(shape)), -1, dtype=np.int64)

    @cuda.jit
    def kernel(out, shape):
        n = cuda.grid(1)
        index = unravel(n, shape)
        for i in range(len(shape)):
            out[n, i] = index[i]

    kernel[blocks, threads](got, shape)
    assert blocks * threads > n_items
    want = np.stack(np.unravel_index(np.arange(n_items), shape), axis=1)
    assert np.array_equal(got[:n_items], want)
    assert (got[n_items:, 0] >= shape[0]).all()


def test_sum_axis1_adds_in_order():
    """``sum_axis1`` is ``a.sum(1)``, added in the order of the middle index (bit for bit the
    Python loop), as LS-DFN's channel sum and DDF's ``dL/dchannel`` need."""
    a = torch.randn(3, 5, 4, dtype=torch.float64)
    got = cuda_bridge.sum_axis1(a.to(cuda_bridge.kernel_device(a))).cpu()
    want = torch.zeros(3, 4, dtype=torch.float64)
    for i in range(a.shape[1]):
        want += a[:, i]
    assert torch.equal(got, want)
    torch.testing.assert_close(got, a.sum(1))
    assert cuda_bridge.sum_axis1(a[:0]).shape == (0, 4)


# ---------------------------------------------------------------- experiments.metrics

def test_mean_iou_with_an_absent_class():
    from dyncore.experiments.metrics import confusion_matrix, iou_per_class, mean_iou

    target = torch.tensor([0, 0, 1, 1, 1, 0])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1 the same; class 2 absent from both -> 1 by default
    assert iou_per_class(confusion).tolist() == [0.5, 0.5, 1.0]
    nan = iou_per_class(confusion, absent=float("nan"))
    assert nan[:2].tolist() == [0.5, 0.5] and torch.isnan(nan[2])
    assert mean_iou(pred, target, num_classes=3) == pytest.approx(2 / 3)
    assert mean_iou(pred, target) == pytest.approx(0.5)  # two classes seen
    assert mean_iou(target, target, num_classes=4) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        confusion_matrix(pred, target[:3], 2)
