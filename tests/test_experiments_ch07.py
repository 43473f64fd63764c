"""Chapter 7's recorded side-by-side (dyncore.experiments.ch07: 07_side_by_side) and the book's
findings table (dyncore.experiments.ch07_report.findings): registration, a quick run end to end,
the claims found for every recorded result, and a new result appearing without any edit.
Freshness of the recorded result itself is tested in tests/test_experiments.py."""

from __future__ import annotations

import json
import math
import shutil

import pytest

import dyncore  # noqa: F401  (first: the CUDA simulator)
from dyncore.experiments import ch07, runner, verdicts
from dyncore.experiments import ch07_report as R

VERDICTS = (verdicts.HOLDS, verdicts.FAILS, verdicts.INCONCLUSIVE)


@pytest.fixture(scope="module")
def quick():
    """Every layer, two seeds, a few steps (about 15 s)."""
    return runner.run("07_side_by_side", quick=True, seeds=2, progress=False, lr=0.01, steps=8, eval_every=4)


def test_the_experiment_is_registered():
    exp = runner.get_experiment("07_side_by_side")
    assert exp is ch07.SIDE_BY_SIDE and exp.chapter == 7 and exp.threads == 1 and exp.seeds >= 5
    assert exp.variants == ch07.layer_names() and exp.variants[0] == ch07.baseline()
    assert exp.select_by == "val_loss" and len(exp.lr_grid) >= 3
    assert set(exp.config["backends"]) == set(exp.variants)
    assert set(exp.config["backends"].values()) <= set(ch07.CPU_BACKENDS)


def test_a_quick_run_measures_every_layer_over_the_same_seeds(quick):
    assert quick["quick"] and quick["seeds"] == [0, 1] and set(quick["variants"]) == set(ch07.layer_names())
    for name, entry in quick["variants"].items():
        assert [r["seed"] for r in entry["runs"]] == [0, 1]
        first = entry["runs"][0]
        assert first["layer_parameters"] == ch07.parameter_formula(name)
        assert entry["parameters"] > first["layer_parameters"] and entry["flops"] > first["layer_flops"] > 0
        for run in entry["runs"]:
            m = run["metrics"]
            assert all(math.isfinite(v) for v in m.values()), name
            assert 0 <= m["miou"] <= 1 and 0 <= m["coarse_accuracy"] <= 1
            assert {f"edge_error_{d}" for d in range(ch07.EDGE_DISTANCES)} <= set(m)
            assert m["erf_support"] >= ch07.theoretical_receptive_field("conv")
            assert run["curves"]["val_loss"][-1][0] == quick["config"]["steps"]
        assert ("ddf_active_units" in first["metrics"]) == (name == "DDF")
    # the same seed gives every layer the same stem and head, so the shared parts count the same
    shared = {e["parameters"] - e["runs"][0]["layer_parameters"] for e in quick["variants"].values()}
    assert len(shared) == 1
    assert runner.check_fresh(quick) == []


def test_the_summary_curves_and_claims_read_a_run(quick):
    import matplotlib.pyplot as plt

    rows = R.summary(quick)
    assert [r["layer"] for r in rows] == list(quick["variants"])
    assert all(r["miou"][2] == 2 and "±" in r["miou_text"] for r in rows)
    text = R.format_summary(rows)
    assert all(name in text for name in quick["variants"]) and "test mIoU" in text
    fig = R.plot_curves(quick)
    assert len(fig.axes) == 2
    plt.close(fig)
    flat = R.plateau(quick)
    assert set(flat) == set(quick["variants"]) and all(math.isfinite(v) for v in flat.values())
    live = R.ComparisonTable([{"layer": "conv", "miou": -1.0, "accuracy": -1.0, "fine": -1.0, "coarse": -1.0,
                               "layer_time": 1.0},
                              {"layer": "elsewhere", "miou": -1.0, "accuracy": -1.0, "fine": -1.0, "coarse": -1.0,
                               "layer_time": 2.0}])
    closing = R.with_recorded(live, quick)  # the recorded means replace the accuracies, nothing else
    conv = closing.row("conv")
    assert conv["miou"] == verdicts.mean_std(verdicts.values(quick, "conv", "miou"))[0]
    assert conv["coarse"] == verdicts.mean_std(verdicts.values(quick, "conv", "coarse_accuracy"))[0]
    assert conv["layer_time"] == 1.0 and closing.row("elsewhere")["miou"] == -1.0 and live.row("conv")["miou"] == -1.0
    claims = ch07.side_by_side_claims(quick)
    assert {c.a for c in claims} == set(ch07.layer_names()[1:]) and all(c.b == "conv" for c in claims)
    assert all(verdicts.verdict(quick, c).verdict in VERDICTS for c in claims)


