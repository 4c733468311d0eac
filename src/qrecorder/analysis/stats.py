"""Compare a metric's values across repeats of two models: paired t-test or Welch's t-test.

Why two tests: when both models ran with the same seeds, repeat i of each shares its seed,
so the differences are paired and the test is sharper (scipy.stats.ttest_rel). Otherwise the
samples are independent with possibly unequal variances (scipy.stats.ttest_ind,
equal_var=False). Both are two-sided; fewer than two values on a side give NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TestResult:
    test: str        # "paired", "welch" or "n/a"
    statistic: float
    pvalue: float
    n: int           # pairs for "paired", else size of the model's sample


def compare_to_baseline(values: pd.Series, baseline: pd.Series) -> TestResult:
    """``values``/``baseline`` are indexed by seed. Paired if the seed sets are equal (n >= 2)."""
    from scipy import stats

    a, b = values.dropna(), baseline.dropna()
    if len(a) >= 2 and set(a.index) == set(b.index) and a.index.is_unique and b.index.is_unique:
        b = b.reindex(a.index)
        diff = a.to_numpy() - b.to_numpy()
        if np.allclose(diff, diff[0]):  # zero variance of the differences: the test is undefined
            return TestResult("paired", np.nan, 0.0 if diff[0] != 0 else 1.0, len(a))
        res = stats.ttest_rel(a.to_numpy(), b.to_numpy())
        return TestResult("paired", float(res.statistic), float(res.pvalue), len(a))
    if len(a) < 2 or len(b) < 2:
        return TestResult("n/a", np.nan, np.nan, len(a))
    res = stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    return TestResult("welch", float(res.statistic), float(res.pvalue), len(a))
