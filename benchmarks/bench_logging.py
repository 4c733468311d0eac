"""Logging: time to durable, main-thread cost per call, per-run overhead -- qrecorder beside
per-call ``MlflowClient.log_metric`` (what Qlib does) and MLflow's own async logging.

    .venv/bin/python benchmarks/bench_logging.py [--quick]

Each part uses a fresh SQLite store in a temp folder. "Durable" means readable by another
connection: the values are counted in MLflow's ``metrics`` table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = {"durable_after_loop_s": 1.0, "us_per_log_metrics_call": 15.0, "ms_per_run": 25.0}


def count_metrics(db: Path, run_id: str) -> int:
    con = sqlite3.connect(str(db), timeout=60)
    try:
        return con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0]
    finally:
        con.close()


def fresh_store(tmp: Path, label: str) -> tuple[str, Path]:
    db = tmp / f"{label}.db"
    return "sqlite:///" + str(db), db


def bench_qrecorder_logging(tmp: Path, steps: int) -> dict[str, float]:
    from qrecorder import R

    uri, db = fresh_store(tmp, "qrec")
    R.set_uri(uri)
    with R.start(experiment_name="bench", recorder_name="logging"):
        rec = R.get_recorder()
        R.log_metrics(step=0, warmup=0.0)
        R.flush()
        t0 = time.perf_counter()
        for i in range(steps):
            R.log_metrics(step=i, m0=i * 0.1, m1=i * 0.2, m2=i * 0.3, m3=i * 0.4, m4=i * 0.5)
        t_loop = time.perf_counter() - t0
        t1 = time.perf_counter()
        rec.flush()
        durable = time.perf_counter() - t1
        run_id = rec.id
    n = count_metrics(db, run_id) - 1
    assert n == steps * 5, n
    return {"loop_s": t_loop, "us_per_call": t_loop / steps * 1e6, "durable_after_loop_s": durable}


def bench_qrecorder_direct(tmp: Path, steps: int) -> dict[str, float]:
    """The recorder object itself (no R facade lookup per call)."""
    from qrecorder import R

    uri, db = fresh_store(tmp, "qrec_direct")
    R.set_uri(uri)
    with R.start(experiment_name="bench", recorder_name="direct"):
        rec = R.get_recorder()
        rec.log_metrics(step=0, warmup=0.0)
        rec.flush()
        t0 = time.perf_counter()
        for i in range(steps):
            rec.log_metrics(step=i, m0=i * 0.1, m1=i * 0.2, m2=i * 0.3, m3=i * 0.4, m4=i * 0.5)
        t_loop = time.perf_counter() - t0
        t1 = time.perf_counter()
        rec.flush()
        durable = time.perf_counter() - t1
    return {"loop_s": t_loop, "us_per_call": t_loop / steps * 1e6, "durable_after_loop_s": durable}


def bench_mlflow_sync(tmp: Path, steps: int) -> dict[str, float]:
    """Qlib's way: one MlflowClient.log_metric per value, one transaction each."""
    from mlflow import MlflowClient

    uri, db = fresh_store(tmp, "sync")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=(tmp / "a_sync").as_uri())
    run_id = client.create_run(exp).info.run_id
    t0 = time.perf_counter()
    for i in range(steps):
        for k in range(5):
            client.log_metric(run_id, f"m{k}", i * 0.1 * (k + 1), step=i)
    t_loop = time.perf_counter() - t0
    client.set_terminated(run_id)
    assert count_metrics(db, run_id) == steps * 5
    return {"loop_s": t_loop, "us_per_call": t_loop / steps * 1e6, "durable_after_loop_s": 0.0}


