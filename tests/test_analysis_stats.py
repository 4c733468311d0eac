"""Paired and Welch t-tests against textbook formulas."""

import math
import statistics

import pandas as pd
import pytest
from scipy import stats as sst

from qrecorder.analysis import compare_to_baseline


def test_paired_when_seeds_match():
    a = pd.Series([0.05, 0.06, 0.04, 0.07], index=[0, 1, 2, 3])
    b = pd.Series([0.05, 0.035, 0.05, 0.03], index=[0, 1, 2, 3])
    res = compare_to_baseline(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    assert res.test == "paired" and res.n == 4
    assert res.statistic == pytest.approx(t)
    assert res.pvalue == pytest.approx(2 * sst.t.sf(abs(t), df=len(d) - 1))


def test_welch_when_seeds_differ():
    a = pd.Series([0.05, 0.06, 0.04], index=[0, 1, 2])
    b = pd.Series([0.01, 0.02, 0.00, 0.03], index=[10, 11, 12, 13])
    res = compare_to_baseline(a, b)
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 4
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert res.test == "welch"
    assert res.statistic == pytest.approx(t)
    assert res.pvalue == pytest.approx(2 * sst.t.sf(abs(t), df=df))


def test_too_few_values_gives_nan():
    res = compare_to_baseline(pd.Series([0.1], index=[0]), pd.Series([0.2, 0.3], index=[5, 6]))
    assert res.test == "n/a" and math.isnan(res.pvalue)
