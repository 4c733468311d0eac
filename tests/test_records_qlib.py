"""Records on a real store: Qlib's artifact/metric names; numbers recomputed independently and,
where Qlib is installed (it is in CI), by Qlib's own analysis functions on the saved artifacts."""

import math

import numpy as np
import pandas as pd
import pytest
from _runner_helpers import LINEAR, config
from scipy import stats

from qrecorder.workflow.run import run_task


@pytest.fixture
def qlib_eval():
    alpha = pytest.importorskip("qlib.contrib.eva.alpha", reason="pyqlib is not installed (pip install 'qrecorder[qlib]')")
    evaluate = pytest.importorskip("qlib.contrib.evaluate", reason="pyqlib is not installed")
    return alpha, evaluate


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
    # Long-Avg is the mean label of each day (Qlib), annualised with SigAnaRecord's ann_scaler=252
    la = rec.load_object("sig_analysis/long_avg_r.pkl")
    pd.testing.assert_series_equal(la, label["LABEL0"].groupby(level="datetime").mean().rename("label"))
    assert m["Long-Avg Ann Return"] == pytest.approx(la.mean() * 252)


def test_signal_artifacts_and_metrics_equal_qlibs_functions(finished, qlib_eval):
    alpha, _ = qlib_eval
    rec, _ = finished
    pred, label = rec.load_object("pred.pkl")["score"], rec.load_object("label.pkl")["LABEL0"]
    ic, ric = alpha.calc_ic(pred, label)
    ls, la = alpha.calc_long_short_return(pred, label)
    m = rec.list_metrics()
    for name, expected in [("ic", ic), ("ric", ric), ("long_short_r", ls), ("long_avg_r", la)]:
        pd.testing.assert_series_equal(rec.load_object(f"sig_analysis/{name}.pkl"), expected,
                                       check_exact=False, rtol=0, atol=1e-10)
    expected_metrics = {"IC": ic.mean(), "ICIR": ic.mean() / ic.std(), "Rank IC": ric.mean(),
                        "Rank ICIR": ric.mean() / ric.std(),
                        "Long-Short Ann Return": ls.mean() * 252, "Long-Short Ann Sharpe": ls.mean() / ls.std() * 252**0.5,
                        "Long-Avg Ann Return": la.mean() * 252, "Long-Avg Ann Sharpe": la.mean() / la.std() * 252**0.5}
    for k, v in expected_metrics.items():
        assert m[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_portfolio_metrics_match_report(finished):
    rec, _ = finished
    rep = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    m = rec.list_metrics()
    for kind, r in [("without_cost", rep["return"] - rep["bench"]), ("with_cost", rep["return"] - rep["bench"] - rep["cost"])]:
        pre = f"1day.excess_return_{kind}."
        assert m[pre + "mean"] == pytest.approx(r.mean())
        assert m[pre + "std"] == pytest.approx(r.std())
        # PortAnaRecord analyses the "1day" report with risk_analysis(freq="1day"): 238 days a year
        assert m[pre + "annualized_return"] == pytest.approx(r.mean() * 238)
        assert m[pre + "information_ratio"] == pytest.approx(r.mean() / r.std() * math.sqrt(238))
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


def test_portfolio_analysis_equals_qlibs_risk_analysis(finished, qlib_eval):
    _, evaluate = qlib_eval
    rec, _ = finished
    rep = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    expected = pd.concat({
        "excess_return_without_cost": evaluate.risk_analysis(rep["return"] - rep["bench"], freq="1day"),
        "excess_return_with_cost": evaluate.risk_analysis(rep["return"] - rep["bench"] - rep["cost"], freq="1day"),
    })
    pa = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    pd.testing.assert_frame_equal(pa, expected, check_exact=False, rtol=0, atol=1e-10)
    m = rec.list_metrics()
    for (kind, stat), v in expected["risk"].items():
        assert m[f"1day.{kind}.{stat}"] == pytest.approx(v, rel=1e-12, abs=1e-12)


def test_unsupported_benchmark_is_a_clear_error(R):
    cfg = config(LINEAR)
    cfg["task"]["record"][2]["kwargs"]["config"]["backtest"]["benchmark"] = "SH000300"
    with pytest.raises(ValueError, match=r"task.record\[2\].kwargs.*SH000300"):
        run_task(cfg, experiment_name="rec")
