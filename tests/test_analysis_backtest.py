"""The top-k / drop-n backtest and risk numbers, checked by hand on a 4-name, 2-day market."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from qrecorder.analysis import backtest_topk, excess_returns, risk_analysis, topk_dropout_trades


def _series(values, days, names=("A", "B", "C", "D")):
    idx = pd.MultiIndex.from_product([pd.to_datetime(days), list(names)], names=["datetime", "instrument"])
    return pd.Series(values, index=idx, dtype=float)


def test_topk_dropout_rule_matches_qlib():
    score = pd.Series({"A": 1.0, "B": 3.0, "C": 4.0, "D": 2.0, "E": 0.5})
    # holdings A, B: worst of {A, B} + best new {C} is A -> sell A, buy C
    assert topk_dropout_trades(score, ["A", "B"], topk=2, n_drop=1) == (["A"], ["C"])
    # empty book: buy the top k
    assert topk_dropout_trades(score, [], topk=3, n_drop=1) == ([], ["C", "B", "D"])
    # holding the best names: the lowest of the combined set is the new candidate, nothing is sold
    assert topk_dropout_trades(score, ["C", "B"], topk=2, n_drop=1) == ([], [])


def test_backtest_two_days_by_hand():
    days = ["2024-01-02", "2024-01-03"]
    score = _series([4, 3, 2, 1, 1, 3, 4, 2], days)
    rets = _series([0.1, -0.1, 0.2, 0.0, 1.0, 0.1, -0.05, 0.0], days)
    res = backtest_topk(score, rets, topk=2, n_drop=1, open_cost=0.01, close_cost=0.02, account=100, risk_degree=0.5)
    rep = res.report
    # day 1: buy A and B with 25 each (cost 0.5), cash 49.5; A -> 27.5, B -> 22.5
    assert rep["cost"].iloc[0] == pytest.approx(0.5 / 100)
    assert rep["account"].iloc[0] == pytest.approx(99.5)
    assert rep["return"].iloc[0] == pytest.approx((99.5 + 0.5 - 100) / 100)
    assert rep["bench"].iloc[0] == pytest.approx(0.05)
    # day 2: sell A (27.5, cost 0.55) -> cash 76.45; buy C with 38.225 (cost 0.38225)
    cash = 49.5 + 27.5 - 0.55 - 38.225 * 1.01
    end = cash + 22.5 * 1.1 + 38.225 * 0.95
    cost = 0.55 + 0.38225
    assert rep["account"].iloc[1] == pytest.approx(end)
    assert rep["cost"].iloc[1] == pytest.approx(cost / 99.5)
    assert rep["return"].iloc[1] == pytest.approx((end + cost - 99.5) / 99.5)
    assert rep["bench"].iloc[1] == pytest.approx((1.0 + 0.1 - 0.05 + 0.0) / 4)
    assert rep["turnover"].iloc[1] == pytest.approx((27.5 + 38.225) / 99.5)
    w = res.positions.xs(pd.Timestamp(days[1]))["weight"]
    assert set(w.index) == {"B", "C"}
    assert w["C"] == pytest.approx(38.225 * 0.95 / end)
    ex = excess_returns(rep)
    assert ex["excess_return_with_cost"].iloc[1] == pytest.approx(
        rep["return"].iloc[1] - rep["bench"].iloc[1] - rep["cost"].iloc[1])
    # net account change equals return minus cost
    assert (rep["return"] - rep["cost"]).iloc[1] == pytest.approx(end / 99.5 - 1)


def test_zero_cost_full_investment_tracks_holdings_mean():
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2024-01-01", periods=20)
    score = _series(rng.normal(size=80), days)
    rets = _series(rng.normal(0, 0.01, size=80), days)
    res = backtest_topk(score, rets, topk=4, n_drop=0, open_cost=0, close_cost=0, account=1, risk_degree=1.0)
    # holding every name, equal weight at start, no trading after: return == value-weighted mean
    assert res.report["cost"].sum() == 0
    assert res.report["return"].iloc[0] == pytest.approx(res.report["bench"].iloc[0])
    growth = (1 + rets.unstack()).cumprod().mean(axis=1)
    assert res.report["account"].to_numpy() == pytest.approx(growth.to_numpy())


def test_risk_analysis_uses_qlib_formulas():
    r = pd.Series([0.01, -0.02, 0.03, 0.0])
    got = risk_analysis(r)["risk"]  # freq="day": Qlib's 238 trading days a year
    mean, sd = 0.005, statistics.stdev([0.01, -0.02, 0.03, 0.0])
    assert got["mean"] == pytest.approx(mean)
    assert got["std"] == pytest.approx(sd)
    assert got["annualized_return"] == pytest.approx(mean * 238)
    assert got["information_ratio"] == pytest.approx(mean / sd * math.sqrt(238))
    assert got["max_drawdown"] == pytest.approx(-0.02)  # cumsum .01, -.01, .02, .02
    assert risk_analysis(r, N=252, freq=None)["risk"]["annualized_return"] == pytest.approx(mean * 252)
    assert risk_analysis(r, freq="week")["risk"]["annualized_return"] == pytest.approx(mean * 50)
    assert risk_analysis(r, freq="5min")["risk"]["annualized_return"] == pytest.approx(mean * 240 * 238 / 5)


def test_risk_analysis_product_mode_compounds():
    r = pd.Series([0.10, -0.05, 0.02])
    got = risk_analysis(r, mode="product")["risk"]
    total = 1.10 * 0.95 * 1.02
    assert got["mean"] == pytest.approx(total ** (1 / 3) - 1)
    assert got["std"] == pytest.approx(statistics.stdev([math.log(1 + x) for x in r]))
    assert got["annualized_return"] == pytest.approx(total ** (238 / 3) - 1)
    assert got["max_drawdown"] == pytest.approx(-0.05)  # 1.10 -> 1.045


def test_report_has_qlibs_columns():
    days = pd.bdate_range("2024-01-01", periods=3)
    score = _series([4, 3, 2, 1] * 3, days)
    res = backtest_topk(score, _series([0.01, 0.0, -0.01, 0.02] * 3, days), topk=2, n_drop=1)
    assert list(res.report.columns) == ["account", "return", "total_turnover", "turnover", "total_cost", "cost",
                                        "value", "cash", "bench"]
    assert res.report.index.name == "datetime"
    rep = res.report
    assert rep["total_cost"].iloc[-1] == pytest.approx((rep["cost"] * rep["account"].shift(fill_value=1e8)).sum())
