"""Direct SQL writes of metrics, params and tags for SQLite and PostgreSQL stores.

Why: MLflow's SQL store builds one ORM object per value; 10,000 metric values cost ~1.5 s
of pure Python in ``log_batch``. The same rows written with two ``executemany`` statements
cost a few milliseconds. The semantics are MLflow's own (checked against
``SqlAlchemyStore._log_metrics_once`` and ``_update_latest_metrics_if_necessary``):

- ``metrics``: NaN stored as 0 with ``is_nan``, ±inf as ±1.7976931348623157e308, exact
  duplicates (the primary key) skipped;
- ``latest_metrics``: replaced only by a value with a larger (step, timestamp, value);
- ``params``: immutable, the same value again is fine, another value is an error;
- ``tags``: upserted; ``mlflow.*`` tags go through MLflow (``mlflow.runName`` renames runs).

It is used only when the schema guard (:mod:`.guard`, through :mod:`.db`, shared with the
read paths) allows direct SQL on the database (a verified Alembic revision with the columns
written here); otherwise the writer uses ``log_batch``.

On SQLite the statements run over :mod:`sqlite3` (no SQLAlchemy, no MLflow import), which
also lets a fresh process create its experiment and run (:func:`create_experiment`,
:func:`create_run`) with the rows MLflow's ``SqlAlchemyStore`` writes. A SQLite transaction
either commits or leaves nothing behind (no reply can be lost as with a server), so retrying
one of these after a busy error cannot create twice.
"""

from __future__ import annotations

import math
import os
import posixpath
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ... import tags as tagnames
from ...errors import (
    ExpAlreadyExistError,
    ExperimentDeletedError,
    ExperimentNotFoundError,
    ParamConflictError,
    RecorderNotFoundError,
    StoreError,
)

if TYPE_CHECKING:
    from .db import Database

MAX_FLOAT = 1.7976931348623157e308

_INSERT_METRIC = (
    "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
    "VALUES (:key, :value, :timestamp, :step, :is_nan, :run_uuid) "
    "ON CONFLICT DO NOTHING"
)
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
    "VALUES (:key, :value, :timestamp, :step, :is_nan, :run_uuid) "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, "
    "step = excluded.step, is_nan = excluded.is_nan "
    "WHERE (excluded.step, excluded.timestamp, excluded.value) > "
    "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)
_INSERT_PARAM = "INSERT INTO params (key, value, run_uuid) VALUES (:key, :value, :run_uuid) ON CONFLICT DO NOTHING"
_UPSERT_TAG = (
    "INSERT INTO tags (key, value, run_uuid) VALUES (:key, :value, :run_uuid) "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value"
)


def sanitize(value: float) -> tuple[float, bool]:
    """MLflow's SQL representation of a float: (value, is_nan)."""
    if value != value:
        return 0.0, True
    if math.isinf(value):
        return (MAX_FLOAT if value > 0 else -MAX_FLOAT), False
    return value, False


