"""Qlib 0.9.7's numbers on identical inputs: our analysis functions and records against Qlib's own.

Every comparison runs Qlib's code (qlib.contrib.eva.alpha, qlib.contrib.evaluate,
qlib.workflow.record_temp) and ours on the same random panels -- clean, heavy ties, NaNs in
predictions and labels, days with very few instruments, misaligned indexes -- and requires
max |difference| <= 1e-10 with equal index, names and NaN positions.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

qlib_alpha = pytest.importorskip("qlib.contrib.eva.alpha", reason="pyqlib is not installed (pip install 'qrecorder[qlib]')")
qlib_evaluate = pytest.importorskip("qlib.contrib.evaluate", reason="pyqlib is not installed")
qlib_records = pytest.importorskip("qlib.workflow.record_temp", reason="pyqlib is not installed")
from qlib.backtest.report import PortfolioMetrics  # noqa: E402
from qlib.utils import flatten_dict  # noqa: E402
from qlib.utils.exceptions import LoadObjectError  # noqa: E402

from qrecorder.analysis import backtest_topk, calc_ic, calc_long_short_return, risk_analysis  # noqa: E402
from qrecorder.records import PortAnaRecord, SigAnaRecord  # noqa: E402

TOL = 1e-10


def _panel(seed: int, n_days: int = 40, n_inst: int = 30, decimals: int | None = None, nan: float = 0.0,
           few: bool = False, misaligned: bool = False) -> tuple[pd.Series, pd.Series]:
    """(pred, label) on a (datetime, instrument) MultiIndex.

    decimals: round predictions (heavy ties) and labels; nan: share of NaN in each; few: every
    4th day keeps only 0..6 instruments; misaligned: label has rows pred lacks and vice versa.
    """
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2022-01-03", periods=n_days)
    inst = [f"SH{600000 + i}" for i in range(n_inst)]
    idx = pd.MultiIndex.from_product([days, inst], names=["datetime", "instrument"])
    p = rng.normal(size=len(idx))
    y = rng.normal(0.0, 0.02, size=len(idx))
    if decimals is not None:
        p, y = np.round(p, decimals), np.round(y, 3)
    p[rng.random(len(p)) < nan] = np.nan
    y[rng.random(len(y)) < nan] = np.nan
    pred, label = pd.Series(p, index=idx, name="score"), pd.Series(y, index=idx, name="LABEL0")
    if few:
        keep = np.ones(len(idx), dtype=bool)
        day_of = idx.get_level_values("datetime")
        for k, day in enumerate(days[::4]):
            rows = np.flatnonzero(day_of == day)
            keep[rows] = False
            keep[rows[: k % 7]] = True
        pred, label = pred[keep], label[keep]
    if misaligned:
        pred = pred.drop(pred.index[rng.random(len(pred)) < 0.1])
        label = label.drop(label.index[rng.random(len(label)) < 0.1])
    return pred, label


CASES = {
    "clean": {},
    "ties": {"decimals": 0},
    "ties-1dp": {"decimals": 1},
    "nan": {"nan": 0.15},
    "ties-nan": {"decimals": 0, "nan": 0.3},
    "few-instruments": {"few": True, "decimals": 1, "nan": 0.1},
    "tiny-universe": {"n_inst": 4, "decimals": 0, "nan": 0.1},
    "misaligned": {"misaligned": True, "nan": 0.05},
}


def _assert_series(ours: pd.Series, theirs: pd.Series) -> float:
    """Equal index (values, names, dtype), name and NaN positions; returns max |difference|."""
    pd.testing.assert_index_equal(ours.index, theirs.index, exact=True)
    assert ours.name == theirs.name
    a, b = ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    diff = float(np.max(np.abs(a - b), initial=0.0, where=~np.isnan(a)))
    assert diff <= TOL
    return diff


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dropna", [False, True])
def test_calc_ic_matches_qlib(case, dropna):
    for seed in range(3):
        pred, label = _panel(seed, **CASES[case])
        ours, theirs = calc_ic(pred, label, dropna=dropna), qlib_alpha.calc_ic(pred, label, dropna=dropna)
        _assert_series(ours[0], theirs[0])  # IC (Pearson)
        _assert_series(ours[1], theirs[1])  # rank IC (Spearman)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dropna", [False, True])
@pytest.mark.parametrize("quantile", [0.2, 0.1, 0.5])
def test_calc_long_short_return_matches_qlib(case, dropna, quantile):
    for seed in range(3):
        pred, label = _panel(seed, **CASES[case])
        ours = calc_long_short_return(pred, label, quantile=quantile, dropna=dropna)
        theirs = qlib_alpha.calc_long_short_return(pred, label, quantile=quantile, dropna=dropna)
        _assert_series(ours[0], theirs[0])  # long-short
        _assert_series(ours[1], theirs[1])  # long-average = the day's mean label, named "label"


def test_degenerate_days_match_qlib():
    """A day with one instrument, a constant prediction, all-NaN predictions, two instruments."""
    days = pd.bdate_range("2022-01-03", periods=5)
    rows = [(days[0], "A", 0.1, 0.01)]
    rows += [(days[1], i, 0.3, y) for i, y in zip("ABCDEFG", np.linspace(-0.02, 0.03, 7), strict=True)]
    rows += [(days[2], i, np.nan, y) for i, y in zip("ABCDEF", np.linspace(-0.01, 0.02, 6), strict=True)]
    rows += [(days[3], "A", 1.0, 0.02), (days[3], "B", 2.0, -0.01)]
    rows += [(days[4], i, p, y) for i, p, y in zip("ABCDEFGHIJ", [3, 3, 3, 1, 1, 2, 2, 2, 0, 0],
                                                    np.linspace(-0.03, 0.05, 10), strict=True)]
    df = pd.DataFrame(rows, columns=["datetime", "instrument", "pred", "label"]).set_index(["datetime", "instrument"])
    pred, label = df["pred"], df["label"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ours, theirs in zip(calc_ic(pred, label), qlib_alpha.calc_ic(pred, label), strict=True):
            _assert_series(ours, theirs)
        for ours, theirs in zip(calc_long_short_return(pred, label), qlib_alpha.calc_long_short_return(pred, label),
                                strict=True):
            _assert_series(ours, theirs)


def _returns(seed: int, n: int = 300, nan: bool = False) -> pd.Series:
    rng = np.random.default_rng(seed)
    r = pd.Series(rng.normal(0.0005, 0.01, size=n), index=pd.bdate_range("2021-01-04", periods=n, name="datetime"))
    if nan:
        r.iloc[rng.choice(n - 1, size=n // 10, replace=False)] = np.nan
    return r


@pytest.mark.parametrize("freq", ["day", "1day", "d", "week", "2w", "month", "mon", "minute", "1min", "5min", "DAY"])
@pytest.mark.parametrize("mode", ["sum", "product"])
@pytest.mark.parametrize("nan", [False, True])
def test_risk_analysis_matches_qlib(freq, mode, nan):
    r = _returns(3, nan=nan)
    ours = risk_analysis(r, freq=freq, mode=mode)
    theirs = qlib_evaluate.risk_analysis(r, freq=freq, mode=mode)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=0, atol=TOL)


@pytest.mark.parametrize("mode", ["sum", "product"])
def test_risk_analysis_explicit_n_matches_qlib_and_warns_like_it(mode):
    r = _returns(4)
    with pytest.warns(UserWarning, match="freq will be ignored"):
        ours = risk_analysis(r, N=252, mode=mode)
    with pytest.warns(UserWarning, match="freq will be ignored"):
        theirs = qlib_evaluate.risk_analysis(r, N=252, mode=mode)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=0, atol=TOL)
    pd.testing.assert_frame_equal(risk_analysis(r, N=50, freq=None, mode=mode),
                                  qlib_evaluate.risk_analysis(r, N=50, freq=None, mode=mode),
                                  check_exact=False, rtol=0, atol=TOL)
    # a daily series annualised by frequency uses Qlib's 238 trading days, not 252
    pd.testing.assert_frame_equal(risk_analysis(r, mode=mode), risk_analysis(r, N=238, freq=None, mode=mode))


def test_risk_analysis_errors_like_qlib():
    r = _returns(5)
    for fn in (risk_analysis, qlib_evaluate.risk_analysis):
        with pytest.raises(ValueError):
            fn(r, N=None, freq=None)
        with pytest.raises(ValueError):
            fn(r, freq="fortnight")
        with pytest.raises(ValueError):
            fn(r, mode="log")


class FakeRecorder:
    """An in-memory recorder with the calls both Qlib's and our records make (objects pickled)."""

    experiment_id = "0"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.metrics: dict[str, float] = {}

    def save_objects(self, local_path=None, artifact_path=None, **objects):
        for name, obj in objects.items():
            self.objects["/".join(p for p in (artifact_path, name) if p)] = pickle.dumps(obj)

    def load_object(self, name, unpickler=None):
        if name not in self.objects:
            raise LoadObjectError(f"{name} not found")
        return pickle.loads(self.objects[name])

    def list_artifacts(self, artifact_path=None):
        folder = artifact_path or ""
        return [k for k in self.objects if k.rsplit("/", 1)[0] == folder or ("/" not in k and not folder)]

    def log_metrics(self, step=None, **metrics):
        self.metrics.update({k: float(v) for k, v in metrics.items()})


