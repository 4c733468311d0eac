"""Paired and Welch t-tests, their intervals and Holm's correction, against scipy and textbook formulas."""

import math
import statistics
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from qrecorder.analysis import compare_to_baseline
from qrecorder.analysis.stats import RTOL, holm


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


# ---------------------------------------------------------------- intervals, effect sizes, degenerate cases


@pytest.fixture(autouse=True)
def _runtime_warnings_are_errors():
    """No case may print a RuntimeWarning (scipy's precision-loss warning, numpy's mean of empty)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def test_paired_interval_and_effect_match_scipy():
    rng = np.random.default_rng(1)
    b = pd.Series(0.03 + 0.01 * rng.standard_normal(6), index=range(6))
    a = pd.Series(b.to_numpy() + 0.004 + 0.003 * rng.standard_normal(6), index=range(6))
    res = compare_to_baseline(a, b)
    ref = sst.ttest_rel(a.to_numpy(), b.to_numpy())
    ci = ref.confidence_interval(0.95)
    d = a - b
    assert res.test == "paired" and res.label == "paired" and res.note == ""
    assert res.pvalue == pytest.approx(ref.pvalue) and res.statistic == pytest.approx(ref.statistic)
    assert (res.ci_low, res.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert res.diff == pytest.approx(d.mean())
    half = sst.t.ppf(0.975, df=5) * d.std(ddof=1) / math.sqrt(6)  # the textbook t interval
    assert res.ci_low == pytest.approx(d.mean() - half) and res.ci_high == pytest.approx(d.mean() + half)
    assert res.effect == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z


def test_welch_interval_and_effect_match_scipy():
    a = pd.Series([0.05, 0.06, 0.04, 0.065], index=[0, 1, 2, 3])
    b = pd.Series([0.01, 0.02, 0.00, 0.03, 0.025], index=[10, 11, 12, 13, 14])
    res = compare_to_baseline(a, b)
    ref = sst.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.test == "welch" and res.n == 4 and res.n_baseline == 5
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert (res.ci_low, res.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    va, vb = a.var() / 4, b.var() / 5
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    half = sst.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert res.ci_low == pytest.approx(a.mean() - b.mean() - half)
    assert res.effect == pytest.approx((a.mean() - b.mean()) / math.sqrt((a.var() + b.var()) / 2))


def test_identical_runs_get_no_test():
    a = pd.Series([0.05, 0.06, 0.04], index=[0, 1, 2])
    res = compare_to_baseline(a, a.copy())
    assert res.note == "identical" and res.label == "n/a (identical)"
    assert math.isnan(res.pvalue) and res.diff == 0.0 and math.isnan(res.ci_low)


def test_copy_plus_float_noise_is_identical_not_significant():
    """A copy whose values differ in the last bits: scipy alone would call it significant."""
    a = pd.Series([0.05, 0.06, 0.04, 0.07], index=[0, 1, 2, 3])
    biased = a * (1 + 4 * np.finfo(float).eps)              # one-sided rounding (another summation order)
    noisy = a + a.abs() * np.finfo(float).eps * np.array([1, -2, 3, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert sst.ttest_rel(biased.to_numpy(), a.to_numpy()).pvalue < 0.05  # the trap
    for copy in (biased, noisy):
        res = compare_to_baseline(copy, a)
        assert res.label == "n/a (identical)" and math.isnan(res.pvalue)


def test_constant_difference_has_no_variance():
    a = pd.Series([0.05, 0.06, 0.04], index=[0, 1, 2])
    res = compare_to_baseline(a + 0.01, a)  # a + 0.01 - a is 0.01 up to rounding on each seed
    assert res.label == "n/a (no variance)" and math.isnan(res.pvalue)
    assert res.diff == pytest.approx(0.01)


def test_deterministic_models():
    """std 0 across seeds: same constant -> identical, different constants -> no variance (paired or Welch)."""
    c1, c2 = pd.Series([0.03] * 3, index=[0, 1, 2]), pd.Series([0.05] * 3, index=[0, 1, 2])
    assert compare_to_baseline(c1, c1.copy()).label == "n/a (identical)"
    assert compare_to_baseline(c2, c1).label == "n/a (no variance)"
    other = pd.Series([0.03] * 3, index=[7, 8, 9])
    assert compare_to_baseline(other, c1).label == "n/a (identical)"
    res = compare_to_baseline(pd.Series([0.05] * 3, index=[7, 8, 9]), c1)
    assert res.test == "welch" and res.label == "n/a (no variance)" and res.diff == pytest.approx(0.02)


def test_one_constant_side_is_welch_with_one_zero_variance():
    const = pd.Series([0.03, 0.03, 0.03 * (1 + 2e-16)], index=[0, 1, 2])
    other = pd.Series([0.05, 0.06, 0.04, 0.07], index=[10, 11, 12, 13])
    for a, b, sign in ((other, const, 1), (const, other, -1)):
        res = compare_to_baseline(a, b)
        t = (a.mean() - b.mean()) / math.sqrt(other.var() / len(other))  # Welch with one variance 0
        assert res.test == "welch" and res.note == ""
        assert res.statistic == pytest.approx(t)
        assert res.pvalue == pytest.approx(2 * sst.t.sf(abs(t), df=len(other) - 1))
        ref = sst.ttest_1samp(other.to_numpy(), 0.03).confidence_interval()
        lo, hi = (ref.low - 0.03, ref.high - 0.03) if sign == 1 else (0.03 - ref.high, 0.03 - ref.low)
        assert (res.ci_low, res.ci_high) == (pytest.approx(lo), pytest.approx(hi))


def test_nan_values_leave_n_and_stay_paired_on_shared_seeds():
    a = pd.Series([0.05, np.nan, 0.04, 0.07, 0.06], index=[0, 1, 2, 3, 4])
    b = pd.Series([0.03, 0.02, 0.035, np.nan, 0.03], index=[0, 1, 2, 3, 4])
    res = compare_to_baseline(a, b)
    shared = [0, 2, 4]
    ref = sst.ttest_rel(a[shared].to_numpy(), b[shared].to_numpy())
    assert res.test == "paired" and res.n == 3
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert res.diff == pytest.approx((a[shared] - b[shared]).mean())
    # a failed cell (no run at all for seed 4) keeps the rest paired too
    res2 = compare_to_baseline(a.drop(index=4), b)
    assert res2.test == "paired" and res2.n == 2
    # fewer than two shared seeds: Welch on everything that is there
    res3 = compare_to_baseline(pd.Series([0.05, 0.06, 0.04], index=[0, 10, 11]), b)
    assert res3.test == "welch" and res3.n == 3 and res3.n_baseline == 4


def test_holm_hand_computed_example():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([np.nan, 0.2, 0.6])  # NaN is outside the family: m = 2
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.4, 0.6])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone
    assert len(holm([])) == 0 and math.isnan(holm([np.nan])[0])


def _holm_step_down(p: np.ndarray, alpha: float) -> set[int]:
    """Holm's procedure as defined: reject p_(1..k) while p_(i) <= alpha / (m - i + 1), stop at the first failure."""
    order = np.argsort(p, kind="mergesort")
    rejected = set()
    for i, j in enumerate(order):
        if p[j] > alpha / (len(p) - i):
            break
        rejected.add(int(j))
    return rejected


