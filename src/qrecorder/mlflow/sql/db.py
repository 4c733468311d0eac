"""One store's direct SQL access, decided once per store.

:func:`database_for` answers, once per store and process, whether qrecorder may read and
write MLflow's tables itself (the schema guard, :mod:`.guard`) and gives a :class:`Database`:

- SQLite: plain :mod:`sqlite3` connections (one per thread), set up as MLflow's own engine
  sets up its sessions (``foreign_keys=ON``) plus qrecorder's rules (``synchronous=NORMAL``,
  a busy timeout that follows QRECORDER_RETRY_SECONDS, capped by a ``?timeout=`` in the URI).
  Neither MLflow nor SQLAlchemy is imported: a fresh process answers in milliseconds.
- PostgreSQL: raw DB-API connections of MLflow's own SQLAlchemy engine (the store's client
  is opened for it).

SQL is written once for both: ``?`` (positional) or ``:name`` (named) parameters, translated
for psycopg. Nothing outside this package writes SQL against MLflow's schema.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import retry
from .guard import Capabilities, Decision, direct_sql_allowed, sqlite_decision

if TYPE_CHECKING:
    from ..store import Store

logger = logging.getLogger("qrecorder")

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _workspaces_enabled() -> bool:
    """MLflow's MLFLOW_ENABLE_WORKSPACES picks its workspace-aware store: the direct paths do
    not apply to it."""
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("true", "1", "yes", "on")


class Database:
    """Direct SQL on one store's database (only made when the guard allows it)."""

    dialect: str = ""
    uri: str = ""  # for messages (no password)
    decision: Decision

    @property
    def capabilities(self) -> Capabilities | None:
        return self.decision.capabilities

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read rows (``?`` parameters), outside any write transaction."""
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction holding the write lock from its start; committed on success."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Tx:
    """A transaction's cursor: ``execute``/``executemany`` with ``?`` or ``:name`` parameters."""

    def __init__(self, cursor: Any, translate: bool) -> None:
        self._cur = cursor
        self._translate = translate

    def _sql(self, sql: str) -> str:
        if not self._translate:
            return sql
        return _NAMED.sub(r"%(\1)s", sql.replace("?", "%s"))

    def execute(self, sql: str, params: Any = ()) -> Tx:
        self._cur.execute(self._sql(sql), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Any]) -> Tx:
        self._cur.executemany(self._sql(sql), rows)
        return self

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> Any:
        return self._cur.lastrowid

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._cur.fetchall())

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None


class SqliteDatabase(Database):
    """sqlite3 connections to one database file, one per thread (and process)."""

    dialect = "sqlite"

    def __init__(self, path: Path, decision: Decision, cap_ms: int | None = None) -> None:
        self.path = path
        self.uri = f"sqlite:///{path}"
        self.decision = decision
        self.cap_ms = cap_ms
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's connection, closed at exit
        self._generation = 0  # bumped by close_all: threads reconnect after it
        _open_databases.append(self)

    def busy_ms(self) -> int:
        """The lock wait: the budget, capped by ``?timeout=`` and by what the call in progress has left."""
        ms = retry.sqlite_busy_timeout_ms()
        ms = min(ms, self.cap_ms) if self.cap_ms is not None else ms
        return retry.bounded_wait_ms(ms)

    def connection(self) -> sqlite3.Connection:
        local = self._local
        con: sqlite3.Connection | None = getattr(local, "con", None)
        ms = self.busy_ms()
        if con is None or getattr(local, "pid", None) != os.getpid() or local.gen != self._generation:
            from .files import read_uri, writable

            # A store on a read-only medium is opened for reading (writes then say "read-only").
            target, as_uri = (str(self.path), False) if writable(self.path) else (read_uri(self.path), True)
            con = sqlite3.connect(target, timeout=ms / 1000, isolation_level=None, check_same_thread=False, uri=as_uri)
            con.execute("PRAGMA foreign_keys = ON")  # as MLflow's sessions
            con.execute("PRAGMA synchronous = NORMAL")
            local.con, local.pid, local.ms, local.gen = con, os.getpid(), None, self._generation
            with _open_lock:
                self._opened.append(con)
        if local.ms != ms:
            con.execute(f"PRAGMA busy_timeout = {int(ms)}")
            local.ms = ms
        return con

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection().execute(sql, tuple(params)).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        con = self.connection()
        con.execute("BEGIN IMMEDIATE")  # the write lock now (waiting up to the busy timeout)
        try:
            yield Tx(con.cursor(), translate=False)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        try:
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")  # nothing was committed: a retry is safe
            raise

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.close()
            self._local.con = None

    def close_all(self) -> None:
        """Close every thread's connection of this process. The last close of a WAL database
        moves the WAL into the file and removes ``-wal``/``-shm``: left behind, a copy of the
        store on a read-only medium could not be opened."""
        _close_opened(self)


