"""Shared workload builders for the benchmarks (not a benchmark itself).

``build_runs_db`` makes an SQLite tracking store with N runs x (5 params, 5 metrics, 3 tags).
Creating 10,000 runs through MLflow's API costs ~30 ms each (5 minutes), so it creates ONE
template run through ``MlflowClient`` (create_run, log_batch, set_terminated) and then copies
its rows -- with fresh run ids, names, start times, param/metric/tag values -- into MLflow's
own tables in a single SQLite transaction. Every row has the shape MLflow itself wrote; the
benchmarks check that MLflow's ``search_runs`` reads them back. The file is cached under
``benchmarks/.data/`` and reused while its size matches.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"


def timed(fn, *args, repeat: int = 5, **kwargs):
    """Best-of-``repeat`` wall time (s) of fn(*args) and its last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def build_runs_db(n_runs: int, path: Path | None = None, experiment: str = "bench", seed: int = 0) -> Path:
    """An SQLite store with ``n_runs`` finished runs in experiment ``experiment``; cached."""
    DATA.mkdir(exist_ok=True)
    path = path or DATA / f"runs_{n_runs}.db"
    marker = path.with_suffix(".ok")
    if path.exists() and marker.exists() and marker.read_text() == str(n_runs):
        return path
    for p in (path, marker, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        if p.exists():
            p.unlink()
    from mlflow.entities import Metric, Param, RunTag

    from qrecorder.mlflow.store import get_store

    store = get_store("sqlite:///" + str(path))
    client = store.client
    exp_id = client.create_experiment(experiment, artifact_location=(path.parent / "artifacts").as_uri())
    template = client.create_run(exp_id, run_name="template", tags={"mlflow.user": "bench"})
    rid = template.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        rid,
        metrics=[Metric(f"m{k}", 0.5, now, 0) for k in range(5)],
        params=[Param(f"p{k}", "x") for k in range(5)],
        tags=[RunTag(f"t{k}", "y") for k in range(3)],
    )
    client.set_terminated(rid)
    con = sqlite3.connect(str(path), timeout=60)
    run_row = con.execute("SELECT * FROM runs WHERE run_uuid = ?", (rid,)).fetchone()
    run_cols = [d[0] for d in con.execute("SELECT * FROM runs LIMIT 0").description]
    base_tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (rid,)).fetchall())
    rng = random.Random(seed)
    runs, tags, params, latest, metrics = [], [], [], [], []
    t0 = now - n_runs * 1000
    for i in range(n_runs):
        run_id = uuid.uuid4().hex
        name = f"run-{i % 2000}"
        row = dict(zip(run_cols, run_row, strict=True))
        start = t0 + i * 1000 + rng.randint(0, 5)
        row.update(
            run_uuid=run_id,
            name=name,
            start_time=start,
            end_time=start + 500,
            artifact_uri=row["artifact_uri"].replace(rid, run_id),
        )
        runs.append(tuple(row[c] for c in run_cols))
        tag_values = {**base_tags, "mlflow.runName": name, **{f"t{k}": f"tag{(i + k) % 4}" for k in range(3)}}
        tags.extend((k, v, run_id) for k, v in tag_values.items())
        params.extend((f"p{k}", str(rng.randint(0, 9)), run_id) for k in range(5))
        for k in range(5):
            value = rng.random()
            latest.append((f"m{k}", value, start, 0, 0, run_id))
            metrics.append((f"m{k}", value, start, run_id, 0, 0))
    marks = ", ".join("?" for _ in run_cols)
    with con:
        con.executemany(f"INSERT INTO runs ({', '.join(run_cols)}) VALUES ({marks})", runs)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            latest,
        )
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)",
            metrics,
        )
        # The template is not part of the workload.
        for table in ("tags", "params", "latest_metrics", "metrics"):
            con.execute(f"DELETE FROM {table} WHERE run_uuid = ?", (rid,))
        con.execute("DELETE FROM runs WHERE run_uuid = ?", (rid,))
    con.close()
    marker.write_text(str(n_runs))
    return path


def env_for_store(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["QRECORDER_URI"] = "sqlite:///" + str(path)
    return env
