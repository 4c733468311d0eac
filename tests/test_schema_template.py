"""Fresh SQLite stores come from MLflow's own schema, created once: MLflow accepts them as current."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qrecorder.mlflow.sql import template as sqlite_template


def _schema(path: Path) -> tuple[set[tuple[str, str]], list[tuple]]:
    con = sqlite3.connect(str(path))
    try:
        objects = {(t, n) for t, n in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
        version = con.execute("SELECT version_num FROM alembic_version").fetchall()
        return objects, version
    finally:
        con.close()


def _normalised_sql(path: Path) -> dict[str, list[str]]:
    """Each object's SQL as a sorted list of its comma-separated parts: MLflow's migrations
    recreate some tables with their CHECK constraints in a varying order (two databases MLflow
    builds can differ in that order alone)."""
    con = sqlite3.connect(str(path))
    try:
        return {
            n: sorted(part.strip() for part in " ".join((s or "").split()).split(","))
            for n, s in con.execute("SELECT name, sql FROM sqlite_master")
        }
    finally:
        con.close()


def test_fresh_store_has_mlflows_schema_and_mlflow_accepts_it(tmp_path: Path) -> None:
    from mlflow.store.db.utils import _get_alembic_config  # noqa: F401 - MLflow's own machinery below
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from qrecorder import R

    R.set_uri(f"sqlite:///{tmp_path / 'ours.db'}")
    try:
        with R.start(experiment_name="t"):
            R.log_metrics(a=1.0)
    finally:
        R.set_uri(None)
    # MLflow's own store on a database MLflow migrated from scratch, beside ours.
    reference = SqlAlchemyStore(f"sqlite:///{tmp_path / 'ref.db'}", str(tmp_path / "art"))
    reference.engine.dispose()
    ours, ref = _normalised_sql(tmp_path / "ours.db"), _normalised_sql(tmp_path / "ref.db")
    assert ours == ref
    assert _schema(tmp_path / "ours.db")[1] == _schema(tmp_path / "ref.db")[1]
    # MLflow opens it, verifies the revision (raises if not at head) and reads our run.
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'ours.db'}", str(tmp_path / "art"))
    exp = store.get_experiment_by_name("t")
    assert len(store.search_runs([exp.experiment_id], "", 1)) == 1
    default = store.get_experiment("0")
    assert default.name == "Default"


def test_dump_matches_what_mlflow_creates_now(tmp_path: Path) -> None:
    """The shipped dump is exactly the schema the installed MLflow builds (else it is not used)."""
    dump = sqlite_template.shipped_dump(sqlite_template.mlflow_version())
    if dump is None:
        pytest.skip(f"no schema dump shipped for MLflow {sqlite_template.mlflow_version()}: the cached template is used")
    sqlite_template.build_template(tmp_path / "now.db")
    con = sqlite3.connect(str(tmp_path / "from_dump.db"))
    con.executescript(dump.read_text())
    con.close()
    assert _normalised_sql(tmp_path / "from_dump.db") == _normalised_sql(tmp_path / "now.db")


def test_cached_template_when_no_dump_is_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sqlite_template, "shipped_dump", lambda version: None)
    assert sqlite_template.create_from_template(tmp_path / "a.db")
    assert (tmp_path / "cache" / "schema" / f"mlflow-{sqlite_template.mlflow_version()}.db").is_file()
    assert sqlite_template.create_from_template(tmp_path / "b.db")
    assert _normalised_sql(tmp_path / "a.db") == _normalised_sql(tmp_path / "b.db")


def test_template_off_lets_mlflow_migrate(tmp_path: Path) -> None:
    code = (
        "import os\nfrom qrecorder import R\n"
        f"R.set_uri('sqlite:///{tmp_path / 'm.db'}')\n"
        "with R.start(experiment_name='x'):\n    R.log_metrics(a=1.0)\n"
    )
    import os

    env = {**os.environ, "QRECORDER_SCHEMA_TEMPLATE": "0", "QRECORDER_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "cache").exists()  # no template was made or used: MLflow migrated
    assert _schema(tmp_path / "m.db")[1] == [(sqlite_template.head_revision_of_dump() or _schema(tmp_path / "m.db")[1][0][0],)]
