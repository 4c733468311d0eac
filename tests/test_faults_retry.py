"""Which failures are retried, how long, and that a creation is never repeated blindly."""

from __future__ import annotations

import time

import pytest

from qrecorder.errors import LoggingFailedError, StoreReadOnlyError, StoreUnavailableError
from qrecorder.mlflow import calls, retry


def _sqlalchemy_error(message: str, pgcode: str | None = None) -> Exception:
    import sqlalchemy.exc

    orig = Exception(message)
    if pgcode is not None:
        orig.pgcode = pgcode  # type: ignore[attr-defined]
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "message",
    [
        "terminating connection due to administrator command",
        "FATAL:  the database system is shutting down",
        "FATAL:  the database system is starting up",
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
        "could not receive data from server: Connection reset by peer",
        "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused",
        "SSL connection has been closed unexpectedly",
        "database is locked",
    ],
)
def test_restarts_and_busy_databases_are_transient(message: str) -> None:
    assert retry.is_transient(_sqlalchemy_error(message))
    from mlflow.exceptions import MlflowException

    wrapped = MlflowException(str(_sqlalchemy_error(message)), error_code="TEMPORARILY_UNAVAILABLE")
    assert retry.is_transient(wrapped)


@pytest.mark.parametrize("code", ["57P01", "57P02", "57P03", "08006", "08001", "40001", "40P01", "53300"])
def test_postgresql_sqlstates_are_transient(code: str) -> None:
    assert retry.is_transient(_sqlalchemy_error("something went wrong", pgcode=code))


def test_user_errors_and_spent_budgets_are_not_transient() -> None:
    assert not retry.is_transient(_sqlalchemy_error("value too long for type character varying(250)", pgcode="22001"))
    assert not retry.is_transient(ValueError("A string literal cannot contain NUL (0x00) characters."))
    spent = StoreUnavailableError("create_run: still locked ... last error: database is locked")
    assert not retry.is_transient(spent)  # already retried for the whole budget: never twice
    try:
        raise LoggingFailedError("failed") from _sqlalchemy_error("database is locked")
    except LoggingFailedError as exc:
        assert not retry.is_transient(exc)


def test_budget_counts_the_time_inside_failed_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "0.5")
    attempts = []

    def slow_busy() -> None:
        attempts.append(time.monotonic())
        time.sleep(0.2)  # a statement waiting for a lock
        raise _sqlalchemy_error("database is locked")

    t = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"slow_busy on the tracking store: still locked .*QRECORDER_RETRY_SECONDS=0.5"):
        calls.call(slow_busy)
    assert 0.5 <= time.monotonic() - t < 1.0
    assert 2 <= len(attempts) <= 3
    assert retry.sqlite_busy_timeout_ms() == 500


def test_call_once_looks_for_an_earlier_attempt_before_creating_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "5")
    made: list[str] = []
    log: list[str] = []
    lookups = iter([_sqlalchemy_error("connection refused"), "run-1"])  # the store is down, then it answers

    def create() -> str:
        log.append("create")
        made.append(f"run-{len(made) + 1}")
        raise _sqlalchemy_error("server closed the connection unexpectedly")  # committed, answer lost

    def find() -> str | None:
        log.append("find")
        answer = next(lookups)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert calls.call_once(create, find, "create_run") == "run-1"
    assert made == ["run-1"] and log == ["create", "find", "find"]  # never a second create


def test_call_once_creates_again_when_nothing_was_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "5")
    attempts = iter([_sqlalchemy_error("database is locked"), "made"])

    def create() -> str:
        step = next(attempts)
        if isinstance(step, Exception):
            raise step
        return step

    assert calls.call_once(create, lambda: None, "create_run") == "made"


def test_read_only_and_full_stores_are_named_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRECORDER_RETRY_SECONDS", "30")
    t = time.monotonic()
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        calls.call(lambda: (_ for _ in ()).throw(_sqlalchemy_error("attempt to write a readonly database")))
    from qrecorder.errors import StoreError

    with pytest.raises(StoreError, match="the disk is full"):
        calls.call(lambda: (_ for _ in ()).throw(_sqlalchemy_error("database or disk is full")))
    assert time.monotonic() - t < 1


def test_describe_target_names_the_resource() -> None:
    assert calls.describe_uri("sqlite:////tmp/x/mlflow.db?timeout=3") == "the SQLite database /tmp/x/mlflow.db"
    assert calls.describe_uri("postgresql://u:secret@db.example:5433/mlflow") == "the PostgreSQL database db.example:5433/mlflow"
    assert "secret" not in calls.describe_uri("postgresql://u:secret@db.example:5433/mlflow")
    assert calls.describe_uri("http://srv:5000") == "the tracking server http://srv:5000"