def bench_mlflow_async(tmp: Path, steps: int, batch: bool) -> dict[str, float]:
    """MLflow's async logging (synchronous=False; MLFLOW_ENABLE_ASYNC_LOGGING does the same
    for the fluent API): calls return at once, a thread pool writes; flush_async_logging waits."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri, db = fresh_store(tmp, f"async_{batch}")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=(tmp / f"a_async_{batch}").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_metric(run_id, "warmup", 0.0, synchronous=False).wait()
    t0 = time.perf_counter()
    for i in range(steps):
        if batch:
            ts = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(f"m{k}", i * 0.1 * (k + 1), ts, i) for k in range(5)],
                synchronous=False,
            )
        else:
            for k in range(5):
                client.log_metric(run_id, f"m{k}", i * 0.1 * (k + 1), step=i, synchronous=False)
    t_loop = time.perf_counter() - t0
    t1 = time.perf_counter()
    mlflow.flush_async_logging()
    durable = time.perf_counter() - t1
    client.set_terminated(run_id)
    assert count_metrics(db, run_id) - 1 == steps * 5
    return {"loop_s": t_loop, "us_per_call": t_loop / steps * 1e6, "durable_after_loop_s": durable}


def bench_run_overhead_qrecorder(tmp: Path, runs: int) -> float:
    from qrecorder import R

    uri, _ = fresh_store(tmp, "overhead_q")
    R.set_uri(uri)
    with R.start(experiment_name="bench", recorder_name="warmup"):
        pass
    t0 = time.perf_counter()
    for i in range(runs):
        with R.start(experiment_name="bench", recorder_name=f"run{i}"):
            R.log_params(**{f"p{k}": k for k in range(5)})
            R.log_metrics(**{f"m{k}": k * 0.5 for k in range(5)})
    return (time.perf_counter() - t0) / runs * 1000


def bench_run_overhead_mlflow(tmp: Path, runs: int) -> float:
    from mlflow import MlflowClient

    uri, _ = fresh_store(tmp, "overhead_m")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=(tmp / "a_ovh").as_uri())
    t0 = time.perf_counter()
    for i in range(runs):
        run_id = client.create_run(exp, run_name=f"run{i}").info.run_id
        for k in range(5):
            client.log_param(run_id, f"p{k}", k)
        for k in range(5):
            client.log_metric(run_id, f"m{k}", k * 0.5)
        client.set_terminated(run_id)
    return (time.perf_counter() - t0) / runs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    args = ap.parse_args()
    steps = 400 if args.quick else 2000
    sync_steps = 40 if args.quick else 200  # per-call logging is ~9 ms a value: extrapolated
    runs = 10 if args.quick else 50
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("QRECORDER_HEARTBEAT_INTERVAL", "10")
    with tempfile.TemporaryDirectory(prefix="qrec-bench-") as tmpdir:
        tmp = Path(tmpdir)
        os.chdir(tmp)  # provenance capture sees no git repository, as in a plain script folder
        q = bench_qrecorder_logging(tmp, steps)
        qd = bench_qrecorder_direct(tmp, steps)
        a1 = bench_mlflow_async(tmp, steps, batch=True)
        a2 = bench_mlflow_async(tmp, max(steps // 4, 50), batch=False)
        s = bench_mlflow_sync(tmp, sync_steps)
        ovh_q = bench_run_overhead_qrecorder(tmp, runs)
        ovh_m = bench_run_overhead_mlflow(tmp, runs)
        os.chdir(Path(__file__).resolve().parent)
    values = steps * 5
    print(f"\nlogging {values:,} values ({steps} steps x 5 metrics), SQLite store, {os.cpu_count()} cores")
    print(f"{'method':52} {'loop s':>8} {'us/call':>9} {'durable after loop s':>21}")
    rows = [
        ("qrecorder R.log_metrics (batched writer)", q),
        ("qrecorder recorder.log_metrics", qd),
        ("MLflow log_batch(5 metrics, synchronous=False)", a1),
        (f"MLflow log_metric x5, synchronous=False [{max(steps // 4, 50)} steps]", a2),
        (f"MLflow log_metric x5 per call (Qlib) [{sync_steps} steps]", s),
    ]
    for label, r in rows:
        print(f"{label:52} {r['loop_s']:8.3f} {r['us_per_call']:9.1f} {r['durable_after_loop_s']:21.3f}")
    sync_total = s["loop_s"] / sync_steps * steps
    async_total = a2["loop_s"] / max(steps // 4, 50) * steps + a2["durable_after_loop_s"] * steps / max(
        steps // 4, 50
    )
    print(f"\nend-to-end for {values:,} values (loop + durable):")
    print(f"  qrecorder                              {q['loop_s'] + q['durable_after_loop_s']:8.3f} s")
    print(f"  MLflow async log_batch                 {a1['loop_s'] + a1['durable_after_loop_s']:8.3f} s")
    print(f"  MLflow async log_metric (extrapolated) {async_total:8.3f} s")
    print(f"  MLflow per-call log_metric (extrap.)   {sync_total:8.3f} s")
    print(f"\nper-run overhead (start, 5 params, 5 metrics, end; {runs} runs):")
    print(f"  qrecorder R.start block                {ovh_q:8.2f} ms")
    print(f"  MlflowClient per-call                  {ovh_m:8.2f} ms")
    print("\ntargets:")
    checks = [
        ("10k values durable after the loop (s)", q["durable_after_loop_s"], TARGETS["durable_after_loop_s"]),
        ("main-thread us per log_metrics call of 5", q["us_per_call"], TARGETS["us_per_log_metrics_call"]),
        ("per-run overhead (ms)", ovh_q, TARGETS["ms_per_run"]),
    ]
    for label, got, target in checks:
        print(f"  {label:44} {got:10.3f}  <= {target:<6} {'ok' if got <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
