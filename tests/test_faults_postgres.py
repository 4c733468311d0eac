"""Faults heal: a PostgreSQL server restarting under running writers.

A PRIVATE PostgreSQL cluster is created in a temp folder (``initdb``) on a free port and
restarted (``pg_ctl restart -m fast``) while two real writer processes start runs and log
values. Sessions are killed with AdminShutdown ("terminating connection due to administrator
command"), new connections see "the database system is shutting down / starting up" or
"connection refused". Every accepted value must be written, no run may be created twice, and
every run must end FINISHED. The shared PostgreSQL on 5432 is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = 12
STEPS = 60


def _initdb() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1])
    which = shutil.which("initdb")
    return Path(which) if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateCluster:
    bindir: Path
    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    def uri(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"), "-w", *args]
        return _as_postgres(cmd, timeout)


def _as_postgres(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    initdb = _initdb()
    if initdb is None:
        pytest.skip("PostgreSQL's initdb is not installed (apt-get install postgresql): no private cluster to restart")
    base = Path(tempfile.mkdtemp(prefix="qrec-pg-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    pc = PrivateCluster(initdb.parent, base, _free_port())
    _as_postgres([str(initdb), "-D", str(pc.data), "-U", "postgres", "--auth=trust", "--no-sync"], 120)
    pc.ctl("start")
    try:
        yield pc
    finally:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
            + [str(pc.bindir / "pg_ctl"), "-D", str(pc.data), "stop", "-m", "immediate"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def _create_db(pc: PrivateCluster, name: str) -> str:
    import psycopg2

    con = psycopg2.connect(pc.uri())
    con.autocommit = True
    con.cursor().execute(f"CREATE DATABASE {name}")
    con.close()
    return pc.uri(name)


WRITER = """
import sys, time
from qrecorder import R
uri, wid, runs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
R.set_uri(uri)
for r in range(runs):
    with R.start(experiment_name="restarts", recorder_name=f"w{wid}-r{r}"):
        R.log_params(worker=wid, run=r)
        for s in range(steps):
            R.log_metrics(step=s, a=float(s), b=wid * 1e6 + r * 1e3 + s)
            if s % 20 == 0:
                R.set_tags(last=str(s))
                R.flush()                      # a synchronous write that may meet the restart
            time.sleep(0.004)
        R.set_tags(last="end")
    print("run", wid, r, flush=True)
print("done", wid, flush=True)
"""


def test_postgres_restarts_mid_run_lose_nothing_and_create_nothing_twice(cluster: PrivateCluster, tmp_path: Path) -> None:
    uri = _create_db(cluster, "restarts")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {
        **os.environ,
        "QRECORDER_RETRY_SECONDS": "60",
        "QRECORDER_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "QRECORDER_FLUSH_INTERVAL": "0.05",
    }
    env.pop("QRECORDER_URI", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, str(w), str(RUNS), str(STEPS)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(2)
    ]
    try:
        # Wait until both writers are inside their runs, then restart the server three times.
        assert procs[0].stdout is not None
        first = procs[0].stdout.readline()
        assert first.startswith("run 0 0"), first + (procs[0].stderr.read() if procs[0].poll() is not None else "")
        restarts = 0
        for _ in range(3):
            if all(p.poll() is not None for p in procs):
                break
            cluster.ctl("restart", "-m", "fast")
            restarts += 1
            time.sleep(1.0)
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert restarts >= 2, "the writers finished before the server could be restarted twice: make them longer"
    for w, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"writer {w} failed:\n{err[-4000:]}"
        assert f"done {w}" in out
        # MLflow logs the tracebacks of the errors it met (and qrecorder retried): look for ours.
        assert "LoggingFailedError" not in err and "StoreUnavailableError" not in err, err[-4000:]
        assert "qrecorder: logging to run" not in err, err[-4000:]
    log = (cluster.base / "log").read_text(errors="replace")
    assert "received fast shutdown request" in log  # the restarts really happened

    import psycopg2

    con = psycopg2.connect(uri)
    try:
        cur = con.cursor()
        cur.execute("SELECT count(*) FROM experiments WHERE name = 'restarts'")
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT r.name, r.status, r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = 'restarts'"
        )
        rows = cur.fetchall()
        names = sorted(name for name, _, _ in rows)
        expected = sorted(f"w{w}-r{r}" for w in range(2) for r in range(RUNS))
        assert names == expected, f"{len(names)} runs for {len(expected)}: duplicates or losses"
        assert {status for _, status, _ in rows} == {"FINISHED"}
        cur.execute(
            "SELECT run_uuid, count(*), count(DISTINCT step) FROM metrics WHERE key IN ('a', 'b') GROUP BY run_uuid"
        )
        counts = {rid: (n, d) for rid, n, d in cur.fetchall()}
        for name, _, rid in rows:
            assert counts.get(rid) == (2 * STEPS, STEPS), (name, counts.get(rid))
        cur.execute("SELECT run_uuid, value FROM tags WHERE key = 'last'")
        assert {rid: v for rid, v in cur.fetchall()} == {rid: "end" for _, _, rid in rows}
        cur.execute("SELECT count(*) FROM params WHERE key IN ('worker', 'run')")
        assert cur.fetchone()[0] == 2 * len(rows)
    finally:
        con.close()
