"""Measure `qrec run-all` on examples/benchmarks: wall time with 1 and 2 workers, per-task overhead.

Usage: .venv/bin/python benchmarks/bench_runner.py [--times 2]
Each measurement uses a fresh SQLite store in a temp folder, so MLflow schema creation is
included (as for a first-time user). Per-task overhead = the recorder's wall time (start to
end, from the store) minus the model's own fit time (metric ``time.fit_seconds``): data
loading, prediction, the three records, and MLflow logging.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QREC = str(Path(sys.executable).parent / "qrec")


def one(workers: int, times: int) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        t0 = time.perf_counter()
        res = subprocess.run(
            [
                QREC,
                "run-all",
                str(REPO / "examples/benchmarks"),
                "--times",
                str(times),
                "-w",
                str(workers),
                "--uri",
                uri,
                "--out",
                f"{tmp}/out",
                "--no-progress",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(f"run-all failed:\n{res.stderr[-3000:]}")
        from qrecorder import R

        R.set_uri(uri)
        df = R.search_records([R.get_exp(experiment_name="run_all_model", create=False).id])
        R.set_uri(None)
        df = df[df["tags.qrecorder.kind"] == "run"].copy()
        df["duration"] = (df["end_time"] - df["start_time"]).dt.total_seconds()
        return wall, df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--times", type=int, default=2)
    args = ap.parse_args()
    print(f"cpu cores: {os.cpu_count()}; configs: examples/benchmarks (3 models) x {args.times} seeds")
    walls = {}
    for w in (1, 2):
        wall, df = one(w, args.times)
        walls[w] = wall
        fit = df["metrics.time.fit_seconds"].astype(float)
        task = df["metrics.time.task_seconds"].astype(float)
        over = df["duration"] - fit
        print(f"\nworkers={w}: run-all wall {wall:.1f}s for {len(df)} cells")
        for model, g in df.groupby("tags.qrecorder.model"):
            f, d = g["metrics.time.fit_seconds"].astype(float), g["duration"]
            print(
                f"  {model:10s} fit {f.mean():6.2f}s  recorder wall {d.mean():6.2f}s  overhead {(d - f).mean():6.2f}s"
            )
        print(
            f"  mean per-task overhead beyond fit: {over.mean():.2f}s (inside the task body: "
            f"{(task - fit).mean():.2f}s; R.start/end + logging: {(df['duration'] - task).mean():.2f}s)"
        )
        print(
            f"  sum of recorder wall {df['duration'].sum():.1f}s; process start, imports, scheduling, summary: "
            f"{wall - df['duration'].sum() / w:.1f}s"
        )
    print(f"\nspeedup 2 workers vs 1: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
