"""Load a user's own panel from Parquet or CSV and check it before any model sees it.

Why: a typo in a column name or a NaN label found after an hour of training wastes the hour;
here every problem is reported up front, naming the file and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qrecorder.data.errors import DataError


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet (.parquet/.pq) or CSV (.csv, .csv.gz) file."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", source=str(p))
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return pd.read_csv(p, sep="\t" if name.endswith(".tsv") else ",")
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise DataError(f"cannot be read: {type(exc).__name__}: {exc}", source=str(p)) from exc
    raise DataError("unknown file type; use .parquet, .pq, .csv, .csv.gz or .tsv", source=str(p))


def to_panel(
    frame: pd.DataFrame,
    *,
    source: str = "<frame>",
    datetime_col: str = "datetime",
    instrument_col: str = "instrument",
    label: str | Sequence[str] = "LABEL0",
    features: Sequence[str] | None = None,
    dropna_label: bool = False,
) -> pd.DataFrame:
    """Check a flat table and index it by (datetime, instrument), features first, labels last.

    ``features=None`` takes every other numeric column. NaN labels are an error unless
    ``dropna_label`` (then those rows are dropped); NaN features are left for the dataset.
    """
    df = frame.reset_index() if datetime_col in (frame.index.names or []) else frame
    labels = [label] if isinstance(label, str) else list(label)
    for col, what in [(datetime_col, "datetime_col"), (instrument_col, "instrument_col")]:
        if col not in df.columns:
            raise DataError(f"missing column (set {what} if it is named differently); "
                            f"columns are {list(df.columns)}", source=source, field=col)
    for col in labels:
        if col not in df.columns:
            raise DataError(f"missing label column; columns are {list(df.columns)}", source=source, field=col)
    if features is None:
        skip = {datetime_col, instrument_col, *labels}
        features = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
        if not features:
            raise DataError("no numeric feature columns besides the label", source=source)
    features = list(features)
    for col in features:
        if col not in df.columns:
            raise DataError("missing feature column", source=source, field=col)
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise DataError(f"feature is not numeric (dtype {df[col].dtype})", source=source, field=col)
    for col in labels:
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise DataError(f"label is not numeric (dtype {df[col].dtype})", source=source, field=col)
    try:
        dt = pd.to_datetime(df[datetime_col])
    except (ValueError, TypeError) as exc:
        raise DataError(f"cannot be parsed as dates: {exc}", source=source, field=datetime_col) from exc
    out = df[features + labels].copy()
    out.index = pd.MultiIndex.from_arrays([dt, df[instrument_col].astype(str)], names=["datetime", "instrument"])
    dup = out.index.duplicated()
    if dup.any():
        raise DataError(f"{int(dup.sum())} duplicate (datetime, instrument) rows, first {out.index[dup][0]}",
                        source=source, field=instrument_col)
    nan = out[labels].isna().any(axis=1)
    if nan.any():
        if not dropna_label:
            first = out.index[nan.to_numpy()][0]
            raise DataError(f"{int(nan.sum())} rows have a NaN label (first at {first}); clean the data "
                            "or pass dropna_label: true", source=source, field=labels[0])
        out = out[~nan.to_numpy()]
    inf = ~np.isfinite(out[labels].to_numpy(dtype=float)).all(axis=1)
    if inf.any():
        raise DataError(f"{int(inf.sum())} rows have an infinite label", source=source, field=labels[0])
    return out.sort_index()


class FilePanel:
    """A panel source for DatasetH read from the user's Parquet or CSV file."""

    def __init__(self, path: str, datetime_col: str = "datetime", instrument_col: str = "instrument",
                 label: str | list[str] = "LABEL0", features: list[str] | None = None,
                 dropna_label: bool = False) -> None:
        self.path = str(path)
        self.options: dict[str, Any] = dict(datetime_col=datetime_col, instrument_col=instrument_col, label=label,
                            features=features, dropna_label=dropna_label)
        self.label = label if isinstance(label, str) else label[0]

    def load(self) -> pd.DataFrame:
        return to_panel(read_table(self.path), source=self.path, **self.options)

    def __repr__(self) -> str:
        return f"FilePanel({self.path!r})"
