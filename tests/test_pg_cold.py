"""The cold path on PostgreSQL: a fresh process on a store MLflow has set up opens it with
psycopg2 alone (no MLflow, no SQLAlchemy) and leaves MLflow's rows.

The first process on an empty database still lets MLflow make the schema (its migrations and
Default experiment); every later process reads and writes directly, as on SQLite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from qrecorder.mlflow.sql import db as sqldb
from qrecorder.mlflow.sql import writes

pytestmark = [pytest.mark.postgres]

FIRST_RUN = r"""
import sys
from qrecorder import R
R.set_uri({uri!r})
with R.start(experiment_name="cold", recorder_name="first"):
    R.log_params(lr=0.1, layers=3)
    R.log_metrics(step=0, loss=1.5)
    R.log_metrics(step=1, loss=0.5, acc=0.25)
    R.set_tags(stage="dev")
    rid = R.get_recorder().id
print(repr((rid, sorted(m for m in ("mlflow", "sqlalchemy") if m in sys.modules))))
"""


def _env() -> dict[str, str]:
    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _python(code: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_second_process_runs_without_mlflow_and_mlflow_reads_it(pg_uri: str, tmp_path: Path) -> None:
    first_id, heavy = eval(_python(FIRST_RUN.format(uri=pg_uri), tmp_path))  # noqa: S307 - our output
    assert "mlflow" in heavy  # an empty database: MLflow made the schema
    run_id, heavy = eval(_python(FIRST_RUN.format(uri=pg_uri), tmp_path))  # noqa: S307
    assert heavy == [], f"the second process imported {heavy}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(pg_uri)
    exp = client.get_experiment_by_name("cold")
    assert exp.tags == {"mlflow.experimentKind": "custom_model_development"}
    for rid in (first_id, run_id):
        run = client.get_run(rid)
        info = run.info
        assert (info.run_name, info.status, info.lifecycle_stage, info.experiment_id) == ("first", "FINISHED", "active",
                                                                                         exp.experiment_id)
        assert info.artifact_uri == f"{exp.artifact_location}/{rid}/artifacts"
        assert info.end_time >= info.start_time > 0
        assert run.data.metrics == {"loss": 0.5, "acc": 0.25}
        assert [(m.step, m.value) for m in client.get_metric_history(rid, "loss")] == [(0, 1.5), (1, 0.5)]
        assert {k: run.data.params[k] for k in ("lr", "layers")} == {"lr": "0.1", "layers": "3"}
        tags = run.data.tags
        assert tags["mlflow.runName"] == "first" and tags["stage"] == "dev" and tags["mlflow.user"] == info.user_id
    client.set_tag(run_id, "after", "mlflow")  # MLflow writes to the run made without it


def _rows(uri: str, table: str, order: str, where: str = "") -> list[tuple[Any, ...]]:
    con = psycopg2.connect(uri)
    try:
        cur = con.cursor()
        cur.execute(f"SELECT * FROM {table} {where} ORDER BY {order}")  # noqa: S608 - test tables
        return cur.fetchall()
    finally:
        con.close()


def test_direct_rows_equal_mlflow_rows_on_postgresql(pg_uri: str, tmp_path: Path) -> None:
    """One experiment and run by MLflow's client, one by sql.writes over psycopg2: the same rows
    (ids, times and run uuids aside)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pg_uri)  # makes the schema and the Default experiment
    tags = {"mlflow.user": "ann", "mlflow.source.name": "x.py", "mlflow.source.type": "LOCAL", "k": "v"}
    exp_tags = {"mlflow.experimentKind": "custom_model_development"}
    loc = (tmp_path / "art").as_uri()
    ref_exp = client.create_experiment("ref", artifact_location=f"{loc}/e", tags=exp_tags)
    ref_run = client.create_run(ref_exp, start_time=1234, tags=tags, run_name="r")
    client.set_terminated(ref_run.info.run_id, "FINISHED", end_time=5678)

    db = sqldb._psycopg_database(pg_uri)
    assert db is not None and db.dialect == "postgresql"
    exp_id = writes.create_experiment(db, "mine", f"{loc}/e", exp_tags)
    assert int(exp_id) == int(ref_exp) + 1  # the serial id, not an OID
    run = writes.SqlBatchSink(db).create_run(exp_id, "r", tags, 1234)
    writes.SqlBatchSink(db).set_terminated(run.info.run_id, "FINISHED", 5678)
    with pytest.raises(Exception, match="exists already"):
        writes.create_experiment(db, "mine", f"{loc}/e", exp_tags)

    def normal(exp: str, run_id: str) -> dict[str, Any]:
        exps = [(n, loc_, st) for _i, n, loc_, st, *_rest in _rows(pg_uri, "experiments", "experiment_id",
                                                                   f"WHERE experiment_id = {int(exp)}")]
        runs = [tuple("RID" if v == run_id else (v.replace(run_id, "RID") if isinstance(v, str) else v)
                      for k, v in enumerate(r) if k != 12)  # experiment_id column aside
                for r in _rows(pg_uri, "runs", "run_uuid", f"WHERE run_uuid = '{run_id}'")]
        run_tags = [(k, v) for k, v, _ in _rows(pg_uri, "tags", "key", f"WHERE run_uuid = '{run_id}'")]
        exp_tag_rows = [(k, v) for k, v, _ in _rows(pg_uri, "experiment_tags", "key", f"WHERE experiment_id = {int(exp)}")]
        return {"experiments": [(loc_, st) for _n, loc_, st in exps], "experiment_tags": exp_tag_rows, "runs": runs,
                "tags": run_tags}

    assert normal(exp_id, run.info.run_id) == normal(ref_exp, ref_run.info.run_id)
    for attr in ("run_name", "user_id", "status", "start_time", "lifecycle_stage"):
        assert getattr(run.info, attr) == getattr(ref_run.info, attr), attr


