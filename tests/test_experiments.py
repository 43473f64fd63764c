"""The experiment runner (dyncore.experiments.runner), its verdicts, and the freshness of every
recorded result in results/experiments/."""

from __future__ import annotations

import json
import math

import dyncore  # noqa: F401
import pytest
import torch
from torch import nn

from dyncore.experiments import runner, verdicts
from dyncore.experiments.__main__ import main
from dyncore.experiments.runner import Experiment

# ----------------------------------------------------------------------------- a toy experiment


def _prepare(config):
    g = torch.Generator().manual_seed(config["data_seed"])
    x = torch.randn(config["n"], 4, generator=g)
    w = torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    y = x @ w + 0.1 * torch.randn(config["n"], 1, generator=g)
    half = config["n"] // 2
    return {"train": (x[:half], y[:half]), "val": (x[half:3 * half // 2], y[half:3 * half // 2]),
            "test": (x[3 * half // 2:], y[3 * half // 2:])}


def _trial(t):
    model = nn.Linear(4, 1) if t.variant == "linear" else nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = t.data["train"]
    xv, yv = t.data["val"]
    xt, yt = t.data["test"]
    g = torch.Generator().manual_seed(1000 + t.seed)

    def batch_loss(step):
        idx = torch.randint(0, len(x), (16,), generator=g)
        return nn.functional.mse_loss(model(x[idx]), y[idx])

    t.count(model, x[:1])
    t.train(model, batch_loss, t.config["steps"], progress=False,
            validate=lambda: nn.functional.mse_loss(model(xv), yv).item())
    with torch.no_grad():
        val_loss = nn.functional.mse_loss(model(xv), yv).item()
        loss = nn.functional.mse_loss(model(xt), yt).item()
    return {"val_loss": val_loss, "test_loss": loss, "neg_loss": -loss}


TOY = Experiment(name="toy_regression", chapter=0, title="a toy", variants=("linear", "mlp"),
                 config={"n": 256, "data_seed": 0, "steps": 40, "lr": 0.05},
                 quick={"steps": 12}, prepare=_prepare, trial=_trial, lr_grid=(0.01, 0.1),
                 seeds=3, quick_seeds=2)


def _trial_changed(t):
    t.config = {**t.config, "lr": t.config["lr"] * 1.5}
    return _trial(t)


@pytest.fixture(scope="module")
def toy_result():
    return runner.run(TOY, quick=True, progress=False)


def test_a_run_records_every_variant_and_seed(toy_result):
    r = toy_result
    assert r["format"] == runner.FORMAT and r["quick"] and r["config"]["steps"] == 12
    assert r["seeds"] == [0, 1] and set(r["variants"]) == {"linear", "mlp"}
    assert r["threads"] == {"torch": 1, "numba": 1} and "torch" in r["versions"]
    for v, entry in r["variants"].items():
        sel = r["lr_selection"][v]
        assert sel["grid"] == [0.01, 0.1] and len(sel["scores"]) == 2 and sel["metric"] == "val_loss"
        assert entry["lr"] == sel["grid"][min(range(2), key=lambda i: sel["scores"][i])]
        assert [run["seed"] for run in entry["runs"]] == [0, 1]
        for run in entry["runs"]:
            assert math.isfinite(run["metrics"]["test_loss"])
            assert len(run["first_losses"]) == runner.FRESH_STEPS
            assert run["curves"]["train_loss"][-1][0] == 12 and run["curves"]["val_loss"][-1][0] == 12
        assert entry["parameters"] == (5 if v == "linear" else 4 * 8 + 8 + 8 + 1)
        assert entry["flops"] > 0
    # different seeds, different numbers
    runs = r["variants"]["mlp"]["runs"]
    assert runs[0]["metrics"] != runs[1]["metrics"]


def test_parallel_processes_give_the_same_numbers(toy_result):
    again = runner.run(TOY, quick=True, progress=False, jobs=2)
    for v in TOY.variants:
        for a, b in zip(toy_result["variants"][v]["runs"], again["variants"][v]["runs"]):
            assert a["metrics"] == b["metrics"] and a["first_losses"] == b["first_losses"]


def test_seed_0_is_the_grid_run_at_the_chosen_rate(toy_result, monkeypatch):
    # the grid's trials are seed 0's test-split trials: seed 0 at the chosen rate is not trained
    # twice, and its record is what a separate seed-0 trial at that rate gives, bit for bit
    for v, entry in toy_result["variants"].items():
        alone = runner.run_trial(TOY, v, 0, {**TOY.configured(quick=True), "lr": entry["lr"]})
        first = entry["runs"][0]
        assert first["metrics"] == alone["metrics"] and first["first_losses"] == alone["first_losses"]
        assert first["curves"] == alone["curves"]
        sel = toy_result["lr_selection"][v]
        assert first["metrics"]["val_loss"] == sel["scores"][sel["grid"].index(entry["lr"])]
    calls = []
    real = runner.run_trial
    monkeypatch.setattr(runner, "run_trial", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    runner.run(TOY, quick=True, progress=False, seeds=3)
    # two variants x (two rates + seeds 1 and 2)
    assert len(calls) == 2 * (2 + 2) and sum(c["seed"] == 0 for c in calls) == 2 * 2


def test_recorded_seed_0_val_loss_is_its_grid_score():
    # holds for every recorded experiment: training does not depend on the evaluated split
    checked = 0
    for path in sorted(runner.RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        for v, sel in r["lr_selection"].items():
            m = r["variants"][v]["runs"][0]["metrics"]
            if sel["metric"] in m:
                assert m[sel["metric"]] == sel["scores"][sel["grid"].index(r["variants"][v]["lr"])], (path.name, v)
                checked += 1
    assert checked >= 50


def test_rates_within_the_tolerance_of_the_best_are_tied_and_the_smallest_wins():
    three = Experiment(**{**TOY.__dict__, "lr_grid": (0.01, 0.1, 1.0)})
    assert three.lr_tolerance == 0.002
    assert three.choose_lr([2.0, 1.0, 0.9995]) == 1  # 0.05% apart: tied, the smaller rate
    assert three.choose_lr([2.0, 1.0, 0.99]) == 2  # 1% apart: the best
    assert three.choose_lr([1.0, 1.001, 0.999]) == 0
    assert three.choose_lr([float("nan"), 1.0, 1.0005]) == 1
    assert three.choose_lr([float("nan")] * 3) == 0
    exact = Experiment(**{**three.__dict__, "lr_tolerance": 0.0})
    assert exact.choose_lr([2.0, 1.0, 0.9995]) == 2 and exact.choose_lr([1.0, 1.0, 2.0]) == 0
    higher = Experiment(**{**three.__dict__, "select_by": "val_accuracy", "maximize": ("val_accuracy",)})
    assert higher.choose_lr([0.5, 0.9, 0.9015]) == 1 and higher.choose_lr([0.5, 0.9, 0.95]) == 2
    with pytest.raises(ValueError, match="scores must have one entry per rate"):
        three.choose_lr([1.0, 2.0])
    with pytest.raises(ValueError, match="lr_tolerance must be in"):
        Experiment(**{**three.__dict__, "lr_tolerance": -0.1})
    with pytest.raises(TypeError, match="lr_tolerance must be a number"):
        Experiment(**{**three.__dict__, "lr_tolerance": "1%"})
    with pytest.raises(ValueError, match="lr_grid must be increasing"):
        Experiment(**{**three.__dict__, "lr_grid": (0.1, 0.01)})


def test_grid_ends_and_the_selection_report():
    def sel(scores, lr):
        return {"grid": [0.01, 0.1, 1.0], "scores": scores, "metric": "val_loss", "tolerance": 0.002, "lr": lr}
    result = {"config": {"lr": 0.1}, "lr_selection": {
        "low": sel([1.0, 2.0, 3.0], 0.01), "inside": sel([2.0, 1.0, 1.0005], 0.1), "high": sel([3.0, 2.0, 1.0], 1.0)}}
    assert runner.grid_ends(result) == {"low": "lowest", "high": "highest"}
    text = runner.selection_report(result, what="validation MSE", digits=3)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("low ") and "validation MSE by learning rate 0.01: 1, 0.1: 2" in lines[0]
    assert lines[0].endswith("-> lr 0.01 (the lowest of the grid)")
    assert lines[1].endswith("-> lr 0.1 (tied within 0.2% with 1)")
    assert lines[2].endswith("-> lr 1 (the highest of the grid)")
    assert lines[3] == "2 of 3 chose a learning rate at an end of the grid: low; high"
    old = {"config": {"lr": 0.1}, "lr_selection": {"even": {k: x for k, x in sel([2.0, 2.0, 3.0], 0.01).items()
                                                            if k != "tolerance"}}}
    assert runner.selection_report(old).splitlines()[0].endswith("-> lr 0.01 (tied with 0.1; the lowest of the grid)")
    assert runner.grid_ends(result, variants=["inside", "high"]) == {"high": "highest"}
    assert runner.selection_report(result, variants=["inside"]).splitlines()[-1] == \
        "0 of 1 chose a learning rate at an end of the grid"
    with pytest.raises(ValueError, match="variants must be one of"):
        runner.grid_ends(result, variants=["nowhere"])
    # ties are measured from the best score, as the rule measures them: 1.0012 is within 0.2% of the
    # chosen 0.9995 but not of the best, 0.998
    chain = {"config": {"lr": 0.1}, "lr_selection": {"chain": sel([0.998, 0.9995, 1.0012], 0.01)}}
    assert runner.selection_report(chain).splitlines()[0].endswith("-> lr 0.01 (tied within 0.2% with 0.1; the lowest of the grid)")
    chain["lr_selection"]["chain"].update(scores=[1.0012, 0.9995, 0.998], lr=0.1)
    assert runner.selection_report(chain).splitlines()[0].endswith("-> lr 0.1 (tied within 0.2% with 1)")
    accuracy = {"config": {"lr": 0.1}, "lr_selection": {"acc": {**sel([0.5, 0.9, 0.9015], 0.1), "metric": "val_accuracy"}}}
    assert runner.selection_report(accuracy).splitlines()[0].endswith("-> lr 0.1 (tied within 0.2% with 1)")
    assert runner.grid_score(result, "inside", 1.0) == 1.0005 and runner.grid_score(result, "low", 0.01) == 1.0
    with pytest.raises(ValueError, match="lr must be one of the grid searched for 'low'"):
        runner.grid_score(result, "low", 0.03)
    with pytest.raises(ValueError, match="variants must be one of"):
        runner.grid_score(result, "nowhere", 0.1)
    single = {"config": {"lr": 0.1}, "lr_selection": {"only": {**sel([1.0], 0.1), "grid": [0.1]}}}
    assert runner.grid_ends(single) == {}
    assert "every variant trained at lr 0.02" in runner.selection_report({"config": {"lr": 0.02}, "lr_selection": {}})


def test_recorded_or_reduced_and_describe(tmp_path, capsys):
    reduced, recorded = runner.recorded_or_reduced(TOY, results=tmp_path, lr=0.02)
    assert not recorded and reduced["quick"] and reduced["seeds"] == [0, 1] and reduced["config"]["lr"] == 0.02
    assert "no recorded run of toy_regression found" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # a reduced run is never saved
    full, recorded = runner.recorded_or_reduced(TOY, results=tmp_path, rerun=True, jobs=1)
    assert recorded and not full["quick"] and full["seeds"] == [0, 1, 2]
    again, recorded = runner.recorded_or_reduced(TOY, results=tmp_path)
    assert recorded and again["date"] == full["date"] and again["variants"] == full["variants"]
    line = runner.describe(again)
    assert line.startswith(f"toy_regression: recorded run of {full['date']}: 2 variants x 3 seeds, 40 steps each, ")
    assert "with 1 process on" in line and f"{TOY.threads} thread" in line and f"torch {torch.__version__}" in line
    assert runner.describe(reduced, recorded=False, what="models").startswith("toy_regression: reduced run of")
    assert ": 2 models x 2 seeds, 12 steps each" in runner.describe(reduced, recorded=False, what="models")
    with pytest.raises(TypeError, match="rerun must be True or False"):
        runner.recorded_or_reduced(TOY, rerun="yes", results=tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        runner.recorded_or_reduced("no_such_experiment", results=tmp_path)


def test_every_recorded_choice_follows_the_selection_rule():
    # a record's learning rates are what its experiment's grid and rule choose from its scores
    checked = 0
    for path in sorted(runner.RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        experiment = runner.get_experiment(r["name"])
        for v, sel in r["lr_selection"].items():
            assert tuple(sel["grid"]) == experiment.lr_grid, (path.name, v)
            assert sel["grid"][experiment.choose_lr(sel["scores"])] == sel["lr"] == r["variants"][v]["lr"], (path.name, v)
            checked += 1
    assert checked >= 50


def test_selection_needs_a_validation_metric():
    with pytest.raises(ValueError, match="select_by must name a metric of the validation split"):
        Experiment(**{**TOY.__dict__, "select_by": "test_loss"})
    quiet = Experiment(**{**TOY.__dict__, "select_by": "val_accuracy"})
    with pytest.raises(ValueError, match="returned no 'val_accuracy'"):
        runner.run(quiet, quick=True, progress=False, seeds=1)


def test_seeds_and_fixed_lr_and_variants_can_be_chosen():
    r = runner.run(TOY, quick=True, progress=False, seeds=1, lr=0.02, variants=["linear"])
    assert r["lr_selection"] == {} and r["variants"]["linear"]["lr"] == 0.02 and r["seeds"] == [0]
    with pytest.raises(ValueError, match="variants must be one of"):
        runner.run(TOY, quick=True, progress=False, variants=["cnn"])
    with pytest.raises(ValueError, match="seeds must be a positive int"):
        runner.run(TOY, quick=True, progress=False, seeds=0)


def test_fresh_results_pass_and_a_behaviour_change_is_caught(toy_result):
    assert runner.check_fresh(toy_result, experiment=TOY) == []
    # a changed learning rate
    stale = json.loads(json.dumps(toy_result))
    stale["variants"]["mlp"]["lr"] *= 2
    problems = runner.check_fresh(stale, experiment=TOY)
    assert len(problems) == 1 and "mlp" in problems[0]
    # a changed model or training step
    changed = Experiment(**{**TOY.__dict__, "trial": _trial_changed})
    assert len(runner.check_fresh(toy_result, experiment=changed)) == 2
    # recorded on a CPU of another kind: the looser tolerance, which still catches both changes
    assert runner.fresh_tolerance(toy_result) == (runner.FRESH_RTOL, runner.FRESH_STEPS)
    elsewhere = json.loads(json.dumps(toy_result))
    elsewhere["machine"]["llvm_cpu"] = "another-cpu"
    stale["machine"]["llvm_cpu"] = "another-cpu"
    assert (runner.fresh_tolerance(elsewhere) == runner.fresh_tolerance(stale)
            == (runner.FRESH_RTOL_OTHER_CPU, runner.FRESH_STEPS_OTHER_CPU))
    assert runner.check_fresh(elsewhere, experiment=TOY) == []
    assert len(runner.check_fresh(stale, experiment=TOY)) == 1
    assert len(runner.check_fresh(elsewhere, experiment=changed)) == 2


def test_save_and_load(tmp_path, toy_result):
    path = runner.save(toy_result, tmp_path)
    assert path.name == "toy_regression.json"
    assert runner.load(path) == json.loads(json.dumps(toy_result))
    with pytest.raises(FileNotFoundError, match="python -m dyncore.experiments run"):
        runner.load(tmp_path / "missing.json")
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a dyncore-experiment"):
        runner.load(path)


def _result(a, b):
    return {"variants": {"A": {"runs": [{"seed": i, "metrics": {"m": v}} for i, v in enumerate(a)]},
                         "B": {"runs": [{"seed": i, "metrics": {"m": v}} for i, v in enumerate(b)]}}}


def test_verdicts_are_computed_from_the_seeds():
    claim = verdicts.Claim("A beats B", "m", "A", "B", paper="0.9 vs 0.8")
    assert verdicts.verdict(_result([0.9, 0.91, 0.92], [0.80, 0.81, 0.79]), claim).verdict == verdicts.HOLDS
    assert verdicts.verdict(_result([0.7, 0.71, 0.72], [0.80, 0.81, 0.79]), claim).verdict == verdicts.FAILS
    noisy = verdicts.verdict(_result([0.9, 0.7, 0.8], [0.85, 0.75, 0.8]), claim)
    assert noisy.verdict == verdicts.INCONCLUSIVE and noisy.p_value > 0.05
    assert verdicts.verdict(_result([0.9], [0.8]), claim).verdict == verdicts.INCONCLUSIVE
    lower = verdicts.Claim("A lower", "m", "A", "B", paper="", lower_is_better=True)
    assert verdicts.verdict(_result([0.7, 0.71, 0.72], [0.80, 0.81, 0.79]), lower).verdict == verdicts.HOLDS
    row = verdicts.verdict(_result([0.9, 0.91, 0.92], [0.80, 0.81, 0.79]), claim).row()
    assert row["ours"].startswith("A: 0.910 ± 0.010 (n=3)")
    with pytest.raises(ValueError, match="metric 'x' is not recorded"):
        verdicts.values(_result([1], [2]), "A", "x")


def test_the_command_line(capsys):
    assert main(["list"]) == 0
    with pytest.raises(SystemExit):
        main(["run"])
    with pytest.raises(SystemExit):
        main(["run", "no_such_experiment", "--quick"])
    assert "name must be one of" in capsys.readouterr().err


# ----------------------------------------------------------------------------- recorded results

RECORDED = sorted(p.stem for p in runner.RESULTS.glob("*.json"))


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_results_are_fresh(name):
    """The first training steps of every recorded experiment, re-run now, give the recorded
    losses (all five to rtol 1e-4 on a CPU like the recording one, the first three to 1e-2 on
    another: runner.fresh_tolerance):
    the numbers in the chapters are what this code computes."""
    result = runner.load(name)
    assert not result["quick"], f"{name}: a quick run was recorded as the full one"
    assert runner.check_fresh(result) == []
