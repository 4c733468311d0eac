"""The compare-and-set statements of ``qrec gc`` (see :mod:`qrecorder.mlflow.stale` for the rule).

Marking a run stale runs in one short transaction per run on a one-connection engine whose
lock waits end with the scan's budget, so a stopped process holding the write lock makes the
scan give up instead of hanging.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ... import tags as tagnames

if TYPE_CHECKING:
    from ..stale import Verdict
    from ..store import Store

HEARTBEAT_TAG = tagnames.HEARTBEAT
STALE_TAGS = (tagnames.STALE, tagnames.STALE_AT, tagnames.STALE_REASON)


_MARK = (
    "UPDATE runs SET status = 'FAILED', end_time = :end_time "
    "WHERE run_uuid = :run_uuid AND status = 'RUNNING' AND lifecycle_stage = 'active' "
    "AND (SELECT value FROM tags WHERE run_uuid = :run_uuid AND key = :hb_key) = :seen"
)
_UPSERT_TAG = (
    "INSERT INTO tags (key, value, run_uuid) VALUES (:key, :value, :run_uuid) "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value"
)


def _short_lock_engine(store: Store, timeout: float) -> Any:
    """A one-connection engine on the store's database whose lock waits end after ``timeout``."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    assert store.engine is not None, "only SQL stores have an engine"  # callers check store.engine first
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        return sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"timeout": max(timeout, 0.05)})
    return sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": max(int(timeout), 2)})


class _SqlMarker:
    """Compare-and-set marking in one short transaction per run, with bounded lock waits."""

    def __init__(self, store: Store, timeout_error: type[Exception]) -> None:
        self.store = store
        self.timeout_error = timeout_error
        self.engine: Any = None
        assert store.engine is not None, "only SQL stores have an engine"  # run_mark_stale checks first
        self.sqlite = store.engine.url.get_backend_name() == "sqlite"

    def mark(self, run_id: str, verdict: Verdict, remaining: float) -> bool:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        if self.engine is None:
            self.engine = _short_lock_engine(self.store, remaining)
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if self.sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(int(remaining * 1000), 50)}")
                else:
                    ms = max(int(remaining * 1000), 50)
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                hit = conn.execute(text(_MARK), {"end_time": int(now * 1000), "run_uuid": run_id,
                                                 "hb_key": HEARTBEAT_TAG, "seen": verdict.heartbeat}).rowcount
                if hit != 1:
                    return False
                conn.execute(text(_UPSERT_TAG), [{"key": k, "value": v, "run_uuid": run_id}
                                                 for k, v in stale_tags(verdict, now).items()])
            return True
        except sa_exc.OperationalError as exc:
            detail = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip().splitlines()[0]
            lowered = detail.lower()
            if any(s in lowered for s in ("locked", "busy", "lock timeout", "statement timeout", "canceling statement")):
                raise self.timeout_error(detail) from exc
            raise

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def stale_tags(verdict: Verdict, now: float) -> dict[str, str]:
    stale, at, reason = STALE_TAGS
    return {stale: "1", at: f"{now:.0f}", reason: verdict.reason[:1000]}