def test_holm_adjusted_p_values_reproduce_the_procedure():
    rng = np.random.default_rng(7)
    for _ in range(300):
        m = int(rng.integers(1, 9))
        p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 2)
        if rng.random() < 0.3:
            p[rng.integers(0, m)] = p[0]  # ties
        adj = holm(p)
        assert np.all(adj >= p - 1e-15) and np.all(adj <= np.minimum(1, m * p) + 1e-15)  # between raw and Bonferroni
        order = np.argsort(p, kind="mergesort")
        assert np.all(np.diff(adj[order]) >= 0)  # monotone in the raw p-values
        for alpha in (0.01, 0.05, 0.1):
            assert {int(i) for i in np.flatnonzero(adj <= alpha)} == _holm_step_down(p, alpha)


def test_rtol_is_far_below_any_printed_digit():
    assert RTOL <= 1e-9  # differences shown at 4 decimals are never swallowed by the rounding rule
    a = pd.Series([0.05, 0.06, 0.04], index=[0, 1, 2])
    res = compare_to_baseline(a + np.array([1e-7, -1e-7, 2e-7]), a)  # tiny but real differences: a test
    assert res.note == "" and not math.isnan(res.pvalue)


def test_summarize_prints_no_runtime_warning_on_degenerate_models(tmp_path):
    """The whole table (degenerate models, NaN metrics) under ``python -W error::RuntimeWarning``."""
    script = tmp_path / "s.py"
    script.write_text(
        "import numpy as np, pandas as pd\n"
        "from qrecorder.runner.results import TABLE_METRICS, summarize\n"
        "from qrecorder.runner.report import markdown\n"
        "rows = []\n"
        "for model, f in (('Base', lambda s: 0.03), ('Same', lambda s: 0.03), ('Better', lambda s: 0.05),\n"
        "                 ('Noisy', lambda s: 0.03 + 0.01 * s), ('Gaps', lambda s: np.nan if s == 1 else 0.02 + s)):\n"
        "    for s in range(3):\n"
        "        rows.append({'model': model, 'dataset': 'x', 'seed': s, 'recorder_id': f'{model}{s}',\n"
        "                     **{d: f(s) for d, _ in TABLE_METRICS}})\n"
        "rows.append({'model': 'Lonely', 'dataset': 'x', 'seed': 0, 'recorder_id': 'l0', **{d: 0.1 for d, _ in TABLE_METRICS}})\n"
        "print(markdown(summarize(pd.DataFrame(rows), 'Base')))\n")
    res = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(script)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "RuntimeWarning" not in res.stderr
    lines = {line.split(" | ")[0].strip("| "): line for line in res.stdout.splitlines() if line.startswith("| ")}
    assert "n/a (identical)" in lines["Same"] and "n/a (no variance)" in lines["Better"]
    assert "<0.0001" not in res.stdout