class SqlBatchSink:
    """Writes one run's batch in one transaction, on the store's :class:`.db.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._watched: tuple[str, int, int] | None = None

    def watch_file(self, path: Any) -> None:
        """Refuse to write once the SQLite file at ``path`` is deleted or replaced.

        Connections opened before keep writing into the deleted file (an unlinked inode that
        no other process can see): without this check the values and the FINISHED status
        would be "written" and lost. One stat per batch (~2 µs)."""
        st = os.stat(path)
        self._watched = (os.fspath(path), st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        if self._watched is None:
            return
        path, dev, ino = self._watched
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != (dev, ino):
            raise StoreError(
                f"The SQLite database {path} was {'deleted' if st is None else 'replaced by another file'} while this "
                "process was writing to it; these values were not written (they would have gone into the deleted "
                "file). Restore the database, or start new runs in the new one."
            )

    @classmethod
    def for_database(cls, db: Database | None) -> SqlBatchSink | None:
        """A sink if direct SQL is allowed on the store (``db`` not None), else None."""
        return cls(db) if db is not None else None

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, float, int, int]],
        params: Sequence[tuple[str, str]],
        tags: Sequence[tuple[str, str]],
    ) -> None:

        self._check_file()
        metric_rows = []
        latest: dict[str, dict[str, Any]] = {}
        for key, raw, timestamp, step in metrics:
            value, is_nan = sanitize(raw)
            row = {"key": key, "value": value, "timestamp": timestamp, "step": step, "is_nan": is_nan, "run_uuid": run_id}
            metric_rows.append(row)
            best = latest.get(key)
            if best is None or (step, timestamp, value) > (best["step"], best["timestamp"], best["value"]):
                latest[key] = row
        latest_rows = list(latest.values())
        if self.db.dialect == "postgresql":
            # Rows in one global order (MLflow sorts the keys it locks too): concurrent batches that
            # name the same keys in other orders would otherwise take their row locks crosswise and
            # deadlock. (SQLite has one write lock per database: no sort needed.) Stable sorts:
            # the last of repeated tag keys still wins.
            metric_rows.sort(key=lambda r: (r["key"], r["timestamp"], r["step"], r["value"], r["is_nan"]))
            latest_rows.sort(key=lambda r: r["key"])
            params = sorted(params, key=lambda kv: kv[0])
            tags = sorted(tags, key=lambda kv: kv[0])
        try:
            self._write(run_id, metric_rows, latest_rows, params, tags)
        except Exception as exc:
            if "foreign key" in str(exc).lower():
                raise RecorderNotFoundError(f"Run {run_id} does not exist in this store; its values were not written.") from exc
            raise

    def _write(
        self,
        run_id: str,
        metric_rows: list[dict[str, Any]],
        latest_rows: list[dict[str, Any]],
        params: Sequence[tuple[str, str]],
        tags: Sequence[tuple[str, str]],
    ) -> None:
        with self.db.transaction() as tx:
            # The transaction holds the write lock from its start (SQLite: BEGIN IMMEDIATE).
            if metric_rows:
                tx.executemany(_INSERT_METRIC, metric_rows)
                tx.executemany(_UPSERT_LATEST, latest_rows)
            if tags:
                tx.executemany(_UPSERT_TAG, [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags])
            if params:
                rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in params]
                tx.executemany(_INSERT_PARAM, rows)
                _check_params(tx, run_id, dict(params))
            check_active(tx, run_id)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._check_file()
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE runs SET status = :status, end_time = :end_time WHERE run_uuid = :run_uuid",
                {"status": status, "end_time": end_time, "run_uuid": run_id},
            )
            check_active(tx, run_id)

    def update_run_info(self, run_id: str, status: str | None, end_time: int | None) -> tuple[Any, ...]:
        """MLflow's ``update_run_info`` without a rename: the run's info row after it.

        For ``qrec server``'s fast path of ``runs/update``; refuses a missing or deleted run."""
        self._check_file()
        with self.db.transaction() as tx:
            check_active(tx, run_id)
            sets = [part for part, value in (("status = :s", status), ("end_time = :t", end_time)) if value is not None]
            if sets:
                tx.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_uuid = :r",  # noqa: S608 - fixed column names
                           {"s": status, "t": end_time, "r": run_id})
            row = tx.execute(
                "SELECT run_uuid, experiment_id, user_id, status, start_time, end_time, lifecycle_stage, "
                "artifact_uri, name FROM runs WHERE run_uuid = :r",
                {"r": run_id},
            ).fetchone()
        assert row is not None  # check_active found it in this transaction
        return row

    def check_active(self, run_id: str) -> None:
        """Raise RecorderNotFoundError unless the run exists and is not deleted."""
        self._check_file()
        with self.db.transaction() as tx:
            check_active(tx, run_id)

    # Bound methods, so that an error names the call and the database ("create_run on the
    # SQLite database /x/mlflow.db: ...", see calls.describe_target).
    def create_experiment(self, name: str, artifact_location: str, tags: dict[str, str]) -> str:
        self._check_file()
        return create_experiment(self.db, name, artifact_location, tags)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_time: int) -> Any:
        self._check_file()
        if self.db.dialect != "postgresql":
            return create_run(self.db, experiment_id, run_name, tags, start_time)
        # A server: the reply to COMMIT can be lost with the run made. The id is chosen here, so
        # a retry first looks for it (calls.call_once) instead of making a second run.
        run_id = uuid.uuid4().hex
        from .. import calls

        return calls.call_once(
            lambda: create_run(self.db, experiment_id, run_name, tags, start_time, run_id),
            lambda: _light_run_by_id(self.db, run_id),
            self.create_run,
        )

    def finish_run(
        self, run_id: str, status: str, end_ms: int, stale_tag: str, returned: list[tuple[str, str]]
    ) -> dict[str, str] | None:
        self._check_file()
        return finish_run(self.db, run_id, status, end_ms, stale_tag, returned)


def check_active(tx: Any, run_id: str) -> None:
    row = tx.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = :r", {"r": run_id}).fetchone()
    if row is None:
        raise RecorderNotFoundError(f"Run {run_id} does not exist in this store; its values were not written.")
    if row[0] != "active":
        raise RecorderNotFoundError(f"The run {run_id} must be in the 'active' state. Current state is {row[0]}.")


