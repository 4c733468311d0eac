"""One tracking store per URI and process: the MlflowClient, its locks and its writer.

Opening a store is where concurrency is made safe:
- SQLite: schema creation runs under a file lock beside the database, the database is put in
  WAL mode, and every connection gets a long busy timeout, so many processes can write at once.
- PostgreSQL: schema creation runs under a PostgreSQL advisory lock (works across machines).
- file: (legacy Qlib mlruns): experiment creation runs under a file lock beside the folder,
  since MLflow's file store happily creates duplicate experiments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileStoreNotAllowedError, StoreError
from ..uri import StoreLocation, artifact_root_for, lock_path_for, resolve_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .writer import BatchWriter

logger = logging.getLogger("qrecorder")

SQLITE_BUSY_TIMEOUT_MS = 120_000
_PG_SCHEMA_LOCK_KEY = 0x71726563  # "qrec"

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


class Store:
    """A tracking store as seen by this process."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.uri = location.uri
        self.artifact_root = artifact_root_for(location)
        self.lock_path = lock_path_for(location)
        self._writer: BatchWriter | None = None
        self._writer_lock = threading.Lock()
        self._sink: Any = None
        self._open_report: Any = None  # what the replay at open wrote (qrec recover reports it)
        self.client: MlflowClient = _open_client(location, self.lock_path)

    @property
    def kind(self) -> str:
        return self.location.kind

    @property
    def writer(self) -> BatchWriter:
        """The process's background writer for this store, started on first use."""
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    from .journal import Journal, journal_dir_for, journaling_enabled
                    from .writer import BatchWriter

                    journal = None
                    if journaling_enabled():
                        journal = Journal(journal_dir_for(self.uri, self.kind, self.location.path), self.uri)
                    self._writer = BatchWriter(self.client, sink=self.sql_sink, journal=journal)
        return self._writer

    def replay_journals(self) -> Any:
        """Write what dead processes accepted but never wrote (see journal.py); a ReplayReport."""
        return self.writer.replay_orphans()

    def _replay_at_open(self) -> None:
        """At first open in this process: replay orphaned journals, if there are any (one listdir)."""
        from .journal import has_journals, journal_dir_for, journaling_enabled

        if not journaling_enabled() or not has_journals(journal_dir_for(self.uri, self.kind, self.location.path)):
            return
        try:
            self._open_report = self.replay_journals()
        except Exception as exc:  # noqa: BLE001 - the journals stay for the next open, gc or recover
            logger.warning("qrecorder: journals of dead processes could not be replayed now (%s); they are kept", exc)

    @property
    def sql_sink(self) -> Any | None:
        """Direct SQL writes for SQLite/PostgreSQL (QRECORDER_FAST_WRITE=0 turns them off)."""
        if self._sink is None and self.kind in ("sqlite", "postgresql"):
            if os.environ.get("QRECORDER_FAST_WRITE", "1") != "0":
                from .fastwrite import SqlBatchSink

                self._sink = SqlBatchSink.for_engine(self.engine) or False
        return self._sink or None

    @property
    def engine(self) -> Any | None:
        """The SQLAlchemy engine of a SQL store (for the fast read path), else None."""
        return getattr(_sql_store(self.client), "engine", None)

    def sync(self) -> None:
        """Make values this process queued visible to the reads that follow."""
        if self._writer is not None:
            self._writer.sync()

    @contextlib.contextmanager
    def creation_lock(self) -> Iterator[None]:
        """Serialize get-or-create of experiments where the store itself does not."""
        if self.kind == "file" and self.lock_path is not None:
            from filelock import FileLock

            with FileLock(str(self.lock_path)):
                yield
        else:
            yield

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def get_store(uri: str) -> Store:
    """The cached Store for ``uri`` (resolved to an absolute form first)."""
    location = resolve_uri(uri)
    store = _stores.get(location.uri)
    if store is not None:
        return store
    with _stores_lock:
        store = _stores.get(location.uri)
        if store is None:
            store = Store(location)
            _stores[location.uri] = store
            store._replay_at_open()
    return store


def _sql_store(client: Any) -> Any:
    return client._tracking_client.store


def _open_client(location: StoreLocation, lock_path: Path | None) -> MlflowClient:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if location.kind == "sqlite":
        assert location.path is not None and lock_path is not None
        location.path.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(lock_path)):
            if not location.path.exists() or location.path.stat().st_size == 0:
                from . import sqlite_template

                sqlite_template.create_from_template(location.path)  # else MLflow migrates (~3 s)
            _enable_wal(location.path)
            client = MlflowClient(tracking_uri=location.uri)
        _tune_sqlite_engine(_sql_store(client).engine)
        return client
    if location.kind == "postgresql":
        with _pg_schema_lock(location.uri):
            return MlflowClient(tracking_uri=location.uri)
    if location.kind == "file":
        try:
            return MlflowClient(tracking_uri=location.uri)
        except MlflowException as exc:
            if "MLFLOW_ALLOW_FILE_STORE" in str(exc):
                raise FileStoreNotAllowedError(
                    f"MLflow 3 refuses the legacy file store {location.uri} (a Qlib 'mlruns' folder). "
                    "To read or write it anyway, set the environment variable MLFLOW_ALLOW_FILE_STORE=true "
                    "before starting Python; to move for good, run `mlflow migrate-filestore` or use the "
                    "default SQLite store."
                ) from exc
            raise
    if location.kind == "http":
        bound_mlflow_http_retries()
    try:
        return MlflowClient(tracking_uri=location.uri)
    except MlflowException as exc:  # pragma: no cover - depends on the server
        raise StoreError(f"Could not open the tracking store {location.uri}: {exc}") from exc


def bound_mlflow_http_retries() -> None:
    """Let QRECORDER_RETRY_SECONDS govern retries against a tracking server.

    MLflow's RestStore retries on its own (7 times, backoff factor 2: minutes) before
    qrecorder sees an error, which made the budget unpredictable. Unless the user set them,
    MLflow's own retries are turned off and a request times out after 30 s; qrecorder then
    retries transient failures (connection refused, 429, 5xx) within its budget. These are
    process-wide MLflow settings (environment variables read on every request).
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _enable_wal(db_path: Path) -> None:
    """WAL lets readers and one writer work at once; the setting is stored in the file."""
    con = sqlite3.connect(str(db_path), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _tune_sqlite_engine(engine: Any) -> None:
    """Give every connection of MLflow's engine a long busy timeout and WAL-safe sync level."""
    from sqlalchemy import event

    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", _on_connect)
    engine.dispose()  # drop connections made before the listener existed


@contextlib.contextmanager
def _pg_schema_lock(uri: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while MLflow creates or migrates its tables."""
    try:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        conn = engine.connect()
    except Exception as exc:
        raise StoreError(f"Cannot connect to PostgreSQL at {_redact(uri)}: {exc}") from exc
    try:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_SCHEMA_LOCK_KEY})")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_SCHEMA_LOCK_KEY})")
    finally:
        conn.close()
        engine.dispose()


def _redact(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def _reset_after_fork() -> None:
    """A forked child must not reuse the parent's connections or writer thread."""
    for store in list(_stores.values()):
        engine = store.engine if store.kind != "http" else None
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose(close=False)
    _stores.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
