"""The schema guard (qrecorder.mlflow.sql.guard) for the installed MLflow.

Run by ``./run test` and, for every MLflow release of the matrix, by ``./run test-mlflow``:

- the installed release is listed, with the head revision its own migrations end at;
- a store that release creates (SQLite and PostgreSQL) is allowed the direct paths, and they
  really answer (not None) with exactly what MLflow's API answers: search, DataFrame, get_run,
  experiments, the CLI's quick listing, and the direct writes;
- unverified revisions, branched or missing alembic_version, a missing column, experiments
  outside the default workspace and a database at another release's head are refused, with
  a reason, and then the API answers;
- the decision is made and logged once per engine.
"""

from __future__ import annotations

import logging
import math
import shutil
import sqlite3
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from qrecorder.mlflow import query
from qrecorder.mlflow.sql import guard as schema
from qrecorder.mlflow.sql import quick as _quick
from qrecorder.mlflow.sql import reads as fastread
from qrecorder.mlflow.store import Store, get_store

MLFLOW_VERSION = metadata.version("mlflow")


def _migrations_head() -> str:
    """The head of the installed MLflow's own Alembic migrations."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    heads = ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


def _revision(engine: Any) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _populate(store: Store, artifacts: Path) -> list[str]:
    """Two experiments (one deleted later) with runs of every status and awkward values."""
    from mlflow.entities import Metric, Param, RunTag

    client = store.client
    exps = [client.create_experiment(f"guard-{k}", artifact_location=(artifacts / f"e{k}").as_uri()) for k in range(3)]
    base = 1_700_000_000_000
    for i in range(12):
        exp = exps[i % 3]
        run = client.create_run(exp, start_time=base + (i // 2) * 1000, run_name=f"r{i % 5}" if i % 4 else None)
        rid = run.info.run_id
        values = [float("nan"), float("inf"), -float("inf"), 0.25 * i, -3.0]
        metrics = [Metric("m", values[(i + s) % 5], base + s, s) for s in range(3)]
        metrics.append(Metric(f"only{i % 3}", 1.0 * i, base, 0))
        client.log_batch(
            rid,
            metrics=metrics,
            params=[Param("p", str(i % 4)), Param(f"q{i % 2}", "x" * (i + 1))],
            tags=[RunTag("t", f"v{i % 3}"), RunTag("é", "ü")],
        )
        status = ["FINISHED", "FAILED", "KILLED", "RUNNING"][i % 4]
        if status != "RUNNING":
            client.set_terminated(rid, status, end_time=base + 50_000 + i)
        if i == 7:
            client.delete_run(rid)
    client.delete_experiment(exps[2])
    return exps[:2]


def _norm(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _key(run: Any) -> tuple[Any, ...]:
    data = run.data
    return (
        tuple(sorted(dict(run.info).items())),
        tuple(sorted((k, _norm(v)) for k, v in data.metrics.items())),
        tuple(sorted((m.key, _norm(m.value), m.timestamp, m.step) for m in data._metric_objs)),
        tuple(sorted(data.params.items())),
        tuple(sorted(data.tags.items())),
        None if run.outputs is None else len(run.outputs.model_outputs),  # search_runs: None before 3.6
        len(run.inputs.dataset_inputs),
    )


def _api_search(store: Store, exps: list[str], view: int) -> list[Any]:
    return list(store.client.search_runs(exps, run_view_type=view, max_results=1000))


# ------------------------------------------------------------------------------ the table
def test_installed_release_is_verified() -> None:
    assert MLFLOW_VERSION in schema.HEAD_OF_RELEASE, (
        f"MLflow {MLFLOW_VERSION} is not in qrecorder.mlflow.sql.guard.VERIFIED: verify it "
        "(docs/mlflow-versions.md) and add it"
    )
    assert schema.HEAD_OF_RELEASE[MLFLOW_VERSION] == _migrations_head()


def test_table_is_consistent() -> None:
    releases = [r for caps in schema.VERIFIED.values() for r in caps.releases]
    assert len(releases) == len(set(releases))
    for revision, caps in schema.VERIFIED.items():
        assert caps.releases and all(r.startswith("3.") for r in caps.releases), revision


# ------------------------------------------------------------------------------ stores
@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = get_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield store
    fastread.forget(store.uri)


@pytest.fixture
def pg_store(pg_uri: str) -> Iterator[Store]:
    from qrecorder.mlflow import store as store_mod

    store = get_store(pg_uri)
    yield store
    cached = store_mod._stores.pop(store.uri, None)
    if cached is not None:
        cached.engine.dispose()
    fastread.forget(store.uri)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")


def test_store_of_installed_release_allows_direct_paths(store: Store) -> None:
    decision = schema.direct_sql_allowed(store.engine)
    assert decision.allowed, decision.reason
    assert decision.revision == _revision(store.engine) == _migrations_head()
    assert MLFLOW_VERSION in decision.capabilities.releases
    from sqlalchemy import inspect

    columns = {c["name"] for c in inspect(store.engine).get_columns("experiments")}
    assert decision.capabilities.experiment_workspaces == ("workspace" in columns)
    assert fastread.reader_for(store) is not None
    assert store.sql_sink is not None


def test_fast_paths_answer_exactly_as_mlflow(store: Store, tmp_path: Path) -> None:
    exps = _populate(store, tmp_path / "art")
    for view in (1, 2, 3):  # active, deleted, all
        fast = fastread.search_runs(store, exps, run_view_type=view, lazy=False)
        assert fast is not None, "the direct read path stepped aside on a verified schema"
        assert [_key(r) for r in fast] == [_key(r) for r in _api_search(store, exps, view)]
        lazy = fastread.search_runs(store, exps, run_view_type=view)
        assert [_key(r) for r in lazy] == [_key(r) for r in fast]
        frame = fastread.search_frame(store, exps, run_view_type=view)
        assert frame is not None
        expected = query.runs_to_dataframe(_api_search(store, exps, view))
        import pandas.testing as pdt

        pdt.assert_frame_equal(frame, expected, check_like=False)
    for run in _api_search(store, exps, 3):
        fast_run = fastread.get_run(store, run.info.run_id)
        assert fast_run is not None and _key(fast_run) == _key(store.client.get_run(run.info.run_id))
    fast_exps = fastread.list_experiments(store)
    assert fast_exps is not None
    assert fast_exps == [(e.experiment_id, e.name) for e in store.client.search_experiments()]


def test_direct_writes_equal_log_batch(store: Store, tmp_path: Path) -> None:
    from mlflow.entities import Metric, Param, RunTag

    sink = store.sql_sink
    assert sink is not None, "the direct write path stepped aside on a verified schema"
    client = store.client
    exp = client.create_experiment("writes", artifact_location=(tmp_path / "w").as_uri())
    direct, api = client.create_run(exp).info.run_id, client.create_run(exp).info.run_id
    metrics = [("m", 0.5, 10, 1), ("m", float("nan"), 11, 2), ("m", 2.0, 9, 2), ("n", float("inf"), 1, 0)]
    params, tags = [("p", "1"), ("long", "y" * 500)], [("t", "a"), ("u", "é")]
    sink.log_batch(direct, metrics, params, tags)
    client.log_batch(
        api,
        metrics=[Metric(k, v, ts, s) for k, v, ts, s in metrics],
        params=[Param(k, v) for k, v in params],
        tags=[RunTag(k, v) for k, v in tags],
    )

    def snapshot(run_id: str) -> tuple[Any, ...]:
        run = client.get_run(run_id)
        history = sorted(
            (m.key, m.step, m.timestamp, _norm(m.value)) for k in run.data.metrics for m in client.get_metric_history(run_id, k)
        )
        tags_ = {k: v for k, v in run.data.tags.items() if not k.startswith(("mlflow.", "qrecorder."))}
        return tuple(sorted((k, _norm(v)) for k, v in run.data.metrics.items())), tuple(history), run.data.params, tags_

    assert snapshot(direct) == snapshot(api)


def test_cli_quick_listing_answers_exactly_as_mlflow(sqlite_store: Store, tmp_path: Path) -> None:
    exps = _populate(sqlite_store, tmp_path / "art")
    con = _quick.connect(Path(sqlite_store.location.path))
    assert con is not None, "the CLI's quick path stepped aside on a verified schema"
    try:
        quick_exps = [(e["experiment_id"], e["name"]) for e in _quick.experiments(con)]
        assert quick_exps == [(e.experiment_id, e.name) for e in sqlite_store.client.search_experiments()]
        for exp in exps:
            rows, total = _quick.runs(con, exp, None, None)
            api = _api_search(sqlite_store, [exp], 1)
            assert total == len(api)
            assert [(r["run_id"], r["name"], r["status"], r["start_time"], r["end_time"]) for r in rows] == [
                (a.info.run_id, a.info.run_name, a.info.status, a.info.start_time, a.info.end_time) for a in api
            ]
            for row, run in zip(rows, api, strict=True):
                assert {k: _norm(v) for k, v in row["metrics"].items()} == {
                    k: _norm(v) for k, v in run.data.metrics.items()
                }
                assert row["params"] == run.data.params
    finally:
        con.close()


# ------------------------------------------------------------------------------ refusals
@pytest.fixture
def db_copy(tmp_path: Path) -> Path:
    """A copy of a fresh store's SQLite file, to alter with sqlite3."""
    src = tmp_path / "src" / "mlflow.db"
    src.parent.mkdir()
    store = get_store(f"sqlite:///{src}")
    store.client.create_experiment("x", artifact_location=(tmp_path / "x").as_uri())
    store.engine.dispose()
    fastread.forget(store.uri)  # closes the direct connection too: the last close moves the WAL into the file
    dst = tmp_path / "copy.db"
    shutil.copy(src, dst)
    schema.forget()
    yield dst
    schema.forget()


