"""Which store failures are worth retrying, the retry budget and the backoff schedule."""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import time
from collections.abc import Iterator

TRANSIENT_MARKERS = (
    # SQLite
    "database is locked",
    "database is busy",
    "database table is locked",
    # PostgreSQL restarting, failing over or dropping connections
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "server closed the connection",
    "connection already closed",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "ssl connection has been closed unexpectedly",
    "too many clients already",
    "remaining connection slots are reserved",
    "deadlock detected",
    "could not serialize access",
    # networks and tracking servers
    "temporarily unavailable",
    "connection refused",
    "connection reset",
    "connection aborted",
    "broken pipe",
    "max retries exceeded",
    "remote end closed",
    "could not connect",
    "timed out",
    "too many requests",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
)
TRANSIENT_HTTP = (408, 429, 500, 502, 503, 504)  # MLflow's client retries these (request_utils)
# PostgreSQL SQLSTATEs: connection exceptions (class 08), admin/crash shutdown and "cannot
# connect now" (57P01-57P03), too many connections, serialization failure, deadlock.
TRANSIENT_PGCODES = ("57P01", "57P02", "57P03", "53300", "40001", "40P01")
DEFAULT_BUDGET_SECONDS = 120.0


def retry_budget_seconds() -> float:
    """How long a store operation is retried before it is reported (QRECORDER_RETRY_SECONDS).

    The budget covers the waits inside the database too: SQLite connections wait at most this
    long for a lock (see ``sqlite_busy_timeout_ms``)."""
    raw = os.environ.get("QRECORDER_RETRY_SECONDS", "").strip()
    if not raw:
        return DEFAULT_BUDGET_SECONDS
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_BUDGET_SECONDS
    return value if value >= 0 and value == value else DEFAULT_BUDGET_SECONDS


def sqlite_busy_timeout_ms() -> int:
    """How long one SQLite statement waits for another process's lock: the whole budget
    (at least 50 ms, so a zero budget still rides out a commit in progress)."""
    return max(50, int(retry_budget_seconds() * 1000))


def is_transient(exc: BaseException) -> bool:
    """True for busy databases, restarting or unreachable servers and 429/5xx answers.

    qrecorder's own errors are never transient: a StoreUnavailableError means the budget is
    spent already, and retrying it again would double the wait."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        if _is_qrecorder_error(current):
            return False
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(exc: BaseException) -> bool:
    if _is_qrecorder_error(exc):
        return False
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy: the connection died under us
        return True
    pgcode = str(getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None) or "")
    if pgcode.startswith("08") or pgcode in TRANSIENT_PGCODES:
        return True
    if _is_server_reply(exc):
        # Only an answer of a tracking server carries a meaningful HTTP status; a local
        # MlflowException defaults to INTERNAL_ERROR (500) even for a user error.
        try:
            if exc.get_http_status_code() in TRANSIENT_HTTP and getattr(exc, "error_code", "") != "INVALID_PARAMETER_VALUE":  # type: ignore[attr-defined]
                return True
        except Exception:  # noqa: BLE001 - a status we cannot read is simply not transient
            pass
    text = str(exc).lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def _is_qrecorder_error(exc: BaseException) -> bool:
    from ..errors import QRecorderError

    return isinstance(exc, QRecorderError)


def _is_server_reply(exc: BaseException) -> bool:
    """An answer of a tracking server: qrecorder's light REST calls' or MLflow's RestException
    (only when MLflow is imported: else nothing could have raised one)."""
    from .rest import is_server_error

    return is_server_error(exc)


def backoff_delays(budget: float, first: float = 0.05, cap: float = 5.0) -> Iterator[float]:
    """Yield sleep times (exponential with jitter) until their sum would exceed ``budget``."""
    spent, delay = 0.0, first
    while spent < budget:
        step = min(delay * (0.5 + random.random()), cap, budget - spent)
        spent += step
        yield step
        delay = min(delay * 2, cap)


class Deadline:
    """The retry budget of one operation, counted in wall-clock time from its first attempt.

    Time spent inside failed attempts (a statement waiting for a lock, a connection timing
    out) counts too, so an operation gives up after about the budget, never budget + waits."""

    def __init__(self, budget: float | None = None, first: float = 0.05, cap: float = 5.0) -> None:
        self.budget = retry_budget_seconds() if budget is None else budget
        self.started = time.monotonic()
        self._delay = first
        self._cap = cap

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self) -> float | None:
        """The sleep before the next attempt, or None when the budget is spent."""
        remaining = self.budget - self.elapsed
        if remaining <= 0:
            return None
        step = min(self._delay * (0.5 + random.random()), self._cap, remaining)
        self._delay = min(self._delay * 2, self._cap)
        return step


_active_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("qrecorder_deadline", default=None)


@contextlib.contextmanager
def within(deadline: Deadline) -> Iterator[None]:
    """Make ``deadline`` the one lock waits of this thread are bounded by (see ``bounded_wait_ms``)."""
    token = _active_deadline.set(deadline)
    try:
        yield
    finally:
        _active_deadline.reset(token)


def bounded_wait_ms(ms: int) -> int:
    """``ms``, or less when the operation in progress has less of its budget left: a lock wait
    inside a retried call never runs past the call's budget (at least 1 ms, so SQLite still
    tries once)."""
    deadline = _active_deadline.get()
    if deadline is None:
        return ms
    remaining = int((deadline.budget - deadline.elapsed) * 1000)
    return max(1, min(ms, remaining))
