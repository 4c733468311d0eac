"""What every ``qrec`` store command shares: errors and exit codes, ``--uri``/``--json``, the
store a command works on, and the formatting of tables and JSON.

Exit codes: 0 ok, 1 not found or user error (one line on stderr, no traceback), 2 usage error
(click), 3 store unreachable or access denied. MLflow, pandas and rich are imported inside the
functions only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from .. import admin
from ..errors import QRecorderError

EXIT_USER = 1
EXIT_STORE = 3
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")
# A CLI should not sit for minutes on a dead server: unless set, retry for 10 s.
CLI_RETRY_SECONDS = "10"


# ---------------------------------------------------------------------------------- errors
class CliError(QRecorderError, click.ClickException):
    """A one-line error with an exit code (1 user error, 3 store unreachable/denied)."""

    def __init__(self, message: str, code: int = EXIT_USER) -> None:
        super().__init__(message)
        # click declares exit_code a ClassVar, yet reads it from the instance: a per-error code is intended
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def classify(exc: BaseException) -> CliError | None:
    """Turn qrecorder/MLflow/database errors into a CliError with the right exit code."""
    from ..errors import AccessDeniedError, StoreError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, (AccessDeniedError, StoreError)):
        return CliError(str(exc), EXIT_STORE)
    if isinstance(exc, QRecorderError):
        return CliError(str(exc), EXIT_USER)
    described = admin.describe_failure(exc)
    if described is None:
        return None
    unreachable, message = described
    return CliError(message, EXIT_STORE if unreachable else EXIT_USER)


def is_store_failure(exc: BaseException) -> bool:
    """True when ``exc`` means the store is unreachable or refuses access (exit 3)."""
    err = classify(exc)
    return err is not None and err.exit_code == EXIT_STORE


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command with the CLI's retry budget; known errors become one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = os.environ.get("QRECORDER_RETRY_SECONDS")
        os.environ.setdefault("QRECORDER_RETRY_SECONDS", CLI_RETRY_SECONDS)
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line message and exit code
            err = classify(exc)
            if err is None:
                raise
            raise err from exc
        finally:  # an in-process caller (tests, notebooks) keeps its own budget
            if previous is None:
                os.environ.pop("QRECORDER_RETRY_SECONDS", None)

    return wrapper


# ---------------------------------------------------------------------------------- options
def uri_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--uri",
        default=None,
        metavar="URI",
        help="Tracking store: sqlite:///file.db, postgresql://..., http(s)://server. "
        "Default: QRECORDER_URI, MLFLOW_TRACKING_URI, else ./mlflow.db.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")(fn)


# ---------------------------------------------------------------------------------- the store
def location(uri: str | None, must_exist: bool = True) -> Any:
    """The store ``--uri`` (or the environment) names; reading never creates a store."""
    from ..uri import configured_uri, resolve_uri

    loc = resolve_uri(uri if uri else configured_uri())
    if must_exist and loc.kind == "sqlite" and loc.path is not None and not loc.path.is_file():
        raise CliError(
            f"No qrecorder store at {loc.path}. Run in the folder of your mlflow.db, or pass "
            "--uri (or set QRECORDER_URI)."
        )
    if must_exist and loc.kind == "file" and loc.path is not None and not loc.path.is_dir():
        raise CliError(f"No mlruns folder at {loc.path}.")
    return loc


def manager(uri: str | None) -> Any:
    """The experiment manager of the store (an MLflowExpManager, opened as R opens it)."""
    from ..mlflow.manager import MLflowExpManager

    return MLflowExpManager(location(uri).uri)


def resolve_experiment(mgr: Any, ident: str) -> Any:
    """An active experiment by name, or by id when no experiment has that name."""
    from ..errors import ExperimentNotFoundError

    try:
        return mgr.get_exp(experiment_name=ident, create=False)
    except ExperimentNotFoundError:
        if ident.isdigit():
            return mgr.get_exp(experiment_id=ident, create=False)
        raise


# ---------------------------------------------------------------------------------- output
def echo_json(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2, sort_keys=False, default=str))


def jsonable(value: Any) -> Any:
    """NaN -> null, infinities -> "inf"/"-inf" (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def console() -> Any:
    from rich.console import Console

    out = sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if tty else 240, highlight=False, soft_wrap=not tty)


def fmt_ms(ms: Any) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(int(ms) / 1000.0).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OSError):
        return str(ms)


def fmt_duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0.0, (int(end) - int(start)) / 1000.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def esc(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


def status_style(status: str) -> str:
    return {"FINISHED": "green", "FAILED": "red", "KILLED": "magenta", "RUNNING": "cyan"}.get(status, "")