def _curves(*seeds):
    """A result with one variant whose validation curves (steps 10, 20, ..., 100) are ``seeds``."""
    return {"variants": {"v": {"runs": [{"curves": {"val_loss": [[10 * (i + 1), y] for i, y in enumerate(c)]}}
                                        for c in seeds]}}}


def test_plateau_measures_the_last_fall_three_ways():
    flat = _curves([5.0, 2.0, 1.5] + [1.0] * 7, [5.0, 2.0, 1.5] + [1.2] * 7)
    for of in ("final", "total", "seeds"):
        assert R.plateau(flat, last=0.2, of=of) == {"v": 0.0}
    # 1/t from step 10 to 100: over the last fifth (step 80 -> 100) it falls 1/80 - 1/100
    a = [[1 / (10 * (i + 1)) for i in range(10)]]
    b = [[1.1 / (10 * (i + 1)) for i in range(10)]]
    mean_at = lambda step: 1.05 / step  # noqa: E731  (the mean of the two seeds)
    got = {of: R.plateau(_curves(*a, *b), last=0.2, of=of)["v"] for of in ("final", "total", "seeds")}
    fall = mean_at(80) - mean_at(100)
    assert got["final"] == pytest.approx(fall / mean_at(100))  # 25%: still falling by its own size
    assert got["total"] == pytest.approx(fall / (mean_at(10) - mean_at(100)))  # under 3% of the whole fall
    assert got["seeds"] == pytest.approx(fall / math.sqrt(2 * (0.05 / 100) ** 2))  # std over the two seeds
    assert got["total"] < 0.05 < got["final"]
    rising = _curves([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isnan(R.plateau(rising, last=0.2, of="total")["v"])
    with pytest.raises(ValueError, match="of must be"):
        R.plateau(flat, of="start")
    with pytest.raises(ValueError, match="last must be"):
        R.plateau(flat, last=1.5)
    with pytest.raises(ValueError, match="at least two seeds"):
        R.plateau(_curves([3.0, 2.0, 1.0]), last=0.2, of="seeds")


def test_budget_check_finds_a_comparison_that_the_last_part_of_training_turned():
    import copy

    res = copy.deepcopy(runner.load("07_side_by_side"))
    conv = res["variants"]["conv"]["runs"]
    for i, run in enumerate(res["variants"]["DFN"]["runs"]):  # behind the conv until 90%, ahead at the end
        curve = run["curves"]["val_loss"]
        base = conv[i]["curves"]["val_loss"]
        n = len(curve)
        for j in range(n):
            ahead = j == n - 1
            curve[j] = [base[j][0], base[j][1] + (-1.0 if ahead else 1.0) + 0.01 * i]
    rows = {(r["a"], r["b"]): r for r in R.budget_check(res, at=0.8)}
    turned = rows[("DFN", "conv")]
    assert turned["changed"] and turned["early"].verdict == verdicts.FAILS and turned["final"].verdict == verdicts.HOLDS
    assert turned["step"] >= 0.8 * conv[0]["curves"]["val_loss"][-1][0]
    assert set(rows) >= {(v, "conv") for v in res["variants"] if v != "conv"}  # one row per compared pair
    with pytest.raises(ValueError, match="at must be"):
        R.budget_check(res, at=1.0)


def test_the_findings_table_reads_every_recorded_result():
    table = R.findings()
    recorded = sorted(p.stem for p in runner.RESULTS.glob("*.json"))
    assert sorted(table.recorded) == recorded
    for name in recorded:  # every recorded result has claims its chapter tests
        assert R.claims_for(runner.load(name)), name
        assert any(r["experiment"] == name and r["verdict"] in VERDICTS for r in table.rows), name
    for r in table.rows:
        assert r["verdict"] in VERDICTS + (R.NOT_TESTED,)
    untested = {r["claim"] for r in table.untested()}
    for pc in R.PAPER_CLAIMS:
        listed = f"{pc.paper}: {pc.claim}" in untested
        assert listed == (not any(e in recorded for e in pc.experiments)), pc
    assert sum(table.counts().values()) == len(table.rows)
    assert "verdict" in str(table) and "<table>" in table._repr_html_()
    close = table.close_calls()
    assert all(0.01 < r["p"] < 0.1 and r["verdict"] != R.NOT_TESTED for r in close)
    assert len(close) == sum(r["p"] is not None and 0.01 < r["p"] < 0.1 for r in table.tested())
    assert str(table).count("(close call)") == len(close) == table._repr_html_().count("(close call)")
    assert table.close_calls(band=(-1.0, 2.0)) == [r for r in table.tested() if r["p"] is not None]


def test_a_newly_recorded_result_appears_without_any_edit(tmp_path, quick):
    """With no results, every paper claim is untested; add a result file and its claims (here
    the side-by-side's, on the quick run) take their places with verdicts."""
    empty = R.findings(tmp_path)
    assert empty.recorded == [] and empty.tested() == [] and len(empty.untested()) == len(R.PAPER_CLAIMS)
    runner.save(quick, tmp_path)
    pad = runner.RESULTS / "05_pad_dilation.json"
    if pad.is_file():
        shutil.copy(pad, tmp_path)
    table = R.findings(tmp_path)
    ours = [r for r in table.rows if r["experiment"] == "07_side_by_side"]
    assert len(ours) == len(ch07.side_by_side_claims(quick)) and all(r["verdict"] in VERDICTS for r in ours)
    assert not any("07_side_by_side" in r["ours"] for r in table.untested())
    if "05_pad_dilation" in table.recorded:  # the derived claims (PAD's dilation by zone) come too
        assert any(r["claim"].startswith("PAD looks further") for r in table.tested())


def test_a_result_with_no_claims_is_listed_as_recorded_but_untested(tmp_path, quick):
    odd = json.loads(json.dumps(quick))
    odd["name"], odd["chapter"], odd["title"] = "09_elsewhere", 9, "a result no chapter module knows"
    runner.save(odd, tmp_path)
    table = R.findings(tmp_path)
    row = [r for r in table.rows if r["experiment"] == "09_elsewhere"]
    assert len(row) == 1 and row[0]["verdict"] == R.NOT_TESTED


@pytest.mark.parametrize("call, exc, words", [
    (lambda q, p: R.findings(p / "missing"), ValueError, "folder"),
    (lambda q, p: R.plot_curves(q, keys=("accuracy",)), ValueError, "keys"),
    (lambda q, p: R.summary(q, metrics=(("nope", "nope", 3),)), ValueError, "nope"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, exc, words, quick, tmp_path):
    with pytest.raises(exc, match=words):
        call(quick, tmp_path)


def _fake(name, chapter, variants, metrics):
    return {"name": name, "chapter": chapter, "variants": {
        v: {"runs": [{"seed": s, "metrics": {m: 0.1 * s + i for m in metrics}} for s in range(3)]}
        for i, v in enumerate(variants)}}


def test_claims_are_found_whatever_form_a_chapter_gives_them(monkeypatch):
    """A chapter module may give its claims as ``claims(result)``, ``claims()`` or a constant
    ``..._CLAIMS`` tuple; only those whose variants and metrics the result holds are taken."""
    import sys
    import types

    from dyncore.experiments import ch05

    pad = _fake("05_pad_dilation", 5, ch05.DILATION.variants,
                ("miou", "fine_accuracy", "coarse_accuracy", "dilation_fine", "dilation_coarse"))
    names = [c.name for _, c in R.claims_for(pad)]
    assert names[:5] == [c.name for c in ch05.claims(pad)] and names[5] == ch05.ZONE_CLAIMS[0].name

    chapter = types.ModuleType("dyncore.experiments.ch09")
    exec("from dyncore.experiments.verdicts import Claim\n"
         "def claims():\n"
         "    return (Claim('a beats b', 'acc', 'a', 'b', paper='1 vs 0'),)\n"
         "OTHER_CLAIMS = (Claim('b beats c', 'loss', 'b', 'c', paper='-', lower_is_better=True),)\n"
         "UNRELATED_CLAIMS = (Claim('x beats y', 'acc', 'x', 'y', paper='-'),)\n", chapter.__dict__)
    monkeypatch.setitem(sys.modules, "dyncore.experiments.ch09", chapter)
    found = [c.name for _, c in R.claims_for(_fake("09_toy", 9, ("a", "b", "c"), ("acc", "loss")))]
    assert sorted(found) == ["a beats b", "b beats c"]
    assert R.claims_for(_fake("09_other", 9, ("p", "q"), ("acc",))) == []
