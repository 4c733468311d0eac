"""Reading runs: MLflow's search API, paginated past its 50,000-row cap, and the DataFrame
shape of ``mlflow.search_runs`` (run_id, status, metrics.*, params.*, tags.*)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import calls
from .frames import ms_to_datetime  # noqa: F401 - also re-exported for tests and older imports

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
    *,
    light: bool = False,
) -> list[Run]:
    """All matching runs (or the first ``max_results``), newest first unless ``order_by``.

    ``light``: runs read by the direct path may be :class:`.sql.entities.LightRun` (same
    attributes, MLflow not imported); those from MLflow's API are its entities."""
    store.sync()
    from .sql import reads as fastread  # plain SQL on SQLite/PostgreSQL; None: it cannot answer exactly

    fast = fastread.search_runs(store, experiment_ids, filter_string, run_view_type, max_results, order_by, light=light)
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




def search_records_frame(
    store: Store,
    experiment_ids: list[str],
    filter_string: str | None = None,
    run_view_type: int | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    **_ignored: Any,
) -> Any:
    """Qlib's search_records: a DataFrame with metrics.*, params.*, tags.* columns.

    ``max_results`` above MLflow's 50,000 cap (Qlib asked for 100,000) simply means "all".
    """
    from .sql import reads as fastread

    store.sync()
    frame = fastread.search_frame(
        store, experiment_ids, filter_string or "", run_view_type or ACTIVE_ONLY, max_results, order_by
    )
    if frame is not None:
        return frame
    runs = search_runs(
        store,
        experiment_ids,
        filter_string=filter_string or "",
        run_view_type=run_view_type or ACTIVE_ONLY,
        max_results=max_results,
        order_by=order_by,
    )
    return runs_to_dataframe(runs)


def quote(value: str) -> str:
    """Quote a string literal for MLflow's filter syntax."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"A name with both quote kinds cannot be searched server-side: {value!r}")
