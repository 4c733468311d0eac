"""Ctrl-C: a real SIGINT to a real `qrec run-all` process marks running cells KILLED; a rerun resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runner_helpers import LINEAR, write_bench

QREC = str(Path(sys.executable).parent / "qrec")


@pytest.mark.slow
def test_sigint_kills_cleanly_and_rerun_resumes(R, sqlite_uri, store_dir):
    bench = write_bench(store_dir / "bench", {"Linear": LINEAR, "Sleepy": {"class": "Sleepy", "module_path": "user"}})
    log = store_dir / "progress.log"
    args = [QREC, "run-all", str(bench), "--times", "3", "--workers", "2", "--uri", sqlite_uri, "--out", "out"]
    env = {k: v for k, v in os.environ.items() if k != "QREC_TEST_FAST"}
    with open(log, "w") as err:
        proc = subprocess.Popen(args, cwd=store_dir, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 120
    while log.read_text().count("start  Sleepy") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    exp_id = R.get_exp(experiment_name="run_all_model", create=False).id
    while True:  # both Sleepy runs exist and are RUNNING (inside fit)
        df = R.search_records([exp_id])
        if "tags.qrecorder.model" in df and ((df["tags.qrecorder.model"] == "Sleepy") & (df["status"] == "RUNNING")).sum() == 2:
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()
    assert time.monotonic() - t0 < 30  # did not wait for the 60 s fit
    df = R.search_records([exp_id])
    df = df[df["tags.qrecorder.kind"] == "run"]
    by = df.groupby(["tags.qrecorder.model", "status"]).size().to_dict()
    assert by == {("Linear", "FINISHED"): 3, ("Sleepy", "KILLED"): 2}, by
    assert "Run the same command again to resume" in log.read_text()

    # the rerun resumes: the 3 Linear cells are skipped, the 3 Sleepy cells (2 killed, 1 never started) run
    res = subprocess.run(args + ["--no-progress"], cwd=store_dir, capture_output=True, text=True, timeout=300,
                         env={**env, "QREC_TEST_FAST": "1"})
    assert res.returncode == 0, res.stderr
    assert "3 cells run, 3 resumed, 0 failed" in res.stdout
    df = R.search_records([exp_id])
    df = df[df["tags.qrecorder.kind"] == "run"]
    by = df.groupby(["tags.qrecorder.model", "status"]).size().to_dict()
    assert by == {("Linear", "FINISHED"): 3, ("Sleepy", "KILLED"): 2, ("Sleepy", "FINISHED"): 3}, by
    assert "| Sleepy |" in (store_dir / "out" / "table.md").read_text()
