"""Zero loss of accepted values on SIGKILL: the journal, replayed exactly once.

A real child process logs a 100k-value loop (20,000 calls x 5 metrics, plus params and tags)
and is killed with a real SIGKILL at several points: right after a given call returned (the
process kills itself, so the point is exact) and from outside at an arbitrary moment (the
child records how many calls returned in a shared file). Then a fresh process opens the store:
every value whose call returned is there, none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import fresh_pg_database

CALLS = 20_000
KEYS = ("a", "b", "c", "d", "e")

CHILD = textwrap.dedent(
    """
    import os, signal, struct, sys
    from qrecorder import R
    uri, kill_after, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fd = os.open(progress, os.O_RDWR | os.O_CREAT, 0o600)
    R.set_uri(uri)
    with R.start(experiment_name="journal", recorder_name="victim"):
        rec = R.get_recorder()
        os.write(1, (rec.id + "\\n").encode())
        R.log_params(lr=0.1, model="linear")
        for i in range({calls}):
            R.log_metrics(step=i, a=i * 1.0, b=i * 2.0, c=i * 0.5, d=-i * 1.0, e=i / 7)
            if i % 1000 == 999:
                R.set_tags(progress=str(i))
            os.pwrite(fd, struct.pack("<q", i + 1), 0)
            if i + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)  # after the loop, before the run ends
    """
).format(calls=CALLS)

CHECK = textwrap.dedent(
    """
    import json, sys
    from qrecorder import R
    R.set_uri(sys.argv[1])
    rec = R.get_recorder(recorder_id=sys.argv[2], experiment_name="journal")
    hist = {k: rec.get_metric_history(k) for k in "abcde"}
    print(json.dumps({"hist": {k: [s for s, _, _ in v] for k, v in hist.items()},
                      "params": rec.list_params(), "tags": rec.list_tags()}))
    """
)


def _run_child(uri: str, kill_after: int, workdir: Path, env: dict[str, str], external_kill_at: float | None = None):
    progress = workdir / f"progress-{kill_after}-{time.time_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, str(kill_after), str(progress)],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    run_id = proc.stdout.readline().decode().strip()
    if external_kill_at is not None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if progress.exists() and progress.stat().st_size == 8:
                done = int.from_bytes(progress.read_bytes(), "little")
                if done >= external_kill_at:
                    break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    returned = int.from_bytes(progress.read_bytes(), "little")
    return run_id, returned


def _check(uri: str, run_id: str, returned: int, workdir: Path, env: dict[str, str], exact: bool) -> None:
    import json

    out = subprocess.run([sys.executable, "-c", CHECK, uri, run_id], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    for key in KEYS:
        steps = data["hist"][key]
        assert len(steps) == len(set(steps)), f"{key}: a value was written twice"
        # every call that returned is there; at most the one in flight beyond it
        assert set(range(returned)) <= set(steps), f"{key}: {returned - len(set(steps) & set(range(returned)))} lost"
        assert len(steps) <= returned + (0 if exact else 1)
    assert data["params"]["lr"] == "0.1" and data["params"]["model"] == "linear"
    if returned >= 1000:
        assert int(data["tags"]["progress"]) >= (returned // 1000) * 1000 - 1


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QRECORDER_", "MLFLOW_"))}
    env["QRECORDER_JOURNAL_DIR"] = str(tmp_path / "journals")  # client-side journals of non-file stores
    return env


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 777, 9_999, CALLS + 1])
def test_sigkill_at_exact_points_sqlite(tmp_path: Path, child_env, kill_after: int) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, returned = _run_child(uri, kill_after, tmp_path, child_env)
    assert returned == min(kill_after, CALLS)
    _check(uri, run_id, returned, tmp_path, child_env, exact=True)
    assert not list((tmp_path / "journals").rglob("*.jrnl")), "the replayed journal is removed"
    _check(uri, run_id, returned, tmp_path, child_env, exact=True)  # a second open replays nothing


@pytest.mark.slow
def test_default_journal_lives_beside_the_sqlite_file(tmp_path: Path, child_env) -> None:
    child_env = {k: v for k, v in child_env.items() if k != "QRECORDER_JOURNAL_DIR"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, returned = _run_child(uri, 500, tmp_path, child_env)
    journal_dir = tmp_path / ".qrecorder-journal" / "mlflow.db"
    (journal,) = journal_dir.glob("*.jrnl")
    assert journal.stat().st_mode & 0o777 == 0o600 and journal_dir.stat().st_mode & 0o077 == 0
    _check(uri, run_id, returned, tmp_path, child_env, exact=True)
    assert not list(journal_dir.glob("*.jrnl"))


@pytest.mark.slow
def test_sigkill_from_outside_mid_loop_sqlite(tmp_path: Path, child_env) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, returned = _run_child(uri, 0, tmp_path, child_env, external_kill_at=12_345)
    assert returned >= 12_345
    _check(uri, run_id, returned, tmp_path, child_env, exact=False)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_postgresql(tmp_path: Path, child_env, pg_admin_uri: str) -> None:
    with fresh_pg_database(pg_admin_uri, "qrec_journal") as uri:
        run_id, returned = _run_child(uri, 15_000, tmp_path, child_env)
        assert returned == 15_000
        _check(uri, run_id, returned, tmp_path, child_env, exact=True)
        assert not list((tmp_path / "journals").rglob("*.jrnl"))


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_tracking_server(tmp_path: Path, child_env, pg_admin_uri: str) -> None:
    from qrecorder.server import ServerConfig, ServerProcess, free_port

    with fresh_pg_database(pg_admin_uri, "qrec_journal_srv") as db:
        cfg = ServerConfig(backend_store_uri=db, artifacts_destination=str(tmp_path / "artifacts"), port=free_port(),
                           workers=2, auth=False, auth_dir=tmp_path / "auth")
        srv = ServerProcess(cfg, log_path=tmp_path / "server.log").start()
        try:
            run_id, returned = _run_child(srv.url, 4_000, tmp_path, child_env)
            assert returned == 4_000
            _check(srv.url, run_id, returned, tmp_path, child_env, exact=True)
            assert not list((tmp_path / "journals").rglob("*.jrnl"))
        finally:
            srv.stop()


def test_journal_replays_nothing_of_a_live_process(tmp_path: Path, child_env) -> None:
    """A second process opening the store must not replay the journal of a process still alive."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from qrecorder import R
            R.set_uri({uri!r})
            with R.start(experiment_name="journal"):
                R.log_metrics(step=0, x=1.0)
                print(R.get_recorder().id, flush=True)
                sys.stdin.readline()
        """)],
        cwd=tmp_path, env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        run_id = holder.stdout.readline().strip()
        journals = list((tmp_path / "journals").rglob("*.jrnl"))
        assert len(journals) == 1
        _check_code = (
            "from qrecorder import R\n"
            f"R.set_uri({uri!r})\n"
            f"rec = R.get_recorder(recorder_id={run_id!r}, experiment_name='journal')\n"
            "print(len(rec.get_metric_history('x')))\n"
        )
        out = subprocess.run([sys.executable, "-c", _check_code], cwd=tmp_path, env=child_env,
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "1", out.stderr
        assert journals[0].exists(), "the live process's journal was taken"
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert not list((tmp_path / "journals").rglob("*.jrnl")), "a clean exit removes it"


def test_corrupt_journal_tail_and_hostile_records(tmp_path: Path) -> None:
    """A torn tail ends the replay at the last good frame; marshal never runs code."""
    from qrecorder.mlflow import journal

    good = journal._frame(("m", "r1", [("a", 1.0)], 0, 1)) + journal._frame(("m", "r1", [("a", 2.0)], 1, 2))
    torn = good + journal._frame(("m", "r1", [("a", 3.0)], 2, 3))[:-3]
    assert [r[2][0][1] for r in journal.unsettled_records(torn)] == [1.0, 2.0]
    settled = good + journal._frame((journal.SETTLED, 1))
    assert [r[2][0][1] for r in journal.unsettled_records(settled)] == [2.0]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    assert len(journal.unsettled_records(bytes(bad_crc))) == 1
    assert journal.unsettled_records(b"\x00" * 3) == []
