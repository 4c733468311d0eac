"""SignalRecord: save the model's test-segment predictions and the raw labels."""

from __future__ import annotations

from typing import Any

import pandas as pd

from qrecorder.records.base import RecordTemp


class SignalRecord(RecordTemp):
    """Writes ``pred.pkl`` (a frame with column "score") and ``label.pkl`` (raw label frame)."""

    def __init__(self, model: Any = None, dataset: Any = None, recorder: Any = None, segment: str = "test") -> None:
        super().__init__(recorder)
        self.model, self.dataset, self.segment = model, dataset, segment

    @staticmethod
    def generate_label(dataset: Any, segment: str = "test") -> pd.DataFrame:
        return dataset.prepare(segment, col_set="label", data_key="raw")

    def generate(self, **kwargs: Any) -> None:
        if self.model is None or self.dataset is None:
            raise ValueError("SignalRecord needs model and dataset (use '<MODEL>' and '<DATASET>' in the config)")
        pred = self.model.predict(self.dataset, segment=self.segment)
        if isinstance(pred, pd.Series):
            pred = pred.to_frame("score")
        if not isinstance(pred, pd.DataFrame) or pred.empty:
            raise ValueError(f"{type(self.model).__name__}.predict returned {type(pred).__name__}; "
                             "expected a non-empty Series/DataFrame indexed by (datetime, instrument)")
        try:
            label = self.generate_label(self.dataset, self.segment)
        except Exception:
            self.save(**{"pred.pkl": pred})  # as Qlib: the prediction is kept when the label fails
            raise
        self.save(**{"pred.pkl": pred, "label.pkl": label})  # one save: one checksum write to the store

    def list(self) -> list[str]:
        return ["pred.pkl", "label.pkl"]
