"""The direct-SQL cold path attacked from outside: each test is a case where it once differed
from MLflow's API (rows, answers, errors), fixed to agree."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest

from qrecorder.mlflow.sql import reads, writes
from qrecorder.mlflow.store import get_store


def test_listed_light_runs_pickle_and_deepcopy(tmp_path: Path) -> None:
    """MLflow's Run pickles; a listed LightRun (whose data is read lazily for its batch, through
    the store's connections) must too, with its data."""
    store = get_store(f"sqlite:///{tmp_path / 'm.db'}")
    db = reads.reader_for(store)
    assert db is not None
    exp = writes.create_experiment(db, "e", (tmp_path / "e").as_uri(), {})
    made = writes.create_run(db, exp, "r", {"k": "v"}, 1)
    runs = reads.search_runs(store, [exp], light=True)
    assert runs is not None and runs[0]._batch is not None  # data not read yet
    for copied in (pickle.loads(pickle.dumps(runs[0])), copy.deepcopy(runs[0])):
        assert type(copied).__name__ == "LightRun"
        assert copied.info == made.info
        assert copied.data.tags == {"k": "v", "mlflow.runName": "r"}


def test_too_long_artifact_location_refused_as_mlflow_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's create_experiment refuses an artifact location longer than
    MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH (2048 by default; a root with non-ASCII folders is
    percent-encoded, 9 characters per CJK letter): the direct path wrote it anyway."""
    from mlflow.exceptions import MlflowException

    from qrecorder.mlflow.manager import MLflowExpManager

    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "40")
    monkeypatch.setenv("QRECORDER_ARTIFACT_ROOT", str(tmp_path / ("实" * 10)))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    manager = MLflowExpManager(uri)
    with pytest.raises(MlflowException, match="artifact path length"):
        manager.create_exp("e")
    assert get_store(uri).client.get_experiment_by_name("e") is None
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "2048")
    assert manager.create_exp("e").name == "e"


def _sqlite(path: Path, sql: str) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def test_missing_default_experiment_recreated_as_mlflow_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's store inserts experiment 0 whenever it is missing (an old store whose Default
    was deleted and purged), not only into an empty table: the cold path listed no Default."""
    import shutil
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    mine, ref = tmp_path / "mine.db", tmp_path / "ref.db"
    store = get_store(f"sqlite:///{mine}")
    db = reads.reader_for(store)
    assert db is not None
    writes.create_experiment(db, "e", (tmp_path / "e").as_uri(), {})
    reads.forget()
    _sqlite(mine, "DELETE FROM experiments WHERE experiment_id = 0")
    shutil.copy(mine, ref)
    code = (
        "import sys; from qrecorder import R; R.set_uri(sys.argv[1]); "
        "print(sorted(R.list_experiments()), 'mlflow' in sys.modules)"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{mine}"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": src}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = sorted(e.name for e in MlflowClient(f"sqlite:///{ref}").search_experiments())
    assert expected == ["Default", "e"]
    assert out.stdout.split("\n")[0] == f"{expected} False"
    got, want = (MlflowClient(f"sqlite:///{p}").get_experiment("0") for p in (mine, ref))
    assert (got.name, got.artifact_location, got.lifecycle_stage) == (want.name, want.artifact_location, want.lifecycle_stage)