def _decide_file(path: Path, sql: str | None = None) -> schema.Decision:
    con = sqlite3.connect(path)
    try:
        if sql:
            con.executescript(sql)
            con.commit()
        schema.forget()
        return schema.sqlite_decision(con, path)
    finally:
        con.close()


def test_copy_is_allowed(db_copy: Path) -> None:
    assert _decide_file(db_copy).allowed


def test_unverified_revision_refused(db_copy: Path) -> None:
    decision = _decide_file(db_copy, "UPDATE alembic_version SET version_num = 'feedfacecafe'")
    assert not decision.allowed and decision.revision == "feedfacecafe"
    assert "not one qrecorder was verified against" in decision.reason
    assert _quick.connect(db_copy) is None


def test_branched_or_missing_alembic_version_refused(db_copy: Path, tmp_path: Path) -> None:
    decision = _decide_file(db_copy, "INSERT INTO alembic_version VALUES ('feedfacecafe')")
    assert not decision.allowed and "2 rows" in decision.reason
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    decision = _decide_file(empty)
    assert not decision.allowed and "alembic_version" in decision.reason


def test_missing_column_refused(db_copy: Path) -> None:
    decision = _decide_file(db_copy, 'ALTER TABLE params RENAME COLUMN "value" TO val')
    assert not decision.allowed and "params" in decision.reason


