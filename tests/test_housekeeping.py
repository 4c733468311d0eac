"""Housekeeping never harms live work: ``qrec gc``, ``R.mark_stale_runs()`` and ``qrec rm``
against real logging processes - in another PID namespace, stopped with SIGSTOP and continued,
holding the database's write lock while stopped, or simply alive.

Logging processes beat every 0.5 s (heartbeat tags are whole seconds), so with ``--grace 3``
a live run's heartbeat is at most ~1.5 s old and a silent one is stale after 3 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qrecorder.cli import main

QREC = str(Path(sys.executable).with_name("qrec"))
ENV = {"QRECORDER_HEARTBEAT_INTERVAL": "0.5", "QRECORDER_FLUSH_INTERVAL": "0.1"}
GRACE = "3"

# A live run: start, wait until the start tags (process identity included) are stored, say
# which run and pid it is, then log a metric every 50 ms until the stop file appears.
LOGGER = r"""
import json, os, sys, time
from qrecorder import R
uri, exp, stop = sys.argv[1], sys.argv[2], sys.argv[3]
R.set_uri(uri)
with R.start(experiment_name=exp, recorder_name="live"):
    rec = R.get_recorder()
    deadline = time.time() + 60
    while "qrecorder.process" not in rec.list_tags() and time.time() < deadline:
        time.sleep(0.05)
    print(json.dumps({"run_id": rec.id, "pid": os.getpid()}), flush=True)
    step = 0
    while not os.path.exists(stop):
        R.log_metrics(step=step, x=float(step))
        step += 1
        time.sleep(0.05)
print("ended", flush=True)
"""


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def gc(uri: str, *args: str) -> dict:
    res = invoke("gc", "--uri", uri, "--grace", GRACE, "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def run_row(db: Path, run_id: str) -> tuple[str, dict[str, str]]:
    con = sqlite3.connect(str(db))
    try:
        status = con.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]
        tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())
    finally:
        con.close()
    return status, tags


def heartbeat_age(db: Path, run_id: str) -> float:
    return time.time() - float(run_row(db, run_id)[1]["qrecorder.heartbeat"])


def wait_until(predicate, timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def proc_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2]


@pytest.fixture
def store(store_dir: Path, sqlite_uri: str) -> dict:
    # The store exists before the logging processes start (they do not race to create it).
    from qrecorder.mlflow.store import get_store

    get_store(sqlite_uri)
    return {"uri": sqlite_uri, "db": store_dir / "mlflow.db", "dir": store_dir}


@pytest.fixture
def spawn(store: dict) -> Iterator:
    """Start logging processes (optionally under a wrapper); kill what is left at the end."""
    procs: list[subprocess.Popen] = []

    def start(exp: str, prefix: list[str] | None = None) -> tuple[subprocess.Popen, dict, Path]:
        stop = store["dir"] / f"stop-{exp}-{len(procs)}"
        cmd = [*(prefix or []), sys.executable, "-c", LOGGER, store["uri"], exp, str(stop)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **ENV}, cwd=store["dir"], start_new_session=True)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        return proc, json.loads(line), stop

    yield start
    for proc in procs:
        if proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            proc.wait(30)


def _unused_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    taken = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    for pid in range(pid_max - 1000, 1000, -7):
        if pid not in taken and pid + 1 not in taken:
            return pid
    raise AssertionError("no free pid")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_run_in_another_pid_namespace_is_judged_by_its_heartbeat(store, spawn):
    """Same hostname, another PID namespace: its recorded pid is not a process here. gc and
    R.mark_stale_runs must leave it alone while it beats, and mark it once it stops beating."""
    from qrecorder import R, provenance

    # The logging process gets a pid chosen to be free out here (ns_last_pid of its namespace).
    pid = _unused_pid()
    shell = f"echo {pid - 1} > /proc/sys/kernel/ns_last_pid; \"$0\" \"$@\""
    proc, info, _stop = spawn("ns", ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", shell])
    run_id = info["run_id"]
    assert info["pid"] == pid  # the pid it sees and records
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ... is no process here
    status, tags = run_row(store["db"], run_id)
    assert tags["qrecorder.pid"] == str(pid)
    assert tags["qrecorder.process"].split(":")[2] != provenance.pid_namespace()

    R.set_uri(store["uri"])
    try:
        for _ in range(3):  # over ~4 s: many heartbeats, never judged dead
            assert gc(store["uri"], "--dry-run")["marked_failed"] == []
            assert gc(store["uri"])["marked_failed"] == []
            assert R.mark_stale_runs(grace_seconds=3) == []
            time.sleep(1.0)
        assert run_row(store["db"], run_id)[0] == "RUNNING"
        assert json.loads(invoke("show", run_id, "--uri", store["uri"], "--json").stdout)["status"] == "RUNNING"

        # The namespace dies with its init (SIGKILL): now only the heartbeat can tell, and does.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert gc(store["uri"])["marked_failed"] == []  # not at once: its pid proves nothing here
        wait_until(lambda: heartbeat_age(store["db"], run_id) > 3.5, 10, "the heartbeat to age")
        out = gc(store["uri"])
        assert out["marked_failed"] == [run_id] and "no heartbeat" in out["reasons"][run_id]
    finally:
        R.set_uri(None)
    status, tags = run_row(store["db"], run_id)
    assert status == "FAILED" and tags["qrecorder.stale"] == "1" and "no heartbeat" in tags["qrecorder.stale_reason"]


def test_dead_process_in_this_namespace_is_stale_at_once(store, spawn):
    """The shortcut: same host, boot and PID namespace, and the process is gone."""
    proc, info, _stop = spawn("dead")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    out = gc(store["uri"], "--grace", "3600")  # the heartbeat is fresh; the process is provably gone
    assert out["marked_failed"] == [info["run_id"]]
    assert "is gone" in out["reasons"][info["run_id"]]


def test_pid_reused_by_another_process_counts_as_gone():
    from qrecorder import provenance
    from qrecorder.mlflow.stale import judge

    other = subprocess.Popen(["sleep", "30"])
    try:
        boot, ns = provenance.boot_id(), provenance.pid_namespace()
        started = provenance.process_stat(other.pid)[1]
        host = "h1"
        tags = {"qrecorder.host": host, "qrecorder.pid": str(other.pid), "qrecorder.heartbeat": f"{time.time():.0f}",
                "qrecorder.heartbeat_interval": "10"}
        alive = judge({**tags, "qrecorder.process": f"linux:{boot}:{ns}:{other.pid}:{started}"}, time.time(), 60, host)
        assert not alive.stale and alive.live
        reused = judge({**tags, "qrecorder.process": f"linux:{boot}:{ns}:{other.pid}:{int(started) - 5}"},
                       time.time(), 60, host)
        assert reused.stale and "another process" in reused.reason
        other_ns = judge({**tags, "qrecorder.process": f"linux:{boot}:1:{other.pid}:{int(started) - 5}"},
                         time.time(), 60, host)
        assert not other_ns.stale  # another namespace: the pid proves nothing
        no_identity = judge({**tags, "qrecorder.pid": "999999"}, time.time(), 60, host)
        assert not no_identity.stale  # legacy tags without qrecorder.process: heartbeat only
    finally:
        other.kill()
        other.wait()


def _stop_outside_a_transaction(pid: int, db: Path) -> None:
    """SIGSTOP ``pid`` at a moment it holds no write lock (its writer may be mid-batch)."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: proc_state(pid) == "T", 5, "the process to stop", 0.01)
        con = sqlite3.connect(str(db), timeout=0)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.03)
        finally:
            con.close()
    raise AssertionError("could not stop the process outside a write transaction")


