"""One tracking store per URI and process: the MlflowClient, its locks and its writer.

Opening a store is where concurrency is made safe:
- SQLite: schema creation runs under a file lock beside the database, the database is put in
  WAL mode, and every statement waits for another process's lock for up to the retry budget
  (QRECORDER_RETRY_SECONDS), so many processes can write at once and a stuck lock is
  reported after the budget, not later.
- PostgreSQL: schema creation runs under a PostgreSQL advisory lock (works across machines).
- file: (legacy Qlib mlruns): experiment creation runs under a file lock beside the folder,
  since MLflow's file store happily creates duplicate experiments.

A SQLite store at MLflow's head revision opens without MLflow: the database file is set up
here (schema template, WAL) and read and written with :mod:`sqlite3` through :mod:`.sql`
while the schema guard allows it; ``Store.client`` (MLflow's client, ~1.7 s to import) is
opened on the first call that needs MLflow's API (artifacts, deletes, filters the direct
path does not translate). A tracking server with a plain client configuration opens the
same way: the calls of a plain run go through :mod:`.rest` (``requests``, MLflow's requests)
and ``Store.client`` opens on first need. A PostgreSQL store MLflow has set up (schema,
Default experiment) opens the same way with psycopg2 (:class:`.sql.db.PsycopgDatabase`); an
empty one is set up by MLflow's client. Other stores open their client at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import tags as tagnames
from ..errors import FileStoreNotAllowedError, StoreError, StoreReadOnlyError, StoreUnavailableError
from ..uri import StoreLocation, artifact_root_for, lock_path_for, resolve_uri
from . import calls, retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .rest import RestClient
    from .writer import BatchWriter

logger = logging.getLogger("qrecorder")

SQLITE_BUSY_TIMEOUT_MS = 120_000  # the default budget; the budget in force is retry.sqlite_busy_timeout_ms()
CREATE_TOKEN_TAG = tagnames.CREATE_TOKEN
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
        self._client: MlflowClient | None = None
        self._client_lock = threading.Lock()
        self._rest: RestClient | None = None
        if location.kind == "http":
            bound_mlflow_http_retries()
            self._rest = _rest_client(location.uri)  # None: MLflow's client (opened below)
        if self._rest is not None:
            pass  # MLflow's client opens on first need
        elif location.kind == "sqlite":
            self._client = _prepare_sqlite(location, self.lock_path)  # a client only if MLflow had to migrate
            if self._client is None and not self._default_experiment_ready():
                self._client = _open_sqlite_client(location)  # MLflow creates the Default experiment
        elif location.kind == "postgresql" and self._pg_ready():
            pass  # direct SQL (psycopg2) on a schema MLflow made: its client opens on first need
        else:
            self._client = _open_client(location, self.lock_path)

    @property
    def client(self) -> MlflowClient:
        """MLflow's client for this store, opened on first use."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    if self.kind == "sqlite":
                        self._client = _open_sqlite_client(self.location)
                    else:
                        self._client = _open_client(self.location, self.lock_path)
                client = self._client
        return client

    @property
    def rest(self) -> RestClient | None:
        """The light REST calls of a tracking server (:mod:`.rest`), or None: MLflow's client.
        None as soon as the client configuration stops being plain (variables are read again)."""
        client = self._rest
        if client is None or not client.available():
            return None
        return client

    @property
    def direct(self) -> Any | None:
        """The store's direct SQL access (:class:`.sql.db.Database`), or None: decided once."""
        from .sql.db import database_for

        return database_for(self)

    def _pg_ready(self) -> bool:
        """A PostgreSQL store MLflow has set up (verified schema, Default experiment) and
        direct SQL on it: a fresh process then needs neither MLflow nor SQLAlchemy."""
        if os.environ.get("QRECORDER_FAST_WRITE", "1") == "0":
            return False
        try:
            db = self.direct
            return db is not None and bool(db.rows("SELECT 1 FROM experiments WHERE experiment_id = 0"))
        except Exception as exc:  # noqa: BLE001 - MLflow's client decides (and says what is wrong)
            logger.debug("qrecorder: PostgreSQL store not opened directly: %s", exc)
            return False

    def _default_experiment_ready(self) -> bool:
        """MLflow inserts its Default experiment (id 0) into a database that lacks it when
        it opens it; without MLflow the direct path does the same. False: MLflow must open it."""
        db = self.direct
        if db is None:
            return True  # not decided here: MLflow's client does it when it opens
        from .sql.writes import ensure_default_experiment

        try:
            return ensure_default_experiment(db)
        except Exception as exc:  # noqa: BLE001 - a read-only copy, a busy file: let MLflow try
            logger.debug("qrecorder: Default experiment not checked directly: %s", exc)
            return False

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
                    self._writer = BatchWriter(_LazyClient(self), sink=self.sql_sink or self._rest, journal=journal,
                                               flush_interval=_flush_interval(self.kind))
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
                from .sql.writes import SqlBatchSink

                self._sink = SqlBatchSink.for_database(self.direct) or False
                if self._sink and self.kind == "sqlite" and self.location.path is not None:
                    with contextlib.suppress(OSError):
                        self._sink.watch_file(self.location.path)  # a deleted database fails loudly
        return self._sink or None

    @property
    def engine(self) -> Any | None:
        """MLflow's SQLAlchemy engine of a SQL store, else None (opens the client)."""
        if self.kind not in ("sqlite", "postgresql", "mysql", "mssql"):
            return None
        return _engine_of(self.client)

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
            # A database restarting or busy while we connect is retried like any other call.
            store = calls.call(Store, location) if location.kind in ("postgresql", "mysql", "http") else Store(location)
            _stores[location.uri] = store
            store._replay_at_open()
    return store


