"""IC, rank IC and long-short returns checked against straightforward numpy/scipy computations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qrecorder.analysis import calc_ic, calc_long_short_return, long_short_metrics, signal_metrics


def _frame():
    idx = pd.MultiIndex.from_product([pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
                                      ["A", "B", "C", "D", "E"]], names=["datetime", "instrument"])
    pred = pd.Series([5, 4, 3, 2, 1, 1, 3, 2, 5, 4, 0.1, 0.5, 0.2, 0.9, 0.3], index=idx, dtype=float)
    label = pd.Series([.05, .01, .02, -.01, -.03, .00, .02, .01, .03, -.01, .01, .02, .00, .04, -.02],
                      index=idx, dtype=float)
    return pred, label


def test_ic_and_rank_ic_match_numpy_and_scipy_per_day():
    pred, label = _frame()
    ic, ric = calc_ic(pred, label)
    for day in pred.index.get_level_values(0).unique():
        p, y = pred.xs(day).to_numpy(), label.xs(day).to_numpy()
        assert ic[day] == pytest.approx(np.corrcoef(p, y)[0, 1])
        assert ric[day] == pytest.approx(stats.spearmanr(p, y).statistic)
    m = signal_metrics(ic, ric)
    assert m["IC"] == pytest.approx(np.mean(ic.to_numpy()))
    assert m["ICIR"] == pytest.approx(np.mean(ic.to_numpy()) / np.std(ic.to_numpy(), ddof=1))
    assert m["Rank ICIR"] == pytest.approx(np.mean(ric.to_numpy()) / np.std(ric.to_numpy(), ddof=1))


def test_ic_ignores_nan_pairs_and_gives_nan_for_degenerate_days():
    pred, label = _frame()
    label = label.copy()
    label.iloc[0] = np.nan
    ic, _ = calc_ic(pred, label)
    p, y = pred.xs("2024-01-02").to_numpy()[1:], label.xs("2024-01-02").to_numpy()[1:]
    assert ic.iloc[0] == pytest.approx(np.corrcoef(p, y)[0, 1])
    const = pred.copy()
    const.loc["2024-01-03"] = 1.0
    ic, _ = calc_ic(const, label)
    assert np.isnan(ic.iloc[1])


def test_long_short_uses_top_and_bottom_quantile_and_mean_label():
    pred, label = _frame()
    ls, la = calc_long_short_return(pred, label, quantile=0.2)  # 5 names -> int(5 * 0.2) = 1 each side
    # day 1: top A (.05), bottom E (-.03); day 2: top D (.03), bottom A (.00); day 3: top D (.04), bottom A (.01)
    assert list(ls) == pytest.approx([(0.05 + 0.03) / 2, (0.03 - 0.00) / 2, (0.04 - 0.01) / 2])
    # Qlib's second series is the day's mean label (the "long-average" return), named "label"
    pd.testing.assert_series_equal(la, label.groupby(level="datetime").mean().rename("label"))
    assert ls.index.name == "datetime" and ls.name is None
    m = long_short_metrics(ls, la, 252)
    assert m["Long-Short Ann Return"] == pytest.approx(ls.mean() * 252)
    assert m["Long-Short Ann Sharpe"] == pytest.approx(ls.mean() / np.std(ls.to_numpy(), ddof=1) * np.sqrt(252))
    assert m["Long-Avg Ann Return"] == pytest.approx(la.mean() * 252)
    assert m["Long-Avg Ann Sharpe"] == pytest.approx(la.mean() / np.std(la.to_numpy(), ddof=1) * np.sqrt(252))


def test_long_short_leg_size_counts_the_days_rows_and_ties_go_to_the_first_rows():
    pred, label = _frame()
    # 4 rows on a day -> int(4 * 0.2) = 0 names per leg -> NaN, as pandas nlargest(0) in Qlib
    ls, la = calc_long_short_return(pred.drop(("2024-01-02", "E")), label.drop(("2024-01-02", "E")))
    assert np.isnan(ls.iloc[0]) and not np.isnan(la.iloc[0])
    # a NaN prediction still counts for the leg size; ties at the boundary: first rows win (keep="first")
    tied = pred.copy()
    tied.loc["2024-01-03"] = [1.0, 2.0, 2.0, 1.0, np.nan]  # A B C D E
    ls, _ = calc_long_short_return(tied, label)
    day = label.loc["2024-01-03"]
    assert ls.iloc[1] == pytest.approx((day["B"] - day["A"]) / 2)  # top: B before C; bottom: A before D
    # a day with fewer predictions than the leg size fills the leg with the NaN-prediction rows, as pandas
    sparse = pred.copy()
    sparse.loc["2024-01-04"] = np.nan
    ls, _ = calc_long_short_return(sparse, label, quantile=0.4)  # 2 per leg, no prediction at all
    assert ls.iloc[2] == pytest.approx(0.0)  # both legs are rows A, B


def test_ic_keeps_days_without_valid_pairs_unless_dropna():
    pred, label = _frame()
    pred = pred.copy()
    pred.loc["2024-01-04"] = np.nan
    ic, ric = calc_ic(pred, label)
    assert len(ic) == 3 and np.isnan(ic.iloc[2]) and np.isnan(ric.iloc[2])
    ic, ric = calc_ic(pred, label, dropna=True)
    assert len(ic) == 2 and ic.index.name == "datetime"
