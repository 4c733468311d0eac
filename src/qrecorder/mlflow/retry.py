"""Which store failures are worth retrying, and the backoff schedule for them."""

from __future__ import annotations

import os
import random

TRANSIENT_MARKERS = (
    "database is locked",
    "database is busy",
    "database table is locked",
    "temporarily unavailable",
    "connection refused",
    "connection reset",
    "connection aborted",
    "max retries exceeded",
    "remote end closed",
    "server closed the connection",
    "could not connect",
    "timed out",
    "too many requests",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "deadlock detected",
    "could not serialize access",
)
TRANSIENT_HTTP = (429, 500, 502, 503, 504)


def retry_budget_seconds() -> float:
    """How long a batch is retried before the failure is reported (QRECORDER_RETRY_SECONDS)."""
    return float(os.environ.get("QRECORDER_RETRY_SECONDS", "120"))


def is_transient(exc: BaseException) -> bool:
    """True for busy databases, unreachable servers and 429/5xx answers."""
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
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
    if any(marker in text for marker in TRANSIENT_MARKERS):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


def _is_server_reply(exc: BaseException) -> bool:
    try:
        from mlflow.exceptions import RestException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RestException)


def backoff_delays(budget: float, first: float = 0.05, cap: float = 5.0):
    """Yield sleep times (exponential with jitter) until their sum would exceed ``budget``."""
    spent, delay = 0.0, first
    while spent < budget:
        step = min(delay * (0.5 + random.random()), cap, budget - spent)
        spent += step
        yield step
        delay = min(delay * 2, cap)
