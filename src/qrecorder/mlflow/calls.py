"""Direct (synchronous) store calls with retry of transient failures and clear errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import AccessDeniedError, StoreUnavailableError
from . import retry

logger = logging.getLogger("qrecorder")
T = TypeVar("T")


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call; retry busy/unreachable stores within the budget; map auth errors."""
    delays = retry.backoff_delays(retry.retry_budget_seconds())
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            denied = access_denied(exc)
            if denied is not None:
                raise denied from exc
            if not retry.is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise StoreUnavailableError(
                    f"The tracking store stayed busy or unreachable for {retry.retry_budget_seconds():.0f}s "
                    f"(QRECORDER_RETRY_SECONDS): {exc}"
                ) from exc
            logger.warning("qrecorder: store busy or unreachable (%s); retrying in %.2fs", exc, delay)
            time.sleep(delay)


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
