"""Reading runs: MLflow's search API, paginated past its 50,000-row cap, and the DataFrame
shape of ``mlflow.search_runs`` (run_id, status, metrics.*, params.*, tags.*)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import calls

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

    from .store import Store

SEARCH_PAGE_SIZE = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
ACTIVE_ONLY = 1


def search_runs(
    store: Store,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = None,
    order_by: Sequence[str] | None = None,
) -> list[Run]:
    """All matching runs (or the first ``max_results``), newest first unless ``order_by``."""
    store.sync()
    from . import fastread  # plain SQL on SQLite/PostgreSQL; None: it cannot answer exactly

    fast = fastread.search_runs(store, experiment_ids, filter_string, run_view_type, max_results, order_by)
    if fast is not None:
        return fast
    runs: list[Run] = []
    token = None
    while True:
        want = SEARCH_PAGE_SIZE if max_results is None else min(SEARCH_PAGE_SIZE, max_results - len(runs))
        if want <= 0:
            break
        page = calls.call(
            store.client.search_runs,
            list(experiment_ids),
            filter_string=filter_string or "",
            run_view_type=run_view_type,
            max_results=want,
            order_by=list(order_by) if order_by else None,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def runs_to_dataframe(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run, columns as ``mlflow.search_runs`` makes them."""
    import numpy as np
    import pandas as pd

    info_cols: dict[str, list[Any]] = {
        "run_id": [],
        "experiment_id": [],
        "status": [],
        "artifact_uri": [],
        "start_time": [],
        "end_time": [],
    }
    metric_keys: dict[str, None] = {}
    param_keys: dict[str, None] = {}
    tag_keys: dict[str, None] = {}
    for run in runs:
        metric_keys.update(dict.fromkeys(run.data.metrics))
        param_keys.update(dict.fromkeys(run.data.params))
        tag_keys.update(dict.fromkeys(run.data.tags))
    data: dict[str, Any] = info_cols
    for run in runs:
        info = run.info
        data["run_id"].append(info.run_id)
        data["experiment_id"].append(info.experiment_id)
        data["status"].append(info.status)
        data["artifact_uri"].append(info.artifact_uri)
        data["start_time"].append(info.start_time)
        data["end_time"].append(info.end_time)
    for key in sorted(metric_keys):
        data["metrics." + key] = [run.data.metrics.get(key, np.nan) for run in runs]
    for key in sorted(param_keys):
        data["params." + key] = [run.data.params.get(key) for run in runs]
    for key in sorted(tag_keys):
        data["tags." + key] = [run.data.tags.get(key) for run in runs]
    frame = pd.DataFrame(data)
    for col in ("start_time", "end_time"):
        frame[col] = ms_to_datetime(frame[col])
    return frame


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


def quote(value: str) -> str:
    """Quote a string literal for MLflow's filter syntax."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"A name with both quote kinds cannot be searched server-side: {value!r}")