def test_stopped_process_is_judged_by_heartbeat_and_its_return_is_reported(store, spawn):
    from qrecorder.mlflow.stale import StaleRunWarning, finish_run  # noqa: F401 - the end-of-run hook
    from qrecorder.mlflow.store import get_store

    proc, info, _stop = spawn("stopped")
    run_id = info["run_id"]
    _stop_outside_a_transaction(info["pid"], store["db"])
    # Stopped, alive, pid present: its heartbeat is fresh, so it is live.
    assert gc(store["uri"])["marked_failed"] == []
    wait_until(lambda: heartbeat_age(store["db"], run_id) > 3.5, 10, "the heartbeat to age")
    out = gc(store["uri"])
    assert out["marked_failed"] == [run_id] and "no heartbeat" in out["reasons"][run_id]
    status, tags = run_row(store["db"], run_id)
    assert status == "FAILED" and tags["qrecorder.stale"] == "1"
    marked_at = float(tags["qrecorder.stale_at"])

    os.kill(info["pid"], signal.SIGCONT)  # it comes back and goes on logging
    wait_until(lambda: float(run_row(store["db"], run_id)[1]["qrecorder.heartbeat"]) > marked_at, 10,
               "the heartbeat to resume")
    out = gc(store["uri"])
    assert out["marked_failed"] == [] and out["returned"] == [run_id]  # reported ...
    assert run_row(store["db"], run_id)[0] == "FAILED"  # ... not flipped
    res = invoke("gc", "--uri", store["uri"], "--grace", GRACE)
    assert "came back" in res.output and run_id in res.output

    # Its end of run (what the recorder does at the end, see stale.finish_run): kept FAILED, told why.
    message = finish_run(get_store(store["uri"]), run_id, "FINISHED", int(time.time() * 1000))
    assert message is not None and "marked FAILED" in message and "stays FAILED" in message
    status, tags = run_row(store["db"], run_id)
    assert status == "FAILED" and tags["qrecorder.stale_returned_status"] == "FINISHED"
    # A run that was never marked ends normally through the same hook.
    _p2, info2, stop2 = spawn("normal")
    assert finish_run(get_store(store["uri"]), info2["run_id"], "FINISHED", int(time.time() * 1000)) is None
    assert run_row(store["db"], info2["run_id"])[0] == "FINISHED"
    stop2.touch()


