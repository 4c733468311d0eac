"""Conversions shared by the DataFrames both read paths build (MLflow's API and direct SQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

_NAT = -(2**63)  # numpy's NaT as int64


def ms_to_datetime(column: pd.Series) -> pd.Series:
    """``pd.to_datetime(column, unit="ms", utc=True)`` for epoch milliseconds (None/NaN: NaT),
    the same dtype and values, but never through pandas' float path.

    A column of ints with a missing value (a run still running has no end time) is float64
    with NaN. pandas < 3 converts such a column with ``cast_from_unit_vectorized``, which
    leaves the fraction of each NaN slot uninitialised (``np.empty``) and then rounds it under
    ``np.errstate(over="raise")``: when that memory last held a huge double (MLflow stores
    ±inf metrics as ±1.8e308), it raises ``FloatingPointError: overflow encountered in
    multiply``. pandas issue 58419, fixed in 3.0 (pull 61022). Integers with numpy's NaT
    sentinel take the integer path, which gives the same result on every pandas.
    """
    import numpy as np
    import pandas as pd

    if column.dtype.kind == "f":
        missing = column.isna().to_numpy()
        ints = np.where(missing, 0.0, column.to_numpy()).astype("int64")
        ints[missing] = _NAT
        column = pd.Series(ints, index=column.index, name=column.name)
    return pd.to_datetime(column, unit="ms", utc=True)
