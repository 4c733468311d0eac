"""Start/end times in run frames: epoch milliseconds to UTC datetimes on every pandas.

pandas < 3 (what MLflow < 3.17 installs) converts a float column with NaN -- end times of
runs still running -- through ``cast_from_unit_vectorized``, which rounds the uninitialised
(``np.empty``) fraction of every NaN slot under ``np.errstate(over="raise")``. When that memory
last held a huge double (MLflow stores ±inf metrics as ±1.8e308) it raises
``FloatingPointError: overflow encountered in multiply`` (pandas issue 58419, fixed in 3.0).
The tests make that memory state on purpose: ``dirty_empty`` fills every new float array
with 1.8e308, the content ``np.empty`` may hand out.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from qrecorder.mlflow.query import ms_to_datetime, runs_to_dataframe

T0 = 1_700_000_000_123
HUGE = 1.7976931348623157e308


@pytest.fixture
def dirty_empty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_empty = np.empty

    def empty(shape, dtype=float, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_empty(shape, dtype, *args, **kwargs)
        if out.dtype.kind == "f":
            out.fill(HUGE)
        return out

    monkeypatch.setattr(np, "empty", empty)
    yield


def _run(i: int, end: int | None) -> SimpleNamespace:
    info = SimpleNamespace(
        run_id=f"r{i}", experiment_id="1", status="RUNNING" if end is None else "FINISHED",
        artifact_uri=f"/a/r{i}", start_time=T0 + i, end_time=end,
    )
    return SimpleNamespace(info=info, data=SimpleNamespace(metrics={"m": float("inf")}, params={}, tags={}))


@pytest.mark.parametrize("n", [2, 3, 200])
def test_frame_with_running_runs(dirty_empty: None, n: int) -> None:
    runs = [_run(i, None if i % 2 else T0 + 10 * i) for i in range(n)]
    frame = runs_to_dataframe(runs)
    ends = frame["end_time"]
    assert isinstance(ends.dtype, pd.DatetimeTZDtype) and str(ends.dtype.tz) == "UTC"
    assert ends.isna().tolist() == [bool(i % 2) for i in range(n)]
    assert ends[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert ends[n - 1 - (n - 1) % 2] == pd.Timestamp(T0 + 10 * (n - 1 - (n - 1) % 2), unit="ms", tz="UTC")
    assert frame["start_time"].iloc[-1] == pd.Timestamp(T0 + n - 1, unit="ms", tz="UTC")
    assert frame["metrics.m"].tolist() == [float("inf")] * n


@pytest.mark.parametrize(
    "values",
    [[T0, None], [T0, T0 + 1], [None, None], [None], [], [-5, None, 0], [T0 + 999, None, T0]],
    ids=repr,
)
def test_same_result_as_pandas_to_datetime(values: list[int | None]) -> None:
    column = pd.DataFrame({"end_time": values})["end_time"] if values else pd.Series([], name="end_time")
    expected = pd.to_datetime(column, unit="ms", utc=True)  # the reference, on clean memory
    for _ in range(10):  # freed memory that held huge doubles, the way it happens in a real process
        junk = [np.full(len(values), HUGE) for _ in range(8)]
        del junk
        got = ms_to_datetime(column)
    pdt.assert_series_equal(got, expected)


@pytest.mark.parametrize("values", [[T0, None], [-5, None, 0], [None, T0 + 999, None]], ids=repr)
def test_uninitialised_memory_cannot_break_it(dirty_empty: None, values: list[int | None]) -> None:
    column = pd.DataFrame({"end_time": values})["end_time"]
    got = ms_to_datetime(column)
    assert got.isna().tolist() == [v is None for v in values]
    assert [t.value // 10**6 if not pd.isna(t) else None for t in got.dt.as_unit("ns")] == values
