"""16 real processes get-or-create the same experiment at once: one experiment, 16 runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_python

N_PROCS = 16

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from qrecorder import R
    import mlflow  # pay the import before the barrier so all processes race together
    barrier = sys.argv[1]
    open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(barrier, "go")):
        time.sleep(0.005)
    with R.start(experiment_name="same", recorder_name=f"p{os.getpid()}"):
        R.log_params(pid=os.getpid())
        for step in range(20):
            R.log_metrics(step=step, value=float(step))
    print("ok")
    """
)


def _race(uri: str, cwd: Path, extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "QRECORDER_URI": uri, **(extra_env or {})}
    barrier = cwd / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(barrier)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(N_PROCS)
    ]
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < N_PROCS and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    (barrier / "go").touch()  # every interpreter has imported mlflow: release them together
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    failures = [err for rc, out, err in results if rc != 0 or out.strip() != "ok"]
    assert not failures, failures[0]
    check = run_python(
        textwrap.dedent(
            """
            from qrecorder import R
            exps = [e for e in R.list_experiments() if e == "same"]
            recs = R.list_recorders(experiment_name="same")
            lengths = {len(r.get_metric_history("value")) for r in recs.values()}
            print(len(exps), len(recs), sorted({r.status for r in recs.values()}), lengths)
            """
        ),
        cwd,
        env={"QRECORDER_URI": uri, **(extra_env or {})},
    )
    assert check.stdout.strip() == "1 16 ['FINISHED'] {20}", check.stderr


@pytest.mark.slow
def test_sixteen_processes_fresh_sqlite(tmp_path: Path):
    db = tmp_path / "fresh" / "mlflow.db"
    _race(f"sqlite:///{db}", tmp_path)
    lock = db.with_name("mlflow.db.qrecorder.lock")
    assert lock.exists() and lock.is_absolute()


@pytest.mark.slow
def test_sixteen_processes_file_store(tmp_path: Path):
    _race(f"file:{tmp_path / 'mlruns'}", tmp_path, {"MLFLOW_ALLOW_FILE_STORE": "true"})
    assert (tmp_path / "mlruns.qrecorder.lock").exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_sixteen_processes_postgresql(pg_uri: str, tmp_path: Path):
    _race(pg_uri, tmp_path, {"QRECORDER_ARTIFACT_ROOT": str(tmp_path / "artifacts")})