def _check_params(tx: Any, run_id: str, wanted: dict[str, str]) -> None:
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        found = tx.execute(f"SELECT key, value FROM params WHERE run_uuid = ? AND key IN ({marks})", [run_id, *chunk])
        for key, value in found.fetchall():
            if value != wanted[key]:
                raise ParamConflictError(
                    f"Param {key!r} of run {run_id} is already {value[:200]!r} in the store (another process "
                    f"logged it); MLflow params cannot change (new value {wanted[key][:200]!r})."
                )


# ------------------------------------------------------------------ experiments and runs
RUN_NAME_TAG = tagnames.MLFLOW_RUN_NAME
USER_TAG = tagnames.MLFLOW_USER
DEFAULT_EXPERIMENT_NAME = "Default"
_SERVER_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"  # MLflow's server sets it for its stores


def append_to_uri_path(uri: str, *parts: str) -> str | None:
    """MLflow's ``append_to_uri_path`` for plain paths and query-less URIs; None otherwise."""
    split = urlsplit(uri)
    if split.query or split.fragment or any("/" in p or not p for p in parts):
        return None
    if not split.scheme:
        return posixpath.join(uri, *parts)
    if not split.path.startswith("/"):
        return None  # "s3://bucket", "file:relative": MLflow keeps these its own way
    return urlunsplit(split._replace(path=posixpath.join(split.path, *parts)))


def default_artifact_root() -> str | None:
    """The artifact root MLflow's client gives a SQL store opened without one (its Default
    experiment lives below it): ``./mlruns`` made absolute; None when MLflow's server
    variable decides instead (then MLflow creates the Default experiment)."""
    if os.environ.get(_SERVER_ARTIFACT_ROOT_ENV) is not None:
        return None
    from pathlib import Path

    return Path.cwd().joinpath("mlruns").as_posix()


_DEFAULT_EXISTS = "SELECT 1 FROM experiments WHERE experiment_id = 0"


def ensure_default_experiment(db: Database) -> bool:
    """Insert MLflow's Default experiment (id 0) when the database lacks it (new, or an old
    store whose Default was deleted and purged), as MLflow's store does whenever it opens
    one. False when that must be left to MLflow."""
    if db.rows(_DEFAULT_EXISTS):
        return True
    root = default_artifact_root()
    location = append_to_uri_path(root, "0") if root is not None else None
    if location is None:
        return False
    with db.transaction() as tx:
        if tx.execute(_DEFAULT_EXISTS).fetchone() is None:
            _insert_default(tx, db, location)
    return True


def _insert_default(tx: Any, db: Database, location: str) -> None:
    now = int(time.time() * 1000)
    row = {"id": 0, "name": DEFAULT_EXPERIMENT_NAME, "loc": location, "stage": "active", "t": now}
    if _workspaces(db):
        tx.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time, workspace) VALUES (:id, :name, :loc, :stage, :t, :t, 'default')",
            row,
        )
    else:
        tx.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time) VALUES (:id, :name, :loc, :stage, :t, :t)",
            row,
        )


def _workspaces(db: Database) -> bool:
    caps = db.capabilities
    return bool(caps is not None and caps.experiment_workspaces)


def _is_unique_violation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ in ("IntegrityError", "UniqueViolation") and ("unique" in text or "duplicate" in text)


def location_fits(artifact_location: str) -> bool:
    """MLflow's ``create_experiment`` refuses an artifact location longer than
    MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH (2048): False when MLflow must answer (with its error)."""
    try:
        limit = int(os.environ.get("MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH", "2048"))
    except ValueError:
        return False
    return len(artifact_location) <= limit


def create_experiment(db: Database, name: str, artifact_location: str, tags: dict[str, str]) -> str:
    """The rows of MLflow's ``create_experiment`` (experiments, experiment_tags); its id.

    Raises ExpAlreadyExistError when the name is taken (deleted experiments keep theirs)."""
    now = int(time.time() * 1000)
    row = {"name": name, "loc": artifact_location, "stage": "active", "t": now}
    columns, values = "name, artifact_location, lifecycle_stage, creation_time, last_update_time", ":name, :loc, :stage, :t, :t"
    if _workspaces(db):
        columns, values = columns + ", workspace", values + ", 'default'"
    try:
        with db.transaction() as tx:
            if db.dialect == "postgresql":  # its serial id (lastrowid is an OID there)
                found = tx.execute(f"INSERT INTO experiments ({columns}) VALUES ({values}) RETURNING experiment_id",
                                   row).fetchone()
                assert found is not None
                exp_id = found[0]
            else:
                exp_id = tx.execute(f"INSERT INTO experiments ({columns}) VALUES ({values})", row).lastrowid
            if tags:
                tx.executemany(
                    "INSERT INTO experiment_tags (key, value, experiment_id) VALUES (:k, :v, :e)",
                    [{"k": k, "v": v, "e": exp_id} for k, v in tags.items()],
                )
    except Exception as exc:
        if _is_unique_violation(exc):
            raise ExpAlreadyExistError(f"Experiment {name!r} exists already.") from exc
        raise
    return str(exp_id)


