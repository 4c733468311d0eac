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

It is used only when the schema guard (:mod:`.schema`, shared with the read paths) allows
direct SQL on the database (a verified Alembic revision with the columns written here);
otherwise the writer uses ``log_batch``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ParamConflictError, RecorderNotFoundError, StoreError

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
    """Writes one run's batch in one transaction on MLflow's own engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
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
    def for_engine(cls, engine: Any) -> SqlBatchSink | None:
        """A sink if the schema has what we write, else None (use MLflow's API)."""
        if engine is None or engine.dialect.name not in ("sqlite", "postgresql"):
            return None
        from .schema import direct_sql_allowed

        if not direct_sql_allowed(engine).allowed:  # the guard logs why, once per engine
            return None
        return cls(engine)

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
        try:
            self._write(run_id, metric_rows, list(latest.values()), params, tags)
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
        from sqlalchemy import text

        with self.engine.begin() as conn:
            # Write first: the transaction takes the write lock at once (and waits for it on a
            # busy SQLite) instead of failing later when upgrading a read snapshot.
            if metric_rows:
                conn.execute(text(_INSERT_METRIC), metric_rows)
                conn.execute(text(_UPSERT_LATEST), latest_rows)
            if tags:
                conn.execute(text(_UPSERT_TAG), [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags])
            if params:
                rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in params]
                conn.execute(text(_INSERT_PARAM), rows)
                self._check_params(conn, run_id, dict(params))
            self._check_active(conn, run_id)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        from sqlalchemy import text

        self._check_file()
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET status = :status, end_time = :end_time WHERE run_uuid = :run_uuid"),
                {"status": status, "end_time": end_time, "run_uuid": run_id},
            )
            self._check_active(conn, run_id)

    def check_active(self, run_id: str) -> None:
        """Raise RecorderNotFoundError unless the run exists and is not deleted."""
        self._check_file()
        with self.engine.begin() as conn:
            self._check_active(conn, run_id)

    @staticmethod
    def _check_active(conn: Any, run_id: str) -> None:
        from sqlalchemy import text

        row = conn.execute(text("SELECT lifecycle_stage FROM runs WHERE run_uuid = :r"), {"r": run_id}).first()
        if row is None:
            raise RecorderNotFoundError(f"Run {run_id} does not exist in this store; its values were not written.")
        if row[0] != "active":
            raise RecorderNotFoundError(f"The run {run_id} must be in the 'active' state. Current state is {row[0]}.")

    @staticmethod
    def _check_params(conn: Any, run_id: str, wanted: dict[str, str]) -> None:
        from sqlalchemy import bindparam, text

        query = text("SELECT key, value FROM params WHERE run_uuid = :r AND key IN :keys").bindparams(
            bindparam("keys", expanding=True)
        )
        for key, value in conn.execute(query, {"r": run_id, "keys": list(wanted)}):
            if value != wanted[key]:
                raise ParamConflictError(
                    f"Param {key!r} of run {run_id} is already {value[:200]!r} in the store (another process "
                    f"logged it); MLflow params cannot change (new value {wanted[key][:200]!r})."
                )
