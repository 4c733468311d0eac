"""Shared fixtures: every test gets its own store in a temp folder and a clean R."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A suite started as a background job of a shell without job control (`(cmd &)`) inherits
# SIGINT ignored, and so would every process the tests start: Ctrl-C tests then see no
# interrupt at all. A Python handler here becomes the default again in each exec'd child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
PG_HOST, PG_PORT = "127.0.0.1", 5432


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder (cwd) whose ./mlflow.db is the default store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QRECORDER_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def sqlite_uri(store_dir: Path) -> str:
    return f"sqlite:///{store_dir / 'mlflow.db'}"


@pytest.fixture
def R(sqlite_uri: str) -> Iterator[object]:  # noqa: N802 - the name users know
    """The global R, pointed at this test's store, with no run left active afterwards."""
    from qrecorder import R as global_r

    global_r.set_uri(sqlite_uri)
    yield global_r
    reset_r(global_r)


def reset_r(global_r: object) -> None:
    """End every run a test left active on ``global_r`` and point it back at the default store."""
    manager = global_r.exp_manager  # type: ignore[attr-defined]
    for exp in reversed(manager.active_experiments()):
        if exp.active_recorder is not None:
            try:
                exp.active_recorder.end_run("FINISHED")
            except Exception:  # noqa: BLE001 - cleanup only
                pass
    manager._active.clear()
    global_r.set_uri(None)  # type: ignore[attr-defined]


def pg_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_uri() -> str:
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it)")
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


@contextlib.contextmanager
def fresh_pg_database(admin_uri: str, prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URI, drop it (and its sessions) after."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(admin_uri)
    con.autocommit = True
    con.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        cur = con.cursor()
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        con.close()


@pytest.fixture
def pg_uri(pg_admin_uri: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database(pg_admin_uri, "qrec_core") as uri:
        yield uri


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (real process) and return the finished process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=timeout
    )
