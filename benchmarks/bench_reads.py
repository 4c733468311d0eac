"""Reads at scale: list_recorders, search_records, get-by-name, list_experiments and one run's
metrics/params/tags, with qrecorder's SQL fast path, beside MLflow's own search_runs.

    .venv/bin/python benchmarks/bench_reads.py [--quick] [--runs N]

The store (N runs x 5 params, 5 metrics, 3 tags) is built once by ``_workload.build_runs_db``
(one template run through MlflowClient, its rows copied with new ids) and cached in
benchmarks/.data/.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import build_runs_db, timed  # noqa: E402

TARGETS = {"list_recorders": 0.3, "search_records": 0.5, "get_recorder by name": 0.020, "qrec runs EXP (new process)": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 runs instead of 10,000")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    n = args.runs or (1_000 if args.quick else 10_000)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    path = build_runs_db(n)
    print(f"store: {path} ({n} runs; built/cached in {time.perf_counter() - t0:.1f}s)")

    from qrecorder import R
    from qrecorder.mlflow.sql import reads as fastread
    from qrecorder.mlflow.store import get_store

    uri = "sqlite:///" + str(path)
    R.set_uri(uri)
    client = get_store(uri).client
    exp = R.get_exp(experiment_name="bench", create=False)
    name = "run-7"
    rows: list[tuple[str, float, float | None, str]] = []

    def row(label: str, qrec: float, base: float | None, note: str = "") -> None:
        rows.append((label, qrec, base, note))

    # MLflow's own API (the baseline): one page of every run; a name lookup done the Qlib way
    # would list all runs, MLflow's server-side filter is the fair baseline.
    base_all, runs_api = timed(client.search_runs, [exp.id], max_results=50_000, repeat=1)
    base_name, _ = timed(
        client.search_runs,
        [exp.id],
        filter_string=f"attributes.run_name = '{name}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
        repeat=3,
    )
    t_list, recs = timed(R.list_recorders, experiment_name="bench", repeat=5)
    assert len(recs) == n, len(recs)
    row("list_recorders", t_list, base_all, f"{len(recs)} recorders; baseline MlflowClient.search_runs")
    t_search, frame = timed(R.search_records, [exp.id], repeat=5)
    assert len(frame) == n and frame.shape[1] == 6 + 5 + 5 + len([c for c in frame if c.startswith("tags.")])
    row("search_records", t_search, base_all, f"DataFrame {frame.shape}; baseline MlflowClient.search_runs")
    t_name, rec = timed(R.get_recorder, recorder_name=name, experiment_name="bench", repeat=20)
    assert rec.name == name
    row("get_recorder by name", t_name, base_name, "baseline search_runs(filter run_name, max_results=1)")
    t_exps, _ = timed(R.list_experiments, repeat=20)
    row("list_experiments", t_exps, None, "")
    rec = next(iter(recs.values()))
    t_m, _ = timed(rec.list_metrics, repeat=20)
    base_get, _ = timed(client.get_run, rec.id, repeat=20)
    row("recorder.list_metrics (one run)", t_m, base_get, "baseline MlflowClient.get_run")
    t_p, _ = timed(rec.list_params, repeat=20)
    row("recorder.list_params (one run)", t_p, base_get, "")

    # The CLI as a user runs it: a fresh `qrec runs` process over the whole experiment.
    qrec = str(Path(sys.executable).with_name("qrec"))
    env = {**os.environ, "QRECORDER_URI": uri}

    def cli_runs() -> None:
        subprocess.run([qrec, "runs", "bench"], env=env, check=True, capture_output=True)

    t_cli, _ = timed(cli_runs, repeat=3)
    row("qrec runs EXP (new process)", t_cli, None, "whole command: interpreter start, query, table")

    # The same qrecorder calls with the fast path switched off (MLflow's API underneath).
    os.environ["QRECORDER_FAST_READS"] = "0"
    try:
        slow_list, _ = timed(R.list_recorders, experiment_name="bench", repeat=1)
        row("list_recorders, fast path off", slow_list, None, "QRECORDER_FAST_READS=0")
    finally:
        os.environ.pop("QRECORDER_FAST_READS")
    assert fastread.enabled()

    print(f"\nreads at {n:,} runs (best of N; seconds)")
    print(f"{'operation':34} {'qrecorder':>11} {'MLflow API':>11} {'target':>8}  note")
    for label, q, b, note in rows:
        target = TARGETS.get(label)
        ok = "" if target is None else ("ok" if q <= target else "MISSED")
        print(
            f"{label:34} {q:11.4f} {'' if b is None else f'{b:11.4f}':>11} "
            f"{'' if target is None else f'{target:8.3f}':>8}  {ok} {note}"
        )


if __name__ == "__main__":
    main()