class PsycopgDatabase(Database):
    """psycopg2 connections to a PostgreSQL store, one per thread (and process), without
    SQLAlchemy or MLflow: a fresh process reads and writes its runs in milliseconds.

    Used when the store's URI is one libpq understands; MLflow's engine otherwise."""

    dialect = "postgresql"

    def __init__(self, dsn: str, uri: str, decision: Decision) -> None:
        self.dsn = dsn
        self.uri = uri
        self.decision = decision
        self._local = threading.local()
        self._opened: list[Any] = []
        self._generation = 0
        _open_databases.append(self)

    def connection(self) -> Any:
        local = self._local
        con = getattr(local, "con", None)
        if con is None or con.closed or getattr(local, "pid", None) != os.getpid() or local.gen != self._generation:
            import psycopg2

            con = psycopg2.connect(self.dsn)
            local.con, local.pid, local.gen = con, os.getpid(), self._generation
            with _open_lock:
                self._opened.append(con)
        return con

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        con = self.connection()
        try:
            with con.cursor() as cur:
                cur.execute(Tx(None, True)._sql(sql), tuple(params))
                return [tuple(r) for r in cur.fetchall()]
        finally:
            _rollback_quietly(con)  # end the implicit read transaction

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        con = self.connection()
        cur = con.cursor()
        try:
            yield Tx(cur, translate=True)
            con.commit()
        except BaseException:
            _rollback_quietly(con)
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def close_all(self) -> None:
        """Close every thread's connection of this process (at exit)."""
        _close_opened(self)


def _close_opened(db: Any) -> None:
    """Close the connections ``db`` opened in this process; its threads reconnect after it."""
    with _open_lock:
        opened, db._opened = db._opened, []
        db._generation += 1
    if getattr(db._local, "pid", None) != os.getpid():
        return  # a forked child does not close its parent's connections
    for con in opened:
        with contextlib.suppress(Exception):
            con.close()


def _rollback_quietly(con: Any) -> None:
    with contextlib.suppress(Exception):
        if not con.closed:
            con.rollback()


def libpq_dsn(uri: str) -> str | None:
    """A SQLAlchemy PostgreSQL URI as libpq reads it (``postgresql+psycopg2://`` → ``postgresql://``);
    None when it carries what only SQLAlchemy understands."""
    from urllib.parse import parse_qsl, urlsplit

    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
        return None
    query = urlsplit(uri).query
    if any(key in ("driver", "async_fallback", "plugin") for key, _ in parse_qsl(query)):
        return None
    return "postgresql://" + rest


_open_databases: list[Any] = []
_open_lock = threading.Lock()


def close_all_connections() -> None:
    """Close the direct SQLite connections of this process (at exit, after the writers)."""
    for database in list(_open_databases):
        database.close_all()


class EngineDatabase(Database):
    """Raw DB-API connections of MLflow's SQLAlchemy engine (PostgreSQL)."""

    def __init__(self, engine: Any, decision: Decision) -> None:
        self.engine = engine
        self.uri = engine.url.render_as_string(hide_password=True)
        self.decision = decision
        self.dialect = engine.dialect.name

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                cur.execute(Tx(None, True)._sql(sql), tuple(params))
                return [tuple(r) for r in cur.fetchall()]
            finally:
                cur.close()
        finally:
            try:
                conn.rollback()  # end the implicit read transaction
            finally:
                conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                yield Tx(cur, translate=True)
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
            finally:
                cur.close()
        finally:
            conn.close()


def mlflow_engine(client: Any) -> Any | None:
    """The SQLAlchemy engine of MLflow's SQL tracking store behind ``client`` (None for others).

    The one place that reaches into MLflow's private client structure."""
    return getattr(mlflow_sql_store(client), "engine", None)


def mlflow_sql_store(client: Any) -> Any:
    return client._tracking_client.store


_databases: dict[str, Database | None] = {}
_lock = threading.Lock()