def _signal_recorder(pred: pd.Series, label: pd.Series) -> FakeRecorder:
    """A recorder holding what SignalRecord saves: pred.pkl (column "score"), label.pkl (raw label frame)."""
    rec = FakeRecorder()
    rec.save_objects(**{"pred.pkl": pred.to_frame("score"), "label.pkl": label.to_frame("LABEL0")})
    return rec


def _assert_metrics(ours: dict[str, float], theirs: dict[str, float]) -> None:
    assert set(ours) == set(theirs)
    for k in theirs:
        if np.isnan(theirs[k]):
            assert np.isnan(ours[k]), k
        else:
            assert abs(ours[k] - theirs[k]) <= TOL * max(1.0, abs(theirs[k])), (k, ours[k], theirs[k])


@pytest.mark.parametrize("case", ["clean", "ties", "ties-nan", "few-instruments"])
@pytest.mark.parametrize("ana_long_short", [True, False])
def test_sig_ana_record_matches_qlibs_record(case, ana_long_short, capsys):
    # Qlib's record needs the label aligned with pred (SignalRecord saves them from one dataset)
    pred, label = _panel(7, **CASES[case])
    label = label.reindex(pred.index)
    ours_rec, qlib_rec = _signal_recorder(pred, label), _signal_recorder(pred, label)
    SigAnaRecord(ours_rec, ana_long_short=ana_long_short).generate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qlib_records.SigAnaRecord(qlib_rec, ana_long_short=ana_long_short).generate()
    _assert_metrics(ours_rec.metrics, qlib_rec.metrics)
    assert set(ours_rec.objects) == set(qlib_rec.objects)
    for name in qlib_rec.objects:
        ours, theirs = ours_rec.load_object(name), qlib_rec.load_object(name)
        if isinstance(theirs, pd.Series):
            _assert_series(ours, theirs)
        else:
            pd.testing.assert_frame_equal(ours, theirs)
    if ana_long_short:  # "Long-Avg" is the mean label of the day, annualised with ann_scaler=252
        la = label.groupby(level="datetime").mean()
        assert ours_rec.metrics["Long-Avg Ann Return"] == pytest.approx(la.mean() * 252, abs=TOL)