def _engine_of(client: Any) -> Any | None:
    from .sql.db import mlflow_engine

    return mlflow_engine(client)


def _rest_client(uri: str) -> RestClient | None:
    """The light REST calls for a tracking server whose client configuration is plain."""
    from . import rest

    return rest.RestClient(uri) if rest.plain_config(uri) else None


REMOTE_FLUSH_INTERVAL_S = 1.0


def _flush_interval(kind: str) -> float | None:
    """How often the writer sends what is queued: QRECORDER_FLUSH_INTERVAL, else the writer's
    0.2 s on a database and 1 s on a tracking server, where each batch is a request (a
    workflow's values then arrive in ~3 requests instead of ~6; the journal keeps what is
    queued safe meanwhile, and a flush or the end of a run sends it at once)."""
    if os.environ.get("QRECORDER_FLUSH_INTERVAL") or kind != "http":
        return None
    return REMOTE_FLUSH_INTERVAL_S


class _LazyClient:
    """Stands for ``store.client`` until something really calls MLflow (the writer's fallback)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.client, name)


def _is_mlflow_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "MlflowException"


def _prepare_sqlite(location: StoreLocation, lock_path: Path | None) -> MlflowClient | None:
    """Make the SQLite database ready (created from the schema template under the schema
    lock, WAL on) without MLflow; MLflow's client only when MLflow must create or migrate the
    schema itself (then it is returned)."""
    assert location.path is not None and lock_path is not None
    with _sqlite_open_errors(location):
        location.path.parent.mkdir(parents=True, exist_ok=True)
        from .sql import template

        client = None
        if not template.at_known_head(location.path):
            # Only creating (or migrating) the schema queues behind the lock; opening a store
            # at MLflow's head does not, so many processes do not wait on each other's start-up.
            with _schema_file_lock(lock_path, location):
                if not location.path.exists() or location.path.stat().st_size == 0:
                    template.create_from_template(location.path)  # else MLflow migrates (~3 s)
                _enable_wal(location.path)
                if not template.at_known_head(location.path):
                    client = _client_class()(tracking_uri=location.uri)  # MLflow creates/migrates
        else:
            _enable_wal(location.path)
    if client is not None:
        _tune_sqlite_engine(_engine_of(client), location)
    return client


def _open_sqlite_client(location: StoreLocation) -> MlflowClient:
    """MLflow's client on a prepared SQLite database, its engine tuned to the retry budget."""
    with _sqlite_open_errors(location):
        client = _client_class()(tracking_uri=location.uri)
    _tune_sqlite_engine(_engine_of(client), location)
    return client


