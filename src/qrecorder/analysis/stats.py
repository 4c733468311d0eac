"""Compare a metric's values across repeats of two models, and correct for many comparisons.

``compare_to_baseline(values, baseline)``: both Series are indexed by seed; NaN values are
dropped first (a run whose metric is NaN does not count for that metric).

- **paired** (``scipy.stats.ttest_rel``) on the seeds both models have, when they share at least
  two: repeat i of each model ran with the same seed, so the differences are paired. Seeds only
  one side has are left out of the paired test (``n`` is the number of pairs).
- **welch** (``scipy.stats.ttest_ind(equal_var=False)``) when fewer than two seeds are shared
  (e.g. experiments run with different seeds) and each side has at least two values.
- **n/a** otherwise (fewer than two values on a side).

Both tests are two-sided and give the mean difference (model - baseline) with its t confidence
interval (scipy's ``confidence_interval``) and a standardised effect size (paired: Cohen's d_z =
mean/sd of the differences; Welch: difference / sqrt of the mean of the two variances).

No test is made when it is undefined, and the result says why instead of printing a p-value:

- ``identical``: the differences are zero (paired), or both sides are the same constant (Welch);
- ``no variance``: the differences are all the same (paired), or both sides are constant (Welch).

"Zero" and "constant" are judged up to floating-point rounding: differences smaller than
``RTOL`` (1e-10) times the largest absolute value involved. A model compared with a copy of
itself whose values differ in the last bits (another summation order, another BLAS) is
``identical``: a t-test on rounding noise would be meaningless -- scipy even finds such a copy
significant when the rounding is one-sided -- and scipy warns of catastrophic cancellation on
nearly constant data. When exactly one side of a Welch test is constant, the test is the
one-sample t-test of the other side against that constant (Welch's test in the limit of one
zero variance). No RuntimeWarning is emitted in any of these cases.

``holm(pvalues)``: Holm's step-down adjustment for a family of tests (here: every model against
one baseline on one metric). NaN p-values are not part of the family and stay NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

RTOL = 1e-10          # relative size below which a difference or a spread is rounding noise
CONFIDENCE = 0.95


@dataclass(frozen=True)
class TestResult:
    test: str            # "paired", "welch" or "n/a"
    statistic: float
    pvalue: float        # NaN when no test was made (see ``note``)
    n: int               # pairs for "paired", else the size of the model's sample (NaNs excluded)
    n_baseline: int = 0  # the baseline's values used (pairs for "paired")
    diff: float = np.nan     # mean difference, model - baseline (paired: mean of the differences)
    ci_low: float = np.nan   # confidence interval of ``diff`` (``CONFIDENCE``, two-sided t interval)
    ci_high: float = np.nan
    effect: float = np.nan   # standardised effect size (Cohen's d_z paired, d with the mean variance for Welch)
    note: str = ""           # "identical" or "no variance" when no test was made; else ""

    @property
    def label(self) -> str:
        """What the tables print for the test: ``paired``, ``welch``, ``n/a (identical)``, ..."""
        if self.note:
            return f"n/a ({self.note})"
        return self.test


def _constant(x: np.ndarray, tol: float) -> bool:
    return bool(np.ptp(x) <= tol) if len(x) else True


def compare_to_baseline(values: pd.Series, baseline: pd.Series, confidence: float = CONFIDENCE) -> TestResult:
    """Test ``values`` against ``baseline`` (both indexed by seed); see the module docstring."""
    from scipy import stats

    a, b = values.dropna().astype(float), baseline.dropna().astype(float)
    unique = a.index.is_unique and b.index.is_unique
    b_seeds = set(b.index)
    common = [s for s in a.index if s in b_seeds] if unique else []
    if len(common) >= 2:
        x, y = a.loc[common].to_numpy(), b.loc[common].to_numpy()
        d = x - y
        tol = RTOL * float(max(np.max(np.abs(x)), np.max(np.abs(y))))
        n = len(d)
        if np.all(np.abs(d) <= tol):
            return TestResult("paired", np.nan, np.nan, n, n, 0.0, note="identical")
        if _constant(d, tol):
            return TestResult("paired", np.nan, np.nan, n, n, float(np.mean(d)), note="no variance")
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(confidence)
        sd = float(np.std(d, ddof=1))
        return TestResult("paired", float(res.statistic), float(res.pvalue), n, n, float(np.mean(d)),
                          float(ci.low), float(ci.high), float(np.mean(d)) / sd)
    x, y = a.to_numpy(), b.to_numpy()
    if len(x) < 2 or len(y) < 2:
        return TestResult("n/a", np.nan, np.nan, len(x), len(y))
    tol = RTOL * float(max(np.max(np.abs(x)), np.max(np.abs(y))))
    diff = float(np.mean(x) - np.mean(y))
    cx, cy = _constant(x, tol), _constant(y, tol)
    if cx and cy:
        if abs(diff) <= tol:
            return TestResult("welch", np.nan, np.nan, len(x), len(y), 0.0, note="identical")
        return TestResult("welch", np.nan, np.nan, len(x), len(y), diff, note="no variance")
    va, vb = (0.0 if cx else float(np.var(x, ddof=1))), (0.0 if cy else float(np.var(y, ddof=1)))
    effect = diff / float(np.sqrt((va + vb) / 2))
    if cx:   # the model is constant: the baseline's sample against it (statistic of model - baseline)
        res = stats.ttest_1samp(y, float(np.mean(x)))
        ci = res.confidence_interval(confidence)
        return TestResult("welch", -float(res.statistic), float(res.pvalue), len(x), len(y), diff,
                          float(np.mean(x) - ci.high), float(np.mean(x) - ci.low), effect)
    if cy:
        res = stats.ttest_1samp(x, float(np.mean(y)))
        ci = res.confidence_interval(confidence)
        return TestResult("welch", float(res.statistic), float(res.pvalue), len(x), len(y), diff,
                          float(ci.low - np.mean(y)), float(ci.high - np.mean(y)), effect)
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(confidence)
    return TestResult("welch", float(res.statistic), float(res.pvalue), len(x), len(y), diff,
                      float(ci.low), float(ci.high), effect)


def holm(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    With the m non-NaN p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of
    p_(i) is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``. Rejecting the hypotheses whose
    adjusted p-value is <= alpha is exactly Holm's procedure at level alpha (family-wise error
    rate <= alpha under any dependence). NaN entries are outside the family and stay NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="mergesort")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
