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

from .errors import InvalidKeyError, InvalidValueError, UnstorableValueError

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
# Column sizes of MLflow's SQL schema (mlflow/store/tracking/dbmodels/models.py): PostgreSQL
# refuses longer text, SQLite would keep it, so qrecorder refuses it everywhere.
MAX_EXPERIMENT_NAME_LENGTH = 256  # experiments.name String(256) (MLflow's own check allows 500)
MAX_RECORDER_NAME_LENGTH = 250  # runs.name String(250)
MIN_STEP, MAX_STEP = -(2**63), 2**63 - 1  # metrics.step BigInteger
# fullmatch: "^...$" would let a trailing newline through ("loss\n").
_KEY_RE = re.compile(r"[/\w.\- :]*")

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
    if not _KEY_RE.fullmatch(key):
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

    bool and numpy.bool_ are stored as 1.0 / 0.0, as MLflow's log_metric and Qlib's R store them
    (a script logging ``converged=True`` must run unchanged). numpy scalars, 0-d arrays and
    Python numbers are accepted.
    """
    cls = value.__class__
    try:
        if cls is float:
            result = value
        elif cls is int:
            result = float(value)
        else:
            if value is None:
                raise InvalidValueError(f"Metric {key!r} must be a real number, got {value!r}.")
            if isinstance(value, numbers.Real):
                result = float(value)
            elif hasattr(value, "item") and getattr(value, "ndim", None) == 0 and getattr(getattr(value, "dtype", None), "kind", "") in "iufb":
                result = float(value.item())
            else:
                raise InvalidValueError(
                    f"Metric {key!r} must be a real number, got {type(value).__name__} {value!r:.80}. "
                    "Log text as a tag or param, arrays with save_objects."
                )
    except OverflowError as exc:
        raise UnstorableValueError(
            f"Metric {key!r} is too large for a float (a {type(value).__name__} of {_int_digits(value)} digits); "
            "metrics are stored as 64-bit floats (at most about 1.8e308). Log it as a param or tag."
        ) from exc
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
            return _step_in_range(int(step))
        raise InvalidValueError(f"step must be an integer, got {type(step).__name__} {step!r}.")
    return _step_in_range(int(step))


def _step_in_range(step: int) -> int:
    if MIN_STEP <= step <= MAX_STEP:
        return step
    raise UnstorableValueError(
        f"step {_short_int(step)} is outside the 64-bit range the store keeps (-2**63 .. 2**63-1)."
    )


def _short_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}...({len(text)} digits)"


def _int_digits(value: Any) -> str:
    try:
        return str(len(str(abs(int(value)))))
    except (TypeError, ValueError, OverflowError):
        return "many"


def stringify(value: Any, key: str | None = None) -> str:
    """Params and tags are stored as text, the way MLflow turns them into strings.

    Text the database cannot hold is refused here, at the call: NUL characters (PostgreSQL
    refuses them; refused everywhere so a store can move) and lone surrogates (not UTF-8)."""
    text = value if value.__class__ is str else str(value)
    if "\x00" in text or not text.isascii():
        check_storable_text(text, f"The value of {key!r}" if key is not None else "A param or tag value")
    return text


def check_storable_text(text: str, what: str) -> None:
    """Refuse text that a SQL store cannot keep: NUL characters and lone surrogates."""
    nul = text.find("\x00")
    if nul >= 0:
        raise UnstorableValueError(
            f"{what} contains a NUL character (\\x00) at position {nul} ({text[max(0, nul - 20):nul + 20]!r}); "
            "PostgreSQL cannot store it. Remove it or log the data as an artifact."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValueError(
            f"{what} contains a lone surrogate {text[exc.start]!r} at position {exc.start} "
            f"({text[max(0, exc.start - 20):exc.start + 20]!r}); it is not valid UTF-8 and cannot be stored. "
            "Decode the bytes it came from with errors='replace' (or log them as an artifact)."
        ) from None


def check_names(**names: object) -> None:
    """Names and ids given to R must be non-empty text (ids may be ints); fail at the call."""
    for what, value in names.items():
        if value is None:
            continue
        if what.endswith("_id") and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidValueError(f"{what} must be a non-empty str, got {type(value).__name__} {value!r}.")
        limit = _NAME_LIMITS.get(what)
        if limit is not None:
            check_name_length(what, value, limit)
        if "\x00" in value or not value.isascii():
            check_storable_text(value, what)


_NAME_LIMITS = {"experiment_name": MAX_EXPERIMENT_NAME_LENGTH, "recorder_name": MAX_RECORDER_NAME_LENGTH}


def check_name_length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise UnstorableValueError(
            f"{what} {value[:40]!r}... is {len(value)} characters; the store keeps at most {limit} "
            "(MLflow's column size). Use a shorter name; put details in params or tags."
        )
