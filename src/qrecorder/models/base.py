"""The model interface the workflow runner drives: Qlib's ``fit(dataset)`` / ``predict(dataset, segment)``."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import pandas as pd

from qrecorder.data.dataset import DK_L


class Model(abc.ABC):
    """Base class. Any class with the same two methods works too (duck typing), like in Qlib."""

    @abc.abstractmethod
    def fit(self, dataset: Any) -> None:
        """Learn from the dataset's "train" segment (and "valid" if present)."""

    @abc.abstractmethod
    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        """Return scores indexed by (datetime, instrument) for the segment."""


def learn_xy(dataset: Any, segment: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and label of a segment as arrays, rows with a NaN label dropped."""
    df = dataset.prepare(segment, col_set=["feature", "label"], data_key=DK_L)
    return df["feature"].to_numpy(dtype=np.float64), df["label"].iloc[:, 0].to_numpy(dtype=np.float64)


def infer_x(dataset: Any, segment: str) -> pd.DataFrame:
    """The segment's processed features, keeping the (datetime, instrument) index."""
    return dataset.prepare(segment, col_set="feature")


def has_segment(dataset: Any, segment: str) -> bool:
    return segment in getattr(dataset, "segments", {})
