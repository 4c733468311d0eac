"""Direct (synchronous) store calls with retry of transient failures and clear errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import AccessDeniedError, StoreError, StoreReadOnlyError, StoreUnavailableError
from . import retry

logger = logging.getLogger("qrecorder")
T = TypeVar("T")


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call; retry busy/unreachable stores within the budget; map auth errors.

    Only for calls that are safe to repeat (reads, upserts, writes that skip duplicates).
    Calls that create something use ``call_once``."""
    deadline = retry.Deadline()
    while True:
        try:
            with retry.within(deadline):
                return fn(*args, **kwargs)
        except Exception as exc:
            _raise_if_final(exc, deadline, fn)
            delay = deadline.next_delay()
            logger.warning("qrecorder: %s busy or unreachable (%s); retrying in %.2fs", describe_target(fn), _first_line(exc), delay)
            time.sleep(delay or 0)


def call_once(create: Callable[[], T], find: Callable[[], T | None], what: Callable[..., Any] | str) -> T:
    """Create something at most once, retrying transient failures within the budget.

    A failed attempt may still have happened (the commit went through, the answer was lost:
    a dropped connection, a lock error raised after the commit). ``find`` looks for what an
    earlier attempt made (e.g. by a unique token the attempt carried); while its outcome is
    unknown, ``create`` is not called again: ``find`` is retried until it can answer."""
    deadline = retry.Deadline()
    unverified = False
    while True:
        try:
            with retry.within(deadline):
                if unverified:
                    found = find()
                    unverified = False
                    if found is not None:
                        logger.warning("qrecorder: %s: an earlier attempt had succeeded; using its result", _name(what))
                        return found
                return create()
        except Exception as exc:
            _raise_if_final(exc, deadline, what)
            unverified = True
            delay = deadline.next_delay()
            logger.warning("qrecorder: %s busy or unreachable (%s); retrying in %.2fs", describe_target(what), _first_line(exc), delay)
            time.sleep(delay or 0)


def _raise_if_final(exc: Exception, deadline: retry.Deadline, what: Any) -> None:
    """Re-raise ``exc`` (mapped) unless it is transient and the budget is not spent."""
    denied = access_denied(exc)
    if denied is not None:
        raise denied from exc
    if _has_marker(exc, _DISK_FULL_MARKERS):
        raise StoreError(
            f"{_name(what)} on {describe_target(what)}: the disk is full ({_first_line(exc)}). Nothing of this "
            "operation was written. Free space where the store lives, then log again."
        ) from exc
    if _is_read_only(exc):
        raise StoreReadOnlyError(
            f"{_name(what)} on {describe_target(what)}: the store is read-only ({_first_line(exc)}). Reads work; "
            "to write, give write access to the database file and its folder (SQLite also writes <db>-wal and "
            "<db>-shm beside it), or copy the store somewhere writable and point QRECORDER_URI at the copy."
        ) from exc
    if not retry.is_transient(exc):
        from .rest import caller_error

        raise caller_error(exc)  # a light REST answer as MLflow's client raises it
    if deadline.elapsed >= deadline.budget:
        raise StoreUnavailableError(
            f"{_name(what)} on {describe_target(what)}: {_kind_of_failure(exc)} for {deadline.elapsed:.1f}s, "
            f"the retry budget (QRECORDER_RETRY_SECONDS={deadline.budget:g}); last error: {_first_line(exc)}"
        ) from exc


_READ_ONLY_MARKERS = ("attempt to write a readonly database", "read-only file system", "readonly database")


_DISK_FULL_MARKERS = ("database or disk is full", "no space left on device", "could not extend file", "disk quota exceeded")


def _is_read_only(exc: BaseException) -> bool:
    return _has_marker(exc, _READ_ONLY_MARKERS)


def _has_marker(exc: BaseException, markers: tuple[str, ...]) -> bool:
    """True if ``exc`` or its causes say one of ``markers`` (and qrecorder did not say it already)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None or isinstance(current, StoreError):
            return False  # nothing more, or already explained by qrecorder
        if any(marker in str(current).lower() for marker in markers):
            return True
        current = current.__cause__ or current.__context__
    return False


def _kind_of_failure(exc: BaseException) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "still locked by another connection or process"
    return "still busy or unreachable"


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The line of an error that says what happened (SQLAlchemy puts hints and SQL around it)."""
    noise = ("(raised as a result of", "[sql:", "[parameters:", "(background on")
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(noise)] or lines
    for line in lines:
        if any(marker in line.lower() for marker in (*retry.TRANSIENT_MARKERS, *_READ_ONLY_MARKERS, *_DISK_FULL_MARKERS)):
            return line[:limit]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _name(what: Any) -> str:
    if isinstance(what, str):
        return what
    return getattr(what, "__name__", None) or type(what).__name__


def describe_target(what: Any) -> str:
    """'the SQLite database /x/mlflow.db', 'the PostgreSQL database host:5432/db', ...: the
    resource a bound store method talks to, as precisely as it can be told."""
    owner = getattr(what, "__self__", None)
    uri = None
    if owner is not None:
        tracking = getattr(owner, "_tracking_client", None)
        uri = getattr(tracking, "tracking_uri", None)
        if uri is None and getattr(owner, "db", None) is not None:  # sql.writes.SqlBatchSink
            uri = getattr(owner.db, "uri", None)
        if uri is None and getattr(owner, "engine", None) is not None:
            uri = owner.engine.url.render_as_string(hide_password=True)
        if uri is None:
            uri = getattr(owner, "store_uri", None)
    return describe_uri(uri) if uri else "the tracking store"


def describe_uri(uri: str) -> str:
    from urllib.parse import urlsplit

    text = str(uri)
    scheme = text.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return f"the SQLite database {text.split(':///', 1)[-1].split('?', 1)[0]}"
    if scheme in ("postgresql", "postgres", "mysql", "mssql"):
        parts = urlsplit(text)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        kind = "PostgreSQL" if scheme.startswith("postgres") else scheme.upper()
        return f"the {kind} database {host}{port}{parts.path}"
    if scheme in ("http", "https"):
        return f"the tracking server {text}"
    return f"the store {text}"


def access_denied(exc: BaseException) -> AccessDeniedError | None:
    """Translate a 401/403 answer of a tracking server into AccessDeniedError."""
    code = getattr(exc, "error_code", "")
    text = str(exc)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "401" in text[:200] and "Unauthorized" in text or (
        "403" in text[:200] and ("Forbidden" in text or "Permission" in text)
    ):
        if code == "PERMISSION_DENIED" or "403" in text[:200]:
            return AccessDeniedError(
                f"The tracking server refused this operation for the current user (permission denied). "
                f"Ask an admin for write access to the experiment. Server said: {text[:300]}"
            )
        return AccessDeniedError(
            "The tracking server requires credentials: set MLFLOW_TRACKING_USERNAME and "
            f"MLFLOW_TRACKING_PASSWORD. Server said: {text[:300]}"
        )
    return None


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))
