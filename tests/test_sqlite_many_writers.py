"""Many processes, one fresh SQLite database: 8 processes x 20 runs x 1,000 metric values,
all through ``R``, started at once (so they also race to create the schema). Afterwards every
value is readable and no process saw an error."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PROCESSES = 8
RUNS = 20
STEPS = 200  # x 5 metrics = 1,000 values per run

WORKER = """
import sys
from qrecorder import R
uri, wid = sys.argv[1], int(sys.argv[2])
R.set_uri(uri)
for r in range({runs}):
    with R.start(experiment_name="many", recorder_name=f"w{{wid}}-r{{r}}"):
        R.log_params(worker=wid, run=r)
        for step in range({steps}):
            R.log_metrics(step=step, **{{f"m{{k}}": wid * 1e6 + r * 1e3 + step + k / 10 for k in range(5)}})
print("done", wid)
"""


@pytest.mark.slow
def test_eight_processes_write_one_fresh_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    uri = f"sqlite:///{db}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(runs=RUNS, steps=STEPS))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, str(w)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    outs = [p.communicate(timeout=170) for p in procs]
    for w, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"worker {w} failed:\n{err[-3000:]}"
        assert f"done {w}" in out
        assert "Traceback" not in err and "ERROR" not in err, err[-3000:]

    con = sqlite3.connect(str(db))
    try:
        runs = con.execute(
            "SELECT r.run_uuid, r.name, r.status FROM runs r JOIN experiments e "
            "ON e.experiment_id = r.experiment_id WHERE e.name = 'many'"
        ).fetchall()
        assert len(runs) == PROCESSES * RUNS
        assert {name for _, name, _ in runs} == {f"w{w}-r{r}" for w in range(PROCESSES) for r in range(RUNS)}
        assert {status for _, _, status in runs} == {"FINISHED"}
        counts = dict(
            con.execute(
                "SELECT run_uuid, COUNT(*) FROM metrics WHERE key LIKE 'm_' GROUP BY run_uuid"
            ).fetchall()
        )
        by_name = {name: run_id for run_id, name, _ in runs}
        for name, run_id in by_name.items():
            assert counts.get(run_id) == STEPS * 5, (name, counts.get(run_id))
        # Exact values of one worker's run, read back through qrecorder.
        from qrecorder import R

        R.set_uri(uri)
        rec = R.get_recorder(recorder_name="w3-r7", experiment_name="many")
        history = rec.get_metric_history("m2")
        assert [(s, v) for s, v, _ in history] == [(s, 3e6 + 7e3 + s + 0.2) for s in range(STEPS)]
        assert rec.list_params()["worker"] == "3"
        assert len(R.list_recorders(experiment_name="many")) == PROCESSES * RUNS
    finally:
        con.close()