@contextlib.contextmanager
def _sqlite_open_errors(location: StoreLocation) -> Iterator[None]:
    """Opening a SQLite store: OS, sqlite3 and MLflow errors become qrecorder's store errors
    (read-only, missing folder, not a database...) where ``_sqlite_open_error`` knows them."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, (OSError, sqlite3.Error)) and not _is_mlflow_error(exc):
            raise
        mapped = _sqlite_open_error(exc, location)
        if mapped is None:
            raise
        raise mapped from exc


def _open_client(location: StoreLocation, lock_path: Path | None) -> MlflowClient:
    from mlflow.exceptions import MlflowException

    client_class = _client_class()
    if location.kind == "postgresql":
        # "INFO ... Creating initial MLflow database tables" at every first use: not the user's news.
        schema_log = logging.getLogger("mlflow.store.db.utils")
        if schema_log.level == logging.NOTSET:
            schema_log.setLevel(logging.WARNING)
        with _pg_schema_lock(location.uri):
            return client_class(tracking_uri=location.uri)
    if location.kind == "file":
        try:
            if lock_path is not None and location.path is not None and not (location.path / "0" / "meta.yaml").exists():
                # MLflow's FileStore writes the default experiment when it opens a new folder and
                # fails ("Yaml file ... exists") if another process wrote it first: create under the lock.
                location.path.parent.mkdir(parents=True, exist_ok=True)
                with _schema_file_lock(lock_path, location):
                    return client_class(tracking_uri=location.uri)
            return client_class(tracking_uri=location.uri)
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
        return client_class(tracking_uri=location.uri)
    except MlflowException as exc:  # pragma: no cover - depends on the server
        raise StoreError(f"Could not open the tracking store {location.uri}: {exc}") from exc


_CLIENT_CLASS: type | None = None
_PID_TAG, _HOST_TAG = tagnames.PID, tagnames.HOST
_start_lock = threading.Lock()
_last_start_ms = 0


def _drop_token(delete: Any) -> None:
    """Remove a creation token once the creation is known to have happened (best effort)."""
    try:
        calls.call(delete)
    except Exception as exc:  # noqa: BLE001 - a leftover token tag is harmless
        logger.debug("qrecorder: creation token not removed: %s", exc)


def _unique_start_ms() -> int:
    """The current time in ms, never the same twice in this process (a run's creation key)."""
    global _last_start_ms
    with _start_lock:
        _last_start_ms = max(time.time_ns() // 1_000_000, _last_start_ms + 1)
        return _last_start_ms


def _stop_disabled_telemetry() -> None:
    """If MLflow was imported before qrecorder, its telemetry thread may already run although
    MLFLOW_DISABLE_TELEMETRY is set now: stop it before any writer thread exists (see
    qrecorder/mlflow/__init__.py for the race it causes)."""
    import sys

    telemetry = sys.modules.get("mlflow.telemetry.client")
    if telemetry is None or os.environ.get("MLFLOW_DISABLE_TELEMETRY", "").lower() not in ("true", "1"):
        return
    try:
        if telemetry.get_telemetry_client() is not None:
            telemetry.set_telemetry_client()  # disabled: clears the client and its session variable once
    except Exception as exc:  # noqa: BLE001 - MLflow's internals moved: telemetry stays as MLflow left it
        logger.debug("qrecorder: MLflow telemetry not stopped: %s", exc)


def _client_class() -> type[MlflowClient]:
    """MlflowClient whose create_run and create_experiment never create twice.

    MLflow makes run ids on the server side, so a retried ``create_run`` whose first attempt
    was committed but not answered (a dropped PostgreSQL connection, a lock error raised after
    the commit, a lost HTTP reply) would make a second, empty run. Each creation carries a key
    unique to it: for qrecorder's runs the start time (unique per process, to the ms) with the
    ``qrecorder.pid`` and ``qrecorder.host`` tags they carry anyway; otherwise a token tag
    (``qrecorder.create_token``, also used for experiments, whose names the store keeps unique).
    Before any retry, qrecorder looks for that key and returns what the earlier attempt made.
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is not None:
        return _CLIENT_CLASS
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    _stop_disabled_telemetry()

    class QRecorderClient(MlflowClient):
        def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):  # type: ignore[no-untyped-def]
            tags = dict(tags or {})
            pid, host = tags.get(_PID_TAG), tags.get(_HOST_TAG)
            if start_time is None and pid and host and "'" not in pid + host:
                # qrecorder's runs: (start time, process, host) is already unique, no extra tag needed.
                start_time = _unique_start_ms()
                wanted = f"attributes.start_time = {start_time} and tags.`{_PID_TAG}` = '{pid}' and tags.`{_HOST_TAG}` = '{host}'"
            else:
                token = uuid.uuid4().hex
                tags[CREATE_TOKEN_TAG] = token
                wanted = f"tags.`{CREATE_TOKEN_TAG}` = '{token}'"

            def create() -> Any:
                return MlflowClient.create_run(self, experiment_id, start_time=start_time, tags=tags, run_name=run_name)

            def find() -> Any:
                runs = MlflowClient.search_runs(
                    self, [str(experiment_id)], filter_string=wanted, run_view_type=ViewType.ALL, max_results=1
                )
                return runs[0] if runs else None

            run = calls.call_once(create, find, self.create_run)
            if CREATE_TOKEN_TAG in tags:  # made: the token has done its job
                _drop_token(lambda: MlflowClient.delete_tag(self, run.info.run_id, CREATE_TOKEN_TAG))
                run.data.tags.pop(CREATE_TOKEN_TAG, None)
            return run

        def create_experiment(self, name, artifact_location=None, tags=None):  # type: ignore[no-untyped-def]
            token = uuid.uuid4().hex
            tagged = {**(tags or {}), CREATE_TOKEN_TAG: token}

            def create() -> Any:
                return MlflowClient.create_experiment(self, name, artifact_location=artifact_location, tags=tagged)

            def find() -> Any:
                exp = MlflowClient.get_experiment_by_name(self, name)
                if exp is not None and exp.tags.get(CREATE_TOKEN_TAG) == token:
                    return exp.experiment_id
                return None

            exp_id = calls.call_once(create, find, self.create_experiment)
            _drop_token(lambda: MlflowClient.delete_experiment_tag(self, exp_id, CREATE_TOKEN_TAG))
            return exp_id

    _CLIENT_CLASS = QRecorderClient
    return QRecorderClient


@contextlib.contextmanager
def _schema_file_lock(lock_path: Path, location: StoreLocation) -> Iterator[None]:
    """The file lock under which a process creates or migrates the schema, bounded by the budget."""
    from filelock import FileLock, Timeout

    budget = retry.retry_budget_seconds()
    lock = FileLock(str(lock_path), timeout=budget)
    try:
        lock.acquire()
    except Timeout as exc:  # before OSError: filelock's Timeout is a TimeoutError
        raise StoreUnavailableError(
            f"Opening {calls.describe_uri(location.uri)}: the schema lock {lock_path} stayed held by another "
            f"process for {budget:g}s, the retry budget (QRECORDER_RETRY_SECONDS). Is a process stuck creating "
            "the database? If none is running, delete the lock file."
        ) from exc
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        if location.path is not None and location.path.is_file() and location.path.stat().st_size > 0:
            # A store we may not write to (a read-only copy or archive): its schema exists, nothing
            # is created under the lock, so open it without; reads work, writes say it is read-only.
            yield
            return
        raise
    try:
        yield
    finally:
        lock.release()


def _sqlite_open_error(exc: BaseException, location: StoreLocation) -> StoreError | None:
    """A clear error for a SQLite store that cannot be opened for writing, else None."""
    text = str(exc).lower()
    path = location.path
    readonly = (
        isinstance(exc, PermissionError)
        or getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)
        or "readonly database" in text
        or "read-only file system" in text
        or "permission denied" in text
        or ("unable to open database file" in text and path is not None and not _writable(path))
    )
    if readonly:
        return StoreReadOnlyError(
            f"The SQLite store {path} cannot be written: the file or its folder is read-only ({_first_line(exc)}). "
            "qrecorder writes to the database and beside it (WAL files <db>-wal and <db>-shm, the lock file "
            f"{lock_path_for(location)}). Give write access to the file and its folder, or copy the store to a "
            "writable folder and point QRECORDER_URI at the copy."
        )
    if "file is not a database" in text or "disk image is malformed" in text:
        return StoreError(
            f"The SQLite store {path} is not a readable SQLite database ({_first_line(exc)}): the file is "
            "corrupted or is something else. Restore it from a backup, or point QRECORDER_URI at another file."
        )
    if "database or disk is full" in text or "no space left" in text:
        return StoreError(
            f"The SQLite store {path} cannot be opened: the disk is full ({_first_line(exc)}). Free space in "
            f"{path.parent if path is not None else 'its folder'}."
        )
    if retry.is_transient(exc):
        budget = retry.retry_budget_seconds()
        return StoreUnavailableError(
            f"Opening {calls.describe_uri(location.uri)}: still locked by another process after {budget:g}s, the "
            f"retry budget (QRECORDER_RETRY_SECONDS); last error: {_first_line(exc)}"
        )
    return None


def _writable(path: Path) -> bool:
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return os.access(path.parent, os.W_OK)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


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
    # No "🏃 View run ... at: URL" lines on stdout at every run end (printing them also costs
    # a get_run request per run); set it to "false" to get them back.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Nor a "Downloading artifacts: 100%|...|" progress bar on stderr at every load_object.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _enable_wal(db_path: Path) -> None:
    """WAL lets readers and one writer work at once; the setting is stored in the file."""
    from .sql.files import writable

    if not writable(db_path):
        return  # a read-only copy is read as it is (sql/files.py)
    con = sqlite3.connect(str(db_path), timeout=retry.sqlite_busy_timeout_ms() / 1000)
    try:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _tune_sqlite_engine(engine: Any, location: StoreLocation | None = None) -> None:
    """Make every statement of MLflow's engine wait for locks within the retry budget.

    The busy timeout follows QRECORDER_RETRY_SECONDS (read when a connection is checked out),
    capped by a ``?timeout=`` in the URI. MLflow sets its own 20 s at the start of each of its
    sessions; that statement is rewritten to the same value, so one number governs.
    """
    from sqlalchemy import event

    cap_ms = location.sqlite_timeout_ms if location is not None else None

    def busy_ms() -> int:
        ms = retry.sqlite_busy_timeout_ms()
        return min(ms, cap_ms) if cap_ms is not None else ms

    def _set_busy(dbapi_connection: Any, record: Any) -> None:
        ms = busy_ms()
        if record.info.get("qrecorder_busy_ms") != ms:
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout={ms}")
            cur.close()
            record.info["qrecorder_busy_ms"] = ms

    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
        _set_busy(dbapi_connection, record)

    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _set_busy(dbapi_connection, record)

    def _before_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> Any:
        if statement.startswith("PRAGMA busy_timeout"):
            statement = f"PRAGMA busy_timeout = {busy_ms()}"
        return statement, parameters

    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "checkout", _on_checkout)
    event.listen(engine, "before_cursor_execute", _before_execute, retval=True)
    engine.dispose()  # drop connections made before the listeners existed


@contextlib.contextmanager
def _pg_schema_lock(uri: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while MLflow creates or migrates its tables."""
    try:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        conn = engine.connect()
    except Exception as exc:
        if retry.is_transient(exc):
            raise  # a restarting server: calls.call retries the open
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
        client = store._client
        engine = _engine_of(client) if client is not None and store.kind != "http" else None
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose(close=False)
    _stores.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
