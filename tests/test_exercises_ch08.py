"""The checks of Chapter 8's exercises reject plausible wrong answers, with a useful message."""

import pytest
import torch
import torch.nn.functional as F

from dyncore.exercises import ch08

from exercise_checks import find_the_bug_test, rejects
from solutions import load_solutions

SOL = load_solutions("08_training_stack")


# ------------------------------------------------------------------------------------------
# Exercise 1: bfloat16's rounding error
# ------------------------------------------------------------------------------------------

def test_the_bound_is_attained_and_never_exceeded():
    x = ch08.bf16_values()
    bound = SOL.bf16_error_bound(x)
    error = ch08.measured_bf16_error(x)
    assert bool((error <= bound).all())
    assert (error / bound).max().item() == 1.0  # ties: exactly half a spacing


def _log2_in_float32(x):
    return torch.exp2(torch.floor(torch.log2(x.abs())) - 8).double()


@pytest.mark.parametrize("wrong,match", [
    (lambda x: 2 * SOL.bf16_error_bound(x), "a whole spacing"),
    (lambda x: SOL.bf16_error_bound(x) * 2.0 ** -16, "float32's spacing"),
    (lambda x: SOL.bf16_error_bound(x) / 2, "8 significant bits counting the implicit"),
    (lambda x: x.abs().double() * 2.0 ** -8, "proportional to"),
    (_log2_in_float32, "just below a power of two"),
    (lambda x: None, "returned None"),
    (lambda x: SOL.bf16_error_bound(x)[:10], "shape of x"),
])
def test_bf16_check_rejects_wrong_answers(wrong, match):
    rejects(ch08.check_bf16_error_bound, wrong, match)


# ------------------------------------------------------------------------------------------
# Exercise 2: the fake implementation
# ------------------------------------------------------------------------------------------

def test_opcheck_catches_the_planted_fake():
    op = ch08.register_with_fake(ch08.planted_ddf_fake)
    x, spatial, channel = torch.randn(2, 2, 7, 9), torch.randn(2, 9, 4, 5), torch.randn(2, 2, 9)
    with pytest.raises(Exception, match="(?i)shape"):
        torch.library.opcheck(op, (x, spatial, channel, 3, 1, 2), test_utils=("test_faketensor",))
    torch.testing.assert_close(op(x, spatial, channel, 3, 1, 2),
                               torch.ops.dyncore.ddf(x, spatial, channel, 3, 1, 2, "numba"))


def _ceil_rows_only(x, spatial, channel, k, d, s):
    B, C, H, W = x.shape
    return x.new_empty(B, C, (H - 1) // s + 1, W // s)


def _wrong_dtype(x, spatial, channel, k, d, s):
    return SOL.ddf_fake(x, spatial, channel, k, d, s).float()


def _ignores_stride(x, spatial, channel, k, d, s):
    return x.new_empty(x.shape)


test_fake_check_tells_the_planted_fake_from_wrong_answers = find_the_bug_test(
    ch08.check_ddf_fake, ch08.planted_ddf_fake, {
        "ceil-rows-only": (_ceil_rows_only, r"opcheck fails for x of shape \(2, 2, 7, 9\)"),
        "wrong-dtype": (_wrong_dtype, "opcheck fails"),
        "ignores-stride": (_ignores_stride, r"opcheck fails for x of shape \(1, 2, 8, 8\)"),
        "returns-none": (lambda *a: None, "returned None"),
    }, unfinished="gives the shapes it gave when you got it")


def test_fake_taken_from_spatial_also_passes(capsys):
    ch08.check_ddf_fake(lambda x, sp, ch, k, d, s: x.new_empty(*x.shape[:2], *sp.shape[-2:]))
    assert "Correct:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# Exercise 3: data-parallel gradients
# ------------------------------------------------------------------------------------------

def _summed(model, images, labels, world):
    return [g * world for g in SOL.data_parallel_gradients(model, images, labels, world)]


def _divided(model, images, labels, world):
    return [g / world for g in SOL.data_parallel_gradients(model, images, labels, world)]


def _no_zero_grad(model, images, labels, world):
    share = len(images) // world
    model.zero_grad()
    for r in range(world):
        F.cross_entropy(model(images[r * share:(r + 1) * share]), labels[r * share:(r + 1) * share]).backward()
    return [p.grad.clone() for p in model.parameters()]


def _first_shard_only(model, images, labels, world):
    share = len(images) // world
    model.zero_grad()
    F.cross_entropy(model(images[:share]), labels[:share]).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("wrong,match", [
    (_summed, "times the whole batch's gradient"),
    (_divided, "divided by 2"),
    (_no_zero_grad, "times the whole batch's gradient"),
    (_first_shard_only, r"world=2\), the gradient of .* is wrong"),
    (lambda *a: None, "returned None"),
    (lambda model, *a: [p.detach() for p in model.parameters()][:-1], "one gradient per parameter"),
])
def test_data_parallel_check_rejects_wrong_answers(wrong, match):
    rejects(ch08.check_data_parallel_gradients, wrong, match)


def test_batchnorm_breaks_the_equality_and_groupnorm_keeps_it():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 1, 10, 10, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (8, 10, 10), generator=gen)
    gaps = {}
    for norm in ("batch", "group"):
        model = ch08.small_network(norm)
        model.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        whole = [p.grad.clone() for p in model.parameters()]
        shards = SOL.data_parallel_gradients(model, images, labels, 2)
        gaps[norm] = max(((s - w).norm() / w.norm()).item() for s, w in zip(shards, whole))
    assert gaps["group"] < 1e-10 < 1e-3 < gaps["batch"]
    with pytest.raises(ValueError, match="norm must be"):
        ch08.small_network("layer")
