"""PortAnaRecord: a top-k / drop-n backtest of the predictions and its risk analysis.

Accepts Qlib's ``port_analysis_config`` shape::

    config:
      strategy: {class: TopkDropoutStrategy, kwargs: {signal: <PRED>, topk: 50, n_drop: 5}}
      backtest: {start_time: null, end_time: null, account: 100000000, benchmark: equal-weight,
                 exchange_kwargs: {open_cost: 0.0005, close_cost: 0.0015}}

The label saved by SignalRecord is used as each name's forward return; the benchmark is the
equal-weight mean of those returns (Qlib index benchmarks such as "SH000300" are not available
here and are refused). As Qlib's PortAnaRecord, the excess returns are analysed with
``risk_analysis(r, freq="1day")`` (so N = 238 trading days a year) and logged as
``1day.excess_return_{with,without}_cost.{mean,std,annualized_return,information_ratio,max_drawdown}``.
The backtest is daily only; Qlib's trade indicators (``indicator_analysis``: ffr, pa, pos) need
its exchange-level simulation and are not produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from qrecorder.analysis.backtest import backtest_topk, excess_returns
from qrecorder.analysis.risk import normalize_freq, risk_analysis
from qrecorder.records.base import RecordTemp
from qrecorder.records.signal_record import SignalRecord

_EQUAL = (None, "equal-weight", "equal_weight", "ew")


class PortAnaRecord(RecordTemp):
    """Saves report_normal_1day.pkl, positions_normal_1day.pkl, port_analysis_1day.pkl."""

    artifact_path = "portfolio_analysis"
    depend_cls = SignalRecord
    freq = "1day"

    def __init__(self, recorder: Any, config: Mapping[str, Any] | None = None, risk_analysis_freq: Any = None,
                 indicator_analysis_freq: Any = None, indicator_analysis_method: str | None = None,
                 skip_existing: bool = False, **kwargs: Any) -> None:
        super().__init__(recorder)
        kwargs.pop("model", None), kwargs.pop("dataset", None)  # offered by the runner, as in Qlib
        config = dict(config or {})
        strategy = dict(config.get("strategy") or {})
        cls = strategy.get("class", "TopkDropoutStrategy")
        if str(cls).rsplit(".", 1)[-1] != "TopkDropoutStrategy":
            raise ValueError(f"config.strategy.class: only TopkDropoutStrategy is supported, not {cls!r}")
        skw = dict(strategy.get("kwargs") or {})
        bt = dict(config.get("backtest") or {})
        ex = dict(bt.get("exchange_kwargs") or {})
        if bt.get("benchmark") not in _EQUAL:
            raise ValueError(f"config.backtest.benchmark: {bt['benchmark']!r} is not available; "
                             "only the equal-weight benchmark of the dataset's instruments (null or 'equal-weight')")
        freqs = [risk_analysis_freq] if isinstance(risk_analysis_freq, str) else list(risk_analysis_freq or [self.freq])
        try:
            freqs = [normalize_freq(f) for f in freqs]
        except ValueError as exc:
            raise ValueError(f"risk_analysis_freq: {exc}") from None
        if any(f != self.freq for f in freqs):
            raise ValueError(f"risk_analysis_freq: only the daily report ({self.freq!r}) exists here, "
                             f"not {risk_analysis_freq!r}")
        if indicator_analysis_freq is not None or indicator_analysis_method is not None:
            raise ValueError("indicator_analysis_freq/indicator_analysis_method: trade indicators (ffr, pa, pos) need "
                             "Qlib's exchange-level backtest and are not available here; leave them unset")
        self.params: dict[str, Any] = {
            "topk": int(kwargs.pop("topk", skw.get("topk", 50))),
            "n_drop": int(kwargs.pop("n_drop", skw.get("n_drop", 5))),
            "risk_degree": float(kwargs.pop("risk_degree", skw.get("risk_degree", 0.95))),
            "open_cost": float(kwargs.pop("open_cost", ex.get("open_cost", 0.0005))),
            "close_cost": float(kwargs.pop("close_cost", ex.get("close_cost", 0.0015))),
            "account": float(kwargs.pop("account", bt.get("account", 1e8))),
        }
        self.start_time, self.end_time = bt.get("start_time"), bt.get("end_time")
        if kwargs:
            raise ValueError(f"unknown PortAnaRecord argument(s): {sorted(kwargs)}")
        self.skip_existing = skip_existing

    def generate(self, **kwargs: Any) -> None:
        if self._prepare(self.skip_existing):
            return
        pred = self.load("pred.pkl").iloc[:, 0]
        label = self.load("label.pkl").iloc[:, 0]
        if self.start_time is not None or self.end_time is not None:
            pred = pred.loc[pd.IndexSlice[self.start_time:self.end_time, :]]
        result = backtest_topk(pred, label, **self.params)
        analysis = {name: risk_analysis(r, freq=self.freq) for name, r in excess_returns(result.report).items()}
        analysis_df = pd.concat(analysis)
        metrics = {f"{self.freq}.{name}.{k}": float(v) for name, df in analysis.items() for k, v in df["risk"].items()}
        self.recorder.log_metrics(**metrics)
        self.save(**{
            f"report_normal_{self.freq}.pkl": result.report,
            f"positions_normal_{self.freq}.pkl": result.positions,
            f"port_analysis_{self.freq}.pkl": analysis_df,
        })

    def list(self) -> list[str]:
        return [f"report_normal_{self.freq}.pkl", f"positions_normal_{self.freq}.pkl", f"port_analysis_{self.freq}.pkl"]
