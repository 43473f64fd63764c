"""Verdicts computed from the seeds, not typed: does a paper's claim hold in our runs?

A :class:`Claim` says that variant ``a`` beats variant ``b`` on a metric (as the paper reports).
:func:`verdict` decides from the per-seed values of a recorded run with Welch's t-test (two
samples, unequal variances, two-sided, ``scipy.stats.ttest_ind(equal_var=False)``) at the 5% level:

* ``"holds"``: the difference is significant and in the paper's direction;
* ``"does not hold at this scale"``: significant, in the other direction;
* ``"inconclusive (within noise)"``: not significant (p >= 0.05), or fewer than two seeds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .. import validation as V

__all__ = ["Claim", "Verdict", "values", "mean_std", "verdict", "HOLDS", "FAILS", "INCONCLUSIVE",
           "ALPHA"]

HOLDS = "holds"
FAILS = "does not hold at this scale"
INCONCLUSIVE = "inconclusive (within noise)"
ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    """``a`` is better than ``b`` on ``metric`` (higher is better unless ``lower_is_better``);
    ``paper`` is the paper's own figure for it, as a short text (``"aEPE 2.88 vs 3.12 (Table 1)"``)."""

    name: str
    metric: str
    a: str
    b: str
    paper: str
    lower_is_better: bool = False
    source: str = ""


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    a: tuple[float, float, int]
    b: tuple[float, float, int]
    p_value: float
    verdict: str

    def row(self, digits: int = 3) -> dict:
        def fmt(m):
            return f"{m[0]:.{digits}f} ± {m[1]:.{digits}f} (n={m[2]})"
        return {"claim": self.claim.name, "paper": self.claim.paper,
                "ours": f"{self.claim.a}: {fmt(self.a)}; {self.claim.b}: {fmt(self.b)}",
                "p": self.p_value, "verdict": self.verdict}


def values(result: dict, variant: str, metric: str) -> list[float]:
    """The per-seed values of ``metric`` for ``variant`` in a recorded result."""
    V.check_choice("variant", variant, tuple(result["variants"]))
    runs = result["variants"][variant]["runs"]
    missing = [r["seed"] for r in runs if metric not in r.get("metrics", {})]
    if missing:
        raise ValueError(f"metric {metric!r} is not recorded for {variant!r} (seeds {missing})")
    return [r["metrics"][metric] for r in runs]


def mean_std(xs: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def verdict(result: dict, claim: Claim, alpha: float = ALPHA) -> Verdict:
    from scipy import stats

    a, b = values(result, claim.a, claim.metric), values(result, claim.b, claim.metric)
    ma, mb = mean_std(a), mean_std(b)
    if len(a) < 2 or len(b) < 2:
        return Verdict(claim, ma, mb, math.nan, INCONCLUSIVE)
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        p = 0.0 if ma[0] != mb[0] else 1.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    if not p < alpha:
        return Verdict(claim, ma, mb, p, INCONCLUSIVE)
    a_better = ma[0] < mb[0] if claim.lower_is_better else ma[0] > mb[0]
    return Verdict(claim, ma, mb, p, HOLDS if a_better else FAILS)