def test_returned_process_ending_its_run_keeps_failed_and_is_warned(store, spawn):
    proc, info, stop = spawn("comeback")
    run_id = info["run_id"]
    _stop_outside_a_transaction(info["pid"], store["db"])
    wait_until(lambda: heartbeat_age(store["db"], run_id) > 3.5, 10, "the heartbeat to age")
    assert gc(store["uri"])["marked_failed"] == [run_id]
    os.kill(info["pid"], signal.SIGCONT)
    stop.touch()
    _out, err = proc.communicate(timeout=60)
    status, tags = run_row(store["db"], run_id)
    assert status == "FAILED", status
    assert "StaleRunWarning" in err and "stays FAILED" in err
    assert tags.get("qrecorder.stale_returned_status") == "FINISHED"


LOCKER = r"""
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute("BEGIN IMMEDIATE")  # the database's write lock
con.execute("UPDATE experiments SET name = name WHERE experiment_id = 0")
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
con.execute("COMMIT")
"""


def test_gc_gives_up_on_a_lock_held_by_a_stopped_process(store, spawn):
    proc, info, _stop = spawn("locked")
    run_id = info["run_id"]
    os.killpg(proc.pid, signal.SIGKILL)  # a stale run for gc to mark
    proc.wait(30)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store["db"])], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        wait_until(lambda: proc_state(locker.pid) == "T", 10, "the lock holder to stop")

        start = time.monotonic()
        res = invoke("gc", "--uri", store["uri"], "--timeout", "2")
        took = time.monotonic() - start
        assert res.exit_code == 3, res.output
        assert "Gave up after 2s" in res.output and "write lock" in res.output and run_id in res.output
        assert "Traceback" not in res.output
        assert took < 30, took  # gave up after --timeout 2, not the 120 s default budget (slack for a loaded machine)
        assert run_row(store["db"], run_id)[0] == "RUNNING"

        # The real command, as a user runs it: the same message, exit code 3, seconds not minutes.
        start = time.monotonic()
        cli = subprocess.run([QREC, "gc", "--uri", store["uri"], "--timeout", "2"], capture_output=True, text=True,
                             timeout=120, cwd=store["dir"])
        took = time.monotonic() - start
        assert cli.returncode == 3, cli.stderr
        last = cli.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: Gave up after 2s") and "write lock" in last, cli.stderr
        assert took < 90, took  # ~2 s of waiting plus the interpreter and imports; the default budget is 120 s

        from qrecorder import R
        from qrecorder.mlflow.stale import GcTimeoutError

        R.set_uri(store["uri"])
        try:
            with pytest.raises(GcTimeoutError) as err:
                R.mark_stale_runs(timeout=1)
            assert err.value.pending == [run_id] and err.value.marked == []
        finally:
            R.set_uri(None)
    finally:
        os.kill(locker.pid, signal.SIGCONT)
        locker.wait(30)
    assert gc(store["uri"])["marked_failed"] == [run_id]  # lock released: done


def test_rm_refuses_an_experiment_or_run_that_is_being_written(store, spawn):
    proc, info, _stop = spawn("busy")
    run_id = info["run_id"]
    uri = store["uri"]
    for args in (("rm", "-e", "busy", "-y"), ("rm", run_id, "-y")):
        res = invoke(*args, "--uri", uri)
        assert res.exit_code == 1, res.output
        assert "Refusing to delete" in res.output and run_id in res.output and "--force" in res.output
    names = [e["name"] for e in json.loads(invoke("experiments", "--uri", uri, "--json").stdout)]
    assert "busy" in names
    assert run_row(store["db"], run_id)[0] == "RUNNING"

    cli = subprocess.run([QREC, "rm", "-e", "busy", "-y", "--uri", uri], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "Refusing to delete" in cli.stderr

    res = invoke("rm", "-e", "busy", "-y", "--force", "--uri", uri)
    assert res.exit_code == 0, res.output
    names = [e["name"] for e in json.loads(invoke("experiments", "--uri", uri, "--json").stdout)]
    assert "busy" not in names


def test_rm_deletes_an_experiment_whose_running_run_is_dead(store, spawn):
    proc, info, _stop = spawn("deadexp")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    wait_until(lambda: heartbeat_age(store["db"], info["run_id"]) > 3.5, 10, "the heartbeat to age")
    res = invoke("rm", "-e", "deadexp", "-y", "--grace", GRACE, "--uri", store["uri"])
    assert res.exit_code == 0, res.output
