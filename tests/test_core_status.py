"""Statuses: FINISHED, FAILED, KILLED on Ctrl-C and SIGTERM (real signals to real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_python

from qrecorder import Recorder


def test_exception_marks_failed_and_reraises(R):
    with pytest.raises(ZeroDivisionError):
        with R.start(experiment_name="e", recorder_name="boom"):
            R.log_metrics(step=0, before=1.0)
            rid = R.get_recorder().id
            1 / 0  # noqa: B018
    rec = R.get_recorder(recorder_id=rid)
    assert rec.status == Recorder.STATUS_FA and rec.end_time is not None
    assert rec.list_metrics() == {"before": 1.0}
    assert rec.list_tags()["qrecorder.exception"].startswith("ZeroDivisionError")
    assert "traceback.txt" in rec.list_artifacts()


def test_keyboard_interrupt_marks_killed(R):
    with pytest.raises(KeyboardInterrupt):
        with R.start(experiment_name="e"):
            rid = R.get_recorder().id
            raise KeyboardInterrupt
    assert R.get_recorder(recorder_id=rid).status == Recorder.STATUS_K


def test_sys_exit_zero_is_finished_nonzero_failed(R):
    for code, status in ((0, "FINISHED"), (3, "FAILED")):
        with pytest.raises(SystemExit):
            with R.start(experiment_name="e"):
                rid = R.get_recorder().id
                sys.exit(code)
        assert R.get_recorder(recorder_id=rid).status == status


CHILD = textwrap.dedent(
    """
    import sys, time
    from qrecorder import R
    with R.start(experiment_name="sig", recorder_name="victim"):
        R.log_params(kind="signal-test")
        step = 0
        while True:
            R.log_metrics(step=step, loss=1.0 / (step + 1))
            if step == 5:
                R.flush()
                print(R.get_recorder().id, flush=True)
            step += 1
            time.sleep(0.01)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_real_signal_marks_killed_and_keeps_values(store_dir: Path, signum: int):
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=store_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read()
        time.sleep(0.5)
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # SIGTERM: exit code 143 (128 + 15); SIGINT: Python re-raises it, so the parent sees -2.
    expected_rc = (128 + signal.SIGTERM,) if signum == signal.SIGTERM else (-signal.SIGINT, 130)
    assert proc.returncode in expected_rc, proc.stderr.read()
    out = run_python(
        f"from qrecorder import R\nr = R.get_recorder(recorder_id='{run_id}')\n"
        "h = r.get_metric_history('loss')\nprint(r.status, r.end_time is not None, len(h), h[-1][0] + 1 == len(h))",
        store_dir,
    )
    status, has_end, n, contiguous = out.stdout.split()
    assert status == "KILLED" and has_end == "True"
    assert int(n) > 6 and contiguous == "True"  # every value logged before the signal arrived


def test_start_exp_left_open_is_ended_at_exit(store_dir: Path):
    code = "from qrecorder import R\nR.start_exp(experiment_name='e')\nR.log_metrics(a=1)\nprint(R.get_recorder().id)\n"
    rid = run_python(code, store_dir).stdout.strip()
    crash = code + "raise RuntimeError('crash')\n"
    rid_failed = run_python(crash, store_dir).stdout.strip()
    out = run_python(
        "from qrecorder import R\n"
        f"a = R.get_recorder(recorder_id='{rid}')\nb = R.get_recorder(recorder_id='{rid_failed}')\n"
        "print(a.status, a.list_metrics()['a'], b.status)",
        store_dir,
    )
    assert out.stdout.split() == ["FINISHED", "1.0", "FAILED"]


def test_sigkill_loses_at_most_the_last_flush_interval(store_dir: Path):
    """SIGKILL cannot be caught: values older than one flush interval must be durable, and the
    stale run is recognised by its heartbeat/pid and marked FAILED."""
    child = textwrap.dedent(
        """
        import time
        from qrecorder import R
        with R.start(experiment_name="kill"):
            print(R.get_recorder().id, flush=True)
            step = 0
            while True:
                R.log_metrics(step=step, t=time.time())
                step += 1
                time.sleep(0.002)
        """
    )
    env = {**os.environ, "QRECORDER_FLUSH_INTERVAL": "0.2", "QRECORDER_HEARTBEAT_INTERVAL": "1"}
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=store_dir, stdout=subprocess.PIPE, text=True, env=env)
    run_id = proc.stdout.readline().strip()
    time.sleep(2.0)
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    out = run_python(
        "from qrecorder import R\n"
        f"r = R.get_recorder(recorder_id='{run_id}')\n"
        "h = r.get_metric_history('t')\n"
        "print(r.status, len(h), max(v for _, v, _ in h))\n"
        "print(R.mark_stale_runs())\n"
        "print(R.get_recorder(recorder_id=r.id).status)",
        store_dir,
    )
    first, stale, after = out.stdout.strip().splitlines()
    status, count, last_value = first.split()
    assert status == "RUNNING" and int(count) > 100
    assert killed_at - float(last_value) <= 1.0  # at most the last flush interval (+ write) lost
    assert run_id in stale and after == "FAILED"


def test_sigterm_without_an_open_run_keeps_the_default_action(store_dir: Path):
    """Importing qrecorder, or having finished a run, must not change what SIGTERM does."""
    for body in ("", "with R.start(experiment_name='done'):\n    R.log_metrics(a=1)\n"):
        code = "import sys, time\nfrom qrecorder import R\n" + body + "print('ready', flush=True)\ntime.sleep(60)\n"
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=store_dir, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