def database_for(store: Store) -> Database | None:
    """The store's :class:`Database`, or None when direct SQL does not apply (decided once)."""
    key = store.uri
    try:
        return _databases[key]
    except KeyError:
        pass
    with _lock:
        if key not in _databases:
            if store.kind == "postgresql" and store._client is None:
                # A fresh process, MLflow not opened: psycopg2 alone if the schema is ready. Not
                # cached when it is not: decided again (with MLflow's engine) once its client opened.
                try:
                    db = _psycopg_database(store.uri)
                except Exception as exc:  # noqa: BLE001 - MLflow's client will say what is wrong
                    logger.debug("qrecorder: direct PostgreSQL connection unavailable for %s: %s", store.uri, exc)
                    db = None
                if db is None:
                    return None
                _databases[key] = db
            else:
                _databases[key] = _open(store)
    return _databases[key]


def _open(store: Store) -> Database | None:
    if store.kind not in ("sqlite", "postgresql") or _workspaces_enabled():
        return None
    try:
        if store.kind == "sqlite":
            path = store.location.path
            if path is None or not path.is_file():
                return None
            return _sqlite_database(path, store.location.sqlite_timeout_ms)
        return database_for_sql_store(mlflow_sql_store(store.client))
    except Exception as exc:  # noqa: BLE001 - any surprise means: use MLflow's API
        logger.debug("qrecorder: direct SQL unavailable for %s: %s", store.uri, exc)
        return None


def _psycopg_database(uri: str) -> PsycopgDatabase | None:
    """Direct SQL on a PostgreSQL store with psycopg2 alone, if libpq takes the URI and the
    schema guard allows it (a store MLflow has not made yet has no schema: None)."""
    from ..calls import describe_uri
    from .guard import decide, installed_mlflow_version

    dsn = libpq_dsn(uri)
    if dsn is None:
        return None
    try:
        import psycopg2  # noqa: F401 - a dependency of qrecorder; absent: MLflow's engine
    except ImportError:
        return None
    db = PsycopgDatabase(dsn, describe_uri(uri), Decision(False, "", "undecided"))
    con = db.connection()

    def rows(sql: str) -> Sequence[Sequence[Any]]:
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        except Exception:
            _rollback_quietly(con)  # a failed statement aborts PostgreSQL's transaction
            raise

    try:
        decision = decide(rows, installed_mlflow_version())
    finally:
        _rollback_quietly(con)
    if not decision.allowed:
        db.close_all()
        return None
    db.decision = decision
    return db


def _sqlite_database(path: Path, cap_ms: int | None = None) -> SqliteDatabase | None:
    """sqlite3 connections to the database file ``path`` if the schema guard allows it."""
    db = SqliteDatabase(path, Decision(False, "", "undecided"), cap_ms)
    decision = sqlite_decision(db.connection(), path)
    if not decision.allowed:
        db.close()
        return None
    db.decision = decision
    return db


def database_for_sql_store(sql_store: Any) -> Database | None:
    """Direct SQL beside an open MLflow ``SqlAlchemyStore`` (PostgreSQL: its own engine's
    connections; SQLite: :mod:`sqlite3` on its file), or None when the guard says no.

    For the client side (:func:`database_for`) and for ``qrec server``'s fast paths
    (:mod:`qrecorder.server_app`), which hold MLflow's store already."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if type(sql_store) is not SqlAlchemyStore or _workspaces_enabled():  # e.g. the workspace-aware store
        return None
    engine = sql_store.engine
    if engine.dialect.name == "sqlite":
        name = engine.url.database
        if not name or name == ":memory:" or name.startswith("file:"):
            return None
        path = Path(name).resolve()
        if not path.is_file():
            return None
        return _sqlite_database(path)
    if engine.dialect.name != "postgresql" or engine.dialect.paramstyle not in ("format", "pyformat"):
        return None
    decision = direct_sql_allowed(engine)
    return EngineDatabase(engine, decision) if decision.allowed else None


def forget(store_uri: str | None = None) -> None:
    """Drop the cached decisions (all, or ``store_uri``'s), e.g. after ``mlflow db upgrade``."""
    from . import guard

    with _lock:
        dropped = list(_databases.values()) if store_uri is None else [_databases.pop(store_uri, None)]
        if store_uri is None:
            _databases.clear()
    for db in dropped:
        if db is not None:
            db.close()
    guard.forget()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _databases.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
