"""The cold path users meet first: a fresh process (imports included) on a fresh store, and a
fresh process reading a store of N runs — qrecorder beside MLflow's own client, same run.

    .venv/bin/python benchmarks/bench_cold.py [--quick] [--runs N]

Every figure is the wall time of a new interpreter (its start excluded: measured from the first
line of the script), median of --repeat runs; note the load average beside them (``uptime``):
on a busy machine every figure grows. A read that had to import MLflow is marked so.

- first run on a fresh SQLite store: ``with R.start(): R.log_metrics(...)`` (qrecorder; with its
  schema template, and with QRECORDER_SCHEMA_TEMPLATE=0 = MLflow's 68 Alembic migrations) beside
  ``MlflowClient`` create_experiment/create_run/log_metric/set_terminated on a fresh database;
- listing N recorders: ``R.list_recorders`` / ``R.search_records`` / ``R.get_recorder`` by name
  beside ``MlflowClient.search_runs`` (paged) in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import build_runs_db  # noqa: E402

TARGETS = {"first run (qrecorder)": 0.5, "list_recorders": 0.5, "search_records": 0.5, "get_recorder by name": 0.3}

FIRST_RUN_QREC = """
import time; t0 = time.perf_counter()
from qrecorder import R
R.set_uri("sqlite:///{db}")
with R.start(experiment_name="cold", recorder_name="r"):
    t1 = time.perf_counter()
    R.log_metrics(step=0, loss=1.0)
t2 = time.perf_counter()
print(t2 - t0, t1 - t0)
"""

FIRST_RUN_MLFLOW = """
import time; t0 = time.perf_counter()
from mlflow import MlflowClient
c = MlflowClient("sqlite:///{db}")
e = c.create_experiment("cold", artifact_location="{art}")
r = c.create_run(e, run_name="r")
t1 = time.perf_counter()
c.log_metric(r.info.run_id, "loss", 1.0, step=0)
c.set_terminated(r.info.run_id)
t2 = time.perf_counter()
print(t2 - t0, t1 - t0)
"""

READ_QREC = """
import time; t0 = time.perf_counter()
import sys
from qrecorder import R
R.set_uri("sqlite:///{db}")
{call}
print(time.perf_counter() - t0, int("mlflow" in sys.modules))
"""

READ_CALLS = {
    "list_recorders": "n = len(R.list_recorders(experiment_name='bench'))",
    "search_records": "n = len(R.search_records([R.get_exp(experiment_name='bench', create=False).id]))",
    "get_recorder by name": "R.get_recorder(recorder_name='run-42', experiment_name='bench')",
}

READ_MLFLOW = """
import time; t0 = time.perf_counter()
from mlflow import MlflowClient
c = MlflowClient("sqlite:///{db}")
e = c.get_experiment_by_name("bench").experiment_id
runs, token = [], None
while True:
    page = c.search_runs([e], max_results=50000, page_token=token)
    runs.extend(page); token = page.token
    if not token: break
print(time.perf_counter() - t0, 0)
"""


def run(code: str, env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})},
                         cwd=cwd, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    total, start = out.stdout.split()[-2:]
    return float(total), float(start)


def median_of(repeat: int, fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    results = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, 2,000 runs")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    n_runs = args.runs or (2_000 if args.quick else 10_000)
    rows: list[tuple[str, float, float, str]] = []

    with tempfile.TemporaryDirectory(prefix="qrec-cold-") as tmp:
        counter = iter(range(10_000))

        def fresh(code: str, env: dict[str, str] | None = None) -> tuple[float, float]:
            folder = Path(tmp) / f"s{next(counter)}"
            folder.mkdir()
            return run(code.format(db=folder / "mlflow.db", art=folder / "art"), env, cwd=str(folder))

        q = median_of(repeat, lambda: fresh(FIRST_RUN_QREC))
        q0 = median_of(repeat, lambda: fresh(FIRST_RUN_QREC, {"QRECORDER_SCHEMA_TEMPLATE": "0"}))
        m = median_of(repeat, lambda: fresh(FIRST_RUN_MLFLOW))
        print(f"\nFirst run on a fresh SQLite store, fresh process (median of {repeat}; s)")
        print(f"{'':44} {'R.start returns':>16} {'run ended':>10}")
        for label, (total, start) in (
            ("qrecorder (schema template)", q),
            ("qrecorder, QRECORDER_SCHEMA_TEMPLATE=0", q0),
            ("MlflowClient (MLflow's migrations)", m),
        ):
            print(f"{label:44} {start:16.3f} {total:10.3f}")
        rows.append(("first run (qrecorder)", q[1], m[1], "R.start returns vs create_run returns"))

    db = build_runs_db(n_runs)
    print(f"\nReading {n_runs:,} runs from a fresh process, imports included (median of {repeat}; s)")
    base = median_of(repeat, lambda: run(READ_MLFLOW.format(db=db)))[0]
    print(f"  MlflowClient.search_runs (all pages)      {base:8.3f}")
    for label, call in READ_CALLS.items():
        t, imported = median_of(repeat, lambda call=call: run(READ_QREC.format(db=db, call=call)))
        target = TARGETS[label]
        print(f"  R.{label:38} {t:8.3f}   {base / t:5.1f}x faster than MLflow   target <= {target} s "
              f"{'ok' if t <= target else 'MISSED'}{'   (imported MLflow)' if imported else ''}")


if __name__ == "__main__":
    main()
