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


def test_long_short_uses_top_and_bottom_quantile():
    pred, label = _frame()
    ls, la = calc_long_short_return(pred, label, quantile=0.2)  # 5 names -> 1 each side
    # day 1: top A (.05), bottom E (-.03); day 2: top D (.03), bottom A (.00); day 3: top D (.04), bottom A (.01)
    assert list(ls) == pytest.approx([(0.05 + 0.03) / 2, (0.03 - 0.00) / 2, (0.04 - 0.01) / 2])
    means = label.groupby(level=0).mean().to_numpy()
    assert list(la) == pytest.approx([0.05 - means[0], 0.03 - means[1], 0.04 - means[2]])
    m = long_short_metrics(ls, la, 252)
    assert m["Long-Short Ann Return"] == pytest.approx(ls.mean() * 252)
    assert m["Long-Short Ann Sharpe"] == pytest.approx(ls.mean() / np.std(ls.to_numpy(), ddof=1) * np.sqrt(252))
