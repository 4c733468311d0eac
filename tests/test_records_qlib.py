"""Records on a real store: Qlib's artifact/metric names, numbers recomputed independently."""

import math

import numpy as np
import pandas as pd
import pytest
from _runner_helpers import LINEAR, config
from scipy import stats

from qrecorder.workflow.run import run_task


@pytest.fixture
def finished(R):
    res = run_task(config(LINEAR), experiment_name="rec")
    return R.get_recorder(recorder_id=res["recorder_id"], experiment_name="rec"), res


def test_artifacts_and_status(finished):
    rec, _ = finished
    assert rec.status == "FINISHED"
    arts = set(rec.list_artifacts()) | set(rec.list_artifacts("sig_analysis")) | set(rec.list_artifacts("portfolio_analysis"))
    for name in ["pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl",
                 "portfolio_analysis/report_normal_1day.pkl", "portfolio_analysis/positions_normal_1day.pkl",
                 "portfolio_analysis/port_analysis_1day.pkl"]:
        assert any(a.endswith(name) for a in arts), (name, arts)
    params, tags = rec.list_params(), rec.list_tags()
    assert params["model"] == "LinearModel" and params["seed"] == "0"
    assert tags["qrecorder.model"] == "LinearModel" and tags["qrecorder.kind"] == "run"


def test_signal_metrics_match_scipy(finished):
    rec, _ = finished
    pred, label = rec.load_object("pred.pkl"), rec.load_object("label.pkl")
    assert list(pred.columns) == ["score"] and list(label.columns) == ["LABEL0"]
    df = pred.join(label)
    ics = [np.corrcoef(d["score"], d["LABEL0"])[0, 1] for _, d in df.groupby(level=0)]
    rics = [stats.spearmanr(d["score"], d["LABEL0"]).statistic for _, d in df.groupby(level=0)]
    m = rec.list_metrics()
    assert m["IC"] == pytest.approx(np.mean(ics))
    assert m["ICIR"] == pytest.approx(np.mean(ics) / np.std(ics, ddof=1))
    assert m["Rank IC"] == pytest.approx(np.mean(rics))
    assert m["Rank ICIR"] == pytest.approx(np.mean(rics) / np.std(rics, ddof=1))
    np.testing.assert_allclose(rec.load_object("sig_analysis/ic.pkl").to_numpy(), ics)
    for k in ["Long-Short Ann Return", "Long-Short Ann Sharpe", "Long-Avg Ann Return", "Long-Avg Ann Sharpe"]:
        assert math.isfinite(m[k])


def test_portfolio_metrics_match_report(finished):
    rec, _ = finished
    rep = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    m = rec.list_metrics()
    for kind, r in [("without_cost", rep["return"] - rep["bench"]), ("with_cost", rep["return"] - rep["bench"] - rep["cost"])]:
        pre = f"1day.excess_return_{kind}."
        assert m[pre + "mean"] == pytest.approx(r.mean())
        assert m[pre + "std"] == pytest.approx(r.std())
        assert m[pre + "annualized_return"] == pytest.approx(r.mean() * 252)
        assert m[pre + "information_ratio"] == pytest.approx(r.mean() / r.std() * math.sqrt(252))
        assert m[pre + "max_drawdown"] == pytest.approx((r.cumsum() - r.cumsum().cummax()).min())
    assert m["1day.excess_return_with_cost.annualized_return"] < m["1day.excess_return_without_cost.annualized_return"]
    # the benchmark is the equal-weight mean of the label each day
    label = rec.load_object("label.pkl")["LABEL0"]
    pd.testing.assert_series_equal(rep["bench"], label.groupby(level=0).mean(), check_names=False)
    pos = rec.load_object("portfolio_analysis/positions_normal_1day.pkl")
    assert pos.groupby(level=0).size().max() == 5  # topk
    pa = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    assert pa.loc[("excess_return_with_cost", "max_drawdown"), "risk"] == pytest.approx(
        m["1day.excess_return_with_cost.max_drawdown"])


def test_unsupported_benchmark_is_a_clear_error(R):
    cfg = config(LINEAR)
    cfg["task"]["record"][2]["kwargs"]["config"]["backtest"]["benchmark"] = "SH000300"
    with pytest.raises(ValueError, match=r"task.record\[2\].kwargs.*SH000300"):
        run_task(cfg, experiment_name="rec")
