"""A fresh SQLite store in milliseconds: MLflow's own schema, created once, copied after.

Why: MLflow builds a new tracking database by running every Alembic migration since its first
release (68 of them for MLflow 3.17): about 3 s before the first run can start. The result is
always the same schema for one MLflow version, so qrecorder keeps it:

1. a schema dump shipped with qrecorder for the MLflow version it pins
   (``schema_sql/mlflow-<version>.sql``, made by ``python -m qrecorder.mlflow.sql.template``
   from a database MLflow itself created), else
2. a template database built once per machine and MLflow version by MLflow itself, in
   ``$XDG_CACHE_HOME/qrecorder/schema/`` (``QRECORDER_CACHE_DIR`` overrides).

A new store is created from it under a temporary name and renamed into place (the caller holds
the store's creation lock). MLflow then opens it as any database at its head revision: it
verifies the Alembic revision, and creates the Default experiment itself, with the artifact
root of this store. ``QRECORDER_SCHEMA_TEMPLATE=0`` always lets MLflow migrate from scratch.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

logger = logging.getLogger("qrecorder")

_SHIPPED = Path(__file__).with_name("schema_sql")


def enabled() -> bool:
    return os.environ.get("QRECORDER_SCHEMA_TEMPLATE", "1").strip().lower() not in ("0", "false", "no", "off")


def mlflow_version() -> str:
    """The installed MLflow's version (read once, without importing MLflow)."""
    from .guard import installed_mlflow_version

    version = installed_mlflow_version()
    if version is None:
        import importlib.metadata

        return importlib.metadata.version("mlflow")  # raises PackageNotFoundError: MLflow is not installed
    return version


def _cache_dir() -> Path:
    base = os.environ.get("QRECORDER_CACHE_DIR")
    if base:
        return Path(base) / "schema"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qrecorder" / "schema"


def shipped_dump(version: str) -> Path | None:
    path = _SHIPPED / f"mlflow-{version}.sql"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def head_revision_of_dump() -> str | None:
    """The Alembic revision in the dump shipped for the installed MLflow (None: none shipped).

    Read once per process: every store open asks for it."""
    import re

    dump = shipped_dump(mlflow_version())
    if dump is None:
        return None
    found = re.search(r"INSERT INTO \"alembic_version\" VALUES\('([0-9a-f]+)'\)", dump.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def expected_head() -> str | None:
    """The Alembic revision a database of the installed MLflow is at (None: not known cheaply)."""
    revision = head_revision_of_dump()
    if revision is not None:
        return revision
    template = _cache_dir() / f"mlflow-{mlflow_version()}.db"
    return _revision_of(template) if template.is_file() else None


def _revision_of(path: Path) -> str | None:
    try:
        from .files import read_uri

        con = sqlite3.connect(read_uri(path), uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


def at_known_head(db_path: Path) -> bool:
    """Whether ``db_path`` is a complete database at the installed MLflow's head revision (then it
    can be opened without the schema lock: nothing will be created or migrated). WAL mode is set
    on the file when it is created."""
    try:
        if not db_path.is_file() or db_path.stat().st_size == 0:
            return False
    except OSError:
        return False
    head = expected_head()
    return head is not None and _revision_of(db_path) == head


def create_from_template(db_path: Path) -> bool:
    """Create the (missing or empty) database ``db_path`` with MLflow's head schema.

    Returns False when no template can be had (then MLflow migrates as usual).
    """
    if not enabled():
        return False
    version = mlflow_version()
    tmp = Path(tempfile.mktemp(prefix=f".{db_path.name}.", suffix=".new", dir=db_path.parent))
    try:
        dump = shipped_dump(version)
        if dump is not None:
            con = sqlite3.connect(str(tmp))
            try:
                con.executescript(dump.read_text(encoding="utf-8"))
            finally:
                con.close()
        else:
            template = _cached_template(version)
            if template is None:
                return False
            shutil.copyfile(template, tmp)
        os.replace(tmp, db_path)
        return True
    except (OSError, sqlite3.Error) as exc:
        logger.debug("qrecorder: no schema template (%s); MLflow creates the database", exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _cached_template(version: str) -> Path | None:
    """The per-machine template for ``version``, built by MLflow itself on first need."""
    folder = _cache_dir()
    template = folder / f"mlflow-{version}.db"
    if template.is_file():
        return template
    try:
        folder.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(folder / f"mlflow-{version}.lock")):
            if not template.is_file():
                build = folder / f".mlflow-{version}.{os.getpid()}.db"
                build.unlink(missing_ok=True)
                build_template(build)
                os.replace(build, template)
    except (OSError, sqlite3.Error) as exc:
        logger.debug("qrecorder: schema template not built: %s", exc)
        return None
    return template


def build_template(path: Path) -> None:
    """Let MLflow create a database at ``path``, then drop the Default experiment it added (the
    store that copies the template gets its own, with its own artifact root)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from ...uri import sqlite_uri_path

    with tempfile.TemporaryDirectory(prefix="qrecorder-schema-") as scratch:
        store = SqlAlchemyStore(sqlite_uri_path(path), scratch)  # a cache folder with '%' or '?' too
        store.engine.dispose()
    con = sqlite3.connect(str(path))
    try:
        con.execute("DELETE FROM experiment_tags")
        con.execute("DELETE FROM experiments")
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()


def dump_schema(path: Path) -> str:
    """The SQL text that recreates ``path`` (schema and the alembic_version row)."""
    con = sqlite3.connect(str(path))
    try:
        return "\n".join(con.iterdump()) + "\n"
    finally:
        con.close()


def main() -> None:
    """Write ``schema_sql/mlflow-<installed version>.sql`` from a database MLflow creates now."""
    version = mlflow_version()
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "template.db"
        build_template(db)
        _SHIPPED.mkdir(exist_ok=True)
        out = _SHIPPED / f"mlflow-{version}.sql"
        out.write_text(dump_schema(db), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
