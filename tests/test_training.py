"""The shared training loop: the optimizer steps, the schedule, the record it returns."""

import math

import pytest
import torch
from torch import nn

from dyncore.training import train_steps


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return x, y


def test_it_fits_a_linear_model_and_records_every_step():
    x, y = _problem()
    model = nn.Linear(3, 1)
    run = train_steps(model, lambda step: ((model(x).squeeze(1) - y) ** 2).mean(), 200, lr=0.1,
                      progress=False)
    assert len(run["losses"]) == 200 and run["seconds"] > 0
    assert run["losses"][-1] < 1e-3 * run["losses"][0]


def test_the_same_seed_gives_the_same_losses():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        x, y = _problem()
        model = nn.Linear(3, 1)
        gen = torch.Generator().manual_seed(1)

        def batch_loss(step):
            idx = torch.randint(0, len(x), (8,), generator=gen)
            return ((model(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

        runs.append(train_steps(model, batch_loss, 30, lr=0.05, progress=False)["losses"])
    assert runs[0] == runs[1]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_a_non_finite_loss_skips_the_step_but_not_the_schedule():
    model = nn.Linear(1, 1)
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def batch_loss(step):
        calls.append(step)
        return model(torch.ones(1, 1)).sum() * float("nan")

    run = train_steps(model, batch_loss, 5, lr=0.1, progress=False,
                      after_backward=lambda: calls.append("backward"))
    assert all(math.isnan(v) for v in run["losses"])
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q), "a NaN loss must not change the weights"
    assert calls == [0, "backward", 1, "backward", 2, "backward", 3, "backward", 4, "backward"]


def test_postfix_is_called_with_the_mean_of_the_recent_losses():
    model = nn.Linear(1, 1)
    seen = []
    train_steps(model, lambda step: model(torch.ones(1, 1)).sum() * 0 + float(step), 10, lr=0.01,
                postfix=lambda mean: seen.append(mean) or "x", every=5)
    assert seen == pytest.approx([2.0, 7.0])


def test_the_default_optimizer_is_adam_with_a_default_one_cycle_schedule():
    """Chapters 5-7 rely on the default: Adam(lr, weight_decay) and OneCycleLR(max_lr=lr)."""
    x, y = _problem()
    runs = []
    for explicit in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        kwargs = dict(optimizer=lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.01),
                      pct_start=0.3) if explicit else {}
        runs.append(train_steps(model, lambda step: ((model(x).squeeze(1) - y) ** 2).mean(), 20,
                                lr=0.05, weight_decay=0.01, progress=False, **kwargs)["losses"])
    assert runs[0] == runs[1]


def test_an_optimizer_factory_and_warm_up_fraction_are_used():
    x, y = _problem()
    made, lrs = [], []
    model = nn.Linear(3, 1)

    def adamw(params):
        made.append(torch.optim.AdamW(params, lr=0.05, weight_decay=1e-4))
        return made[-1]

    def batch_loss(step):
        if made:
            lrs.append(made[0].param_groups[0]["lr"])
        return ((model(x).squeeze(1) - y) ** 2).mean()

    train_steps(model, batch_loss, 10, lr=0.05, optimizer=adamw, pct_start=0.2, progress=False)
    assert len(made) == 1 and isinstance(made[0], torch.optim.AdamW)
    # OneCycleLR peaks after pct_start * steps - 1 scheduler steps (its default 0.3 would peak at 2)
    assert max(range(10), key=lrs.__getitem__) == 1


def test_a_schedule_factory_replaces_the_one_cycle():
    model = nn.Linear(1, 1)
    lrs = []
    opt_of = {}

    def cosine(opt, steps):
        opt_of["opt"] = opt
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def batch_loss(step):
        lrs.append(opt_of["opt"].param_groups[0]["lr"])
        return model(torch.ones(1, 1)).sum() ** 2

    train_steps(model, batch_loss, 4, lr=0.1, schedule=cosine, progress=False)
    assert lrs[0] == pytest.approx(0.1) and lrs == sorted(lrs, reverse=True)


def test_stop_when_diverged_pads_the_curve_with_nan():
    model = nn.Linear(1, 1)
    before = [p.detach().clone() for p in model.parameters()]

    def batch_loss(step):
        return model(torch.ones(1, 1)).sum() * (float("inf") if step == 2 else 0.0)

    losses = train_steps(model, batch_loss, 5, lr=0.1, progress=False, stop_when_diverged=True)["losses"]
    assert losses[:2] == [0.0, 0.0] and len(losses) == 5 and all(math.isnan(v) for v in losses[2:])
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- counting helpers (dyncore.utils)

def test_count_parameters_and_flops_of_a_conv():
    from dyncore.utils import count_flops, count_parameters

    conv = nn.Conv2d(4, 6, 3, padding=1)
    assert count_parameters(conv) == 6 * 4 * 9 + 6
    assert count_flops(conv, torch.randn(2, 4, 5, 7)) == 2 * (2 * 6 * 5 * 7) * 4 * 9


def test_count_flops_switches_dyncore_layers_to_torch_and_back():
    from dyncore.ddf import DDF
    from dyncore.utils import count_flops

    layer = DDF(8).train()
    layer.backend = "numba"
    x = torch.randn(1, 8, 6, 6)
    flops = count_flops(layer, x)
    assert flops > count_flops(layer, x, backend="numba"), "the fused kernel is invisible to the counter"
    assert layer.backend == "numba" and layer.training, "backend and mode are restored"
    assert count_flops(layer, torch.randn(1, 8, 6, 6), elementwise=True) > flops
