"""The cold path: a fresh process reads and writes a SQLite store without importing MLflow,
and what it writes is what MLflow writes (MLflow's own store reads it back unchanged)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qrecorder.mlflow.sql import reads, writes
from qrecorder.mlflow.store import get_store

HEAVY = "sorted(m for m in ('mlflow', 'sqlalchemy', 'alembic') if m in sys.modules)"

FIRST_RUN = f"""
import sys
from qrecorder import R
R.set_uri({{uri!r}})
with R.start(experiment_name="cold", recorder_name="first"):
    R.log_params(lr="0.1", layers="3")
    R.log_metrics(step=0, loss=1.5, acc=0.25)
    R.log_metrics(step=1, loss=0.5)
    R.set_tags(stage="dev")
rid = R.get_recorder(recorder_name="first", experiment_name="cold").id
print(repr((rid, {HEAVY})))
"""


def _env() -> dict[str, str]:
    """This checkout's qrecorder first on the path (a relative PYTHONPATH breaks in another cwd)."""
    import qrecorder

    src = str(Path(qrecorder.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _python(code: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def _migrations_head() -> str:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    heads = ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


def test_first_run_without_mlflow_reads_back_in_mlflow(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    run_id, heavy = eval(_python(FIRST_RUN.format(uri=f"sqlite:///{db}"), tmp_path))  # noqa: S307 - our output
    assert heavy == [], f"the first run imported {heavy}"

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    with sqlite3.connect(db) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(_migrations_head(),)]
    store = SqlAlchemyStore(f"sqlite:///{db}", str(tmp_path / "mlruns"))  # MLflow accepts it as current
    client = MlflowClient(f"sqlite:///{db}")
    default = client.get_experiment("0")
    assert (default.name, default.lifecycle_stage) == ("Default", "active")
    assert default.artifact_location == (tmp_path / "mlruns" / "0").as_posix()  # as MLflow makes it from its cwd
    exp = client.get_experiment_by_name("cold")
    assert exp.lifecycle_stage == "active"
    assert exp.tags == {"mlflow.experimentKind": "custom_model_development"}
    assert exp.creation_time == exp.last_update_time and exp.creation_time > 0
    run = client.get_run(run_id)
    info = run.info
    assert (info.run_name, info.status, info.lifecycle_stage, info.experiment_id) == ("first", "FINISHED", "active", exp.experiment_id)
    assert info.artifact_uri == f"{exp.artifact_location}/{run_id}/artifacts"
    assert info.end_time >= info.start_time > 0
    assert run.data.metrics == {"loss": 0.5, "acc": 0.25}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 1.5), (1, 0.5)]
    assert {k: run.data.params[k] for k in ("lr", "layers")} == {"lr": "0.1", "layers": "3"}
    tags = run.data.tags
    assert tags["mlflow.runName"] == "first" and tags["stage"] == "dev"
    assert tags["mlflow.user"] == info.user_id and tags["mlflow.source.type"] == "LOCAL"
    assert {"mlflow.source.name", "qrecorder.pid", "qrecorder.host"} <= set(tags)
    # MLflow's own search sees the run, and its store can write to it.
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [run_id]
    client.set_tag(run_id, "after", "mlflow")
    store.engine.dispose()


def _rows(db: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def test_direct_rows_equal_mlflow_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same experiment and run, once by MLflow's client, once by sql.writes: same rows
    (ids, times and run uuids aside)."""
    monkeypatch.chdir(tmp_path)
    tags = {"mlflow.user": "ann", "mlflow.source.name": "x.py", "mlflow.source.type": "LOCAL", "k": "v"}
    exp_tags = {"mlflow.experimentKind": "custom_model_development"}
    loc = (tmp_path / "art" / "e").as_uri()

    mine = get_store(f"sqlite:///{tmp_path / 'mine.db'}")
    db = reads.reader_for(mine)
    assert db is not None and db.dialect == "sqlite"
    exp_id = writes.create_experiment(db, "e", loc, exp_tags)
    run = writes.create_run(db, exp_id, "r", tags, 1234)
    mine.sql_sink.set_terminated(run.info.run_id, "FINISHED", 5678)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'ref.db'}")
    ref_exp = client.create_experiment("e", artifact_location=loc, tags=exp_tags)
    ref_run = client.create_run(ref_exp, start_time=1234, tags=tags, run_name="r")
    client.set_terminated(ref_run.info.run_id, "FINISHED", end_time=5678)

    def normal(db_path: Path, run_id: str) -> dict[str, Any]:
        exps = [(i, n, loc_.replace(run_id, "RID"), st, "t", "t", *rest) for i, n, loc_, st, _c, _u, *rest in
                _rows(db_path, "experiments", "experiment_id")]
        runs = [tuple("RID" if v == run_id else (v.replace(run_id, "RID") if isinstance(v, str) else v) for v in r)
                for r in _rows(db_path, "runs", "run_uuid")]
        run_tags = [(k, v, "RID") for k, v, _ in _rows(db_path, "tags", "key")]
        return {"experiments": exps, "experiment_tags": _rows(db_path, "experiment_tags", "key"), "runs": runs, "tags": run_tags}

    assert normal(tmp_path / "mine.db", run.info.run_id) == normal(tmp_path / "ref.db", ref_run.info.run_id)
    # The light entity returned by create_run says what MLflow's create_run says.
    for attr in ("run_name", "experiment_id", "user_id", "status", "start_time", "lifecycle_stage"):
        assert getattr(run.info, attr) == getattr(ref_run.info, attr), attr
    assert run.data.tags == ref_run.data.tags


def test_direct_create_refuses_taken_name_and_deleted_experiment(tmp_path: Path) -> None:
    from qrecorder.errors import ExpAlreadyExistError, ExperimentDeletedError, ExperimentNotFoundError

    store = get_store(f"sqlite:///{tmp_path / 'm.db'}")
    db = reads.reader_for(store)
    assert db is not None
    exp_id = writes.create_experiment(db, "e", (tmp_path / "e").as_uri(), {})
    with pytest.raises(ExpAlreadyExistError, match="'e' exists already"):
        writes.create_experiment(db, "e", (tmp_path / "e2").as_uri(), {})
    store.client.delete_experiment(exp_id)
    with pytest.raises(ExperimentDeletedError, match="is deleted"):
        writes.create_run(db, exp_id, "r", {}, 1)
    with pytest.raises(ExperimentNotFoundError, match="No experiment with id '999'"):
        writes.create_run(db, "999", "r", {}, 1)


@pytest.mark.parametrize(
    "uri",
    ["/a/b", "/a/b/", "file:///a/b", "file:///a/b/", "s3://bucket/x", "relative/dir", "file:/a/b"],
)
def test_append_to_uri_path_as_mlflow(uri: str) -> None:
    from mlflow.utils.uri import append_to_uri_path

    assert writes.append_to_uri_path(uri, "0123abcd", "artifacts") == append_to_uri_path(uri, "0123abcd", "artifacts")


def test_uri_with_query_is_left_to_mlflow() -> None:
    assert writes.append_to_uri_path("s3://b/x?versionId=1", "r", "artifacts") is None


SIMPLE_FILTERS = [
    "attributes.status = 'RUNNING'",
    "attributes.status != \"FAILED\"",
    "attributes.run_name = 'a b'",
    "attributes.run_name = \"it's\"",
    "attributes.run_id = 'abc'",
    "attributes.start_time = 1234567890123",
    "attributes.start_time >= 1.5",
    "attributes.end_time < -3",
    "tags.`qrecorder.pid` = '12' and attributes.start_time = 123",
    "tags.stage = 'dev' AND params.lr != '0.1'",
    "metrics.loss < 0.5 and metrics.acc >= 2",
    "tags.`qrecorder.stale` = '1' and attributes.status = 'FAILED'",
    "  attributes.status='X'  ",
]


@pytest.mark.parametrize("text", SIMPLE_FILTERS)
def test_simple_filter_parser_agrees_with_mlflow(text: str) -> None:
    from mlflow.utils.search_utils import SearchUtils

    expected = [{**c, "key": SearchUtils.translate_key_alias(c["key"])} for c in SearchUtils.parse_search_filter(text)]
    got = reads.parse_simple_filter(text)
    times_as_text = any(c["key"] in ("start_time", "end_time") and isinstance(c["value"], str) for c in expected)
    if times_as_text:  # MLflow < 3.17 keeps time numbers as text: such filters are left to its parser
        assert got is None
    else:
        assert got == expected


@pytest.mark.parametrize(
    "text",
    [
        "attributes.status IN ('A', 'B')",
        "tags.a LIKE 'x%'",
        "attributes.run_name = 'a' or attributes.status = 'B'",
        "(attributes.status = 'A')",
        "status = 'A'",
        "attributes.status = 'a\\'b'",
        "attributes.start_time = '5'",
        "metrics.loss = 'x'",
        "tags.a = 'x' andtags.b = 'y'",
        "tags.a = 'x'and tags.b = 'y'",
        "tags.a IS NULL",
        "",
    ],
)
def test_other_filters_go_to_mlflow_parser(text: str) -> None:
    assert reads.parse_simple_filter(text) is None


@pytest.mark.parametrize("text", ["attributes.start_time DESC", "start_time", "attributes.run_name ASC", "status DESC"])
def test_simple_order_agrees_with_mlflow(text: str) -> None:
    from mlflow.utils.search_utils import SearchUtils

    kind, key, asc = SearchUtils.parse_order_by_for_search_runs(text)
    assert reads.parse_simple_order(text) == (kind, SearchUtils.translate_key_alias(key), asc)


def test_light_runs_match_mlflow_entities(tmp_path: Path) -> None:
    from mlflow.entities import Metric, Param, RunTag

    store = get_store(f"sqlite:///{tmp_path / 'm.db'}")
    client = store.client
    exp = client.create_experiment("e", artifact_location=(tmp_path / "e").as_uri())
    for i in range(3):
        rid = client.create_run(exp, run_name=f"r{i}").info.run_id
        client.log_batch(rid, metrics=[Metric("m", i / 3, 5, i), Metric("n", float("nan"), 5, 0)],
                         params=[Param("p", str(i))], tags=[RunTag("t", "x" * i)])
        if i == 1:
            client.set_terminated(rid, "FAILED")
    light = reads.search_runs(store, [exp], light=True)
    heavy = client.search_runs([exp])
    assert light is not None and len(light) == len(heavy) == 3
    for a, b in zip(light, heavy, strict=True):
        assert type(a).__name__ == "LightRun"
        for attr in ("run_id", "experiment_id", "user_id", "status", "start_time", "end_time",
                     "lifecycle_stage", "artifact_uri", "run_name"):
            assert getattr(a.info, attr) == getattr(b.info, attr), attr
        assert a.data.params == b.data.params and a.data.tags == b.data.tags
        assert repr(a.data.metrics) == repr(b.data.metrics)  # NaN included
        assert repr(a.to_mlflow().to_dictionary()["data"]) == repr(b.to_dictionary()["data"])
    one = reads.get_run(store, heavy[0].info.run_id, light=True)
    assert one is not None and one.data.params == heavy[0].data.params


COLD_READS = f"""
import sys
from qrecorder import R
R.set_uri({{uri!r}})
recs = R.list_recorders(experiment_name="cold")
rec = R.get_recorder(recorder_name="first", experiment_name="cold")
by_id = R.get_recorder(recorder_id=rec.id, experiment_name="cold")
exps = sorted(R.list_experiments())
running = R.get_exp(experiment_name="cold", create=False).list_recorders(status="FINISHED")
before = {HEAVY}
metrics, params = rec.list_metrics(), rec.list_params()
cold = {HEAVY}
# A call that needs MLflow's API opens its client now, and works.
rec.save_objects(obj=dict(a=1))
loaded = rec.load_object("obj")
arts = rec.list_artifacts()
print(repr((len(recs), by_id.id == rec.id, exps, len(running), before, cold, metrics, params["lr"], loaded, arts,
            "mlflow" in sys.modules)))
"""


def test_cold_reads_do_not_import_mlflow_and_recorders_stay_functional(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _python(FIRST_RUN.format(uri=uri), tmp_path)
    got = eval(_python(COLD_READS.format(uri=uri), tmp_path))  # noqa: S307 - our output
    n, same, exps, running, before, cold, metrics, lr, loaded, arts, imported = got
    assert (n, same, exps, running) == (1, True, ["Default", "cold"], 1)
    assert before == [] and cold == [], (before, cold)
    assert metrics == {"loss": 0.5, "acc": 0.25} and lr == "0.1"
    assert loaded == {"a": 1} and "obj" in arts and imported


def test_search_records_cold(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _python(FIRST_RUN.format(uri=uri), tmp_path)
    code = (
        "import sys\nfrom qrecorder import R\n"
        f"R.set_uri({uri!r})\n"
        "df = R.search_records([R.get_exp(experiment_name='cold', create=False).id])\n"
        "df2 = R.search_records([R.get_exp(experiment_name='cold', create=False).id], filter_string=\"params.lr = '0.1'\")\n"
        f"print(repr((len(df), len(df2), float(df['metrics.loss'][0]), {HEAVY})))\n"
    )
    n, n2, loss, heavy = eval(_python(code, tmp_path))  # noqa: S307
    assert (n, n2, loss, heavy) == (1, 1, 0.5, [])


def test_recorder_times_formatted_as_datetime_does() -> None:
    import random
    from datetime import datetime

    from qrecorder.mlflow.recorder import _fmt_ms

    rng = random.Random(7)
    for ms in [0, 999, 1000, 1_795_988_819_355, 1_795_988_819_999, -1500, *(rng.randrange(0, 4_102_444_800_000) for _ in range(2000))]:
        assert _fmt_ms(ms) == datetime.fromtimestamp(ms / 1000.0).strftime("%Y-%m-%d %H:%M:%S"), ms
    assert _fmt_ms(None) is None


def test_mlflow_version_read_without_metadata_scan_matches_metadata() -> None:
    from importlib import metadata

    from qrecorder.mlflow.sql import guard

    assert guard._version_from_source() == metadata.version("mlflow") == guard.installed_mlflow_version()