def test_lost_commit_reply_does_not_make_a_second_run(pg_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made, then the connection fails before the answer: the retry finds the run by its
    id instead of making another one."""
    from mlflow.tracking import MlflowClient

    MlflowClient(pg_uri)
    db = sqldb._psycopg_database(pg_uri)
    assert db is not None
    exp_id = writes.create_experiment(db, "lost", "file:///tmp/lost", {})
    real = writes.create_run
    calls_made = []

    def commit_then_fail(*args: Any, **kwargs: Any) -> Any:
        made = real(*args, **kwargs)
        calls_made.append(made.info.run_id)
        if len(calls_made) == 1:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return made

    monkeypatch.setattr(writes, "create_run", commit_then_fail)
    run = writes.SqlBatchSink(db).create_run(exp_id, "r", {"mlflow.user": "u"}, 99)
    assert calls_made == [run.info.run_id]  # found, not made again
    assert len(_rows(pg_uri, "runs", "run_uuid", f"WHERE experiment_id = {int(exp_id)}")) == 1
    assert run.data.tags["mlflow.user"] == "u"


def test_an_empty_database_is_left_to_mlflow_then_opened_directly(pg_uri: str) -> None:
    assert sqldb._psycopg_database(pg_uri) is None  # no schema yet: MLflow's client makes it
    from qrecorder.mlflow.store import Store
    from qrecorder.uri import resolve_uri

    store = Store(resolve_uri(pg_uri))
    assert store._client is not None  # opened for the schema
    assert store.direct is not None and store.sql_sink is not None  # decided again with MLflow's engine


def test_libpq_dsn() -> None:
    assert sqldb.libpq_dsn("postgresql+psycopg2://u:p@h:5432/d?sslmode=require") == "postgresql://u:p@h:5432/d?sslmode=require"
    assert sqldb.libpq_dsn("postgres://h/d") == "postgresql://h/d"
    assert sqldb.libpq_dsn("mysql://h/d") is None
    assert sqldb.libpq_dsn("postgresql+psycopg2://h/d?plugin=x") is None