def test_port_ana_record_risk_numbers_and_names_match_qlib():
    """Qlib's backtest needs market data; its analysis step does not: feed our report to it."""
    pred, label = _panel(11, n_days=60, n_inst=40)
    rec = _signal_recorder(pred, label)
    PortAnaRecord(rec, config={"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 10, "n_drop": 2}},
                               "backtest": {"exchange_kwargs": {"open_cost": 0.0005, "close_cost": 0.0015}}}).generate()
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")

    # the report has the columns and index of Qlib's PortfolioMetrics frame
    pm = object.__new__(PortfolioMetrics)
    pm.init_vars()
    for day, row in report.iterrows():
        pm.update_portfolio_metrics_record(
            trade_start_time=day, account_value=row["account"], cash=row["cash"], return_rate=row["return"],
            total_turnover=row["total_turnover"], turnover_rate=row["turnover"], total_cost=row["total_cost"],
            cost_rate=row["cost"], stock_value=row["value"], bench_value=row["bench"])
    pd.testing.assert_frame_equal(report, pm.generate_portfolio_metrics_dataframe(), check_freq=False)

    # Qlib's PortAnaRecord._generate, analysis part, on that report
    freq = "{}{}".format(*qlib_records.Freq.parse("day"))
    analysis = {
        "excess_return_without_cost": qlib_evaluate.risk_analysis(report["return"] - report["bench"], freq=freq),
        "excess_return_with_cost": qlib_evaluate.risk_analysis(
            report["return"] - report["bench"] - report["cost"], freq=freq),
    }
    analysis_df = pd.concat(analysis)
    expected = {f"{freq}.{k}": float(v) for k, v in flatten_dict(analysis_df["risk"].unstack().T.to_dict()).items()}
    _assert_metrics(rec.metrics, expected)
    pd.testing.assert_frame_equal(rec.load_object(f"portfolio_analysis/port_analysis_{freq}.pkl"), analysis_df,
                                  check_exact=False, rtol=0, atol=TOL)


def test_backtest_report_excess_returns_feed_qlib_risk_analysis_like_ours():
    """The same report through our risk_analysis and Qlib's, by frequency and with an explicit N."""
    pred, label = _panel(12, n_days=50, n_inst=25, decimals=1)
    report = backtest_topk(pred, label, topk=5, n_drop=1).report
    r = report["return"] - report["bench"] - report["cost"]
    for kwargs in ({"freq": "1day"}, {"freq": "day", "mode": "product"}, {"N": 252, "freq": None}):
        pd.testing.assert_frame_equal(risk_analysis(r, **kwargs), qlib_evaluate.risk_analysis(r, **kwargs),
                                      check_exact=False, rtol=0, atol=TOL)
