"""SigAnaRecord: IC / rank IC of the predictions, optionally long-short returns (Qlib's names)."""

from __future__ import annotations

from typing import Any

from qrecorder.analysis.signal import calc_ic, calc_long_short_return, long_short_metrics, signal_metrics
from qrecorder.records.base import RecordTemp
from qrecorder.records.signal_record import SignalRecord


class SigAnaRecord(RecordTemp):
    """Logs IC, ICIR, Rank IC, Rank ICIR (+ Long-Short/Long-Avg Ann Return/Sharpe); saves ic.pkl, ric.pkl."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(self, recorder: Any, ana_long_short: bool = False, ann_scaler: int = 252, label_col: int = 0,
                 skip_existing: bool = False) -> None:
        super().__init__(recorder)
        self.ana_long_short, self.ann_scaler, self.label_col = ana_long_short, ann_scaler, label_col
        self.skip_existing = skip_existing

    def generate(self, **kwargs: Any) -> None:
        if self._prepare(self.skip_existing):
            return
        pred = self.load("pred.pkl").iloc[:, 0]
        label = self.load("label.pkl").iloc[:, self.label_col]
        ic, ric = calc_ic(pred, label)
        metrics = signal_metrics(ic, ric)
        objects = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            ls, la = calc_long_short_return(pred, label)
            metrics.update(long_short_metrics(ls, la, self.ann_scaler))
            objects.update({"long_short_r.pkl": ls, "long_avg_r.pkl": la})
        self.recorder.log_metrics(**metrics)
        self.save(**objects)

    def list(self) -> list[str]:
        names = ["ic.pkl", "ric.pkl"]
        return names + (["long_short_r.pkl", "long_avg_r.pkl"] if self.ana_long_short else [])
