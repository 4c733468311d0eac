"""Synchronous checks of keys and values, done in the caller before anything is queued.

The rules mirror MLflow's (mlflow.utils.validation) so that a value accepted here is never
refused later in the background writer, where the caller could no longer react.
"""

from __future__ import annotations

import math
import numbers
import os
import posixpath
import re
from typing import Any

from .errors import InvalidKeyError, InvalidValueError

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
_KEY_RE = re.compile(r"^[/\w.\- :]*$")

# Keys already checked: training loops log the same few keys again and again.
_valid_keys: set[str] = set()
VALID_KEYS = _valid_keys

NONFINITE_POLICY_ENV = "QRECORDER_NONFINITE"


def check_key(key: Any, kind: str) -> str:
    """Return ``key`` if MLflow accepts it as a metric/param/tag name, else raise InvalidKeyError."""
    if key in _valid_keys and key.__class__ is str:
        return key
    if not isinstance(key, str):
        raise InvalidKeyError(f"{kind} key must be a str, got {type(key).__name__} {key!r}.")
    if not key:
        raise InvalidKeyError(f"{kind} key is empty: give it a name.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{kind} key {key[:60]!r}... is {len(key)} characters; MLflow allows {MAX_KEY_LENGTH}.")
    if not _KEY_RE.match(key):
        raise InvalidKeyError(
            f"{kind} key {key!r} has characters MLflow refuses: use letters, digits, '_', '-', '.', ' ', ':' and '/'."
        )
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidKeyError(
            f"{kind} key {key!r} is not a clean relative path (it would resolve to {norm!r}); "
            "remove leading '/', '..' and repeated or trailing '/'."
        )
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def nonfinite_policy() -> str:
    """'allow' (default: NaN/inf are stored) or 'raise' (refuse them at the call site).

    Read from QRECORDER_NONFINITE when a run starts (``refresh_policy``), not per value.
    """
    value = os.environ.get(NONFINITE_POLICY_ENV, "allow").strip().lower() or "allow"
    if value not in ("allow", "raise"):
        raise InvalidValueError(f"{NONFINITE_POLICY_ENV} must be 'allow' or 'raise', got {value!r}.")
    return value


NONFINITE_POLICY = nonfinite_policy()


def refresh_policy() -> None:
    global NONFINITE_POLICY
    NONFINITE_POLICY = nonfinite_policy()


def check_metric_value(key: str, value: Any, policy: str = "allow") -> float:
    """Coerce a metric value to float; refuse what is not a real number.

    bool is refused (MLflow does too): a True logged as 1.0 is usually a bug. numpy scalars,
    0-d arrays and Python numbers are accepted.
    """
    cls = value.__class__
    if cls is float:
        result = value
    elif cls is int:
        result = float(value)
    else:
        if isinstance(value, bool) or value is None:
            raise InvalidValueError(f"Metric {key!r} must be a real number, got {value!r}.")
        if isinstance(value, numbers.Real):
            result = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", None) == 0 and getattr(getattr(value, "dtype", None), "kind", "") in "iuf":
            result = float(value.item())
        else:
            raise InvalidValueError(
                f"Metric {key!r} must be a real number, got {type(value).__name__} {value!r:.80}. "
                "Log text as a tag or param, arrays with save_objects."
            )
    if policy == "raise" and not math.isfinite(result):
        raise InvalidValueError(
            f"Metric {key!r} is {result!r}; {NONFINITE_POLICY_ENV}=raise refuses NaN and infinities."
        )
    return result


def check_step(step: Any) -> int:
    """Steps are integers (MLflow stores a 64-bit long); None means 0 as in MLflow."""
    if step is None:
        return 0
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        if isinstance(step, float) and step.is_integer():
            return int(step)
        raise InvalidValueError(f"step must be an integer, got {type(step).__name__} {step!r}.")
    return int(step)


def stringify(value: Any) -> str:
    """Params and tags are stored as text, the way MLflow turns them into strings."""
    return value if value.__class__ is str else str(value)


def check_names(**names: object) -> None:
    """Names and ids given to R must be non-empty text (ids may be ints); fail at the call."""
    for what, value in names.items():
        if value is None:
            continue
        if what.endswith("_id") and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidValueError(f"{what} must be a non-empty str, got {type(value).__name__} {value!r}.")
