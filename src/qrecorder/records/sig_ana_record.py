"""SigAnaRecord: IC / rank IC of the predictions, optionally long-short returns -- Qlib's record.

Same numbers, metric names and artifacts as ``qlib.workflow.record_temp.SigAnaRecord``
(compared in ``tests/test_qlib_parity.py``): metrics ``IC``, ``ICIR``, ``Rank IC``,
``Rank ICIR`` (means and mean/std of the daily series, NaN days skipped) and, with
``ana_long_short``, ``Long-Short Ann Return/Sharpe`` and ``Long-Avg Ann Return/Sharpe``
(mean x ann_scaler, mean / std x sqrt(ann_scaler); the long-average series is the day's mean
label). Artifacts ``sig_analysis/ic.pkl``, ``ric.pkl`` (+ ``long_short_r.pkl``,
``long_avg_r.pkl``): Series indexed by datetime.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from qrecorder.analysis.signal import calc_ic, calc_long_short_return, long_short_metrics, signal_metrics
from qrecorder.records.base import RecordTemp
from qrecorder.records.signal_record import SignalRecord

logger = logging.getLogger(__name__)


class SigAnaRecord(RecordTemp):
    """Logs IC, ICIR, Rank IC, Rank ICIR (+ Long-Short/Long-Avg Ann Return/Sharpe); saves ic.pkl, ric.pkl."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(self, recorder: Any, ana_long_short: bool = False, ann_scaler: float = 252, label_col: int = 0,
                 skip_existing: bool = False) -> None:
        super().__init__(recorder)
        self.ana_long_short, self.ann_scaler, self.label_col = ana_long_short, ann_scaler, label_col
        self.skip_existing = skip_existing

    def generate(self, label: pd.DataFrame | None = None, **kwargs: Any) -> dict[str, pd.Series] | None:
        """``label`` (a frame) replaces the saved ``label.pkl``, as in Qlib. An empty or missing
        label skips the analysis with a warning (Qlib's behaviour, e.g. a handler with drop_raw)."""
        if self._prepare(self.skip_existing):
            return None
        pred = self.load("pred.pkl")
        if label is None:
            label = self.load("label.pkl")
        if label is None or not isinstance(label, pd.DataFrame) or label.empty:
            logger.warning("SigAnaRecord: empty label, no signal analysis")
            return None
        pred_s, label_s = pred.iloc[:, 0], label.iloc[:, self.label_col]
        ic, ric = calc_ic(pred_s, label_s)
        metrics = signal_metrics(ic, ric)
        objects = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            long_short_r, long_avg_r = calc_long_short_return(pred_s, label_s)
            metrics.update(long_short_metrics(long_short_r, long_avg_r, self.ann_scaler))
            objects.update({"long_short_r.pkl": long_short_r, "long_avg_r.pkl": long_avg_r})
        self.recorder.log_metrics(**metrics)
        self.save(**objects)
        return objects

    def list(self) -> list[str]:
        names = ["ic.pkl", "ric.pkl"]
        return names + (["long_short_r.pkl", "long_avg_r.pkl"] if self.ana_long_short else [])