def test_experiment_outside_default_workspace_refused(db_copy: Path) -> None:
    caps = _decide_file(db_copy).capabilities
    if not caps.experiment_workspaces:
        pytest.skip(f"the schema of MLflow {MLFLOW_VERSION} has no experiments.workspace")
    decision = _decide_file(db_copy, "UPDATE experiments SET workspace = 'team' WHERE name = 'x'")
    assert not decision.allowed and "workspace" in decision.reason


def test_database_of_another_release_refused(db_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    revision = _decide_file(db_copy).revision
    other = next(rel for rel, rev in schema.HEAD_OF_RELEASE.items() if rev != revision)
    monkeypatch.setattr(schema, "installed_mlflow_version", lambda: other)
    decision = _decide_file(db_copy)
    assert not decision.allowed and "mlflow db upgrade" in decision.reason
    monkeypatch.setattr(schema, "installed_mlflow_version", lambda: "3.99.0")  # unlisted: the schema decides
    decision = _decide_file(db_copy)
    assert decision.allowed and "not a listed release" in decision.reason


def test_refused_engine_falls_back_to_api(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    exps = _populate(sqlite_store, tmp_path / "art")
    revision = _revision(sqlite_store.engine)
    monkeypatch.delitem(schema.VERIFIED, revision)
    fastread.forget(sqlite_store.uri)
    decision = schema.direct_sql_allowed(sqlite_store.engine)
    assert not decision.allowed and decision.revision == revision
    assert fastread.reader_for(sqlite_store) is None
    assert fastread.search_runs(sqlite_store, exps) is None
    from qrecorder.mlflow.sql.writes import SqlBatchSink

    assert SqlBatchSink.for_database(fastread.reader_for(sqlite_store)) is None  # the writer uses log_batch
    assert [_key(r) for r in query.search_runs(sqlite_store, exps)] == [
        _key(r) for r in _api_search(sqlite_store, exps, 1)
    ]
    monkeypatch.undo()
    fastread.forget(sqlite_store.uri)
    assert fastread.reader_for(sqlite_store) is not None


def test_decided_and_logged_once_per_engine(db_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db_copy}")
    try:
        with caplog.at_level(logging.DEBUG, logger="qrecorder"):
            first = schema.direct_sql_allowed(engine)
            assert schema.direct_sql_allowed(engine) is first
        lines = [r for r in caplog.records if "direct SQL paths" in r.getMessage()]
        assert len(lines) == 1 and first.revision in lines[0].getMessage()
        assert first.allowed
    finally:
        engine.dispose()


def test_non_sql_engine_refused() -> None:
    assert not schema.direct_sql_allowed(None).allowed


def test_release_behaviour() -> None:
    assert schema.release_tuple("3.6.0rc1") == (3, 6, 0) and schema.release_tuple("x") is None
    assert schema.behaviour_of("3.5.1") == schema.Behaviour(search_runs_outputs=False, metric_filters_skip_nan=False,
                                                                   time_filters_numeric=False)
    assert schema.behaviour_of("3.16.1") == schema.Behaviour(search_runs_outputs=True, metric_filters_skip_nan=False,
                                                              time_filters_numeric=False)
    assert schema.behaviour_of("3.17.0") == schema.Behaviour()
    assert schema.behaviour() == schema.behaviour_of(MLFLOW_VERSION)
