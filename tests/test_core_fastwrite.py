"""The direct SQL write path stores exactly what MLflow's own log_batch stores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qrecorder import ParamConflictError, RecorderNotFoundError
from qrecorder.mlflow.store import get_store

# (key, value, timestamp, step): out-of-order steps, ties broken by timestamp then value,
# NaN, infinities and an exact duplicate.
METRICS = [
    ("loss", 0.5, 1000, 2),
    ("loss", 0.9, 1001, 1),
    ("loss", 0.4, 999, 2),
    ("loss", 0.7, 1000, 2),
    ("acc", float("nan"), 1000, 0),
    ("acc", 0.1, 1000, 0),
    ("big", math.inf, 5, 0),
    ("small", -math.inf, 5, 0),
    ("dup", 1.0, 7, 3),
    ("dup", 1.0, 7, 3),
]


def _snapshot(store, run_id: str) -> tuple:
    client = store.client
    run = client.get_run(run_id)
    latest = {k: (v if not math.isnan(v) else "nan") for k, v in run.data.metrics.items()}
    history = {
        key: sorted(
            ((m.step, m.timestamp, "nan" if math.isnan(m.value) else repr(m.value)) for m in client.get_metric_history(run_id, key)),
        )
        for key in latest
    }
    return latest, history, run.data.params, {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}


def _log_both_ways(tmp_path: Path, pg: str | None = None) -> tuple:
    from mlflow.entities import Metric, Param, RunTag

    snaps = []
    for i, fast in enumerate((True, False)):
        uri = pg or f"sqlite:///{tmp_path / f'db{i}.db'}"
        store = get_store(uri)
        exp = store.client.create_experiment(f"fw{i}", artifact_location=(tmp_path / f"a{i}").as_uri())
        run_id = store.client.create_run(exp).info.run_id
        params, tags = [("p", "1"), ("q", "x")], [("t", "a"), ("t2", "b")]
        if fast:
            sink = store.sql_sink
            assert sink is not None
            sink.log_batch(run_id, METRICS[:5], params, tags)
            sink.log_batch(run_id, METRICS[5:], [("p", "1")], [("t", "c")])
        else:
            ms = [Metric(k, v, ts, s) for k, v, ts, s in METRICS]
            store.client.log_batch(run_id, metrics=ms[:5], params=[Param(*p) for p in params], tags=[RunTag(*t) for t in tags])
            store.client.log_batch(run_id, metrics=ms[5:9], params=[Param("p", "1")], tags=[RunTag("t", "c")])
        snaps.append(_snapshot(store, run_id))
    return tuple(snaps)


def test_same_rows_as_mlflow_on_sqlite(tmp_path: Path):
    fast, api = _log_both_ways(tmp_path)
    assert fast == api
    latest = fast[0]
    assert latest["loss"] == 0.7 and latest["acc"] == 0.1  # (step, timestamp, value) ordering


@pytest.mark.postgres
def test_same_rows_as_mlflow_on_postgresql(tmp_path: Path, pg_uri: str):
    fast, api = _log_both_ways(tmp_path, pg_uri)
    assert fast == api


def test_param_conflict_and_inactive_run(tmp_path: Path):
    store = get_store(f"sqlite:///{tmp_path / 'c.db'}")
    exp = store.client.create_experiment("c", artifact_location=(tmp_path / "a").as_uri())
    run_id = store.client.create_run(exp).info.run_id
    sink = store.sql_sink
    sink.log_batch(run_id, [], [("lr", "0.1")], [])
    with pytest.raises(ParamConflictError, match="lr"):
        sink.log_batch(run_id, [("m", 1.0, 1, 0)], [("lr", "0.2")], [])
    assert store.client.get_run(run_id).data.metrics == {}  # the whole batch was rolled back
    store.client.delete_run(run_id)
    with pytest.raises(RecorderNotFoundError, match="active"):
        sink.log_batch(run_id, [("m", 1.0, 1, 0)], [], [])
    with pytest.raises(RecorderNotFoundError, match="does not exist"):
        sink.log_batch("f" * 32, [("m", 1.0, 1, 0)], [], [])