def create_run(
    db: Database, experiment_id: str, run_name: str, tags: dict[str, str], start_time: int, run_id: str | None = None
) -> Any:
    """The rows of MlflowClient's ``create_run`` (runs, tags with ``mlflow.runName``); the new
    run as a :class:`.entities.LightRun`, or None when MLflow must make it (an artifact
    location this module does not extend the way MLflow does)."""
    from .entities import LightRun, LightRunData, LightRunInfo

    if not run_name or tags.get(RUN_NAME_TAG, run_name) != run_name:
        return None  # MLflow names or refuses these
    tags = dict(tags)
    tags.setdefault(RUN_NAME_TAG, run_name)
    user = tags.get(USER_TAG, "unknown")
    run_id = run_id or uuid.uuid4().hex
    with db.transaction() as tx:
        found = tx.execute(
            "SELECT artifact_location, lifecycle_stage, name FROM experiments WHERE experiment_id = ?",
            [int(experiment_id)],
        ).fetchone()
        if found is None:
            raise ExperimentNotFoundError(f"No experiment with id {experiment_id!r} in this store.")
        if found[1] != "active":
            raise ExperimentDeletedError(
                f"Experiment {found[2]!r} (id {experiment_id}) is deleted: no run can start in it."
            )
        artifact_uri = append_to_uri_path(found[0] or "", run_id, "artifacts") if found[0] else None
        if artifact_uri is None:
            return None  # nothing written yet: the transaction ends empty
        tx.execute(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
            "VALUES (:id, :name, 'UNKNOWN', '', '', :user, 'RUNNING', :start, NULL, '', 'active', :uri, :exp, NULL)",
            {"id": run_id, "name": run_name, "user": user, "start": start_time, "uri": artifact_uri,
             "exp": int(experiment_id)},
        )
        tx.executemany(
            "INSERT INTO tags (key, value, run_uuid) VALUES (:k, :v, :r)",
            [{"k": k, "v": v, "r": run_id} for k, v in tags.items()],
        )
    info = LightRunInfo(run_id, str(experiment_id), user, "RUNNING", start_time, None, "active", artifact_uri, run_name)
    return LightRun(info, LightRunData(tags=tags))


def _light_run_by_id(db: Database, run_id: str) -> Any:
    """The run ``run_id`` as a light run (its info and tags), or None."""
    from .entities import LightRun, LightRunData, LightRunInfo

    found = db.rows(
        "SELECT run_uuid, experiment_id, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri, name "
        "FROM runs WHERE run_uuid = ?", [run_id])
    if not found:
        return None
    r = found[0]
    tags = dict(db.rows("SELECT key, value FROM tags WHERE run_uuid = ?", [run_id]))
    info = LightRunInfo(r[0], str(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8])
    return LightRun(info, LightRunData(tags=tags))


# ------------------------------------------------------------------ end of run, stale runs
_FINISH = (
    "UPDATE runs SET status = :status, end_time = :end_time WHERE run_uuid = :run_uuid "
    "AND (status = 'RUNNING' OR NOT EXISTS "
    "(SELECT 1 FROM tags WHERE run_uuid = :run_uuid AND key = :stale_key AND value = '1'))"
)


def finish_run(
    db: Database, run_id: str, status: str, end_ms: int, stale_tag: str, returned: list[tuple[str, str]]
) -> dict[str, str] | None:
    """End a run unless ``qrec gc`` marked it stale (tag ``stale_tag`` = '1') meanwhile: None
    when ended; else the ``returned`` tags are written and the run's tags returned."""
    with db.transaction() as tx:
        check_active(tx, run_id)  # as MLflow's set_terminated: a deleted run is refused, unchanged
        hit = tx.execute(_FINISH, {"status": status, "end_time": end_ms, "run_uuid": run_id, "stale_key": stale_tag}).rowcount
        if hit == 1:
            return None
        tags = {k: v for k, v in tx.execute("SELECT key, value FROM tags WHERE run_uuid = :r", {"r": run_id}).fetchall()}
        if tags.get(stale_tag) != "1":
            raise RecorderNotFoundError(f"Run {run_id} does not exist in this store; its status was not written.")
        tx.executemany(_UPSERT_TAG, [{"key": k, "value": v, "run_uuid": run_id} for k, v in returned])
    return tags