def test_ending_a_run_deleted_meanwhile_leaves_it_as_mlflow_does(R: object, sqlite_uri: str) -> None:  # noqa: N803
    """MLflow's set_terminated refuses a deleted run and changes nothing; the direct end of run
    wrote FINISHED and an end time into it, then raised."""
    import sqlite3

    from qrecorder.errors import LoggingFailedError, RecorderNotFoundError

    store = get_store(sqlite_uri)
    assert store.sql_sink is not None
    # (LoggingFailedError when the writer's pending values hit the deleted run first.)
    with pytest.raises((RecorderNotFoundError, LoggingFailedError), match="must be in the 'active' state"):
        with R.start(experiment_name="e", recorder_name="r"):  # type: ignore[attr-defined]
            run_id = R.get_recorder().id  # type: ignore[attr-defined]
            store.client.delete_run(run_id)
    con = sqlite3.connect(str(store.location.path))
    try:
        row = con.execute("SELECT status, end_time, lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    finally:
        con.close()
    assert row == ("RUNNING", None, "deleted")


def test_corrupted_store_file_refused_clearly(tmp_path: Path) -> None:
    """A file that is not a SQLite database: a StoreError naming it (was a bare
    sqlite3.DatabaseError from the WAL set-up, without the path)."""
    from qrecorder.errors import StoreError

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 500)
    with pytest.raises(StoreError, match=r"bad\.db is not a readable SQLite database"):
        get_store(f"sqlite:///{bad}")


@pytest.mark.parametrize("folder", ["e%41f", "a?b", "c#d", "sp ace ü", "p%2"])
def test_sqlite_uri_names_the_file_mlflow_opens(tmp_path: Path, folder: str) -> None:
    """The resolved URI is what SQLAlchemy (so MLflow's client) reads back to the same file,
    and resolving it again changes nothing: "e%2541f" was resolved to ".../e%41f/..." and then,
    decoded once more, to ".../eAf/...", another folder than MLflow opens."""
    from sqlalchemy.engine import make_url

    from qrecorder.uri import resolve_uri, sqlite_uri_path

    path = tmp_path / folder / "mlflow.db"
    given = sqlite_uri_path(path)
    location = resolve_uri(given)
    assert location.path == path
    assert make_url(location.uri).database == str(path)
    assert resolve_uri(location.uri) == location
    timed = resolve_uri(given + "?timeout=5")
    assert (timed.path, make_url(timed.uri).database) == (path, str(path))


def test_store_in_folder_with_percent_and_question_mark(tmp_path: Path) -> None:
    """Rows land in the folder MLflow's client opens for the same URI, and the cold path's
    read-only probes of the file create nothing beside it ("file:/x/a?b/m.db" opened "/x/a")."""
    from mlflow.tracking import MlflowClient

    from qrecorder import R
    from qrecorder.mlflow.sql import quick
    from qrecorder.uri import sqlite_uri_path

    for folder, decoy in (("e%41f", "eAf"), ("a?b", "a")):
        base = tmp_path / folder.replace("?", "_q")
        path = base / folder / "mlflow.db"
        path.parent.mkdir(parents=True)
        uri = sqlite_uri_path(path)
        with R.uri_context(uri):
            with R.start(experiment_name="x", recorder_name="r"):
                R.log_metrics(m=1.0)
            run_id = R.get_recorder(recorder_name="r", experiment_name="x").id
        # (MLflow's own client makes an empty folder named as the URI spells it, "a%3Fb".)
        assert decoy not in [p.name for p in base.iterdir()]
        assert MlflowClient(uri).get_run(run_id).data.metrics == {"m": 1.0}
        con = quick.connect(path)
        assert con is not None and "x" in [e["name"] for e in quick.experiments(con)]
        con.close()


@pytest.mark.parametrize(
    "location",
    ["file:relative", "file:", "mlflow-artifacts:/1", "mlflow-artifacts://host:5000/1", "dbfs:/x", "s3://b",
     "hdfs://nn:8020/p", "wasbs://c@a.blob.core.windows.net/p", "/a b/ü", "file:///a%20b", "file:///a//b", "//x/y"],
)
def test_run_artifact_uri_as_mlflow_or_left_to_it(location: str) -> None:
    """A direct run's artifact URI is MLflow's, or the run is left to MLflow (None): an
    experiment stored with "file:relative" gave runs "file:///relative/<id>/artifacts"."""
    from mlflow.utils.uri import append_to_uri_path

    mine = writes.append_to_uri_path(location, "0123abcd", "artifacts")
    assert mine is None or mine == append_to_uri_path(location, "0123abcd", "artifacts")
