"""DatasetH: a panel split into date segments, shaped like Qlib's DatasetH but without handlers.

Why the Qlib shape: user models written for Qlib call ``dataset.prepare("train",
col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)`` and index the result with
``df["feature"]`` / ``df["label"]``; that keeps working here. Processing is per day
(cross-sectional), so nothing leaks across dates or segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from qrecorder.data.errors import DataError

DK_I, DK_L, DK_R = "infer", "learn", "raw"  # Qlib's DataHandlerLP data keys


def _cs_zscore(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(level="datetime")
    std = g.transform("std").replace(0.0, np.nan)
    return (df - g.transform("mean")) / std


def _cs_rank(df: pd.DataFrame) -> pd.DataFrame:
    """Qlib's CSRankNorm: per-day percentile rank, centred and scaled to unit-ish std."""
    return (df.groupby(level="datetime").rank(pct=True) - 0.5) * 3.46


class DatasetH:
    """Segments of a (datetime, instrument) panel with a feature/label split.

    ``source`` is a panel DataFrame, a path to a Parquet/CSV file, or an object with ``load()``
    (SyntheticPanel, FilePanel). ``segments`` maps names to inclusive ``[start, end]`` dates.
    ``feature_norm``: "cs_zscore" (default) or None. ``label_norm`` ("cs_rank", "cs_zscore"
    or None) applies only to the learn data key -- records always see the raw label.
    """

    def __init__(
        self,
        source: Any,
        segments: Mapping[str, Sequence[Any]],
        feature_cols: Sequence[str] | None = None,
        label_col: str | None = None,
        feature_norm: str | None = "cs_zscore",
        label_norm: str | None = None,
        fillna: float | None = 0.0,
    ) -> None:
        self.source_name = repr(source) if not isinstance(source, pd.DataFrame) else "<DataFrame>"
        panel = self._load(source)
        self.label_col = label_col or getattr(source, "label", None) or panel.columns[-1]
        if self.label_col not in panel.columns:
            raise DataError("label column not in the panel", source=self.source_name, field=self.label_col)
        self.feature_cols = list(feature_cols) if feature_cols else [c for c in panel.columns if c != self.label_col]
        missing = [c for c in self.feature_cols if c not in panel.columns]
        if missing:
            raise DataError("feature column not in the panel", source=self.source_name, field=missing[0])
        for norm, name in [(feature_norm, "feature_norm"), (label_norm, "label_norm")]:
            if norm not in (None, "cs_zscore", "cs_rank"):
                raise DataError(f"{name} must be 'cs_zscore', 'cs_rank' or null, not {norm!r}", field=name)
        self.segments = self._check_segments(segments, panel)
        self.panel = panel
        self.feature_norm, self.label_norm, self.fillna = feature_norm, label_norm, fillna
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    @staticmethod
    def _load(source: Any) -> pd.DataFrame:
        if isinstance(source, pd.DataFrame):
            panel = source
        elif isinstance(source, str):
            from qrecorder.data.loader import FilePanel

            panel = FilePanel(source).load()
        elif hasattr(source, "load"):
            panel = source.load()
        else:
            raise DataError(f"source must be a DataFrame, a file path or an object with load(), not {type(source).__name__}",
                            field="source")
        if not isinstance(panel.index, pd.MultiIndex) or list(panel.index.names[:2]) != ["datetime", "instrument"]:
            raise DataError("panel must be indexed by (datetime, instrument)", field="source")
        return panel.sort_index()

    def _check_segments(self, segments: Mapping[str, Sequence[Any]], panel: pd.DataFrame) -> dict[str, tuple]:
        if not isinstance(segments, Mapping) or not segments:
            raise DataError("segments must be a mapping like {train: [start, end], ...}", field="segments")
        dates = panel.index.get_level_values("datetime")
        out = {}
        for name, span in segments.items():
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise DataError(f"segment {name!r} must be [start, end]", field=f"segments.{name}")
            try:
                lo, hi = (pd.Timestamp(s) if s is not None else None for s in span)
            except (ValueError, TypeError) as exc:
                raise DataError(f"segment {name!r} has a bad date: {exc}", field=f"segments.{name}") from exc
            mask = np.ones(len(dates), bool)
            if lo is not None:
                mask &= dates >= lo
            if hi is not None:
                mask &= dates <= hi
            if not mask.any():
                raise DataError(f"segment {name!r} [{lo}, {hi}] holds no rows; data spans "
                                f"{dates.min().date()} .. {dates.max().date()}", source=self.source_name,
                                field=f"segments.{name}")
            out[name] = (lo, hi)
        return out

    def _segment(self, name: str) -> pd.DataFrame:
        if name not in self.segments:
            raise KeyError(f"unknown segment {name!r}; segments are {list(self.segments)}")
        lo, hi = self.segments[name]
        return self.panel.loc[pd.IndexSlice[lo:hi, :], :]

    def _processed(self, name: str, data_key: str) -> pd.DataFrame:
        key = (name, data_key)
        if key not in self._cache:
            df = self._segment(name)
            feat = df[self.feature_cols].astype(float)
            label = df[[self.label_col]].astype(float)
            if data_key != DK_R:
                if self.feature_norm == "cs_zscore":
                    feat = _cs_zscore(feat)
                elif self.feature_norm == "cs_rank":
                    feat = _cs_rank(feat)
                if self.fillna is not None:
                    feat = feat.fillna(self.fillna)
            if data_key == DK_L:
                label = label.dropna()
                feat = feat.loc[label.index]
                if self.label_norm == "cs_zscore":
                    label = _cs_zscore(label)
                elif self.label_norm == "cs_rank":
                    label = _cs_rank(label)
            self._cache[key] = pd.concat({"feature": feat, "label": label}, axis=1)
        return self._cache[key]

    def prepare(self, segments: str | Sequence[str] = "test", col_set: str | Sequence[str] = "__all",
                data_key: str = DK_I) -> Any:
        """Return the segment's frame (or a list of frames for a list of segments).

        ``col_set`` "feature" or "label" gives flat columns; a list or "__all" gives Qlib's
        two-level columns (group, name). ``data_key`` "learn" drops NaN labels and normalises
        the label; "infer" (default) keeps the raw label; "raw" also skips feature processing.
        """
        if not isinstance(segments, str):
            return [self.prepare(s, col_set, data_key) for s in segments]
        df = self._processed(segments, data_key)
        if col_set == "__all":
            return df
        if isinstance(col_set, str):
            return df[col_set]
        return df.loc[:, list(col_set)]

    def __repr__(self) -> str:
        return f"DatasetH(source={self.source_name}, segments={list(self.segments)})"
