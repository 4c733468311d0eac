"""Faults on the SQLite store, with real processes: a lock held far longer than the retry
budget, a stuck schema lock, and a reply lost after the commit (a retried creation must not
create twice)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_python


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QRECORDER_URI", "MLFLOW_TRACKING_URI")}
    env.update(extra)
    return env


@pytest.fixture
def made_store(tmp_path: Path) -> Path:
    """A store with its schema and an experiment, made by another process."""
    db = tmp_path / "mlflow.db"
    out = run_python(
        f"from qrecorder import R\nR.set_uri('sqlite:///{db}')\n"
        "with R.start(experiment_name='e', recorder_name='first'):\n    R.log_metrics(x=1.0)\n",
        tmp_path,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return db


HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES ('held', 'by-holder', 0)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def lock_holder(made_store: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A real process holding the database's write lock (BEGIN EXCLUSIVE) for 150 s."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(made_store), "150"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_held_150s_fails_after_the_2s_budget_naming_the_database(made_store: Path, lock_holder, tmp_path: Path) -> None:
    code = f"""
import time
from qrecorder import R
from qrecorder.errors import StoreUnavailableError
from qrecorder.mlflow.store import get_store
R.set_uri('sqlite:///{made_store}')
get_store('sqlite:///{made_store}')     # MLflow imported and the store opened (reads pass the lock)
t = time.monotonic()
try:
    R.start_exp(experiment_name='e', recorder_name='blocked')
except StoreUnavailableError as exc:
    print('ELAPSED', time.monotonic() - t)
    print('MESSAGE', exc)
else:
    print('STARTED')
"""
    t0 = time.monotonic()
    out = run_python(code, tmp_path, env=_env(QRECORDER_RETRY_SECONDS="2"), timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    assert "STARTED" not in out.stdout
    elapsed = float(out.stdout.split("ELAPSED", 1)[1].split()[0])
    assert 1.9 <= elapsed < 5, elapsed
    message = out.stdout.split("MESSAGE", 1)[1]
    assert f"create_run on the SQLite database {made_store}" in message
    assert "QRECORDER_RETRY_SECONDS=2" in message and "locked" in message
    assert "database is locked" in message  # the driver's words, not SQLAlchemy's hints
    assert lock_holder.poll() is None  # the holder still has the lock: we gave up, it did not let go


def test_background_writes_under_a_held_lock_fail_after_the_budget(made_store: Path, tmp_path: Path) -> None:
    """Values queued while another process holds the lock: the flush reports after ~2 s."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    code = f"""
import subprocess, sys, time
from qrecorder import R
from qrecorder.errors import LoggingFailedError
R.set_uri('sqlite:///{made_store}')
R.start_exp(experiment_name='e', recorder_name='writer')
R.log_metrics(step=0, x=1.0)
R.flush()
holder = subprocess.Popen([sys.executable, {str(script)!r}, {str(made_store)!r}, '150'], stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == 'locked'
try:
    R.log_metrics(step=1, x=2.0)
    t = time.monotonic()
    try:
        R.flush()
    except LoggingFailedError as exc:
        print('ELAPSED', time.monotonic() - t)
        print('MESSAGE', exc)
finally:
    holder.kill()
    holder.wait()
"""
    out = run_python(code, tmp_path, env=_env(QRECORDER_RETRY_SECONDS="2"), timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    elapsed = float(out.stdout.split("ELAPSED", 1)[1].split()[0])
    assert 1.5 <= elapsed < 8, elapsed
    message = out.stdout.split("MESSAGE", 1)[1]
    assert f"SQLite database {made_store}" in message and "QRECORDER_RETRY_SECONDS=2" in message


def test_busy_timeout_follows_the_budget(made_store: Path, tmp_path: Path) -> None:
    """Every connection of the store (MLflow's sessions included) waits at most the budget."""
    code = f"""
from qrecorder import R
from qrecorder.mlflow.store import get_store
from sqlalchemy import text
store = get_store('sqlite:///{made_store}')
store.client.get_experiment_by_name('e')        # an MLflow session (it sets its own 20 s)
with store.engine.connect() as conn:
    print('BUSY', conn.execute(text('PRAGMA busy_timeout')).scalar())
"""
    out = run_python(code, tmp_path, env=_env(QRECORDER_RETRY_SECONDS="3"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BUSY 3000" in out.stdout
    out = run_python(code.replace(f"sqlite:///{made_store}", f"sqlite:///{made_store}?timeout=0.5"), tmp_path, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BUSY 500" in out.stdout


def test_a_stuck_schema_lock_is_reported_after_the_budget(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    code = f"""
import time
from filelock import FileLock
import subprocess, sys
from qrecorder import R
from qrecorder.errors import StoreUnavailableError
holder = subprocess.Popen([sys.executable, '-c', "from filelock import FileLock; import time; l = FileLock({str(db) + '.qrecorder.lock'!r}); l.acquire(); print('held', flush=True); time.sleep(150)"], stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == 'held'
t = time.monotonic()
try:
    R.set_uri('sqlite:///{db}')
    R.start_exp(experiment_name='e')
except StoreUnavailableError as exc:
    print('ELAPSED', time.monotonic() - t)
    print('MESSAGE', exc)
finally:
    holder.kill()
    holder.wait()
"""
    out = run_python(code, tmp_path, env=_env(QRECORDER_RETRY_SECONDS="2"), timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    elapsed = float(out.stdout.split("ELAPSED", 1)[1].split()[0])
    assert 1.9 <= elapsed < 8, elapsed
    assert f"schema lock {db}.qrecorder.lock" in out.stdout


LOST_REPLY = """
import sys
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
import sqlalchemy.exc

fail = {"create_run": int(sys.argv[2]), "create_experiment": int(sys.argv[3])}
for name in fail:
    original = getattr(SqlAlchemyStore, name)
    def wrapper(self, *a, __original=original, __name=name, **k):
        result = __original(self, *a, **k)          # committed...
        if fail[__name] > 0:                         # ...but the answer is lost
            fail[__name] -= 1
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("database is locked"))
        return result
    setattr(SqlAlchemyStore, name, wrapper)

from qrecorder import R
R.set_uri(sys.argv[1])
for i in range(3):
    with R.start(experiment_name="lost", recorder_name=f"r{i}"):
        R.log_metrics(step=0, x=float(i))
print("done", fail)
"""


def test_a_creation_whose_reply_was_lost_is_not_made_twice(tmp_path: Path) -> None:
    """create_run / create_experiment commit, then fail as 'database is locked': the retry
    finds the run (or experiment) the first attempt made instead of making another."""
    db = tmp_path / "lost.db"
    script = tmp_path / "lost.py"
    script.write_text(LOST_REPLY)
    out = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{db}", "2", "1"],
        # MLflow's creation path: the direct SQLite creation (the default) commits or not in
        # one local transaction, so it has no reply to lose and never calls these methods.
        cwd=tmp_path, env=_env(QRECORDER_FAST_WRITE="0"), capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "done {'create_run': 0, 'create_experiment': 0}" in out.stdout  # the faults really fired
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("SELECT count(*) FROM experiments WHERE name = 'lost'").fetchone()[0] == 1
        rows = con.execute(
            "SELECT r.name, r.status FROM runs r JOIN experiments e USING (experiment_id) WHERE e.name = 'lost' ORDER BY r.name"
        ).fetchall()
        assert rows == [("r0", "FINISHED"), ("r1", "FINISHED"), ("r2", "FINISHED")]
        assert con.execute("SELECT count(*) FROM metrics WHERE key = 'x'").fetchone()[0] == 3
    finally:
        con.close()
